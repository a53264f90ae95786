"""Echo cancellation's parts on their own: the playback tap (a ring the audio callback writes),
the streaming resampler, and WebRTC's AEC3 fed the way the hands-free listener feeds it
(reference from the tap, microphone blocks of 32 ms), on a simulated room. The same path with
a real PortAudio stream and a PulseAudio room is in tests/test_hands_free.py."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.signal import fftconvolve

from agent.audio.tap import PlaybackTap
from agent.hands_free import short_utterance_kind, strip_wake_phrase
from agent.listen.echo import AEC_RATE, EchoCanceller, StreamResampler
from agent.listen.handsfree import TalkOverDetector, TalkOverRule, Verdict
from agent.listen.vad import WINDOW

MIC_BLOCK = 512


def test_the_tap_returns_what_was_written_in_order_across_the_ring_edge() -> None:
    tap = PlaybackTap(24_000, seconds=0.1)  # 2400 samples
    written = np.arange(10_000, dtype=np.float32)
    position, read = 0, []
    for start in range(0, written.size, 256):
        tap.write(written[start:start + 256])
        if start % 1024 == 0:
            samples, position, lost = tap.read_since(position)
            assert lost == 0
            read.append(samples)
    samples, position, lost = tap.read_since(position)
    read.append(samples)
    assert np.array_equal(np.concatenate(read), written)
    assert position == written.size


def test_a_reader_that_falls_behind_is_told_what_it_lost() -> None:
    tap = PlaybackTap(24_000, seconds=0.1)
    tap.write(np.ones(10_000, np.float32))
    samples, position, lost = tap.read_since(0)
    assert lost > 0 and samples.size + lost == 10_000
    assert position == 10_000


@pytest.mark.parametrize(("source", "target"), [(24_000, 16_000), (48_000, 16_000),
                                                 (44_100, 16_000), (16_000, 16_000)])
def test_the_resampler_has_no_seam_between_blocks(source: int, target: int) -> None:
    """A tone resampled in odd-sized blocks equals the same tone at the target rate (after
    the filter's short delay): no clicks where the blocks meet."""
    seconds, frequency = 1.0, 440.0
    tone = np.sin(2 * np.pi * frequency * np.arange(round(seconds * source)) / source)
    resampler = StreamResampler(source, target)
    sizes = [173, 256, 1000, 7, 512]
    pieces, start, i = [], 0, 0
    while start < tone.size:
        size = sizes[i % len(sizes)]
        pieces.append(resampler.process(tone[start:start + size].astype(np.float32)))
        start, i = start + size, i + 1
    out = np.concatenate(pieces)
    assert abs(out.size - round(seconds * target)) <= 1
    expected = np.sin(2 * np.pi * frequency * np.arange(out.size) / target)
    best = min(np.max(np.abs(out[200:-200] - np.roll(expected, delay)[200:-200]))
               for delay in range(0, 40))
    assert best < 0.02


@pytest.mark.parametrize(("source", "target"), [(24_000, 16_000), (44_100, 16_000),
                                                 (22_050, 16_000), (16_000, 48_000)])
def test_the_resampler_in_blocks_is_the_whole_filter_at_once(source: int, target: int) -> None:
    """Block by block, polyphase, equals zero-stuffing the whole signal, filtering it with the
    resampler's own taps and keeping every down-th sample."""
    resampler = StreamResampler(source, target)
    taps = resampler._phases.T.ravel()  # back to the prototype filter (zero-padded)
    signal = np.random.default_rng(7).standard_normal(source // 5).astype(np.float32)
    sizes = itertools.cycle([173, 256, 1000, 7, 512, 1])
    pieces, start = [], 0
    while start < signal.size:
        size = next(sizes)
        pieces.append(resampler.process(signal[start:start + size]))
        start += size
    stuffed = np.zeros(signal.size * resampler.up)
    stuffed[::resampler.up] = signal
    whole = fftconvolve(stuffed, taps.astype(np.float64))[:stuffed.size:resampler.down]
    out = np.concatenate(pieces)
    assert out.size == whole.size
    np.testing.assert_allclose(out, whole, atol=2e-5)


def _room(played: np.ndarray, seed: int = 0) -> np.ndarray:
    """40 ms delay and decaying reflections (RT60 0.25 s) at -6 dB, noise at -60 dBFS."""
    rng = np.random.default_rng(seed)
    delay = round(0.040 * AEC_RATE)
    response = np.zeros(round(0.3 * AEC_RATE), np.float64)
    response[delay] = 1.0
    t = np.arange(response.size - delay) / AEC_RATE
    response[delay:] += rng.standard_normal(t.size) * np.exp(-6.9 * t / 0.25) * 0.3
    response *= 10 ** (-6 / 20) / np.sqrt(np.sum(response ** 2))
    echo = np.convolve(played, response)[:played.size]
    return (echo + rng.standard_normal(played.size) * 1e-3).astype(np.float32)


def _speech_like(seconds: float, rate: int, seed: int = 1) -> np.ndarray:
    """Noise shaped like speech: syllables (4 a second) of band-limited noise."""
    rng = np.random.default_rng(seed)
    n = round(seconds * rate)
    noise = np.convolve(rng.standard_normal(n), np.hanning(9) / 4, mode="same")
    envelope = np.clip(np.sin(2 * np.pi * 4 * np.arange(n) / rate), 0, None) ** 2
    return (0.6 * noise * envelope).astype(np.float32)  # about -19 dBFS, as speech


def test_the_canceller_takes_the_played_signal_out_of_the_room() -> None:
    """The player writes 24 kHz blocks into the tap as it plays; the microphone hears them
    through the room at 16 kHz; 32 ms blocks go through EchoCanceller. After a few seconds
    to converge the echo is at least 20 dB quieter (measured here: 29-31 dB)."""
    played = _speech_like(12.0, 24_000)
    heard = _room(StreamResampler(24_000, 16_000).process(played))
    tap = PlaybackTap(24_000)
    canceller = EchoCanceller(tap)
    written, out = 0, []
    for start in range(0, heard.size - MIC_BLOCK, MIC_BLOCK):
        due = (start + MIC_BLOCK) * 3 // 2  # what the player has written by then
        while written < due:
            tap.write(played[written:written + 256])
            written += 256
        out.append(canceller.process(heard[start:start + MIC_BLOCK]))
    cleaned = np.concatenate(out)
    settled = slice(cleaned.size // 2, cleaned.size)
    erle = 10 * np.log10(np.mean(heard[settled] ** 2) / np.mean(cleaned[settled] ** 2))
    assert erle > 20, f"echo only {erle:.1f} dB quieter"


def test_with_nothing_played_the_microphone_passes_through() -> None:
    tap = PlaybackTap(24_000)
    canceller = EchoCanceller(tap)
    voice = _speech_like(3.0, AEC_RATE, seed=3)
    out = np.concatenate([canceller.process(voice[i:i + MIC_BLOCK])
                          for i in range(0, voice.size - MIC_BLOCK, MIC_BLOCK)])
    # AEC3 is skipped once the speakers have been quiet a second: the samples are untouched.
    assert canceller.skipped > 0
    tail = slice(out.size - canceller.skipped, out.size)
    assert np.array_equal(out[tail], voice[:out.size][tail])


def _windows(*runs: tuple[float, float]) -> np.ndarray:
    """VAD probabilities: (probability, seconds) runs, one value per 32 ms window."""
    return np.concatenate([np.full(round(seconds * 16_000 / WINDOW), p, np.float32)
                           for p, seconds in runs])


def test_a_voice_holds_the_reply_at_once_and_is_judged_by_its_length() -> None:
    rule = TalkOverRule(hold_s=0.064, min_speech_s=0.8, end_s=0.35, min_short_s=0.15)
    detector = TalkOverDetector(rule)
    assert not detector.heard_voice(_windows((0.9, 0.032), (0.1, 0.5)))  # one window: no
    assert detector.heard_voice(_windows((0.1, 0.5), (0.9, 0.064)))  # two in a row: hold
    # Or one window that is a little like a voice and well over the recent level.
    detector.reset()
    for _ in range(10):
        assert not detector.heard_voice(_windows((0.1, 0.032)), level_db=-60.0)
    assert not detector.heard_voice(_windows((0.1, 0.032)), level_db=-30.0)  # loud, no voice
    assert not detector.heard_voice(_windows((0.3, 0.032)), level_db=-50.0)  # voice, quiet
    assert detector.heard_voice(_windows((0.3, 0.032)), level_db=-35.0)
    # Talking on, with the pauses between words: cut once 0.8 s of voice is heard.
    assert detector.judge(_windows(*[(0.9, 0.2), (0.1, 0.1)] * 2)) is Verdict.WAIT
    assert detector.judge(_windows((0.9, 0.5))) is Verdict.CUT
    # "Stop." then quiet: a short utterance, for the owner to hear.
    detector.reset()
    assert detector.heard_voice(_windows((0.9, 0.064)))
    assert detector.judge(_windows((0.9, 0.3), (0.1, 0.4))) is Verdict.SHORT
    # A blip, then quiet: nothing.
    detector.reset()
    assert detector.heard_voice(_windows((0.9, 0.064)))
    assert detector.judge(_windows((0.2, 0.4))) is Verdict.NOTHING


@pytest.mark.parametrize(("heard", "kind"), [
    ("Mm-hmm.", "go on"), ("Yeah.", "go on"), ("Okay.", "go on"), ("", "go on"),
    ("Uh-huh", "go on"), ("M M.", "go on"), ("Hmm hmm.", "go on"), ("I'm M M.", "go on"),
    ("and that on", "go on"), ("Say that again?", "question"), ("Stop.", "stop"),
    ("Wait!", "stop"), ("Hold on.", "stop"),
    ("What?", "question"), ("Why not?", "question")])
def test_what_a_short_utterance_over_a_reply_means(heard: str, kind: str) -> None:
    assert short_utterance_kind(heard) == kind


@pytest.mark.parametrize(("heard", "question"), [
    ("Okay Nabu, what time is it?", "What time is it?"),
    ("okay nabu what time is it", "What time is it"),
    ("What time is it?", "What time is it?"),
])
def test_the_wake_phrase_is_taken_off_the_question(heard: str, question: str) -> None:
    assert strip_wake_phrase(heard, "Okay Nabu") == question


def test_doctor_says_when_the_microphone_opens_and_warns_without_echo_cancellation() -> None:
    from agent.config import Config
    from agent.listen.doctor import check_hands_free

    cfg = Config()
    line = check_hands_free(cfg)
    assert line.status.value == "ok"
    assert line.detail.startswith("off; microphone opens for push-to-talk")
    cfg.listen.talk_over, cfg.listen.wake_word = True, "hey_jarvis"
    line = check_hands_free(cfg)
    assert line.status.value == "ok", line
    assert "talk-over" in line.detail and '"Hey Jarvis"' in line.detail
    assert "Apache-2.0" in line.detail and "echo cancellation on" in line.detail
    cfg.listen.echo_cancellation = False
    line = check_hands_free(cfg)
    assert line.status.value == "warn" and "hears itself" in line.detail


def test_wake_words_command_lists_the_models_with_their_licences(
        capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli.parser import build_parser

    args = build_parser().parse_args(["wake-words"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "hey_jarvis" in out and "Apache-2.0" in out
    assert "hey_jarvis_oww" in out and "non-commercial" in out
