"""The tray icon (pystray), on its own thread. Its picture and tooltip say the agent's state;
its menu offers Talk, Interrupt, Voice, Speed, LLM, Mute, Settings, History, Start at login
and Quit. Menu callbacks run on pystray's thread: they only post a command to the app, which
acts on the Tk thread, exactly as a hotkey or the control socket does.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.desktop import commands as cmd
from agent.desktop.icons import icon_image
from agent.events import AgentState

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


@dataclass
class TrayModel:
    """What the menu shows; written by the app (Tk thread), read by pystray's thread when it
    draws the menu. Each field is replaced whole, so a reader never sees half an update."""

    state: AgentState = AgentState.IDLE
    voice: str = ""
    voices: tuple[str, ...] = ()
    speed: float = 1.0
    mute: bool = False
    use_server: bool = False
    server_label: str = ""  # "" when no server is configured (LLM menu: embedded only)
    autostart: bool = False
    error: str = ""


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

        self._icon = _icon_class()("voice-agent", icon_image(self.model.state, 64),
                                   TOOLTIPS[self.model.state], menu=self._menu(pystray))
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
        self._icon.icon = icon_image(state, 64)
        tooltip = TOOLTIPS[state]
        if self.model.error:
            tooltip = f"{tooltip}: {self.model.error}"[:120]  # tooltips are short everywhere
        self._icon.title = tooltip
        self.refresh_menu()

    def refresh_menu(self) -> None:
        if self._icon is not None:
            self._icon.update_menu()

    # -- the menu ------------------------------------------------------------------------------

    def _menu(self, pystray: Any) -> Any:
        item, menu = pystray.MenuItem, pystray.Menu
        model = self.model

        def post(command: cmd.Command) -> Callable[[Any, Any], None]:
            return lambda _icon, _item: self.post(command)

        def voice_item(voice: str) -> Any:
            return item(voice, post(cmd.SetVoice(voice)), radio=True,
                        checked=lambda _item: model.voice == voice)

        def speed_item(speed: float) -> Any:
            return item(f"{speed:g}×", post(cmd.SetSpeed(speed)), radio=True,
                        checked=lambda _item: abs(model.speed - speed) < 1e-6)

        def llm_items() -> Any:
            items = [item("Embedded (offline)", post(cmd.SetBackend(False)), radio=True,
                          checked=lambda _item: not model.use_server)]
            if model.server_label:
                items.append(item(model.server_label, post(cmd.SetBackend(True)), radio=True,
                                  checked=lambda _item: model.use_server))
            return items

        busy = (AgentState.THINKING, AgentState.SPEAKING)
        return menu(
            item("Talk", post(cmd.Talk()), default=True),
            item("Interrupt", post(cmd.Interrupt()),
                 enabled=lambda _item: model.state in busy),
            menu.SEPARATOR,
            item("Voice", menu(lambda: [voice_item(v) for v in model.voices or (model.voice,)])),
            item("Speed", menu(*[speed_item(s) for s in SPEEDS])),
            item("LLM", menu(llm_items)),
            item("Mute", post(cmd.SetMute(None)), checked=lambda _item: model.mute),
            menu.SEPARATOR,
            item("Settings", post(cmd.OpenSettings())),
            item("History", post(cmd.ShowHistory())),
            item("Start at login", post(cmd.SetAutostart(None)),
                 checked=lambda _item: model.autostart),
            menu.SEPARATOR,
            item("Quit", post(cmd.Quit())),
        )
