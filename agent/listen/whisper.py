"""Speech to text with faster-whisper (CTranslate2, int8 on the CPU).

Whisper was trained on 30 s windows, and faster-whisper pads every utterance to one: the
encoder then costs the same for a 2 s command as for 30 s of speech, and it is most of the
latency. The "fit" window (the default) encodes only what the recording needs (5 s for a
short command, growing in 2.5 s steps, always 2.5 s past the end), about three times faster
here. With a window shorter than 30 s Whisper tends to hear the utterance again after its
end, so this path decodes with timestamps and keeps only the text that starts before the
recording ends; if the result still looks wrong (the decoder ran to its length limit, or the
text ends by repeating itself) the utterance is decoded again with the full window. On speech from
Kokoro and from people both windows heard the same words (bench/listen.py, tests).
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.listen.models import DEFAULT_MODEL, Progress, SttModel, resolve_stt_model
from agent.listen.vad import SpeechSpan

log = logging.getLogger(__name__)

WHISPER_RATE = 16_000
# Silence put before and after the recording: Whisper tends to drop a word that starts (or
# ends) right at the edge of its input ("I would like" heard as "would like").
LEAD_PAD_S = 0.3
TAIL_PAD_S = 0.2
# Less speech than this (by the VAD) is a press without words: no transcript, rather than
# one of Whisper's hallucinations on silence ("Thank you.").
MIN_SPEECH_S = 0.1
KEEP_AFTER_SPEECH_S = 0.4  # of the recording after the last word
# Loud noise (white or pink at -10 dBFS, a clipped roar) fools the VAD about one press in a
# hundred, for 0.1-0.3 s, and Whisper then invents a sentence ("I'm not a real man."). Such a
# transcript is dropped when three signals all say noise: Whisper's own no-speech
# probability is high, the VAD was barely sure, and the sound it took for speech has the flat
# spectrum of noise (voiced speech: harmonics, flatness near 0.001). Chosen on 39 such noise
# passes (out of 8000 loud-noise clips) and 287 clips of short words (five Kokoro voices, two
# speeds, human fragments): every noise pass is caught, of the words only a cut-off fragment
# of a human clip; with noise mixed into words, nothing is dropped at 20 dB SNR or better and
# 1 correct word in 31 at 10 dB. Checked on 22,000 fresh noise clips: no text (the VAD alone
# let 24 invented sentences through). tests/test_listen_bad_input.py keeps watch.
NOISE_NO_SPEECH_PROB = 0.35  # at least (noise passes: 0.37-0.69; words: median 0.25)
NOISE_VAD_MEAN = 0.75  # below (noise passes: 0.53-0.72; words: median 0.87)
NOISE_FLATNESS = 0.02  # above (noise passes: 0.03-0.59; clean words: median 0.001)

FRAMES_PER_S = 100  # mel frames
FULL_WINDOW = 3000  # frames: Whisper's 30 s
FIT_STEP = 250  # the fitted window grows in 2.5 s steps...
FIT_MIN = 500  # ...from 5 s
FIT_MARGIN = 250  # and keeps at least 2.5 s past the end of the audio
# Text whose timestamp starts this close to the end of the recording (or later) is the
# decoder hearing the utterance again, not speech.
LATE_START_S = 0.1
# Generous for speech (people say about 3 words, 4-5 tokens, a second).
TOKENS_PER_S = 14
MAX_COMPRESSION_RATIO = 2.4  # faster-whisper's own test for repetitive output
WINDOWS = ("fit", "full")

Samples = npt.NDArray[np.float32]


def _lowpass(samples: Samples, cutoff: float, taps: int = 63) -> Samples:
    """A windowed-sinc FIR low-pass; `cutoff` is a fraction of the sample rate (< 0.5)."""
    n = np.arange(taps) - (taps - 1) / 2
    kernel = 2 * cutoff * np.sinc(2 * cutoff * n) * np.blackman(taps)
    kernel /= kernel.sum()
    filtered: Samples = np.convolve(samples, kernel.astype(np.float32), mode="same")
    return filtered


def resample(samples: Samples, source_rate: int, target_rate: int = WHISPER_RATE) -> Samples:
    """Resampling for speech (numpy only): a low-pass below the new Nyquist frequency when
    going down, then linear interpolation."""
    samples = np.asarray(samples, np.float32)
    if source_rate == target_rate or samples.size == 0:
        return samples
    if target_rate < source_rate:
        samples = _lowpass(samples, 0.45 * target_rate / source_rate)
    count = round(samples.size * target_rate / source_rate)
    positions = np.arange(count, dtype=np.float64) * (source_rate / target_rate)
    resampled: Samples = np.interp(positions, np.arange(samples.size), samples).astype(
        np.float32)
    return resampled


def mono(samples: npt.ArrayLike) -> Samples:
    array = np.asarray(samples, dtype=np.float32)
    if array.ndim == 2:
        array = array.mean(axis=1, dtype=np.float32)
    if array.ndim != 1:
        raise ValueError("expected mono samples (n,) or frames x channels (n, c)")
    return array


def fitted_window(frames: int) -> int:
    """Encoder frames for `frames` of audio: 5 s or more, in 2.5 s steps, 2.5 s to spare."""
    return min(FULL_WINDOW, max(FIT_MIN, math.ceil(frames / FIT_STEP) * FIT_STEP + FIT_MARGIN))


def tokens_before(tokens: Sequence[int], timestamp_begin: int, end_s: float,
                  time_precision: float = 0.02) -> list[int]:
    """The text tokens of the timestamped segments that start before `end_s`."""
    kept: list[int] = []
    segment: list[int] = []
    start: float | None = None
    for token in tokens:
        if token < timestamp_begin:
            segment.append(token)
        elif start is None:  # a segment opens
            start = (token - timestamp_begin) * time_precision
        else:  # and closes
            if start < end_s:
                kept.extend(segment)
            segment, start = [], None
    if segment and (start is None or start < end_s):
        kept.extend(segment)
    return kept


def repeats_its_end(text: str, min_words: int = 3) -> bool:
    """True when the text ends with a run of words said twice in a row ("I do it. I do it."):
    how Whisper hears an utterance again when its window is short. People rarely repeat a
    whole phrase in one command; when they do, the full window decodes it anyway."""
    words = re.sub(r"[^\w' ]", " ", text.lower()).split()
    return any(words[-2 * k:-k] == words[-k:]
               for k in range(min_words, len(words) // 2 + 1))


def sounds_like_noise(span: SpeechSpan, no_speech_prob: float) -> bool:
    """True when what the VAD let through is noise that Whisper put words to: all three of
    Whisper's no-speech probability, the VAD's doubt and the flat spectrum agree."""
    return (no_speech_prob >= NOISE_NO_SPEECH_PROB and span.mean_probability < NOISE_VAD_MEAN
            and span.flatness > NOISE_FLATNESS)


class Transcriber:
    """Whisper behind the `SpeechToText` protocol. The model loads once: call `load()` on a
    background thread at start-up, or let the first `transcribe` load it. One transcription
    runs at a time (callers on other threads wait)."""

    def __init__(self, model: str = DEFAULT_MODEL, language: str = "en", beam_size: int = 1,
                 window: str = "fit", cpu_threads: int = 2, compute_type: str = "int8",
                 skip_silence: bool = True, progress: Progress | None = None) -> None:
        if window not in WINDOWS:
            raise ValueError(f"window must be one of {WINDOWS}, not {window!r}")
        self.model_name = model
        # "auto" (or "") lets Whisper detect the language (multilingual models only).
        self.language = None if language in ("", "auto") else language
        self.beam_size = beam_size
        self.window = window
        self.cpu_threads = cpu_threads
        self.compute_type = compute_type
        self.skip_silence = skip_silence
        self._progress = progress
        self._lock = threading.Lock()
        self._model: Any = None
        self._vad: Any = None
        self._tokenizer: Any = None
        self._suppress: list[int] = []
        self.files: SttModel | None = None  # what load() resolved, with its notice
        self.load_s = 0.0
        self.refits = 0  # fitted decodes that were redone with the full window
        self.noise_drops = 0  # transcripts dropped by sounds_like_noise

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def notice(self) -> str:
        """Why the model that runs is not the one asked for ("" when it is)."""
        return self.files.notice if self.files else ""

    def load(self) -> SttModel:
        """Resolve (assemble or download) and load the model; quick when already loaded."""
        with self._lock:
            return self._load_locked()

    def _load_locked(self) -> SttModel:
        if self._model is not None and self.files is not None:
            return self.files
        started = time.monotonic()
        files = resolve_stt_model(self.model_name, self._progress)
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # a line per call
        model = WhisperModel(str(files.path), device="cpu", compute_type=self.compute_type,
                             cpu_threads=self.cpu_threads, num_workers=1, local_files_only=True)
        multilingual = model.model.is_multilingual
        language = self.language if multilingual else "en"
        if language is not None:
            self._tokenizer = Tokenizer(model.hf_tokenizer, multilingual, task="transcribe",
                                        language=language)
            self._suppress = list(get_suppressed_tokens(self._tokenizer, [-1]) or [])
        if self.skip_silence:
            from agent.listen.vad import SileroVad

            self._vad = SileroVad()
        self._model, self.files = model, files
        self.load_s = time.monotonic() - started
        log.info("speech recognition: Whisper %s loaded in %.2f s", files.name, self.load_s)
        return files

    def unload(self) -> None:
        """Free the model's memory (the next transcription loads it again)."""
        with self._lock:
            self._model = self._vad = self._tokenizer = None

    def transcribe(self, samples: npt.ArrayLike, sample_rate: int) -> str:
        """The words in `samples` (float32, mono or frames x channels) as text; "" when the
        clip holds no speech."""
        audio = resample(mono(samples), sample_rate)
        span: SpeechSpan | None = None
        with self._lock:
            self._load_locked()
            if self._vad is not None:
                from agent.listen.vad import find_speech

                span = find_speech(self._vad, audio)
                if span.speech_s < MIN_SPEECH_S:
                    return ""
                # Long quiet after the words only gives Whisper room to imagine more (in the
                # toggle mode a recording ends with a second of it). The quiet before them
                # stays: cut short, Whisper missed a first word more often.
                audio = audio[:span.end + round(KEEP_AFTER_SPEECH_S * WHISPER_RATE)]
            padded = np.concatenate([np.zeros(round(LEAD_PAD_S * WHISPER_RATE), np.float32),
                                     audio,
                                     np.zeros(round(TAIL_PAD_S * WHISPER_RATE), np.float32)])
            fits = padded.size * FRAMES_PER_S / WHISPER_RATE <= FULL_WINDOW - FIT_MARGIN
            heard: tuple[str, float] | None = None
            if self.window == "fit" and self._tokenizer is not None and fits:
                heard = self._transcribe_fitted(padded, LEAD_PAD_S + audio.size / WHISPER_RATE)
                if heard is None:
                    self.refits += 1
                    log.debug("the fitted window gave a doubtful result; decoding the full "
                              "window")
            text, no_speech = heard if heard is not None else self._transcribe_full(padded)
            if text and span is not None and sounds_like_noise(span, no_speech):
                self.noise_drops += 1
                log.debug("dropped %r: noise, not speech (no-speech %.2f, VAD %.2f, "
                          "flatness %.3f)", text, no_speech, span.mean_probability,
                          span.flatness)
                return ""
            return text

    def _transcribe_full(self, audio: Samples) -> tuple[str, float]:
        """The text and Whisper's no-speech probability (the lowest of its windows)."""
        segments, _info = self._model.transcribe(
            audio, language=self.language, beam_size=self.beam_size,
            without_timestamps=True, condition_on_previous_text=False, vad_filter=False)
        segments = list(segments)
        text = " ".join(segment.text.strip() for segment in segments).strip()
        return text, min((segment.no_speech_prob for segment in segments), default=1.0)

    def _transcribe_fitted(self, audio: Samples, speech_end_s: float
                           ) -> tuple[str, float] | None:
        """One decode with a window fitted to the audio: the text and Whisper's no-speech
        probability; None when the result is doubtful."""
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.transcribe import get_compression_ratio

        model, tokenizer = self._model, self._tokenizer
        features = model.feature_extractor(audio)
        frames = features.shape[-1]
        encoded = model.encode(pad_or_trim(features, fitted_window(frames)))
        prompt = list(tokenizer.sot_sequence)  # with timestamps: see tokens_before
        max_length = min(model.max_length, len(prompt) + 20 + round(
            TOKENS_PER_S * audio.size / WHISPER_RATE))
        result = model.model.generate(
            encoded, [prompt], beam_size=self.beam_size, max_length=max_length,
            suppress_blank=True, suppress_tokens=self._suppress, return_no_speech_prob=True)[0]
        tokens = result.sequences_ids[0]
        if len(prompt) + len(tokens) >= max_length:
            return None  # ran to the limit: a loop, not speech
        kept = tokens_before(tokens, tokenizer.timestamp_begin, speech_end_s - LATE_START_S,
                             model.time_precision)
        text: str = tokenizer.decode(kept).strip()
        if text and (get_compression_ratio(text) > MAX_COMPRESSION_RATIO
                     or repeats_its_end(text)):
            return None
        return text, float(result.no_speech_prob)

    def transcribe_file(self, path: str | Path) -> str:
        """Any audio file PyAV (FFmpeg) can read: WAV, FLAC, MP3, OGG..."""
        from faster_whisper import decode_audio

        audio = decode_audio(str(path), sampling_rate=WHISPER_RATE)
        return self.transcribe(audio, WHISPER_RATE)
