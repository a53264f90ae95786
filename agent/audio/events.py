"""What the audio output reports: each chunk's start, end or cut, with the samples really
played (the conversation trims an interrupted reply to what the user heard)."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class AudioChunk:
    """Samples for one clause, tagged with the turn they belong to: after an interrupt, chunks
    of older turns are dropped, never played late."""

    samples: npt.NDArray[np.float32]
    turn: int
    seq: int
    text: str = ""
    speaker: str = ""


class PlaybackKind(enum.Enum):
    STARTED = "started"  # the chunk's first sample went to the device
    FINISHED = "finished"  # all of it was played
    CUT = "cut"  # an interrupt faded it out part way
    DROPPED = "dropped"  # discarded before any of it played (stale turn, or cleared)
    DRAINED = "drained"  # nothing left to play
    ERROR = "error"  # the output stream failed (device gone); see `message`


@dataclass(frozen=True)
class PlaybackEvent:
    kind: PlaybackKind
    turn: int = -1
    seq: int = -1
    played: int = 0  # samples of the chunk that reached the device, fade included
    total: int = 0
    text: str = ""
    speaker: str = ""
    at: float = 0.0  # time.monotonic() when the callback saw it
    message: str = ""

    @classmethod
    def of(cls, kind: PlaybackKind, chunk: AudioChunk | None = None,
           played: int = 0) -> PlaybackEvent:
        if chunk is None:
            return cls(kind, at=time.monotonic())
        return cls(kind, chunk.turn, chunk.seq, played, chunk.samples.size, chunk.text,
                   chunk.speaker, time.monotonic())

    @property
    def heard_fraction(self) -> float:
        return self.played / self.total if self.total else 0.0


PlaybackListener = Callable[[PlaybackEvent], None]
