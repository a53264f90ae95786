"""Where speech goes: the `AudioSink` protocol, with the device player and a WAV-file sink."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from agent.audio.events import AudioChunk, PlaybackEvent, PlaybackKind, PlaybackListener


class AudioSink(Protocol):
    sample_rate: int

    def start(self) -> None: ...

    def enqueue(self, chunk: AudioChunk) -> None: ...

    def cut(self, drop_below_turn: int) -> None: ...

    def add_listener(self, listener: PlaybackListener) -> None: ...

    def close(self) -> None: ...


class MemorySink:
    """Collects what would be played, at once and in order (no device, no real time)."""

    def __init__(self, sample_rate: int = 24_000) -> None:
        self.sample_rate = sample_rate
        self.chunks: list[AudioChunk] = []
        self._listeners: list[PlaybackListener] = []
        self._min_turn = 0

    def start(self) -> None:
        pass

    def add_listener(self, listener: PlaybackListener) -> None:
        self._listeners.append(listener)

    def _emit(self, kind: PlaybackKind, chunk: AudioChunk | None = None, played: int = 0) -> None:
        event = PlaybackEvent.of(kind, chunk, played)
        for listener in list(self._listeners):
            listener(event)

    def enqueue(self, chunk: AudioChunk) -> None:
        if chunk.turn < self._min_turn:
            self._emit(PlaybackKind.DROPPED, chunk)
            return
        self.chunks.append(chunk)
        self._emit(PlaybackKind.STARTED, chunk)
        self._emit(PlaybackKind.FINISHED, chunk, chunk.samples.size)
        self._emit(PlaybackKind.DRAINED)

    def cut(self, drop_below_turn: int) -> None:
        self._min_turn = max(self._min_turn, drop_below_turn)

    def samples(self) -> npt.NDArray[np.float32]:
        if not self.chunks:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate([c.samples for c in self.chunks])

    def close(self) -> None:
        pass


class WavFileSink(MemorySink):
    """Writes everything spoken to a 16-bit mono WAV file when closed."""

    def __init__(self, path: Path, sample_rate: int = 24_000) -> None:
        super().__init__(sample_rate)
        self.path = path

    def close(self) -> None:
        write_wav(self.path, self.samples(), self.sample_rate)


def write_wav(path: Path, samples: npt.NDArray[np.float32], sample_rate: int) -> None:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    partial = path.with_name(path.name + ".partial")
    with wave.open(str(partial), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())
    partial.replace(path)


def read_wav(path: Path) -> tuple[npt.NDArray[np.float32], int]:
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported")
        rate, channels = wav.getframerate(), wav.getnchannels()
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    samples = pcm.reshape(-1, channels).mean(axis=1) / 32768.0
    return samples.astype(np.float32), rate
