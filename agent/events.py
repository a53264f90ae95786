"""What the core tells the outside (a terminal, the tray, the overlay): states and text, as
immutable events on a bus. Listeners run on the publisher's thread and must be quick; a
desktop shell hands them to its own thread."""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


class AgentState(enum.Enum):
    IDLE = "idle"
    THINKING = "thinking"  # request sent, no words yet
    SPEAKING = "speaking"
    INTERRUPTED = "interrupted"
    ERROR = "error"
    LISTENING = "listening"  # the microphone is open (push-to-talk)


@dataclass(frozen=True)
class StateChanged:
    """Published by the core's loop thread only (agent.state): `seq` grows with each change,
    so a listener that gets them through another queue can drop one older than it has shown."""

    state: AgentState
    turn: int
    message: str = ""  # for ERROR: what went wrong and what to do
    seq: int = field(default=0, compare=False)  # the order it was published in, not the state


@dataclass(frozen=True)
class UserSaid:
    text: str
    turn: int


@dataclass(frozen=True)
class ReplyDelta:
    """Reply text as it arrives, shown at once; reasoning is for dimmed display only."""

    turn: int
    text: str = ""
    reasoning: str = ""


@dataclass(frozen=True)
class ReplyDone:
    turn: int
    text: str  # everything the model said
    heard: str  # what the user heard (all of it, unless interrupted)
    interrupted: bool


@dataclass(frozen=True)
class Notice:
    message: str
    turn: int = -1


@dataclass(frozen=True)
class SettingsChanged:
    """The settings file was edited while the agent runs and the edits now apply."""

    sections: tuple[str, ...]  # the [sections] that changed


@dataclass(frozen=True)
class MicrophoneChanged:
    """The hands-free microphone opened or closed ([listen] talk_over, wake_word): the tray
    and the overlay show it while it is open."""

    is_open: bool
    description: str  # "microphone open (wake word okay_nabu; echo cancellation on)"


@dataclass(frozen=True)
class ReadingStatus:
    """A text being read aloud (agent.reader): what the overlay and the tray show of it."""

    origin: str = ""  # "the selection", "notes.pdf"
    passage: str = ""  # the sentence being read (or cut, or paused on)
    index: int = -1  # its number in the text, from 0
    active: bool = False  # being read (paused or not)
    paused: bool = False
    resumable: bool = False  # stopped part way: "Resume reading" goes on from `index`
    finished: bool = False  # read to the end


AgentEvent = (StateChanged | UserSaid | ReplyDelta | ReplyDone | Notice | SettingsChanged
              | MicrophoneChanged | ReadingStatus)
AgentListener = Callable[[AgentEvent], None]


class EventBus:
    def __init__(self) -> None:
        self._listeners: list[AgentListener] = []
        self._lock = threading.Lock()

    def subscribe(self, listener: AgentListener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def publish(self, event: AgentEvent) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                log.exception("listener failed on %s", type(event).__name__)
