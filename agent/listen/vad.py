"""Voice activity detection with Silero VAD v6, the ONNX model faster-whisper's wheel ships,
run on onnxruntime (about 0.4 ms per 32 ms window on one thread).

`SileroVad` keeps the model's recurrent state between calls, so audio can be fed as it is
recorded; `EndOfSpeech` turns its probabilities into "the speaker has finished" for the
toggle mode (speech heard, then a pause long enough).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

VAD_RATE = 16_000
WINDOW = 512  # samples per probability at 16 kHz (32 ms); the model takes only this size
CONTEXT = 64  # samples of the previous window the model sees before each one
MODEL_FILE = "silero_vad_v6.onnx"

Samples = npt.NDArray[np.float32]


def model_path() -> Path:
    """The VAD model inside faster-whisper's package, found without importing it (that
    would load CTranslate2 and PyAV)."""
    spec = importlib.util.find_spec("faster_whisper")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("faster-whisper is not installed: pip install faster-whisper")
    return Path(next(iter(spec.submodule_search_locations))) / "assets" / MODEL_FILE


class SileroVad:
    """Speech probability per 32 ms window of 16 kHz audio, fed in pieces of any size."""

    def __init__(self) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        options.enable_cpu_mem_arena = False
        options.log_severity_level = 4
        self._session: Any = onnxruntime.InferenceSession(
            str(model_path()), sess_options=options, providers=["CPUExecutionProvider"])
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), np.float32)
        self._c = np.zeros((1, 1, 128), np.float32)
        self._context = np.zeros(CONTEXT, np.float32)
        self._pending = np.zeros(0, np.float32)

    def feed(self, samples: Samples) -> Samples:
        """Probabilities for every whole window completed by `samples` (the rest waits)."""
        audio = np.concatenate([self._pending, np.asarray(samples, np.float32).ravel()])
        count = audio.size // WINDOW
        self._pending = audio[count * WINDOW:]
        if count == 0:
            return np.zeros(0, np.float32)
        windows = audio[:count * WINDOW].reshape(count, WINDOW)
        # Each row: the last CONTEXT samples before it, then the window.
        previous = np.concatenate([self._context[None, :], windows[:-1, -CONTEXT:]])
        batch = np.concatenate([previous, windows], axis=1)
        probabilities, self._h, self._c = self._session.run(
            None, {"input": batch, "h": self._h, "c": self._c})
        self._context = windows[-1, -CONTEXT:].copy()
        return np.asarray(probabilities, np.float32).ravel()


@dataclass(frozen=True)
class SpeechSpan:
    """Where a clip's speech is, in samples (start == end when there is none), and how sure
    the VAD was of it."""

    start: int
    end: int
    speech_samples: int  # windows over the threshold, counted
    mean_probability: float = 0.0  # of those windows
    flatness: float = 0.0  # their median spectral flatness (see spectral_flatness)

    @property
    def speech_s(self) -> float:
        return self.speech_samples / VAD_RATE


def find_speech(vad: SileroVad, samples: Samples, threshold: float = 0.5) -> SpeechSpan:
    """The span from the first to the last speech window of a 16 kHz clip (fresh state)."""
    vad.reset()
    probabilities = vad.feed(np.concatenate([samples, np.zeros(WINDOW, np.float32)]))
    vad.reset()
    windows = np.flatnonzero(probabilities >= threshold)
    if windows.size == 0:
        return SpeechSpan(0, 0, 0)
    return SpeechSpan(int(windows[0]) * WINDOW, min(samples.size, (int(windows[-1]) + 1) * WINDOW),
                      windows.size * WINDOW, float(probabilities[windows].mean()),
                      spectral_flatness(samples, windows))


def spectral_flatness(samples: Samples, windows: npt.NDArray[np.intp]) -> float:
    """The median, over the given VAD windows, of each window's spectral flatness: the
    geometric over the arithmetic mean of its power spectrum. About 0.56 for white noise,
    0.03-0.3 for pink or clipped noise, near 0.001 for clean voiced speech (harmonics)."""
    whole = windows[(windows + 1) * WINDOW <= samples.size]
    if whole.size == 0:
        return 0.0
    frames = samples[whole[:, None] * WINDOW + np.arange(WINDOW)].astype(np.float64)
    power = np.abs(np.fft.rfft(frames * np.hanning(WINDOW), axis=1)) ** 2 + 1e-12
    flatness = np.exp(np.mean(np.log(power), axis=1)) / np.mean(power, axis=1)
    return float(np.median(flatness))


@dataclass(frozen=True)
class SilenceStop:
    """Toggle mode: stop listening after `silence_s` of quiet that follows at least
    `min_speech_s` of speech, or after `no_speech_s` with no speech at all."""

    silence_s: float = 1.0
    min_speech_s: float = 0.2
    no_speech_s: float = 8.0
    threshold: float = 0.5


class EndOfSpeech:
    """Counts windows: speech (probability over the threshold), then a pause after it.
    `update` returns the reason to stop ("silence" or "no speech"), or "" to go on."""

    def __init__(self, settings: SilenceStop) -> None:
        self.settings = settings
        self.speech_s = 0.0
        self.quiet_s = 0.0  # since the last speech window
        self.heard_s = 0.0  # everything fed so far

    def update(self, probabilities: Samples) -> str:
        window_s = WINDOW / VAD_RATE
        low = max(0.01, self.settings.threshold - 0.15)  # Silero's own hysteresis
        for probability in probabilities:
            self.heard_s += window_s
            if probability >= self.settings.threshold:
                self.speech_s += window_s
                self.quiet_s = 0.0
            elif probability < low or self.quiet_s > 0.0:
                self.quiet_s += window_s
        if self.speech_s >= self.settings.min_speech_s:
            return "silence" if self.quiet_s >= self.settings.silence_s else ""
        return "no speech" if self.heard_s >= self.settings.no_speech_s else ""
