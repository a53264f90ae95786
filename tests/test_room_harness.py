"""The simulated room (harness.room) and the non-speech noises (harness.noises).

The room is checked for real, the way the app will meet it: a PortAudio output stream on the
default device (the ALSA tap -> PulseAudio `vsink`, 24 kHz, 256-frame blocks like
AudioPlayer) plays noise bursts; a PortAudio input stream on the virtual microphone's device
(16 kHz, 512-frame blocks like the Recorder) records. The echo must come back with the room's
delay and level, a user clip said into the room must show up at its gain, and with
`echo_enabled` off the echo must be gone.

Delays are measured on the streams' own timelines: the monotonic time at which each output
block is handed to PortAudio and each input block arrives, fitted per stream over the blocks
within half a second (the earliest-running block defines the schedule; later ones were held
up). End-to-end delay = when the echo's direct path reaches the recorder - when the burst was
handed to the output stream: what an echo canceller fed at write time sees as the reference's
lead. A scenario in which PortAudio reports an under- or overflow is run again (up to
`ATTEMPTS` times): on a busy machine the test's own streams break the played signal.

About 20 s on an idle 2-core machine (the room starts in about 0.7 s).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import pytest
from scipy.signal import butter, chirp, correlate, sosfilt

from harness import noises
from harness.microphone import MIC_RATE, VirtualMicrophone
from harness.room import Acoustics, BlockConvolver, ClockDrift, Room, resample_to_room, voiced_rms
from harness.services import reinitialise_portaudio, wait_for

OUT_RATE = 24_000  # the app's (Kokoro's) rate, and vsink's
OUT_BLOCK = 256  # AudioPlayer's default
IN_BLOCK = 512  # the Recorder's 32 ms
BURST_S = 0.5
LEVEL_DBFS = -20.0
QUIET_AFTER_S = 0.45  # recorded after each burst has been handed over: its echo has died


def db(x: float) -> float:
    return float(20 * np.log10(max(x, 1e-12)))


def burst(seed: int, seconds: float = BURST_S, level_dbfs: float = LEVEL_DBFS,
          rate: int = OUT_RATE) -> np.ndarray:
    """White noise below 6.5 kHz (all of it survives the room's 16 kHz), 5 ms fades."""
    rng = np.random.default_rng(seed)
    x = sosfilt(butter(8, 6500, fs=rate, output="sos"), rng.standard_normal(round(seconds * rate)))
    fade = round(0.005 * rate)
    x[:fade] *= np.linspace(0, 1, fade)
    x[-fade:] *= np.linspace(1, 0, fade)
    out: np.ndarray = (x * 10 ** (level_dbfs / 20) / np.sqrt(np.mean(x**2))).astype(np.float32)
    return out


def sweep(up: bool, seconds: float = 0.5, level_dbfs: float = LEVEL_DBFS) -> np.ndarray:
    """A 300-3000 Hz chirp at 16 kHz: the "user", unmistakable in a correlation."""
    t = np.arange(round(seconds * MIC_RATE)) / MIC_RATE
    f0, f1 = (300, 3000) if up else (3000, 300)
    x = chirp(t, f0, seconds, f1) * np.hanning(t.size) ** 0.2
    out: np.ndarray = (x * 10 ** (level_dbfs / 20) / np.sqrt(np.mean(x**2))).astype(np.float32)
    return out


def onset(recording: np.ndarray, clip: np.ndarray, start: int = 0, end: int | None = None
          ) -> tuple[int, float]:
    """Where `clip` best matches in recording[start:end] (absolute index), and how well
    (normalised correlation, 1.0 = the clip exactly, at any gain)."""
    segment = recording[start:end]
    c = correlate(segment, clip, mode="valid", method="fft")
    at = int(np.argmax(np.abs(c)))
    piece = segment[at:at + clip.size]
    score = float(abs(c[at]) / (np.linalg.norm(piece) * np.linalg.norm(clip) + 1e-12))
    return start + at, score


def raise_priority() -> None:
    """PortAudio's callback thread at PulseAudio's priority (root only), so a machine busy
    with other work does not make the test's streams underflow; the room's threads run so."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), -11)


class Speaker:
    """The app's side: an output stream on the default device; `play()` queues samples."""

    def __init__(self) -> None:
        import sounddevice as sd

        self._clips: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()
        self._current = np.zeros(0, np.float32)
        self._position = 0
        self.frames = 0
        self.blocks: list[tuple[int, float]] = []  # (first frame, handed over at)
        self.starts: list[int] = []  # the frame each clip began at
        self.problems: list[tuple[float, str]] = []  # underflows
        self.idle = threading.Event()
        self.idle.set()
        self._stream = sd.OutputStream(samplerate=OUT_RATE, channels=1, dtype="float32",
                                       blocksize=OUT_BLOCK, latency="low",
                                       callback=self._callback)

    def _callback(self, outdata: np.ndarray, frames: int, _time: object, status: object
                  ) -> None:
        now = time.monotonic()
        if not self.blocks:
            raise_priority()
        if status:
            self.problems.append((now, str(status)))
        self.blocks.append((self.frames, now))
        out = outdata[:, 0]
        out.fill(0)
        filled = 0
        while filled < frames:
            if self._position >= self._current.size:
                try:
                    self._current, self._position = self._clips.get_nowait(), 0
                except queue.Empty:
                    self.idle.set()
                    break
                self.starts.append(self.frames + filled)
            take = min(frames - filled, self._current.size - self._position)
            out[filled:filled + take] = self._current[self._position:self._position + take]
            filled += take
            self._position += take
        self.frames += frames

    def play(self, samples: np.ndarray) -> None:
        self.idle.clear()
        self._clips.put(samples)

    def time_of(self, frame: int) -> float:
        """When `frame` was handed to PortAudio: the schedule of the blocks within half a
        second of it (the earliest one; an underflow moves the schedule on)."""
        return _schedule(self.blocks, frame, OUT_RATE)

    def __enter__(self) -> Speaker:
        self._stream.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stream.stop()
        self._stream.close()


class Listener:
    """The recorder's side: an input stream on the virtual microphone's device."""

    def __init__(self, device: str) -> None:
        import sounddevice as sd

        self._pieces: list[np.ndarray] = []
        self.frames = 0
        self.blocks: list[tuple[int, float]] = []  # (frames after this block, arrived at)
        self.problems: list[tuple[float, str]] = []  # overflows
        self._grown = threading.Condition()
        self._stream = sd.InputStream(samplerate=MIC_RATE, channels=1, dtype="float32",
                                      blocksize=IN_BLOCK, latency="low", device=device,
                                      callback=self._callback)

    def _callback(self, indata: np.ndarray, frames: int, _time: object, status: object
                  ) -> None:
        now = time.monotonic()
        if not self.blocks:
            raise_priority()
        if status:
            self.problems.append((now, str(status)))
        with self._grown:
            self._pieces.append(indata[:, 0].copy())
            self.frames += frames
            self.blocks.append((self.frames, now))
            self._grown.notify_all()

    def wait_frames(self, count: int, timeout: float = 5.0) -> bool:
        with self._grown:
            return self._grown.wait_for(lambda: self.frames >= count, timeout)

    def wait_more(self, seconds: float, timeout: float = 5.0) -> bool:
        """Until `seconds` more have been recorded (the recording is the clock)."""
        return self.wait_frames(self.frames + round(seconds * MIC_RATE), timeout)

    def recording(self) -> np.ndarray:
        with self._grown:
            return np.concatenate(self._pieces) if self._pieces else np.zeros(0, np.float32)

    def time_of(self, sample: int) -> float:
        """When `sample` reached the recorder: the schedule of the blocks within half a second
        of it (the earliest; a block's samples count as arriving one by one)."""
        with self._grown:
            return _schedule(self.blocks, sample, MIC_RATE)

    def sample_at(self, moment: float) -> int:
        """The sample that reached the recorder at `moment`."""
        with self._grown:
            moments = [at for _end, at in self.blocks]
            nearest = self.blocks[int(np.argmin(np.abs(np.array(moments) - moment)))][0]
        return nearest + round((moment - self.time_of(nearest)) * MIC_RATE)

    def __enter__(self) -> Listener:
        self._stream.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stream.stop()
        self._stream.close()


def _schedule(blocks: list[tuple[int, float]], frame: int, rate: int) -> float:
    """The time of `frame` in a stream whose block marked `mark` (a frame count) was handed
    over or arrived at `at`: the earliest-running view among blocks within 0.5 s of `frame`
    (later ones were held up by scheduling)."""
    near = [(mark, at) for mark, at in blocks if abs(mark - frame) <= rate // 2] or blocks
    return min(at - mark / rate for mark, at in near) + frame / rate


def play_and_wait(speaker: Speaker, listener: Listener, samples: np.ndarray) -> int:
    """Play `samples`, wait until they are handed over and their echo has died away at the
    recorder; the frame they started at."""
    speaker.play(samples)
    assert speaker.idle.wait(5)
    assert listener.wait_more(QUIET_AFTER_S)
    return speaker.starts[-1]


@pytest.fixture
def room(virtual_mic: VirtualMicrophone) -> Iterator[Room]:
    """A fresh room for each test here (conftest's is one per module): these tests switch the
    echo, read its statistics and measure its delay, each from a known start."""
    reinitialise_portaudio()  # PortAudio reads the tests' ALSA configuration at start
    virtual_mic.wait_until_said()
    with Room(virtual_mic) as simulated:
        yield simulated


# -- the room for real -------------------------------------------------------------------------

class Echo(NamedTuple):
    direct: int  # where its direct path begins in the recording
    score: float  # how closely the recording matches the room's echo there (correlation)
    delay_ms: float  # end-to-end: handed to the output stream -> direct path at the recorder
    start: int  # where `expected` begins in the recording (the room's delay before `direct`)
    expected: np.ndarray  # the room's noiseless echo, aligned to the sample


def find_echo(room: Room, recording: np.ndarray, listener: Listener, speaker: Speaker,
              samples: np.ndarray, start: int) -> Echo:
    """The echo of `samples`, played from output frame `start`, in the recording."""
    played = speaker.time_of(start)
    first = listener.sample_at(played)
    best: tuple[int, float, np.ndarray] = (0, -1.0, samples)
    # PulseAudio resamples 24 -> 16 kHz on the stream's own grid: the burst lands 0, 1/3 or
    # 2/3 of a sample off ours (a third of a sample costs 0.88 of the correlation).
    for pad in range(OUT_RATE // int(np.gcd(OUT_RATE, MIC_RATE))):
        padded = np.concatenate([np.zeros(pad, np.float32), samples])
        expected = room.echo_of(resample_to_room(padded, OUT_RATE))
        at, score = onset(recording, expected, first,
                          first + round(0.8 * MIC_RATE) + expected.size)
        if score > best[1]:
            best = (at, score, expected)
    at, score, expected = best
    direct = at + int(np.flatnonzero(np.abs(expected) > 0.05 * np.abs(expected).max())[0])
    return Echo(direct, score, 1000 * (listener.time_of(direct) - played), at, expected)


ATTEMPTS = 3  # a scenario is run again when PortAudio reports an under- or overflow


class Run(NamedTuple):
    """One scenario through the app-like streams, and what went wrong on their side (an
    underflow breaks the played signal itself: the room is not to blame, so it is replayed)."""

    recording: np.ndarray
    listener: Listener
    speaker: Speaker
    starts: list[int]  # output frames where each played signal began
    said: list[float]  # the room's said_at for this run's clips
    gains: list[float]  # what say() returned

    @property
    def problems(self) -> list[tuple[float, str]]:
        return self.listener.problems + self.speaker.problems


def scenario(room: Room, device: str, steps: list[tuple[str, Any]]) -> Run:
    """Open the streams; then for each step: ("play", samples) plays and waits for the echo to
    die; ("echo", bool) switches the echo; ("say", (clip, gain_db)) says a clip and waits;
    ("say over", (samples, clip)) plays samples and, once 0.3 s of their echo is in the
    room, says the clip at the echo's level (relative 0 dB)."""
    said_before = len(room.said_at)
    gains: list[float] = []
    with Listener(device) as listener, Speaker() as speaker:
        assert listener.wait_more(0.3)
        for kind, what in steps:
            if kind == "play":
                play_and_wait(speaker, listener, what)
            elif kind == "echo":
                room.echo_enabled = bool(what)
            elif kind == "say":
                gains.append(room.say(what[0], gain_db=what[1]))
                assert room.wait_until_said(5)
                assert listener.wait_more(0.3)
            elif kind == "say over":
                speaker.play(what[0])
                assert wait_for(lambda: room.echo_voiced_s(0.4) >= 0.3, 3), "no echo"
                gains.append(room.say(what[1], relative_to_echo_db=0.0))
                assert speaker.idle.wait(5) and room.wait_until_said(5)
                assert listener.wait_more(QUIET_AFTER_S)
        recording = listener.recording()
    return Run(recording, listener, speaker, list(speaker.starts),
               room.said_at[said_before:], gains)


def run_cleanly(room: Room, device: str, steps: list[tuple[str, Any]]) -> Run:
    for _attempt in range(ATTEMPTS):
        run = scenario(room, device, steps)
        if not run.problems:
            break
        print(f"\nreplaying: PortAudio reported {run.problems}")
    return run


@pytest.mark.audio
def test_the_echo_comes_back_late_and_6_db_down(room: Room, virtual_mic: VirtualMicrophone
                                                ) -> None:
    room_delays = [room.measure_delay() for _ in range(2)]  # vsink played -> vmic heard
    bursts = [burst(seed) for seed in (1, 2, 3)]
    late_before = room.stats().late_blocks
    run = run_cleanly(room, virtual_mic.device, [("play", b) for b in bursts])
    late = room.stats().late_blocks - late_before
    room_delays.append(room.measure_delay())  # the app's streams came and went: unmoved
    recording = run.recording
    found = [find_echo(room, recording, run.listener, run.speaker, b, start)
             for b, start in zip(bursts, run.starts, strict=True)]
    noise = float(np.mean(recording[:round(0.2 * MIC_RATE)].astype(np.float64) ** 2))
    gains = []
    for samples, echo in zip(bursts, found, strict=True):
        clip = resample_to_room(samples, OUT_RATE).astype(np.float64)
        # All the echo's energy (direct path and tail) against the burst's.
        window = recording[echo.direct - 160:echo.direct + clip.size + round(0.3 * MIC_RATE)]
        echo_energy = np.sum(window.astype(np.float64) ** 2) - noise * window.size
        gains.append(10 * np.log10(echo_energy / np.sum(clip**2)))
    delays = [echo.delay_ms for echo in found]
    shapes = [echo.score for echo in found]
    stats = room.stats()
    print(f"\nroom delay (vsink -> vmic) ms: {np.round(room_delays, 1)}; end-to-end ms: "
          f"{np.round(delays, 1)}; echo gain dB: {np.round(gains, 2)}; match: "
          f"{np.round(shapes, 4)}; noise {10 * np.log10(noise):.1f} dBFS; late blocks in the "
          f"run {late}; PortAudio problems {run.problems}; {stats}; "
          f"cpu {stats.cpu_percent:.1f} % of a core")

    assert not run.problems, f"PortAudio under/overflowed in {ATTEMPTS} tries: machine busy?"
    assert max(room_delays) - min(room_delays) < 3, room_delays  # fixed, and kept
    assert 50 <= np.mean(room_delays) <= 200, room_delays
    # The echo canceller takes a reference that leads the echo by up to ~500 ms.
    assert all(min(room_delays) <= d <= 350 for d in delays), delays
    assert max(delays) - min(delays) < 15, delays  # steady, not creeping
    assert all(abs(g - room.acoustics.echo_db) < 1.5 for g in gains), gains
    assert min(shapes) > 0.98, shapes  # the direct path and the reflections
    assert -63 < 10 * np.log10(noise) < -57  # the room's noise, and nothing else
    # A block captured too late for its slot is left out of the echo (never played late): on
    # a busy machine a few may be.
    assert late <= 5 and not stats.error and stats.cpu_percent < 25


@pytest.mark.audio
def test_a_user_clip_shows_up_and_echo_off_removes_the_echo(
        room: Room, virtual_mic: VirtualMicrophone) -> None:
    user, other = sweep(up=True), sweep(up=False)
    quiet, loud = burst(4), burst(5, seconds=1.0)
    before = time.monotonic()
    run = run_cleanly(room, virtual_mic.device, [
        ("echo", False),
        ("say", (user, -3.0)),  # the user alone (nothing plays)
        ("play", quiet),  # the assistant with the echo off: the microphone must not hear it
        # Switched on while running: the echo is back, and a second user clip, set to the
        # echo's level (0 dB relative), is mixed over it.
        ("echo", True),
        ("say over", (loud, other)),
    ])
    recording, listener, speaker = run.recording, run.listener, run.speaker
    quiet_start, loud_start = run.starts
    # The user clip: there, whole, at its gain, soon after it was said.
    at, score = onset(recording, user)
    user_delay = 1000 * (listener.time_of(at) - run.said[0])
    heard_gain = db(float(np.dot(recording[at:at + user.size], user) / np.dot(user, user)))
    # With the echo off, nothing but the room's noise between the end of the user's clip and
    # the loud burst's echo, where the quiet burst's echo would have been.
    loud_echo = find_echo(room, recording, listener, speaker, loud, loud_start)
    quiet_clip = resample_to_room(quiet, OUT_RATE)
    quiet_played = listener.sample_at(speaker.time_of(quiet_start))
    window = recording[at + user.size + 800:loud_echo.start - 800]
    _, quiet_score = onset(recording, quiet_clip, at + user.size + 800, loud_echo.start - 800)
    # The second clip and the echo under it, separated by least squares.
    gain = run.gains[1]
    echo = loud_echo.expected.astype(np.float64)
    delay = loud_echo.direct - loud_echo.start
    span = slice(loud_echo.start, loud_echo.start + echo.size)
    scaled = other.astype(np.float64) * 10 ** (gain / 20)
    other_at, _ = onset(recording, scaled.astype(np.float32))
    other_part = np.zeros(echo.size)
    lo = other_at - span.start
    assert 0 <= lo <= echo.size - other.size, "the clip fell outside the echo"
    other_part[lo:lo + other.size] = scaled
    fit, *_ = np.linalg.lstsq(np.stack([echo, other_part], axis=1),
                              recording[span].astype(np.float64), rcond=None)
    # The echo's level as say() measured it: over its voiced part, here while the burst plays.
    echo_level = voiced_rms(fit[0] * echo[delay:delay + round(1.0 * MIC_RATE)])
    other_level = voiced_rms(fit[1] * scaled)
    in_history, history_score = onset(room.history(10.0), user)
    print(f"\nuser clip: gain {heard_gain:.2f} dB (match {score:.3f}), heard {user_delay:.0f} "
          f"ms after said_at; echo off: {db(float(np.sqrt(np.mean(window**2)))):.1f} dBFS "
          f"(match {quiet_score:.3f}); echo on: delay {loud_echo.delay_ms:.0f} ms (match "
          f"{loud_echo.score:.3f}); relative clip: gain {gain:.1f} dB, at "
          f"{db(other_level) - db(echo_level):+.2f} dB against the echo (fit {fit}); "
          f"PortAudio problems {run.problems}; {room.stats()}")

    assert not run.problems, f"PortAudio under/overflowed in {ATTEMPTS} tries: machine busy?"
    assert run.gains[0] == -3.0 and len(run.said) == 2
    assert before < run.said[0] < run.said[1]
    assert score > 0.99 and abs(heard_gain - -3.0) < 0.3
    assert 0 < user_delay < 200
    assert loud_echo.score > 0.8  # the echo, with the second clip over it
    assert at + user.size < quiet_played < loud_echo.start - quiet_clip.size  # in the window
    assert db(float(np.sqrt(np.mean(window**2)))) < -57  # only the room's noise (-60 dBFS)
    assert quiet_score < 0.1
    assert abs(db(fit[0])) < 1.0 and abs(fit[1] - 1.0) < 0.05  # echo: -6.3 dB, not -6.0
    assert abs(db(other_level) - db(echo_level)) < 1.5
    assert history_score > 0.99 and in_history >= 0


# -- the room's parts, without a sound server ---------------------------------------------------

@pytest.mark.audio
def test_drifting_clocks_make_the_echo_later_and_later(virtual_mic: VirtualMicrophone) -> None:
    """Two sound cards' clocks apart: each measurement of vsink -> vmic is later than the one
    before by the drift times the time between them."""
    reinitialise_portaudio()
    virtual_mic.wait_until_said()
    ppm = 5000.0
    with Room(virtual_mic, Acoustics(drift_ppm=ppm)) as drifting:
        measured = []
        for _ in range(3):
            at = time.monotonic()
            measured.append((at, drifting.measure_delay()))
    growth = [(later[1] - earlier[1], ppm * 1e-3 * (later[0] - earlier[0]))
              for earlier, later in itertools.pairwise(measured)]
    print(f"\ndrift {ppm:.0f} ppm: delays {[round(d, 1) for _, d in measured]} ms; "
          f"growth measured / expected {[(round(g, 1), round(e, 1)) for g, e in growth]} ms")
    assert all(abs(grew - expected) < 4 for grew, expected in growth), growth


def test_clock_drift_lags_by_the_drift_and_keeps_the_signal() -> None:
    rate, ppm, seconds, tone = 16_000, 1000.0, 20, 300.0
    n = np.arange(rate * seconds)
    signal = np.sin(2 * np.pi * tone * n / rate).astype(np.float32)
    drift = ClockDrift(ppm)
    out = np.concatenate([drift.process(signal[i:i + 160]) for i in range(0, signal.size, 160)])
    assert out.size == signal.size
    assert abs(drift.lag_samples - ppm * 1e-6 * signal.size) < 1, drift.lag_samples
    # Sample n is the signal at n * (1 - ppm / 1e6): played that much slower.
    slower = np.sin(2 * np.pi * tone * n * (1 - ppm * 1e-6) / rate)
    assert np.max(np.abs(out - slower)) < 0.01
    assert np.max(np.abs(out[-rate:] - signal[-rate:])) > 0.5  # not the signal on time
    with pytest.raises(ValueError, match="drift_ppm"):
        ClockDrift(-5)


def test_block_convolution_is_the_whole_convolution() -> None:
    taps = Acoustics().impulse_response()
    convolver = BlockConvolver(taps)
    signal = np.random.default_rng(0).standard_normal(160 * 60).astype(np.float32)
    blocks = [convolver.process(signal[i:i + 160]) for i in range(0, signal.size, 160)]
    assert np.allclose(np.concatenate(blocks), np.convolve(signal, taps)[:signal.size],
                       atol=1e-5)


def test_the_impulse_response_is_a_delay_a_direct_path_and_a_decaying_tail() -> None:
    acoustics = Acoustics()
    taps = acoustics.impulse_response().astype(np.float64)
    delay = round(0.040 * MIC_RATE)
    assert not np.any(taps[:delay]) and taps[delay] > 0
    assert 10 * np.log10(np.sum(taps**2)) == pytest.approx(-6.0, abs=0.01)
    assert 10 * np.log10(taps[delay] ** 2 / np.sum(taps[delay + 1:] ** 2)) == pytest.approx(
        3.0, abs=0.01)
    # Energy decay: about 60 dB over RT60 (0.25 s), judged from 10 ms windows 50 ms apart.
    tail = taps[delay + 32:]

    def window_db(at_s: float) -> float:
        i = round(at_s * MIC_RATE)
        return float(10 * np.log10(np.mean(tail[i:i + 160] ** 2)))

    slope = (window_db(0.2) - window_db(0.0)) / 0.2
    assert -60 / 0.25 * 1.3 < slope < -60 / 0.25 * 0.7
    louder = Acoustics(echo_db=0.0).impulse_response()
    assert 10 * np.log10(np.sum(louder.astype(np.float64) ** 2)) == pytest.approx(0, abs=0.01)


def test_voiced_rms_ignores_pauses() -> None:
    tone = 0.1 * np.sin(2 * np.pi * 440 * np.arange(MIC_RATE) / MIC_RATE)
    with_pause = np.concatenate([tone, np.zeros(3 * MIC_RATE)])
    assert voiced_rms(with_pause) == pytest.approx(0.1 / np.sqrt(2), rel=0.02)
    assert voiced_rms(np.zeros(1000)) == 0.0


# -- noises ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(noises.NOISES))
def test_noises_are_deterministic_16_khz_clips(name: str) -> None:
    make = noises.NOISES[name]
    clip = make()
    assert clip.dtype == np.float32 and clip.ndim == 1
    assert np.array_equal(clip, make()) and not np.array_equal(clip, make(seed=1))
    assert np.max(np.abs(clip)) == pytest.approx(noises.PEAK, rel=1e-6)
    expected_s = {"cough": 0.25, "click": 0.39, "door_slam": 0.6, "typing": 2.0,
                  "mm_hmm": 0.35}[name]
    assert clip.size / noises.NOISE_RATE == pytest.approx(expected_s, abs=0.02)


def test_what_the_voice_detector_makes_of_the_noises() -> None:
    """The project's Silero VAD hears no speech in the coughs, clicks, slams and typing; the
    hummed "mm-hmm" is voiced (so an agent must judge backchannels by length, not VAD)."""
    from agent.listen.vad import SileroVad

    vad = SileroVad()
    pad = np.zeros(MIC_RATE // 2, np.float32)
    speechy = {}
    for name, make in noises.NOISES.items():
        vad.reset()
        probabilities = vad.feed(np.concatenate([pad, make(), pad]))
        speechy[name] = float(np.count_nonzero(probabilities > 0.5) * 0.032)
    assert all(speechy[n] == 0 for n in ("cough", "click", "door_slam", "typing")), speechy
    assert 0 < speechy["mm_hmm"] <= 0.4, speechy


def test_two_coughs_and_a_sequence_with_gaps() -> None:
    double = noises.cough(count=2, gap_s=0.15)
    assert double.size == round(0.65 * noises.NOISE_RATE)
    clips = [noises.click(), noises.door_slam(), noises.mm_hmm()]
    mixed = noises.sequence(clips, gap_s=[0.5, 0.25], lead_s=0.1, tail_s=0.2)
    rate = noises.NOISE_RATE
    assert mixed.starts == [round(0.1 * rate), round(0.1 * rate) + clips[0].size + rate // 2,
                            round(0.1 * rate) + clips[0].size + rate // 2 + clips[1].size
                            + rate // 4]
    for start, clip in zip(mixed.starts, clips, strict=True):
        assert np.array_equal(mixed.samples[start:start + clip.size], clip)
    assert mixed.samples.size == mixed.starts[-1] + clips[-1].size + round(0.2 * rate)
    assert not np.any(mixed.samples[:mixed.starts[0]])
    with pytest.raises(ValueError, match="3 clips need 2 gaps"):
        noises.sequence(clips, gap_s=[0.5])
