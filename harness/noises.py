"""Sounds that are not the user talking: clips a barge-in detector must NOT take for speech.

Why: with voice barge-in on, the assistant stops when the user talks over it. A cough, a
click, a door, typing or a "mm-hmm" of agreement are loud, sudden and (the last one) even
voiced, but none of them means "stop". Tests play these into the simulated room
(`harness.room.Room.say`) while the assistant speaks and check that it carries on.

Every function returns float32 mono samples at 16 kHz (`NOISE_RATE`, the microphone's rate),
deterministic for a given `seed`, peaking at `PEAK` (-6 dBFS) unless said otherwise, so a
test sets the level it wants with `Room.say(..., gain_db=...)` or `relative_to_echo_db=...`.
`sequence()` strings clips together with gaps and says where each starts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy.signal import butter, sosfilt

__all__ = ["NOISES", "NOISE_RATE", "PEAK", "Sequenced", "click", "cough", "door_slam",
           "kokoro_backchannel", "mm_hmm", "sequence", "typing"]

NOISE_RATE = 16_000
PEAK = 0.5  # -6 dBFS


def _normalise(samples: np.ndarray, peak: float = PEAK) -> np.ndarray:
    top = float(np.max(np.abs(samples)))
    return (samples * (peak / top) if top > 0 else samples).astype(np.float32)


def _bandpass(x: np.ndarray, low: float, high: float, order: int = 2) -> np.ndarray:
    sos = butter(order, [low, high], btype="bandpass", fs=NOISE_RATE, output="sos")
    return np.asarray(sosfilt(sos, x))


def _t(seconds: float) -> np.ndarray:
    return np.arange(round(seconds * NOISE_RATE)) / NOISE_RATE


def cough(seed: int = 0, count: int = 1, gap_s: float = 0.15) -> np.ndarray:
    """`count` coughs (~250 ms each, `gap_s` apart): a burst of noise shaped by a throat-like
    band (about 300-3500 Hz, with resonances near 600 Hz and 1.8 kHz), attack in 5 ms, a
    loud 40 ms explosive phase, then a breathy tail decaying over ~200 ms. Aperiodic: no
    pitch, no words. Each cough in a series is a little quieter than the one before."""
    rng = np.random.default_rng(seed)
    pieces = []
    for index in range(count):
        t = _t(0.25)
        noise = rng.standard_normal(t.size)
        body = (_bandpass(noise, 300, 3500) + 0.8 * _bandpass(noise, 450, 800, 1)
                + 0.5 * _bandpass(noise, 1500, 2200, 1))
        attack = np.minimum(t / 0.005, 1.0)
        envelope = attack * (0.35 * np.exp(-t / 0.12) + 0.65 * np.exp(-t / 0.03))
        pieces.append(body * envelope * 0.8**index)
        if index < count - 1:
            pieces.append(np.zeros(round(gap_s * NOISE_RATE)))
    return _normalise(np.concatenate(pieces))


def _click_shape(rng: np.random.Generator, ring_hz: float, ring_s: float) -> np.ndarray:
    """One sharp transient: a 2-sample spike, a short noise burst and a decaying ring."""
    t = _t(ring_s)
    ring = np.sin(2 * np.pi * ring_hz * t + rng.uniform(0, np.pi)) * np.exp(-t / (ring_s / 5))
    burst = rng.standard_normal(t.size) * np.exp(-t / 0.0008)
    shape = 0.6 * ring + 0.6 * burst
    shape[:2] += [1.0, -0.7]
    return shape


def click(seed: int = 0, count: int = 3, spacing_s: float = 0.12) -> np.ndarray:
    """`count` sharp clicks (a pen, a mouse button): each a spike plus a 3-6 kHz ring that
    dies in about 4 ms, `spacing_s` apart (jittered by up to 20 %). Broadband and far too
    short to be a syllable."""
    rng = np.random.default_rng(seed)
    out = np.zeros(round((count * spacing_s + 0.03) * NOISE_RATE))
    for index in range(count):
        at = round(index * spacing_s * rng.uniform(0.8, 1.2) * NOISE_RATE) if index else 0
        shape = _click_shape(rng, rng.uniform(3000, 6000), 0.02) * rng.uniform(0.7, 1.0)
        out[at:at + shape.size] += shape[:out.size - at]
    return _normalise(out)


def door_slam(seed: int = 0) -> np.ndarray:
    """A door slamming (~0.6 s): a broadband impact (a few ms of noise), a loud thump of
    decaying 45-110 Hz partials (the door and the wall; 2 ms attack, ~80 ms decay), and a
    low rattle of filtered noise fading over ~250 ms. Low-frequency and impulsive."""
    rng = np.random.default_rng(seed)
    t = _t(0.6)
    thump = sum(a * np.sin(2 * np.pi * f * t + rng.uniform(0, np.pi))
                for f, a in ((48, 1.0), (71, 0.7), (104, 0.45), (163, 0.25)))
    thump = thump * np.minimum(t / 0.002, 1.0) * np.exp(-t / 0.08)
    impact = rng.standard_normal(t.size) * np.exp(-t / 0.004)
    rattle = _bandpass(rng.standard_normal(t.size), 150, 1200) * np.exp(-t / 0.09)
    return _normalise(thump + 0.5 * impact + 0.25 * rattle)


def typing(seed: int = 0, seconds: float = 2.0, keys_per_s: float = 7.0) -> np.ndarray:
    """Keyboard typing for `seconds`: key presses at about `keys_per_s` (gamma-distributed
    intervals, some pauses), each a press click and a softer release click 60-110 ms later,
    with a 2-4 kHz "plastic" ring; loudness varies from key to key (the space bar is
    louder and duller)."""
    rng = np.random.default_rng(seed)
    out = np.zeros(round(seconds * NOISE_RATE))
    at = rng.uniform(0.0, 0.05)
    while at < seconds - 0.15:
        space = rng.random() < 0.15
        level = rng.uniform(0.5, 1.0) * (1.3 if space else 1.0)
        for offset, gain in ((0.0, 1.0), (rng.uniform(0.06, 0.11), 0.45)):
            shape = _click_shape(rng, rng.uniform(1200, 1800) if space
                                 else rng.uniform(2000, 4000), 0.015)
            start = round((at + offset) * NOISE_RATE)
            piece = shape[:out.size - start] * level * gain
            out[start:start + piece.size] += piece
        at += rng.gamma(4.0, 1 / (4.0 * keys_per_s))
        if rng.random() < 0.08:
            at += rng.uniform(0.2, 0.5)  # a pause to think
    return _normalise(out)


def mm_hmm(seed: int = 0, pitch_hz: float = 190.0) -> np.ndarray:
    """A hummed "mm-hmm" of agreement (~350 ms), synthesized: two nasal murmurs with closed
    lips (harmonics of `pitch_hz`, strong below 300 Hz, a weak nasal resonance near 1 kHz,
    steep roll-off above), the first ~140 ms on a level pitch, then a breathy "h" and a
    rising second note ~170 ms long, up about four semitones. Voiced, so a voice activity
    detector may fire: the test is whether the agent treats such a short backchannel as
    talk-over. For a real voice, see `kokoro_backchannel`."""
    rng = np.random.default_rng(seed)

    def hum(seconds: float, f_start: float, f_end: float) -> np.ndarray:
        t = _t(seconds)
        jitter = 1 + 0.004 * np.cumsum(rng.standard_normal(t.size)) / np.sqrt(t.size)
        f0 = np.linspace(f_start, f_end, t.size) * jitter
        phase = 2 * np.pi * np.cumsum(f0) / NOISE_RATE
        out = np.zeros(t.size)
        for k in range(1, 30):
            frequency = k * f_start
            if frequency > 0.45 * NOISE_RATE:
                break
            murmur = 1 / (1 + (frequency / 300) ** 4)  # nasal murmur: energy below 300 Hz
            nasal = 0.08 / (1 + ((frequency - 1000) / 150) ** 2)  # weak resonance ~1 kHz
            out += (murmur + nasal) * np.sin(k * phase) / k**0.5
        ramp = round(0.02 * NOISE_RATE)
        envelope = np.ones(t.size)
        envelope[:ramp] = np.linspace(0, 1, ramp)
        envelope[-ramp:] = np.linspace(1, 0, ramp)
        return out * envelope

    first = hum(0.14, pitch_hz, pitch_hz * 0.98)
    breath = _bandpass(rng.standard_normal(round(0.04 * NOISE_RATE)), 500, 3000) * 0.15
    breath *= np.hanning(breath.size)
    second = hum(0.17, pitch_hz * 1.02, pitch_hz * 1.26)
    return _normalise(np.concatenate([first, breath, second]))


def kokoro_backchannel(engine: Any, text: str = "Mm-hmm.", voice: str = "af_bella") -> np.ndarray:
    """A spoken backchannel by a real Kokoro voice (`engine` from
    `agent.tts.kokoro.load_engine`; its 24 kHz output resampled to 16 kHz, peak `PEAK`).
    Not deterministic across model versions, so tests should prefer `mm_hmm` for levels."""
    from scipy.signal import resample_poly

    samples = np.asarray(engine.synthesize(text, voice), np.float32)
    rate = int(engine.sample_rate)
    divisor = int(np.gcd(rate, NOISE_RATE))
    return _normalise(resample_poly(samples, NOISE_RATE // divisor, rate // divisor))


class Sequenced(NamedTuple):
    samples: np.ndarray  # float32, 16 kHz
    starts: list[int]  # where each clip begins, in samples


def sequence(clips: Sequence[np.ndarray], gap_s: float | Sequence[float] = 0.5,
             lead_s: float = 0.0, tail_s: float = 0.0) -> Sequenced:
    """The clips one after the other: `lead_s` of silence, then each clip followed by a
    gap (`gap_s`, or one gap per clip boundary), then `tail_s` of silence."""
    gaps = [float(gap_s)] * max(len(clips) - 1, 0) if np.isscalar(gap_s) else list(gap_s)  # type: ignore[arg-type]
    if len(gaps) != max(len(clips) - 1, 0):
        raise ValueError(f"{len(clips)} clips need {max(len(clips) - 1, 0)} gaps, "
                         f"not {len(gaps)}")
    pieces = [np.zeros(round(lead_s * NOISE_RATE), np.float32)]
    starts = []
    position = pieces[0].size
    for index, clip in enumerate(clips):
        starts.append(position)
        pieces.append(np.asarray(clip, np.float32))
        position += clip.size
        if index < len(gaps):
            gap = np.zeros(round(gaps[index] * NOISE_RATE), np.float32)
            pieces.append(gap)
            position += gap.size
    pieces.append(np.zeros(round(tail_s * NOISE_RATE), np.float32))
    return Sequenced(np.concatenate(pieces), starts)


# Every synthesized noise by name, with its defaults (for parametrised tests).
NOISES: dict[str, Callable[..., np.ndarray]] = {
    "cough": cough, "click": click, "door_slam": door_slam, "typing": typing,
    "mm_hmm": mm_hmm,
}
