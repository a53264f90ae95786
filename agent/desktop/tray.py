"""The tray icon (pystray), on its own thread. Its picture and tooltip say the agent's state
and the voice speaking; its menu offers Talk, Interrupt, Voice, Speed, LLM, Mute, Settings,
History, Start at login and Quit. Menu callbacks run on pystray's thread: they only post a
command to the app, which acts on the Tk thread, exactly as a hotkey or the control socket does.

The Voice menu, built from the catalogue of voices on this machine:

    Voice: Kumo (jm_kumo) ▸
        [Blend: af_bella 70% + af_sky 30%]     the current voice when it is a blend
        American English ▸                     one submenu a language, in LANGUAGES' order
            Female                             (a small header, disabled)
            (•) Bella (af_bella)               radio items; the current voice is checked
            ...
            Male
            ( ) Adam (am_adam)
            Hear a sample ▸                    the same voices: each speaks the language's
                                               sample line; the chosen voice stays
        Hindi (hard to understand) ▸           Whisper measured it poorly intelligible
        ...
        More voices: voice-agent voices fetch  (disabled) while voices are missing

With a single language on the machine (the packaged Japanese pack) its items are the Voice
menu itself.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.desktop import commands as cmd
from agent.desktop.icons import icon_image
from agent.desktop.llm_menu import SEPARATOR, MenuEntry
from agent.events import AgentState, ReadingStatus
from agent.listen.wakeword import WakeWordInfo
from agent.tts.base import VoiceInfo
from agent.tts.voices import LANGUAGES, OFFICIAL_VOICES, by_language, parse_blend

log = logging.getLogger(__name__)

SPEEDS = (0.8, 0.9, 1.0, 1.1, 1.25, 1.5)
TOOLTIPS = {
    AgentState.IDLE: "voice-agent: ready",
    AgentState.THINKING: "voice-agent: thinking…",
    AgentState.SPEAKING: "voice-agent: speaking",
    AgentState.INTERRUPTED: "voice-agent: interrupted",
    AgentState.ERROR: "voice-agent: error",
    AgentState.LISTENING: "voice-agent: listening…",
}


FETCH_HINT = "More voices: voice-agent voices fetch"


def voice_label(name: str) -> str:
    """"af_bella" -> "Bella (af_bella)"; a name not in Kokoro's pattern is shown as it is."""
    prefix, sep, given = name.partition("_")
    if not sep or len(prefix) != 2 or not given or is_blend(name):
        return name
    return f"{given[:1].upper()}{given[1:]} ({name})"


def blend_label(spec: str) -> str:
    """"af_bella:0.7,af_sky:0.3" -> "Blend: af_bella 70% + af_sky 30%"."""
    try:
        parts = parse_blend(spec)
    except Exception:  # a spec with mistakes: shown as written
        return f"Blend: {spec}"
    return "Blend: " + " + ".join(f"{p.voice} {p.weight:.0%}" for p in parts)


def is_blend(spec: str) -> bool:
    return "," in spec or ":" in spec


def current_label(voice: str) -> str:
    """The voice as the Voice menu's title shows it: "Bella (af_bella)", or the blend."""
    return blend_label(voice).removeprefix("Blend: ") if is_blend(voice) else voice_label(voice)


def language_label(code: str) -> str:
    language = LANGUAGES.get(code)
    if language is None:
        return "Other voices"
    return language.name if language.understood else f"{language.name} (hard to understand)"


def wake_word_label(info: WakeWordInfo) -> str:
    """"Okay Nabu (Apache-2.0)"; a non-commercial licence says so."""
    return f"{info.phrase} ({info.licence})"


def with_microphone_dot(image: Any) -> Any:
    """A copy of the icon with a red dot in its lower right corner."""
    from PIL import ImageDraw

    marked = image.copy()
    size = marked.width
    radius = max(3, size // 7)
    centre = (size - radius - 1, size - radius - 1)
    ImageDraw.Draw(marked).ellipse(
        (centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius),
        fill=(234, 67, 53, 255), outline=(255, 255, 255, 255), width=max(1, size // 32))
    return marked


@dataclass
class TrayModel:
    """What the menu shows; written by the app (Tk thread), read by pystray's thread when it
    draws the menu. Each field is replaced whole, so a reader never sees half an update."""

    state: AgentState = AgentState.IDLE
    voice: str = ""  # the voice that speaks (after a missing one resolved to a fallback)
    voices: tuple[VoiceInfo, ...] = ()  # the voices on this machine (the menu lists them)
    speed: float = 1.0
    mute: bool = False
    llm: tuple[MenuEntry, ...] = ()  # the LLM menu (agent.desktop.llm_menu)
    autostart: bool = False
    error: str = ""
    # Hands-free ([listen]): what the menu shows, and whether the microphone is open now.
    talk_over: bool = False
    echo_cancellation: bool = True
    wake_word: str = ""
    wake_chime: bool = True
    microphone: str = ""  # "microphone open (wake word okay_nabu; ...)" while open, else ""
    # Reading aloud: what is being read, and whether it is paused or can be resumed.
    reading: ReadingStatus = field(default_factory=ReadingStatus)


def _icon_class() -> Any:
    import pystray

    if pystray.Icon.__module__ != "pystray._xorg":
        return pystray.Icon
    import Xlib.X

    class ClickableXorgIcon(pystray.Icon):  # type: ignore[misc]
        """pystray's plain X11 backend never asks for button presses (pystray issue 151),
        so clicks on the icon are lost; ask for them."""

        def _create_window(self) -> Any:
            window = super()._create_window()
            window.change_attributes(event_mask=Xlib.X.ExposureMask
                                     | Xlib.X.StructureNotifyMask | Xlib.X.ButtonPressMask)
            return window

    return ClickableXorgIcon


class Tray:
    def __init__(self, post: Callable[[cmd.Command], None], model: TrayModel) -> None:
        self.post = post
        self.model = model
        self.visible = threading.Event()
        self._icon: Any = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Create the icon and run it: on its own thread, or (macOS, where the tray needs
        the main thread that Tk owns) detached into the main loop."""
        import pystray

        self._icon = _icon_class()("voice-agent", self.picture(),
                                   self.tooltip(), menu=self._menu(pystray))
        log.info("tray backend: %s", type(self._icon).__module__.rsplit("._", 1)[-1])
        if sys.platform == "darwin":
            self._icon.run_detached(setup=self._on_ready)
        else:
            self._thread = threading.Thread(target=self._icon.run,
                                            kwargs={"setup": self._on_ready}, name="tray",
                                            daemon=True)
            self._thread.start()

    def _on_ready(self, icon: Any) -> None:
        icon.visible = True
        self.visible.set()

    def stop(self, timeout: float = 1.0) -> None:
        if self._icon is None:
            return
        try:
            self._icon.stop()
        except Exception:  # a tray host that went away first
            log.debug("tray stop", exc_info=True)
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def backend(self) -> str:
        return type(self._icon).__module__.rsplit("._", 1)[-1] if self._icon else ""

    # -- updates (any thread: pystray's GTK backend marshals them to its loop) -----------------

    def show_state(self, state: AgentState, message: str = "") -> None:
        self.model.state = state
        self.model.error = message if state is AgentState.ERROR else ""
        if self._icon is None:
            return
        self._icon.icon = self.picture()
        self.refresh_menu()

    def show_microphone(self, is_open: bool, description: str) -> None:
        """The hands-free microphone opened or closed: a red dot on the icon while open."""
        self.model.microphone = description if is_open else ""
        if self._icon is None:
            return
        self._icon.icon = self.picture()
        self.refresh_menu()

    def picture(self) -> Any:
        """The state's icon, with a red dot in its corner while the microphone is open for
        hands-free listening (push-to-talk shows the listening icon itself)."""
        image = icon_image(self.model.state, 64)
        if self.model.microphone:
            image = with_microphone_dot(image)
        return image

    def tooltip(self) -> str:
        """The state, the error if any, and the voice that speaks."""
        model = self.model
        tooltip = TOOLTIPS[model.state]
        if model.microphone:
            tooltip = f"{tooltip} · 🎤 {model.microphone}"
        if model.error:
            tooltip = f"{tooltip}: {model.error}"
        elif model.voice:
            tooltip = f"{tooltip} · {model.voice}"
        return tooltip[:120]  # tooltips are short everywhere

    def refresh_menu(self) -> None:
        """Draw the menu again from the model (checked items, voices) and the tooltip."""
        if self._icon is None:
            return
        tooltip = self.tooltip()
        if self._icon.title != tooltip:
            self._icon.title = tooltip
        self._icon.update_menu()

    # -- the menu ------------------------------------------------------------------------------

    def _menu(self, pystray: Any) -> Any:
        item, menu = pystray.MenuItem, pystray.Menu
        model = self.model

        def post(command: cmd.Command) -> Callable[[Any, Any], None]:
            return lambda _icon, _item: self.post(command)

        def speed_item(speed: float) -> Any:
            return item(f"{speed:g}×", post(cmd.SetSpeed(speed)), radio=True,
                        checked=lambda _item: abs(model.speed - speed) < 1e-6)

        def entry_item(entry: MenuEntry) -> Any:
            if entry is SEPARATOR:
                return menu.SEPARATOR
            if entry.submenu:
                return item(entry.label, menu(*[entry_item(e) for e in entry.submenu]))
            if entry.command is None:
                return item(entry.label, None, enabled=False)
            checked = entry.checked
            return item(entry.label, post(entry.command), radio=checked is not None,
                        checked=None if checked is None else lambda _item: checked)

        def llm_items() -> Any:
            return [entry_item(entry) for entry in model.llm]

        busy = (AgentState.THINKING, AgentState.SPEAKING)
        return menu(
            item("Talk", post(cmd.Talk()), default=True),
            item("Interrupt", post(cmd.Interrupt()),
                 enabled=lambda _item: model.state in busy),
            item("Read selection", post(cmd.Read())),
            item(lambda _item: "Resume reading" if model.reading.paused or
                 not model.reading.active else "Pause reading",
                 post(cmd.PauseReading()),
                 visible=lambda _item: model.reading.active),
            item("Resume reading", post(cmd.ResumeReading()),
                 visible=lambda _item: model.reading.resumable),
            menu.SEPARATOR,
            item(lambda _item: f"Voice: {current_label(model.voice)}" if model.voice else "Voice",
                 menu(lambda: self._voice_items(pystray))),
            item("Speed", menu(*[speed_item(s) for s in SPEEDS])),
            item("LLM", menu(llm_items)),
            item("Mute", post(cmd.SetMute(None)), checked=lambda _item: model.mute),
            item("Hands-free", menu(lambda: self._hands_free_items(pystray))),
            menu.SEPARATOR,
            item("Settings", post(cmd.OpenSettings())),
            item("History", post(cmd.ShowHistory())),
            item("Start at login", post(cmd.SetAutostart(None)),
                 checked=lambda _item: model.autostart),
            menu.SEPARATOR,
            item("Quit", post(cmd.Quit())),
        )

    def _hands_free_items(self, pystray: Any) -> list[Any]:
        """Talk-over, echo cancellation, the wake words with their licences, and whether the
        microphone is open now."""
        from agent.listen.wakeword import available_wake_words

        item, menu = pystray.MenuItem, pystray.Menu
        model = self.model

        def post(command: cmd.Command) -> Callable[[Any, Any], None]:
            return lambda _icon, _item: self.post(command)

        def wake(name: str, label: str) -> Any:
            return item(label, post(cmd.SetListen("wake_word", name)), radio=True,
                        checked=lambda _item: model.wake_word == name)

        return [
            item("Talk over replies (your voice stops it)", post(cmd.SetListen("talk_over", None)),
                 checked=lambda _item: model.talk_over),
            item("Echo cancellation", post(cmd.SetListen("echo_cancellation", None)),
                 checked=lambda _item: model.echo_cancellation),
            menu.SEPARATOR,
            item("Wake word", None, enabled=False),
            wake("", "Off"),
            *[wake(info.name, wake_word_label(info)) for info in available_wake_words()],
            item("Chime when it hears the wake word", post(cmd.SetListen("wake_chime", None)),
                 checked=lambda _item: model.wake_chime),
            menu.SEPARATOR,
            item(lambda _item: "🎤 " + (model.microphone or "microphone closed"), None,
                 enabled=False),
        ]

    def _voice_items(self, pystray: Any) -> list[Any]:
        """The Voice menu's items, from the catalogue as it is now (called each time pystray
        draws the menu)."""
        item, menu = pystray.MenuItem, pystray.Menu
        model = self.model
        current = model.voice
        names = {info.name for info in model.voices}
        groups = by_language(names)

        def post(command: cmd.Command) -> Callable[[Any, Any], None]:
            return lambda _icon, _item: self.post(command)

        def choose(name: str) -> Any:
            return item(voice_label(name), post(cmd.SetVoice(name)), radio=True,
                        checked=lambda _item: model.voice == name)

        def hear(name: str) -> Any:
            return item(voice_label(name), post(cmd.PreviewVoice(name)))

        def by_gender(female: list[str], male: list[str], make: Callable[[str], Any],
                      language: str = "") -> list[Any]:
            items: list[Any] = []
            for header, voices in (("Female", female), ("Male", male)):
                if voices:
                    if items:
                        items.append(menu.SEPARATOR)
                    text = f"{language}, {header.lower()}" if language else header
                    items.append(item(text, None, enabled=False))
                    items.extend(make(name) for name in voices)
            return items

        def language_items(female: list[str], male: list[str], language: str = "") -> list[Any]:
            return [*by_gender(female, male, choose, language), menu.SEPARATOR,
                    item("Hear a sample", menu(*by_gender(female, male, hear)))]

        items: list[Any] = []
        if current and current not in names:  # a blend, or a voice the catalogue lacks
            label = blend_label(current) if is_blend(current) else voice_label(current)
            items += [item(label, post(cmd.SetVoice(current)), radio=True,
                           checked=lambda _item: model.voice == current),
                      menu.SEPARATOR]
        if len(groups) == 1:  # one language here (the packaged Japanese pack): no submenu
            code, female, male = groups[0]
            items += language_items(female, male, language_label(code))
        else:
            for code, female, male in groups:
                mark = "  ✓" if current in (*female, *male) else ""
                items.append(item(language_label(code) + mark,
                                  menu(*language_items(female, male))))
        if groups and not set(OFFICIAL_VOICES) <= names:
            items += [menu.SEPARATOR, item(FETCH_HINT, None, enabled=False)]
        return items
