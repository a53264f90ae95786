"""Test doubles shared by the tests (and open to the benchmarks): narrow stand-ins for the
synthesiser, the LLM and the audio device, and recorders of what the core reports.

Each is the smallest thing that keeps one seam honest; the real parts are tested through the
real services (harness.services, harness.microphone) and the real models.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Sequence
from typing import TypeVar

import numpy as np

from agent.audio.events import AudioChunk, PlaybackEvent, PlaybackKind
from agent.audio.player import AudioPlayer
from agent.audio.sinks import MemorySink
from agent.events import AgentEvent, AgentState, ReplyDone, StateChanged
from agent.llm.base import Delta, Message
from agent.tts.base import VoiceInfo

SR = 24_000
E = TypeVar("E")

__all__ = ["EventLog", "PlaybackRecorder", "RecordingPlayer", "ScriptedBackend", "SlowSink",
           "ToneSynth"]


# -- the synthesiser ---------------------------------------------------------------------------

class ToneSynth:
    """A narrow stand-in for unit tests of the pipeline's bookkeeping: one tone per clause,
    its length from the text, optionally slow, recording how many run at once."""

    sample_rate = SR
    source = "test"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[tuple[str, str]] = []
        self.running = 0
        self.max_running = 0
        self.lock = threading.Lock()

    def synthesize(self, text: str, voice: str, speed: float = 1.0,
                   cancel: object = None) -> np.ndarray:
        with self.lock:
            self.calls.append((text, voice))
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        time.sleep(self.delay)
        with self.lock:
            self.running -= 1
        return np.full(100 * len(text), 0.1, dtype=np.float32)

    def voices(self) -> list[VoiceInfo]:
        return []

    def default_voice(self, wanted: str) -> str:
        return wanted


# -- the LLM -----------------------------------------------------------------------------------

class ScriptedBackend:
    """Replies with scripted deltas (or raises a scripted exception); `hold` (cleared) keeps a
    reply open after its first delta until set again; `cancelled` is set when a stream is
    cancelled."""

    name = "scripted"
    description = "scripted test backend"

    def __init__(self, replies: list[list[str] | Exception]) -> None:
        self.replies = list(replies)
        self.requests: list[list[Message]] = []
        self.hold = threading.Event()
        self.hold.set()
        self.cancelled = threading.Event()

    async def stream(self, messages: Sequence[Message]) -> AsyncIterator[Delta]:
        self.requests.append(list(messages))
        reply = self.replies.pop(0)
        try:
            if isinstance(reply, Exception):
                raise reply
            for i, text in enumerate(reply):
                if i == 1:
                    while not self.hold.is_set():
                        await asyncio.sleep(0.005)
                yield Delta(text=text)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    async def aclose(self) -> None:
        pass


# -- audio sinks and players -------------------------------------------------------------------

class SlowSink(MemorySink):
    """Holds chunks until released (`play_one`), like a device that is still playing."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list[AudioChunk] = []

    def enqueue(self, chunk: AudioChunk) -> None:
        self.waiting.append(chunk)

    def play_one(self) -> None:
        super().enqueue(self.waiting.pop(0))


class RecordingPlayer(AudioPlayer):
    """The real player, also keeping what it was given, to compare with the tap."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.given: list[AudioChunk] = []
        self.started = 0
        self.add_listener(self._count_started)

    def _count_started(self, event: PlaybackEvent) -> None:
        if event.kind is PlaybackKind.STARTED:
            self.started += 1

    def enqueue(self, chunk: AudioChunk) -> None:
        self.given.append(chunk)
        super().enqueue(chunk)


# -- recorders of what the core reports ------------------------------------------------------

class PlaybackRecorder:
    """A playback listener (player or pipeline) that keeps every event and can wait for one."""

    def __init__(self) -> None:
        self.events: list[PlaybackEvent] = []
        self.changed = threading.Condition()

    def __call__(self, event: PlaybackEvent) -> None:
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def wait(self, kind: PlaybackKind, count: int = 1,
             timeout: float = 10.0) -> list[PlaybackEvent]:
        """The events of `kind` once there are `count` of them; fails after `timeout`."""
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.of(kind)) >= count, timeout), (
                f"no {kind} after {timeout} s; saw {[e.kind for e in self.events]}")
            return self.of(kind)

    def of(self, kind: PlaybackKind) -> list[PlaybackEvent]:
        return [e for e in self.events if e.kind is kind]


class EventLog:
    """An event-bus subscriber that keeps every AgentEvent in `seen`; `speaking` is set at the
    first change to SPEAKING."""

    def __init__(self) -> None:
        self.seen: list[AgentEvent] = []
        self.speaking = threading.Event()

    def __call__(self, event: AgentEvent) -> None:
        self.seen.append(event)
        if isinstance(event, StateChanged) and event.state is AgentState.SPEAKING:
            self.speaking.set()

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.seen if isinstance(e, kind)]

    def states(self) -> list[AgentState]:
        return [e.state for e in self.of(StateChanged)]

    def last_state(self) -> StateChanged | None:
        changes = self.of(StateChanged)
        return changes[-1] if changes else None

    def done(self) -> list[ReplyDone]:
        return self.of(ReplyDone)
