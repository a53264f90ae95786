"""Commands for the app, posted from any thread (tray menu, hotkeys, control socket, the
core's event bus) and carried out one at a time on the Tk thread."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.events import AgentEvent


@dataclass(frozen=True)
class Talk:
    """Open the overlay, focused, to type (later: hold to speak)."""


@dataclass(frozen=True)
class TalkPressed:
    """The talk hotkey went down: a tap opens the overlay, a hold is push-to-talk."""


@dataclass(frozen=True)
class TalkReleased:
    pass


@dataclass(frozen=True)
class Listen:
    """Start listening, or stop and send (toggle): `voice-agent listen`."""


@dataclass(frozen=True)
class Show:
    """Open the overlay without taking the focus (a second launch asks this)."""


@dataclass(frozen=True)
class Interrupt:
    pass


@dataclass(frozen=True)
class Say:
    text: str


@dataclass(frozen=True)
class Read:
    """Read aloud: the selection (the read key, the tray), the clipboard, a file or a text
    (`voice-agent read`)."""

    kind: str = "selection"  # "selection", "clipboard", "file", "text" (ReadSource.kind)
    value: str = ""


@dataclass(frozen=True)
class RunOnTk:
    """Run `job` on the Tk thread (the clipboard, on Windows and macOS, is Tk's)."""

    job: Callable[[], None]


@dataclass(frozen=True)
class AskAbout:
    """Ask about it: the selection (the ask key, `voice-agent explain`) or what is being
    read (the overlay's Ask) goes with the next question; `question` asks at once."""

    what: str = "selection"  # or "reading"
    question: str = ""


@dataclass(frozen=True)
class PauseReading:
    """Pause the text being read, or go on (the pause key, the overlay, `voice-agent pause`)."""


@dataclass(frozen=True)
class ResumeReading:
    """Go on from the sentence that was cut (the tray's "Resume reading")."""


@dataclass(frozen=True)
class SkipReading:
    passages: int  # 1: the next sentence; -1: the one before


@dataclass(frozen=True)
class Quit:
    pass


@dataclass(frozen=True)
class SetVoice:
    voice: str


@dataclass(frozen=True)
class PreviewVoice:
    """Speak a short sample in `voice` (its language's line), cutting what is playing; the
    chosen voice stays as it is and nothing goes into the history."""

    voice: str


@dataclass(frozen=True)
class SetSpeed:
    speed: float


@dataclass(frozen=True)
class SetMute:
    mute: bool | None  # None: toggle


@dataclass(frozen=True)
class SetListen:
    """A [listen] setting from the tray's Hands-free menu (talk_over, echo_cancellation:
    None toggles; wake_word: a name, or "" for off)."""

    key: str
    value: bool | str | None


@dataclass(frozen=True)
class SetBackend:
    use_server: bool


@dataclass(frozen=True)
class UseLLM:
    """The LLM menu's choice: the [llm] keys to write, and what to call it."""

    keys: tuple[tuple[str, bool | int | float | str], ...]
    what: str


@dataclass(frozen=True)
class ScanServers:
    """Look for local LLM servers again (LLM menu)."""


@dataclass(frozen=True)
class ServersScanned:
    """A scan has finished: the menu lists what it found."""


@dataclass(frozen=True)
class DownloadModel:
    key: str  # a catalogue key (agent.llm.catalog)


@dataclass(frozen=True)
class StopDownload:
    pass


@dataclass(frozen=True)
class DownloadProgress:
    done: int
    total: int


@dataclass(frozen=True)
class DownloadFinished:
    key: str
    path: Path | None  # None: failed or stopped (`error` says which)
    error: str = ""


@dataclass(frozen=True)
class SetAutostart:
    enabled: bool | None  # None: toggle


@dataclass(frozen=True)
class OpenSettings:
    pass


@dataclass(frozen=True)
class ShowHistory:
    pass


@dataclass(frozen=True)
class FromCore:
    """An event from the core's bus, to show."""

    event: AgentEvent


@dataclass(frozen=True)
class ModelsReady:
    """The background loader has finished."""


Command = (Talk | TalkPressed | TalkReleased | Listen | Show | Interrupt | Say | Read
           | RunOnTk | AskAbout | PauseReading | ResumeReading | SkipReading | Quit
           | SetVoice | PreviewVoice | SetSpeed | SetMute | SetListen | SetBackend | SetAutostart
           | OpenSettings
           | ShowHistory | FromCore | ModelsReady | UseLLM | ScanServers | ServersScanned
           | DownloadModel | StopDownload | DownloadProgress | DownloadFinished)
