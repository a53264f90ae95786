"""Wake words from models that ship in wheels: nothing is downloaded at run time.

Two engines:
- microWakeWord (`pymicro-wakeword` + `pymicro-features`, Apache-2.0, models included):
  hey_jarvis (the default), hey_mycroft, alexa, okay_nabu. Small streaming models, about
  2 ms of CPU per second of audio: the ones offered first.
- openWakeWord (`pyopen-wakeword`, optional): the same phrases plus hey_rhasspy, named with
  the suffix "_oww" here ("hey_jarvis_oww") so a setting always says which engine it means.
  Its models are openWakeWord's pre-trained ones, which upstream licenses CC BY-NC-SA 4.0
  (non-commercial) even though the wheel says Apache-2.0; and they cost about 30 times the
  CPU (65 ms per second of audio).

`WakeWordDetector.feed` takes 16 kHz mono float32 audio in pieces of any size (the
microphone's 32 ms blocks) and says whether the wake word was detected in that piece. Once
it fires it stays quiet for `REFRACTORY_S` of audio and until the probability has dropped
below the cut-off again, so one utterance gives one detection.

Measured (2026-12, see `DEFAULT_CUTOFFS`): the phrases spoken by Kokoro in 8 voices, at
three levels and in -50 dBFS noise, against 15 minutes of other Kokoro speech, 100 s of
human recordings and 21 near-miss phrases.
"""

from __future__ import annotations

import copy
import importlib.util
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 16_000
REFRACTORY_S = 1.5  # after a detection: longer than the tail of any of these phrases
OWW_SUFFIX = "_oww"

MICRO_LICENCE = "Apache-2.0"
OWW_LICENCE = "CC BY-NC-SA 4.0 (non-commercial)"

# name -> phrase, in the order they are offered (the default first).
MICRO_PHRASES = {
    "hey_jarvis": "Hey Jarvis",
    "hey_mycroft": "Hey Mycroft",
    "alexa": "Alexa",
    "okay_nabu": "Okay Nabu",
}
OWW_PHRASES = {
    "hey_jarvis": "Hey Jarvis",
    "hey_mycroft": "Hey Mycroft",
    "alexa": "Alexa",
    "okay_nabu": "Okay Nabu",
    "hey_rhasspy": "Hey Rhasspy",
}
# The default: on Kokoro speech it fired 110/128 (86%, quiet and noisy included) and, of all
# the permissive models, came nearest to nothing on ordinary speech (peak 0.18 on 15 min,
# except a sentence that says "Jarvis"); near-misses: "Hey Jervis", "Hey Travis". alexa hears
# more (98%) but also "Alexis", "Electra", "Alessa" and wakes Amazon's devices; hey_mycroft
# (90%) also fires on "Hey Microsoft" and reached its cut-off on "The microphone is open".
DEFAULT_WAKE_WORD = "hey_jarvis"

# Probability cut-offs, by our name. microWakeWord's: each model's own (its JSON), which its
# author chose against hours of negative audio, far more than the 15 minutes measured here.
# None was too strict for Kokoro's speech except okay_nabu (16/128 at 0.85); but it missed
# whole voices even at 0.5 (af_bella, af_heart: 1/16), so the fault looks like Kokoro's
# "Nabu" rather than the cut-off, and a lower one would buy false accepts to fit a speech
# synthesiser: it stays at 0.85. openWakeWord's: its usual 0.5, where every model but
# okay_nabu heard 94-100% and none fired on ordinary speech bar the "Jarvis" sentence (the
# probabilities sit near 0 or 1, so 0.3-0.9 change little).
DEFAULT_CUTOFFS: dict[str, float] = {
    "hey_jarvis": 0.97,
    "hey_mycroft": 0.95,
    "alexa": 0.9,
    "okay_nabu": 0.85,
    "hey_jarvis_oww": 0.5,
    "hey_mycroft_oww": 0.5,
    "alexa_oww": 0.5,
    "okay_nabu_oww": 0.5,
    "hey_rhasspy_oww": 0.5,
}

Samples = npt.NDArray[np.float32]


class WakeWordError(ValueError):
    """A wake word that cannot be used: unknown, its package missing, a bad sensitivity."""


@dataclass(frozen=True)
class WakeWordInfo:
    name: str  # what a setting holds: "okay_nabu", "hey_jarvis_oww"
    phrase: str  # what to say: "Okay Nabu"
    engine: str  # "microWakeWord" or "openWakeWord"
    licence: str
    permissive: bool  # usable in any product, commercial included


def _installed(module: str) -> bool:
    # find_spec only: importing would load the TFLite library.
    return importlib.util.find_spec(module) is not None


def available_wake_words() -> list[WakeWordInfo]:
    """The wake words this machine can use, the permissively licensed ones first."""
    words = [WakeWordInfo(name, phrase, "microWakeWord", MICRO_LICENCE, True)
             for name, phrase in MICRO_PHRASES.items()]
    if _installed("pyopen_wakeword"):
        words += [WakeWordInfo(name + OWW_SUFFIX, phrase, "openWakeWord", OWW_LICENCE, False)
                  for name, phrase in OWW_PHRASES.items()]
    return words


def _all_wake_words() -> dict[str, WakeWordInfo]:
    """Every name this module knows, installed or not (to tell "unknown" from "missing")."""
    words = {name: WakeWordInfo(name, phrase, "microWakeWord", MICRO_LICENCE, True)
             for name, phrase in MICRO_PHRASES.items()}
    for name, phrase in OWW_PHRASES.items():
        words[name + OWW_SUFFIX] = WakeWordInfo(name + OWW_SUFFIX, phrase, "openWakeWord",
                                                OWW_LICENCE, False)
    return words


def wake_word_info(name: str) -> WakeWordInfo:
    known = _all_wake_words()
    if name not in known:
        choices = ", ".join(w.name for w in available_wake_words())
        raise WakeWordError(f"unknown wake word {name!r}: choose one of {choices}")
    info = known[name]
    package = "pymicro_wakeword" if info.engine == "microWakeWord" else "pyopen_wakeword"
    if not _installed(package):
        pip_name = package.replace("_", "-")
        raise WakeWordError(f"wake word {name!r} needs {pip_name}: pip install {pip_name} "
                            f"(or choose one of "
                            f"{', '.join(w.name for w in available_wake_words())})")
    return info


def _to_int16_bytes(samples: Samples) -> bytes:
    # Clip first: a float just over 1.0 would wrap around to a loud negative sample; and a
    # NaN (a broken driver) has no int16 value at all.
    audio = np.nan_to_num(np.asarray(samples, dtype=np.float32).reshape(-1))
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16).tobytes()


class _Micro:
    """microWakeWord: 10 ms feature frames, one probability per 3 frames (30 ms), averaged
    over the model's sliding window."""

    def __init__(self, name: str) -> None:
        from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures, Model

        self._features = MicroWakeWordFeatures()
        self._model = MicroWakeWord.from_builtin(Model(name))
        self._waiting = 0  # feature frames the model holds towards its next inference

    def probabilities(self, audio: bytes) -> list[float]:
        found = []
        for features in self._features.process_streaming(audio):
            probability = self._model.process_streaming_prob(features)
            # It gathers `stride` frames per inference and answers 0.0 for the others: that
            # 0.0 is no measurement (it would re-arm the detector in mid-phrase), so skip it.
            self._waiting += 1
            if self._waiting < self._model.stride:
                continue
            self._waiting = 0
            if probability is not None:
                found.append(probability)
        return found

    def reset(self) -> None:
        self._features.reset()
        self._model.reset()  # reloads the interpreter: the model's streaming state lives there
        self._waiting = 0

    def close(self) -> None:
        self._model.close()


# pyopen-wakeword 1.1's streaming state (public attributes), restored by _Oww.reset.
_OWW_FEATURE_STATE = ("audio", "new_audio_samples", "mels", "new_mels")
_OWW_MODEL_STATE = ("embeddings", "new_embeddings")
# openWakeWord's feature extractor shifts a 10 s buffer by each piece: longer ones must be split.
_OWW_MAX_PIECE = SAMPLE_RATE


class _Oww:
    """openWakeWord: mel spectrogram and a shared embedding model every 80 ms, then the wake
    word's own small model over the last 16 embeddings."""

    def __init__(self, name: str) -> None:
        from pyopen_wakeword import Model, OpenWakeWord, OpenWakeWordFeatures

        self._features = OpenWakeWordFeatures.from_builtin()
        self._model = OpenWakeWord.from_builtin(Model(name.removesuffix(OWW_SUFFIX)))
        self._prime()

    def _prime(self) -> None:
        # A fresh extractor first computes 8 s of zeros' features (its autofill, about 0.5 s
        # of CPU): do that once, at load, not on the first microphone block, and keep that
        # state so that reset() can put it back in well under a millisecond. The
        # probabilities of that silence are dropped.
        self.probabilities(bytes(2 * 1280))
        self._primed = [(part, attribute, copy.copy(getattr(part, attribute)))
                        for part, attributes in ((self._features, _OWW_FEATURE_STATE),
                                                 (self._model, _OWW_MODEL_STATE))
                        for attribute in attributes]

    def probabilities(self, audio: bytes) -> list[float]:
        found: list[float] = []
        step = 2 * _OWW_MAX_PIECE
        for start in range(0, len(audio), step):
            for embeddings in self._features.process_streaming(audio[start:start + step]):
                found.extend(self._model.process_streaming(embeddings))
        return found

    def reset(self) -> None:
        for part, attribute, value in self._primed:
            setattr(part, attribute, copy.copy(value))

    def close(self) -> None:
        self._model.close()
        self._features.close()


class WakeWordDetector:
    """One wake word, listening to a stream of 16 kHz mono float32 audio.

    `sensitivity` (0 to 1, higher fires more easily) overrides the measured default: the
    probability cut-off becomes 1 - sensitivity.
    """

    def __init__(self, name: str, sensitivity: float | None = None) -> None:
        self._info = wake_word_info(name)
        if sensitivity is None:
            self.threshold = DEFAULT_CUTOFFS[name]
        elif 0.0 < sensitivity < 1.0:
            self.threshold = 1.0 - float(sensitivity)
        else:
            raise WakeWordError(f"wake word sensitivity must be between 0 and 1, "
                                f"not {sensitivity!r}")
        self._engine: _Micro | _Oww
        try:
            if self._info.engine == "microWakeWord":
                self._engine = _Micro(name)
            else:
                self._engine = _Oww(name)
        except (OSError, ValueError) as error:  # the TFLite library or a model file
            raise WakeWordError(f"cannot load wake word {name!r}: {error}") from error
        self.last_probability = 0.0
        self.peak_probability = 0.0  # the highest since the last reset, for tuning
        self._quiet_samples = 0  # audio still to hear before it may fire again
        self._armed = True  # False from a detection until the probability falls again

    @property
    def info(self) -> WakeWordInfo:
        return self._info

    def feed(self, samples: Samples) -> bool:
        """Hear the next piece of audio (16 kHz mono float32, any length); True when the wake
        word was detected in it."""
        count = int(np.size(samples))
        if count == 0:
            return False
        probabilities = self._engine.probabilities(_to_int16_bytes(samples))
        detected = False
        for probability in probabilities:
            if probability > self.peak_probability:
                self.peak_probability = probability
            if probability <= self.threshold:
                self._armed = True
            elif self._armed and self._quiet_samples <= 0:
                detected = True
                self._armed = False
                # The refractory period counts from the end of this piece: close enough at
                # 32 ms blocks, and it errs on the quiet side.
                self._quiet_samples = int(REFRACTORY_S * SAMPLE_RATE) + count
        if probabilities:
            self.last_probability = probabilities[-1]
        self._quiet_samples = max(0, self._quiet_samples - count)
        return detected

    def reset(self) -> None:
        """Forget the audio heard so far (after the assistant has listened to a command)."""
        self._engine.reset()
        self.last_probability = 0.0
        self.peak_probability = 0.0
        self._quiet_samples = 0
        self._armed = True

    def close(self) -> None:
        """Release the TFLite interpreters; the detector cannot be fed afterwards."""
        self._engine.close()
