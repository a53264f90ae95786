"""The synthesiser seam: text in, 24 kHz float32 samples out, one voice and speed per call."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 24_000
Samples = npt.NDArray[np.float32]


class SynthesisError(RuntimeError):
    """A chunk could not be synthesised (bad voice, model failure)."""


class SynthesisCancelled(SynthesisError):
    """The synthesis was cancelled part way (its turn was interrupted)."""


class CancelToken:
    """Cancels work in flight: an engine registers how to stop its running model call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = False
        self._callbacks: list[Callable[[], None]] = []

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Call `callback` on cancel (at once if already cancelled)."""
        with self._lock:
            if not self._cancelled:
                self._callbacks.append(callback)
                return
        callback()


@dataclass(frozen=True)
class VoiceInfo:
    name: str
    language: str
    gender: str
    available: bool  # usable now, without a download
    origin: str = ""  # "official", "npm", "packaged" or "custom"; "" when not available


class Synthesizer(Protocol):
    """Kokoro behind one narrow interface; the engines differ only in how they run the model."""

    sample_rate: int

    @property
    def source(self) -> str:
        """"official", "packaged" or "custom": where the model files came from."""

    def synthesize(self, text: str, voice: str, speed: float = 1.0,
                   cancel: CancelToken | None = None) -> Samples:
        """Speech for `text`; `voice` may be a blend such as "af_bella:0.7,af_sky:0.3".
        Raises SynthesisCancelled soon after `cancel` is cancelled."""
        ...

    def voices(self) -> list[VoiceInfo]: ...

    def default_voice(self, wanted: str) -> str:
        """`wanted` if it can be spoken now, else the best available voice."""
        ...


def trim_silence(audio: Samples, threshold: float = 0.005, keep_head_s: float = 0.005,
                 keep_tail_s: float = 0.03, sample_rate: int = SAMPLE_RATE) -> Samples:
    """Cut the near-silence Kokoro puts around each chunk (about 250 ms at the start), keeping
    a few milliseconds so consonant onsets and decays are not clipped."""
    loud = np.flatnonzero(np.abs(audio) > threshold)
    if loud.size == 0:
        return audio[:0]
    start = max(0, int(loud[0]) - int(keep_head_s * sample_rate))
    end = min(audio.size, int(loud[-1]) + 1 + int(keep_tail_s * sample_rate))
    return audio[start:end]


def pause_after(text: str, speed: float = 1.0, sample_rate: int = SAMPLE_RATE) -> int:
    """Samples of silence that follow a chunk, since trimming removed Kokoro's own pauses:
    a sentence end pauses longer than a clause break."""
    end = text.rstrip()[-1:] if text.strip() else ""
    seconds = 0.28 if end in ".!?…" else 0.14 if end in ",;:—-" else 0.08
    return int(seconds / speed * sample_rate)
