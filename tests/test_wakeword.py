"""Wake words (agent.listen.wakeword) with the real models and real Kokoro speech.

The counts asserted here come from the measurement behind the module's cut-offs: the default
wake word, spoken by Kokoro in 8 voices, clean and at a quarter of the level in -50 dBFS
noise, fired on 28 of the 32 clips below (am_adam's "..., what time is it?" and bm_lewis's
"Hey Jarvis" peak under its cut-off, 0.38-0.85); no microWakeWord model fired on the ordinary
sentences and human recordings used below (the highest peak there: alexa, 0.30).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from math import gcd
from typing import TYPE_CHECKING

import numpy as np
import pytest
from scipy.io import wavfile
from scipy.signal import resample_poly

from agent.listen.wakeword import (
    DEFAULT_WAKE_WORD,
    MICRO_PHRASES,
    WakeWordDetector,
    WakeWordError,
    available_wake_words,
)
from harness.speech_samples import ENGLISH, SENTENCES, human_clip

if TYPE_CHECKING:
    from agent.tts.kokoro import KokoroEngine

RATE = 16_000
BLOCK = 512  # the microphone's 32 ms
VOICES = ("af_bella", "af_heart", "af_nicole", "am_michael", "am_adam", "bf_emma", "bm_george",
          "bm_lewis")
NOISE_RMS = 10 ** (-50 / 20)
SILENCE = np.zeros(RATE // 2, np.float32)


def speech(engine: KokoroEngine, text: str, voice: str) -> np.ndarray:
    """Kokoro's 24 kHz speech at 16 kHz, with half a second of silence either side."""
    audio = resample_poly(engine.synthesize(text, voice, 1.0), 2, 3).astype(np.float32)
    return np.concatenate([SILENCE, audio, SILENCE])


def detections(detector: WakeWordDetector, audio: np.ndarray, block: int = BLOCK) -> list[int]:
    """The blocks (by index) in which the detector fired."""
    return [i for i, start in enumerate(range(0, audio.size, block))
            if detector.feed(audio[start:start + block])]


def human(name: str) -> np.ndarray:
    with warnings.catch_warnings():  # a chunk scipy does not read (the data is fine)
        warnings.simplefilter("ignore", wavfile.WavFileWarning)
        rate, data = wavfile.read(human_clip(name))
    audio = data.astype(np.float32) / 32768.0
    common = gcd(rate, RATE)
    return resample_poly(audio, RATE // common, rate // common).astype(np.float32)


@pytest.fixture(scope="module")
def detector() -> Iterator[WakeWordDetector]:
    detector = WakeWordDetector(DEFAULT_WAKE_WORD)
    yield detector
    detector.close()


@pytest.fixture(scope="module")
def wake_phrase(engine: KokoroEngine) -> np.ndarray:
    """The default wake word, as one voice says it (one that fires at 0.996)."""
    return speech(engine, MICRO_PHRASES[DEFAULT_WAKE_WORD], "am_michael")


# -- (a) the wake word is heard ---------------------------------------------------------------

def test_the_default_wake_word_is_heard_in_many_voices(engine: KokoroEngine,
                                                       detector: WakeWordDetector) -> None:
    phrase = MICRO_PHRASES[DEFAULT_WAKE_WORD]
    rng = np.random.default_rng(7)
    heard, missed = 0, []
    for voice in VOICES:
        for text in (phrase, f"{phrase}, what time is it?"):
            clean = speech(engine, text, voice)
            quiet = (clean * 0.25 + rng.normal(0, NOISE_RMS, clean.size)).astype(np.float32)
            for label, audio in (("clean", clean), ("quiet+noise", quiet)):
                detector.reset()
                fired = detections(detector, audio)
                assert len(fired) <= 1, f"{voice} {text!r} {label}: fired in blocks {fired}"
                if fired:
                    heard += 1
                    # Not before the phrase begins (half a second of silence leads).
                    assert fired[0] * BLOCK > SILENCE.size
                else:
                    missed.append(f"{voice} {text!r} {label} (peak "
                                  f"{detector.peak_probability:.2f})")
    assert heard >= 25, f"heard {heard}/32 (measured 28/32); missed: {missed}"


def test_openwakeword_variant_hears_the_phrase_too(wake_phrase: np.ndarray) -> None:
    if not any(w.engine == "openWakeWord" for w in available_wake_words()):
        pytest.skip("pyopen-wakeword is not installed (an optional engine)")
    detector = WakeWordDetector(DEFAULT_WAKE_WORD + "_oww")
    try:
        assert len(detections(detector, wake_phrase)) == 1
        assert detector.info.engine == "openWakeWord" and not detector.info.permissive
    finally:
        detector.close()


def test_one_utterance_fires_once_and_a_later_one_again(detector: WakeWordDetector,
                                                        wake_phrase: np.ndarray) -> None:
    detector.reset()
    twice = np.concatenate([wake_phrase, np.zeros(RATE, np.float32), wake_phrase])
    assert len(detections(detector, twice)) == 2
    # reset() re-arms at once: the refractory period is for the same utterance only.
    detector.reset()
    assert detector.feed(wake_phrase)
    detector.reset()
    assert detector.feed(wake_phrase)


# -- (b) ordinary speech does not wake it ----------------------------------------------------

def test_ordinary_speech_wakes_no_microwakeword_model(engine: KokoroEngine) -> None:
    # About 30 s of Kokoro (sentences and voices from the measurement) and 80 s of people.
    kokoro = [speech(engine, text, voice) for text, voice in (
        (SENTENCES[0], "af_bella"), (SENTENCES[1], "am_adam"), (SENTENCES[2], "bf_emma"),
        (SENTENCES[3], "af_heart"), (SENTENCES[4], "bm_george"), (ENGLISH[0], "af_bella"),
        (ENGLISH[2], "am_michael"), (ENGLISH[4], "bf_emma"))]
    people = [human(name) for name in ("beckett.wav", "two_cities.wav",
                                       "endgame_nagg_nell.wav")]
    stream = np.concatenate(kokoro + people)
    assert stream.size > 100 * RATE
    for name in MICRO_PHRASES:
        detector = WakeWordDetector(name)
        try:
            fired = detections(detector, stream)
            assert not fired, (f"{name} woke at {[i * BLOCK / RATE for i in fired]} s "
                               f"(peak {detector.peak_probability:.2f})")
        finally:
            detector.close()


# -- (c) names ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["hey_siri", "", "Hey Jarvis", "hey_rhasspy"])
def test_an_unknown_name_lists_the_choices(name: str) -> None:
    with pytest.raises(WakeWordError) as raised:
        WakeWordDetector(name)
    message = str(raised.value)
    assert repr(name) in message
    for word in available_wake_words():
        assert word.name in message


@pytest.mark.parametrize("sensitivity", [0.0, 1.0, -0.2, 1.5])
def test_a_sensitivity_outside_0_to_1_is_refused(sensitivity: float) -> None:
    with pytest.raises(WakeWordError, match="between 0 and 1"):
        WakeWordDetector(DEFAULT_WAKE_WORD, sensitivity=sensitivity)


def test_sensitivity_sets_the_cut_off() -> None:
    detector = WakeWordDetector(DEFAULT_WAKE_WORD, sensitivity=0.25)
    try:
        assert detector.threshold == pytest.approx(0.75)
    finally:
        detector.close()


# -- (d) the list ---------------------------------------------------------------------------

def test_available_wake_words_permissive_first_with_licences() -> None:
    words = available_wake_words()
    names = [w.name for w in words]
    assert len(set(names)) == len(names)
    assert names[0] == DEFAULT_WAKE_WORD
    assert set(MICRO_PHRASES) <= set(names)
    permissive = [w.permissive for w in words]
    assert permissive == sorted(permissive, reverse=True)  # all True before any False
    for word in words:
        assert word.licence and word.phrase
        if word.engine == "microWakeWord":
            assert word.permissive and word.licence == "Apache-2.0"
        else:
            assert word.engine == "openWakeWord" and word.name.endswith("_oww")
            assert not word.permissive and "non-commercial" in word.licence
    if any(w.engine == "openWakeWord" for w in words):
        assert "hey_rhasspy_oww" in names


# -- (e) silence, odd pieces, loud input ------------------------------------------------------

def test_silence_does_nothing(detector: WakeWordDetector) -> None:
    detector.reset()
    assert not detections(detector, np.zeros(10 * RATE, np.float32))
    assert detector.peak_probability < 0.1
    assert detector.feed(np.zeros(0, np.float32)) is False


def test_pieces_of_odd_sizes_hear_the_same(detector: WakeWordDetector,
                                           wake_phrase: np.ndarray) -> None:
    detector.reset()
    assert detector.feed(wake_phrase)  # all at once
    whole = detector.peak_probability
    detector.reset()
    sizes = [1, 7, 0, 159, 161, 333, 4097, 2, 1280, 10_000]
    fired, start, turn = 0, 0, 0
    while start < wake_phrase.size:
        size = sizes[turn % len(sizes)]
        fired += detector.feed(wake_phrase[start:start + size])
        start += size
        turn += 1
    assert fired == 1
    assert detector.peak_probability == pytest.approx(whole)


def test_loud_and_long_input_is_safe(detector: WakeWordDetector) -> None:
    detector.reset()
    rng = np.random.default_rng(3)
    # Far past full scale (clipped, not wrapped around), then 12 s at once.
    assert not detector.feed((rng.normal(0, 3.0, RATE)).astype(np.float32))
    assert not detector.feed(np.zeros(12 * RATE, np.float32))
    assert 0.0 <= detector.last_probability <= 1.0
    if any(w.engine == "openWakeWord" for w in available_wake_words()):
        # openWakeWord's extractor keeps a 10 s buffer: longer pieces are split.
        oww = WakeWordDetector("alexa_oww")
        try:
            assert not oww.feed(np.zeros(12 * RATE, np.float32))
        finally:
            oww.close()
