"""A simulated room: what the assistant plays comes back into its own microphone.

Why: echo cancellation and voice barge-in ("talk-over") on laptop speakers can only be tested
if the agent's output reaches its microphone the way it does in a room: late (the sound
travels, and the audio stack buffers), quieter (about -6 dB on a laptop), smeared by
reflections, under a little noise, and with the user's voice on top at a level chosen
relative to that echo. The tests' PulseAudio has no such path: `vsink` (where the app plays)
and `vmic` (what the app records) are separate null sinks. `Room` joins them.

How: the room runs in a process of its own (`python -m harness.room`, so the app under test
cannot starve it by holding this process's GIL; its threads at PulseAudio's own priority,
nice -11, where allowed). One thread records `vsink.monitor` (16 kHz float, 10 ms blocks) and
runs each block through a room impulse response (FFT overlap-add, state carried between
blocks); a second thread writes, block by block, that echo plus noise plus any "user" clips
into `vmic`, next to the `VirtualMicrophone`'s own feed (a null sink mixes its inputs), so
`VirtualMicrophone.device` records it and `VirtualMicrophone.say()` still works. The room is
built on a running `VirtualMicrophone` and changes no default device. Both streams are
PulseAudio clients opened through libpulse-simple (ctypes; it ships in Debian's libpulse0,
which pacat needs too), not pacat/parec behind pipes: a pipe's minimum of one page is 64 ms
of float audio, and a process on the far side of it cannot be held to a fixed delay.

Pacing and a fixed delay: the writer is paced by PulseAudio (a write blocks while `vmic`'s
stream holds `PLAY_BUFFER_MS`), so the microphone is fed in real time whether or not anything
is captured. Writer block n carries the echo of captured block n - D, where D is fixed once,
shortly after start, from the two streams' schedules (each one's earliest-running view over
0.5 s, which a stall cannot distort) plus `MARGIN_BLOCKS` of slack. Both null sinks run on
the same clock, so the delay from vsink to vmic stays constant: a block captured too late for
its slot (the machine stalled for more than the slack) is left out (silence in the echo,
counted as `late_blocks`) rather than played late, and the playback stream has no
pre-buffering (prebuf 0), so an underrun skips ahead instead of shifting everything after it.
The delay cannot creep: stalls of 150 and 200 ms injected into the writer and the capture
left it where it was, to the millisecond.

The impulse response: nothing for `delay_ms` (default 40 ms), a direct path, then an
exponentially decaying noise tail (RT60 `rt60_s`, default 0.25 s) starting 2 ms later. Its
energy is `echo_db` (default -6 dB): noise played at RMS r comes back at RMS about
r * 10**(echo_db/20); `direct_to_reverb_db` (default +3 dB) splits that energy between the
direct path and the tail. What the app sees is later than `delay_ms`: add the capture block,
the slack, the playback buffer, and the app's own output and input buffers.
`measure_delay()` measures the room's part (vsink played -> vmic heard) with a probe; the
tests measure the whole path through PortAudio (tests/test_room_harness.py).

Levels of user clips: `say(clip, gain_db=...)` applies an absolute gain;
`say(clip, relative_to_echo_db=0.0)` scales the clip so that its RMS over its voiced part
(`voiced_rms`) equals the voiced RMS of the echo over the last `ECHO_WINDOW_S` seconds (the
echo before noise, measured whether or not `echo_enabled`; wait for `echo_voiced_s()` first),
plus the offset. For a level fixed before anything plays, `gain_db_for(clip, reference)`
computes the gain from the echo this room makes of a reference signal (e.g. the reply the app
is about to speak).

Measured here (2 cores, other jobs running): the room's part of the delay 103-110 ms (fixed
for the life of a room, within 1-2 ms), end-to-end through PortAudio as the app opens its
streams (256-frame output at 24 kHz and 512-frame input at 16 kHz, latency "low") 128-134 ms;
echo gain -6.3 dB (PulseAudio's resampler takes 0.3 dB); noise -60 dBFS. CPU: the room's
process about 6-7 % of one core when idle (its two threads about 4 %, the FFTs under 1 %;
libpulse's threads the rest), PulseAudio about 1 % more.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import functools
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
from scipy.fft import irfft, next_fast_len, rfft

from harness.microphone import MIC_RATE, VirtualMicrophone
from harness.services import REPO, HarnessError, end_process, wait_for

__all__ = ["ROOM_RATE", "Acoustics", "BlockConvolver", "ClockDrift", "Room", "RoomStats",
           "resample_to_room", "voiced_rms"]

ROOM_RATE = MIC_RATE  # 16 kHz: what the room hears and what the microphone gets
BLOCK = 160  # 10 ms
BLOCK_BYTES = BLOCK * 4  # float32
BLOCK_S = BLOCK / MIC_RATE
PLAY_BUFFER_MS = 30  # vmic's stream: the writer's jitter buffer
MARGIN_BLOCKS = 3  # slack between a block's capture and its slot in the mix
SETTLE_BLOCKS = 20  # written before the offset is fixed (past the start-up burst)...
OBSERVE_BLOCKS = 50  # ...then both streams' schedules watched this long (0.5 s)
THREAD_NICE = -11  # the room's threads, where allowed (root): PulseAudio's own priority
LATE_RUNS_KEPT = 50
CATCH_UP_WAIT_S = 0.005  # how long the writer waits for a block that is due
ECHO_RING = 256  # captured echo blocks kept for the writer (2.56 s)
ECHO_WINDOW_S = 2.0  # the echo level for relative clips is measured over this much echo
ECHO_MIN_DBFS = -50.0  # quieter "echo" than this is none to set a clip's level against
HISTORY_S = 30.0  # how much of the mix `history()` keeps
SINK = "vsink"  # where the app plays (tests/conftest.py's pulse fixture)
MIC_SINK = "vmic"  # what the app records (harness.microphone.VirtualMicrophone)
VOICED_RANGE_DB = 30.0  # frames within this of the loudest count as voiced
VOICED_FLOOR_DBFS = -70.0


@dataclass(frozen=True)
class Acoustics:
    """The room: echo path, reflections, noise. dBFS is an RMS against a full-scale 1.0."""

    delay_ms: float = 40.0
    rt60_s: float = 0.25
    echo_db: float = -6.0
    direct_to_reverb_db: float = 3.0
    noise_dbfs: float = -60.0
    seed: int = 0
    # The speakers' and the microphone's clocks apart (two sound cards): the echo comes later
    # and later, by this many microseconds a second (0: one clock, as the null sinks share).
    drift_ppm: float = 0.0

    def impulse_response(self, rate: int = ROOM_RATE) -> np.ndarray:
        """Float32 taps: a delay, a direct path, a decaying noise tail; energy `echo_db`."""
        delay = round(self.delay_ms * rate / 1000)
        gap = round(0.002 * rate)
        tail_length = max(1, round(self.rt60_s * rate))
        t = np.arange(tail_length) / rate
        envelope = np.exp(-np.log(1000.0) * t / self.rt60_s)  # -60 dB at rt60
        rng = np.random.default_rng(self.seed)
        tail = rng.standard_normal(tail_length) * envelope
        total = 10 ** (self.echo_db / 10)
        direct_share = 1 / (1 + 10 ** (-self.direct_to_reverb_db / 10))
        taps = np.zeros(delay + gap + tail_length)
        taps[delay] = np.sqrt(total * direct_share)
        taps[delay + gap:] = tail * np.sqrt(total * (1 - direct_share) / np.sum(tail**2))
        return taps.astype(np.float32)


class BlockConvolver:
    """FFT overlap-add convolution of a stream, one fixed-size block at a time (the tail of
    each block's output is carried into the next)."""

    def __init__(self, taps: np.ndarray, block: int = BLOCK) -> None:
        self.block = block
        self.length = taps.size
        self.nfft = next_fast_len(block + taps.size - 1, real=True)
        self._spectrum = rfft(taps.astype(np.float64), self.nfft)
        self._carry = np.zeros(taps.size - 1)

    def process(self, block: np.ndarray) -> np.ndarray:
        full = irfft(rfft(block, self.nfft) * self._spectrum, self.nfft)
        full = full[:self.block + self.length - 1]
        full[:self._carry.size] += self._carry
        self._carry = full[self.block:].copy()
        out: np.ndarray = full[:self.block].astype(np.float32)
        return out


class ClockDrift:
    """Two clocks `ppm` apart: the stream is played back `ppm` per million slower, so
    everything in it arrives later and later (a 10 ms block in, a 10 ms block out; after
    an hour at 100 ppm, 360 ms later). Linear interpolation between samples; what lies
    behind the read position is let go, so memory stays at the lag plus a block."""

    def __init__(self, ppm: float, block: int = BLOCK) -> None:
        if not 0 <= ppm < 10_000:
            raise ValueError(f"drift_ppm must be 0 to 10,000 (the echo only ever lags), not {ppm}")
        self.step = 1.0 - ppm * 1e-6
        self.block = block
        self._buffer = np.zeros(0, np.float64)  # the stream from sample `_base` on
        self._base = 0
        self._read = 0.0  # where the next output sample is read, in the stream's samples
        self._offsets = np.arange(block) * self.step

    @property
    def lag_samples(self) -> float:
        return self._base + self._buffer.size - self._read

    def process(self, block: np.ndarray) -> np.ndarray:
        self._buffer = np.concatenate([self._buffer, block.astype(np.float64)])
        at = self._read - self._base + self._offsets
        out: np.ndarray = np.interp(at, np.arange(self._buffer.size),
                                    self._buffer).astype(np.float32)
        self._read += self.block * self.step
        done = int(self._read) - self._base
        if done > 0:
            self._buffer = self._buffer[done:]
            self._base += done
        return out


def voiced_rms(samples: np.ndarray, rate: int = ROOM_RATE, frame_s: float = 0.02,
               range_db: float = VOICED_RANGE_DB) -> float:
    """RMS over the frames within `range_db` of the loudest (and above -70 dBFS): the level
    of a clip's sound, not of its pauses. 0.0 for silence."""
    x = np.asarray(samples, np.float64)
    frame = max(1, round(frame_s * rate))
    count = x.size // frame
    if count == 0:
        return float(np.sqrt(np.mean(x**2))) if x.size else 0.0
    energy = np.mean(x[:count * frame].reshape(count, frame) ** 2, axis=1)
    floor = max(energy.max() * 10 ** (-range_db / 10), 10 ** (VOICED_FLOOR_DBFS / 10))
    voiced = energy[energy >= floor]
    return float(np.sqrt(voiced.mean())) if voiced.size else 0.0


def resample_to_room(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Float32 mono at 16 kHz (polyphase resampling)."""
    clip = np.asarray(samples, np.float32).ravel()
    if sample_rate == ROOM_RATE:
        return clip
    from scipy.signal import resample_poly

    divisor = int(np.gcd(sample_rate, ROOM_RATE))
    out: np.ndarray = resample_poly(clip, ROOM_RATE // divisor, sample_rate // divisor)
    return out.astype(np.float32)


# -- PulseAudio, through libpulse-simple ---------------------------------------------------------

class _SampleSpec(ctypes.Structure):
    _fields_ = [("format", ctypes.c_int), ("rate", ctypes.c_uint32),
                ("channels", ctypes.c_uint8)]


class _BufferAttr(ctypes.Structure):
    _fields_ = [("maxlength", ctypes.c_uint32), ("tlength", ctypes.c_uint32),
                ("prebuf", ctypes.c_uint32), ("minreq", ctypes.c_uint32),
                ("fragsize", ctypes.c_uint32)]


_PA_SAMPLE_FLOAT32LE = 5
_PA_STREAM_PLAYBACK = 1
_PA_STREAM_RECORD = 2
_DEFAULT = 0xFFFFFFFF  # (uint32_t) -1: the server chooses
_libraries: tuple[ctypes.CDLL, ctypes.CDLL] | None = None


def _pulse() -> tuple[ctypes.CDLL, ctypes.CDLL]:
    global _libraries
    if _libraries is None:
        try:
            simple = ctypes.CDLL("libpulse-simple.so.0")
            pulse = ctypes.CDLL("libpulse.so.0")
        except OSError as error:
            raise HarnessError("the room needs libpulse-simple.so.0 (Debian: apt-get install "
                               f"libpulse0, which pulseaudio-utils pulls in): {error}") from error
        simple.pa_simple_new.restype = ctypes.c_void_p
        simple.pa_simple_new.argtypes = [
            ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p,
            ctypes.POINTER(_SampleSpec), ctypes.c_void_p, ctypes.POINTER(_BufferAttr),
            ctypes.POINTER(ctypes.c_int)]
        for name in ("pa_simple_read", "pa_simple_write"):
            function = getattr(simple, name)
            function.restype = ctypes.c_int
            function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                 ctypes.POINTER(ctypes.c_int)]
        simple.pa_simple_get_latency.restype = ctypes.c_uint64
        simple.pa_simple_get_latency.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
        simple.pa_simple_free.restype = None
        simple.pa_simple_free.argtypes = [ctypes.c_void_p]
        pulse.pa_strerror.restype = ctypes.c_char_p
        pulse.pa_strerror.argtypes = [ctypes.c_int]
        _libraries = simple, pulse
    return _libraries


class _Stream:
    """One PulseAudio stream, 16 kHz float32 mono, used by one thread at a time."""

    def __init__(self, direction: int, device: str, name: str, attr: _BufferAttr) -> None:
        self._simple, self._pulse = _pulse()
        spec = _SampleSpec(_PA_SAMPLE_FLOAT32LE, ROOM_RATE, 1)
        error = ctypes.c_int(0)
        self._handle = self._simple.pa_simple_new(
            None, b"room", direction, device.encode(), name.encode(), ctypes.byref(spec), None,
            ctypes.byref(attr), ctypes.byref(error))
        if not self._handle:
            raise HarnessError(f"PulseAudio refused the room's stream on {device}: "
                               f"{self._message(error)}")

    def _message(self, error: ctypes.c_int) -> str:
        return str(self._pulse.pa_strerror(error.value).decode())

    def read(self, into: np.ndarray) -> None:
        error = ctypes.c_int(0)
        if self._simple.pa_simple_read(self._handle, into.ctypes.data, into.nbytes,
                                       ctypes.byref(error)) < 0:
            raise HarnessError(f"reading {SINK}.monitor failed: {self._message(error)}")

    def write(self, data: np.ndarray) -> None:
        error = ctypes.c_int(0)
        if self._simple.pa_simple_write(self._handle, data.ctypes.data, data.nbytes,
                                        ctypes.byref(error)) < 0:
            raise HarnessError(f"writing into {MIC_SINK} failed: {self._message(error)}")

    def latency_s(self) -> float:
        error = ctypes.c_int(0)
        return float(self._simple.pa_simple_get_latency(self._handle, ctypes.byref(error))) / 1e6

    def close(self) -> None:
        if self._handle:
            self._simple.pa_simple_free(self._handle)
            self._handle = None


# -- the room ------------------------------------------------------------------------------------

@dataclass
class RoomStats:
    """What the room did: blocks captured and written, echo blocks that came too late for
    their slot (left out), the fixed offset between capture and mix (blocks), and the CPU it
    used since it started."""

    captured_blocks: int = 0
    written_blocks: int = 0
    late_blocks: int = 0
    offset_blocks: int = 0
    thread_cpu_s: float = 0.0  # the capture and writer threads
    process_cpu_s: float = 0.0  # the room's whole process (libpulse's threads too)
    wall_s: float = 0.0
    error: str = ""  # why a thread stopped, if one did
    # The last runs of late blocks: (monotonic time of the first, how many in a row).
    late_runs: list[tuple[float, int]] = field(default_factory=list)

    @property
    def cpu_percent(self) -> float:
        """Of one core: the room's whole process, since the room started."""
        return 100 * self.process_cpu_s / max(self.wall_s, 1e-9)


@dataclass
class _Clip:
    samples: np.ndarray
    ident: int
    position: int = 0


class _Ring:
    """The last `capacity` samples of a stream, with the count of all samples ever added."""

    def __init__(self, capacity: int) -> None:
        self._data = np.zeros(capacity, np.float32)
        self.total = 0

    def add(self, block: np.ndarray) -> None:
        n, cap = block.size, self._data.size
        start = self.total % cap
        first = min(n, cap - start)
        self._data[start:start + first] = block[:first]
        self._data[:n - first] = block[first:]
        self.total += n

    def last(self, count: int) -> np.ndarray:
        count = min(count, self.total, self._data.size)
        end = self.total % self._data.size
        return np.roll(self._data, -end)[self._data.size - count:].copy()


class _Engine:
    """The room itself, in the room's own process: two threads, two streams (see `Room`)."""

    def __init__(self, acoustics: Acoustics, echo_enabled: bool,
                 notify: Callable[[tuple[Any, ...]], None], history_s: float,
                 play_buffer_ms: int, margin_blocks: int, start_timeout: float) -> None:
        self.acoustics = acoustics
        self.taps = acoustics.impulse_response()
        self.echo_enabled = echo_enabled  # the writer reads it for every block
        self._notify = notify
        self.margin_blocks = margin_blocks
        self._convolver = BlockConvolver(self.taps)
        self._drift = ClockDrift(acoustics.drift_ppm) if acoustics.drift_ppm else None
        self._noise_rng = np.random.default_rng(self.acoustics.seed + 1)
        self._noise_sigma = np.float32(10 ** (self.acoustics.noise_dbfs / 20))
        self._clips: list[_Clip] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)  # a captured block is in the ring
        self._stop = threading.Event()
        self._echo_energy: collections.deque[float] = collections.deque(
            maxlen=round(ECHO_WINDOW_S * ROOM_RATE / BLOCK))
        self._echo_blocks = np.zeros((ECHO_RING, BLOCK), np.float32)
        self._echo_index = np.full(ECHO_RING, -1, np.int64)
        self._mix = _Ring(round(history_s * ROOM_RATE))
        # The capture, and when each of its blocks arrived (for measure_delay()).
        self._captured = _Ring(round(history_s * ROOM_RATE))
        self._captured_at: collections.deque[tuple[int, float]] = collections.deque(
            maxlen=round(history_s * ROOM_RATE / BLOCK))
        self._stats = RoomStats()
        self._cpu = {"capture": 0.0, "writer": 0.0}
        self._offset: int | None = None
        # The streams' schedules, earliest view: block c of the capture arrives at about
        # capture_origin + c * 10 ms, and block n of the writer is taken at writer_origin + n *
        # 10 ms (later ones were held up; stalls only ever make things later).
        self._capture_origin = float("inf")
        self._writer_origin = float("inf")
        self._observed = 0
        self._late_last = -2
        self._started = time.monotonic()
        self._process_cpu = time.process_time()
        self._failure: BaseException | None = None

        self._play_buffer_bytes = play_buffer_ms * ROOM_RATE * 4 // 1000
        self._threads = [threading.Thread(target=self._guard, args=(self._capture_loop,),
                                          name="room-capture", daemon=True),
                         threading.Thread(target=self._guard, args=(self._write_loop,),
                                          name="room-writer", daemon=True)]
        for thread in self._threads:
            thread.start()
        if not wait_for(lambda: self._offset is not None or self._failure is not None,
                        timeout=start_timeout, step=0.01):
            self.close()
            raise HarnessError(f"the room did not start: nothing captured from {SINK}.monitor "
                               f"or nothing written into {MIC_SINK}")
        if self._failure is not None:
            self.close()
            raise HarnessError(f"the room failed: {self._failure}")

    # -- user clips ------------------------------------------------------------------------

    def say(self, ident: int, clip: np.ndarray, gain_db: float,
            relative_to_echo_db: float | None) -> float:
        if relative_to_echo_db is not None:
            echo = self.echo_level_dbfs()
            # The agent's voice comes back near -26 dBFS: far below that, what the window
            # holds is a held or finished reply's last tail, and a clip set against it would
            # be inaudible (seen once: -72 dBFS of "echo", the clip at -58 dB).
            if echo is None or echo < ECHO_MIN_DBFS:
                raise HarnessError("no echo in the last "
                                   f"{ECHO_WINDOW_S} s to set the clip's level against")
            level = voiced_rms(clip)
            if level <= 0:
                raise HarnessError("the clip is silent")
            gain_db = echo + relative_to_echo_db - 20 * float(np.log10(level))
        scaled = (clip * np.float32(10 ** (gain_db / 20))).astype(np.float32)
        with self._lock:
            self._clips.append(_Clip(scaled, ident))
        return float(gain_db)

    # -- levels ----------------------------------------------------------------------------

    def echo_level_dbfs(self) -> float | None:
        """Voiced RMS (dBFS) of the echo, before noise, over the last `ECHO_WINDOW_S`
        seconds; None if there was none. Measured whether or not `echo_enabled`."""
        with self._lock:
            energy = np.array(self._echo_energy)
        if energy.size == 0 or energy.max() < 10 ** (VOICED_FLOOR_DBFS / 10):
            return None
        voiced = energy[energy >= energy.max() * 10 ** (-VOICED_RANGE_DB / 10)]
        return float(10 * np.log10(voiced.mean()))

    def echo_voiced_s(self, window_s: float = ECHO_WINDOW_S) -> float:
        """Seconds of the last `window_s` (at most `ECHO_WINDOW_S`) in which the echo was
        voiced (within 30 dB of its loudest block): wait on this before a
        `relative_to_echo_db` clip."""
        with self._lock:
            energy = np.array(self._echo_energy)[-max(1, round(window_s * ROOM_RATE / BLOCK)):]
        if energy.size == 0 or energy.max() < 10 ** (VOICED_FLOOR_DBFS / 10):
            return 0.0
        voiced = energy >= energy.max() * 10 ** (-VOICED_RANGE_DB / 10)
        return float(np.count_nonzero(voiced) * BLOCK / ROOM_RATE)

    # -- what went in ----------------------------------------------------------------------

    def history(self, seconds: float = HISTORY_S) -> np.ndarray:
        """The last `seconds` of what went into the microphone (echo, noise, clips)."""
        with self._lock:
            return self._mix.last(round(seconds * ROOM_RATE))

    def captured(self, seconds: float = HISTORY_S) -> np.ndarray:
        """The last `seconds` of what the room heard from vsink (16 kHz, before the room)."""
        with self._lock:
            return self._captured.last(round(seconds * ROOM_RATE))

    def stats(self) -> RoomStats:
        with self._lock:
            stats = RoomStats(**{f.name: getattr(self._stats, f.name) for f in fields(RoomStats)})
            stats.late_runs = list(self._stats.late_runs)
            stats.thread_cpu_s = sum(self._cpu.values())
        stats.process_cpu_s = time.process_time() - self._process_cpu
        stats.wall_s = time.monotonic() - self._started
        stats.error = "" if self._failure is None else repr(self._failure)
        return stats

    # -- the delay -------------------------------------------------------------------------

    def set_echo(self, on: bool) -> None:
        self.echo_enabled = bool(on)

    def measure_delay(self, probe_s: float = 0.3, level_dbfs: float = -20.0,
                      timeout: float = 5.0) -> float:
        """See `Room.measure_delay`."""
        enabled, self.echo_enabled = self.echo_enabled, True
        try:
            return self._measure_delay(probe_s, level_dbfs, timeout)
        finally:
            self.echo_enabled = enabled

    def _measure_delay(self, probe_s: float, level_dbfs: float, timeout: float) -> float:
        rng = np.random.default_rng(12345)
        probe = (rng.standard_normal(round(probe_s * 24_000)) * 10 ** (level_dbfs / 20)
                 ).astype(np.float32)
        listener = subprocess.Popen(
            ["parec", "-d", f"{MIC_SINK}.monitor", f"--latency-msec={BLOCK * 1000 // ROOM_RATE}",
             "--format=float32le", f"--rate={ROOM_RATE}", "--channels=1", "--raw",
             "--stream-name=room-probe"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        heard: list[tuple[int, float, bytes]] = [(0, time.monotonic(), b"")]
        done = threading.Event()

        def listen() -> None:
            assert listener.stdout is not None
            total = 0
            while not done.is_set():
                data = os.read(listener.stdout.fileno(), 65536)
                if not data:
                    return
                arrived = time.monotonic()
                total += len(data) // 4
                heard.append((total, arrived, data))

        thread = threading.Thread(target=listen, name="room-probe", daemon=True)
        thread.start()
        try:
            if not wait_for(lambda: len(heard) > 5, timeout=timeout, step=0.01):
                raise HarnessError(f"nothing recorded from {MIC_SINK}.monitor")
            with self._lock:
                mark = self._captured.total
            mic_mark = heard[-1][0]
            player = subprocess.run(
                ["pacat", "--playback", "-d", SINK, "--latency-msec=10", "--format=float32le",
                 "--rate=24000", "--channels=1", "--raw"], input=probe.tobytes(),
                timeout=timeout, capture_output=True)
            if player.returncode != 0:
                raise HarnessError(f"pacat into {SINK} failed: {player.stderr.decode()}")
            needed = round((self.acoustics.delay_ms / 1000 + probe_s + 0.3) * ROOM_RATE)
            if not wait_for(lambda: self._captured.total - mark > needed,
                            timeout=timeout, step=0.01):
                raise HarnessError("the room stopped capturing")
            # The microphone lags by the room's delay (allow up to 0.5 s).
            if not wait_for(lambda: heard[-1][0] - mic_mark > needed + ROOM_RATE // 2,
                            timeout=timeout, step=0.01):
                raise HarnessError(f"{MIC_SINK}.monitor stopped recording")
        finally:
            done.set()
            listener.terminate()
            listener.wait(5)
            thread.join(5)
            if listener.stdout is not None:
                listener.stdout.close()
        with self._lock:
            captured = self._captured.last(self._captured.total - mark)
            captured_at = [(end - mark, at) for end, at in self._captured_at if end > mark]
        recorded = np.frombuffer(b"".join(d for _, _, d in heard), np.float32)
        recorded_at = [(end, at) for end, at, _ in heard[1:]]
        probe16 = resample_to_room(probe, 24_000)
        played = _timeline(captured_at) + _onset(captured, probe16) / ROOM_RATE
        # The direct path is the strongest tap, so the best match is its arrival.
        arrived = _timeline(recorded_at) + _onset(recorded, probe16) / ROOM_RATE
        return 1000 * (arrived - played)

    # -- the threads -----------------------------------------------------------------------

    def _guard(self, loop: object) -> None:
        # Like PulseAudio itself (it raises its own to nice -11): on a busy machine the room
        # must not fall behind the sound server. Each loop uses well under 1 % of a core. Only
        # root may do this; otherwise the room runs at normal priority.
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), THREAD_NICE)
        try:
            loop()  # type: ignore[operator]
        except BaseException as error:  # reported by the constructor, or seen in stats
            self._failure = error
            self._stop.set()

    def _capture_loop(self) -> None:
        # Opened here, so libpulse's own thread inherits this thread's priority.
        recorder = _Stream(_PA_STREAM_RECORD, f"{SINK}.monitor", "room: what plays",
                           _BufferAttr(_DEFAULT, _DEFAULT, _DEFAULT, _DEFAULT, BLOCK_BYTES))
        try:
            self._record(recorder)
        finally:
            recorder.close()

    def _record(self, recorder: _Stream) -> None:
        block = np.zeros(BLOCK, np.float32)
        cpu_start = time.thread_time()
        index = 0
        while not self._stop.is_set():
            recorder.read(block)  # blocks for the next 10 ms of vsink
            arrived = time.monotonic()
            echo = self._convolver.process(
                block if self._drift is None else self._drift.process(block))
            slot = index % ECHO_RING
            with self._lock:
                self._capture_origin = min(self._capture_origin, arrived - index * BLOCK_S)
                self._echo_blocks[slot] = echo
                self._echo_index[slot] = index
                self._echo_energy.append(float(np.mean(echo.astype(np.float64) ** 2)))
                self._captured.add(block)
                self._captured_at.append((self._captured.total, arrived))
                self._stats.captured_blocks = index = index + 1
                self._arrived.notify_all()
                self._cpu["capture"] = time.thread_time() - cpu_start

    def _write_loop(self) -> None:
        # No pre-buffering: after an underrun the stream skips ahead rather than shifting
        # everything after it later.
        player = _Stream(_PA_STREAM_PLAYBACK, MIC_SINK, "room: what the mic hears",
                         _BufferAttr(_DEFAULT, self._play_buffer_bytes, 0, BLOCK_BYTES,
                                     _DEFAULT))
        try:
            self._play(player)
        finally:
            player.close()

    def _play(self, player: _Stream) -> None:
        cpu_start = time.thread_time()
        written = 0
        while not self._stop.is_set():
            mix = self._noise_rng.standard_normal(BLOCK).astype(np.float32) * self._noise_sigma
            with self._lock:
                if self._offset is None:
                    self._fix_offset()
                elif self.echo_enabled:
                    wanted = written - self._offset
                    slot = wanted % ECHO_RING
                    if wanted >= 0 and self._echo_index[slot] < wanted:
                        # Not captured yet. After a stall of the whole machine both streams
                        # catch up at once, and the writer must not outrun the capture: give it
                        # a moment (a capture that is really late is left out all the same).
                        self._arrived.wait_for(functools.partial(self._has, slot, wanted),
                                               CATCH_UP_WAIT_S)
                    if wanted >= 0 and self._echo_index[slot] == wanted:
                        mix += self._echo_blocks[slot]
                    elif wanted >= 0:
                        self._stats.late_blocks += 1
                        runs = self._stats.late_runs
                        if runs and self._late_last == written - 1:
                            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
                        else:
                            runs.append((time.monotonic(), 1))
                            del runs[:-LATE_RUNS_KEPT]
                        self._late_last = written
                now = time.monotonic()
                started, finished = [], []
                for clip in self._clips:
                    if clip.position == 0:
                        started.append(clip.ident)
                    piece = clip.samples[clip.position:clip.position + BLOCK]
                    mix[:piece.size] += piece
                    clip.position += piece.size
                    if clip.position >= clip.samples.size:
                        finished.append(clip.ident)
                self._clips = [c for c in self._clips if c.position < c.samples.size]
                self._mix.add(mix)
            for ident in started:
                self._notify(("said", ident, now))
            player.write(mix)  # blocks while vmic's stream is full: real time
            taken = time.monotonic()
            for ident in finished:
                self._notify(("done", ident))
            with self._lock:
                if written >= SETTLE_BLOCKS and self._offset is None:
                    self._writer_origin = min(self._writer_origin, taken - written * BLOCK_S)
                    self._observed += 1
                written += 1
                self._stats.written_blocks = written
                self._cpu["writer"] = time.thread_time() - cpu_start

    @property
    def failure(self) -> BaseException | None:
        """Why a thread stopped (a stream failed), if one did."""
        return self._failure

    def _has(self, slot: int, index: int) -> bool:
        return bool(self._echo_index[slot] >= index)

    def _fix_offset(self) -> None:
        """Once both streams' schedules have been watched for a while (past the start-up),
        fix the offset (called with the lock held). The writer prepares block n as block n - 1
        is taken; the newest capture block then is the one that arrived by then, so block
        n - offset has arrived with `margin_blocks` to spare if offset =
        ceil((capture_origin - writer_origin) / 10 ms) + 1 + margin."""
        if self._observed < OBSERVE_BLOCKS or self._capture_origin == float("inf"):
            return
        lead = (self._capture_origin - self._writer_origin) / BLOCK_S
        self._offset = int(np.ceil(lead - 1e-6)) + 1 + self.margin_blocks
        self._stats.offset_blocks = self._offset

    def close(self) -> None:
        """Stop both threads (each frees its stream); at most one block later."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)


class Room:
    """The assistant's output, through a room, into its microphone (see the module's doc).

    The room runs in a process of its own (`python -m harness.room`; its threads at
    PulseAudio's priority where allowed), so the app under test, in this process or not,
    cannot starve it by holding the GIL. This object is its handle:
    - `echo_enabled` may be switched at any time (the next block obeys once the assignment
      returns). False: the microphone hears only the clips and the noise.
    - `say()` starts a clip; `said_at` lists the monotonic time (the system-wide clock both
      processes read) at which each clip's first block was handed to PulseAudio; it reaches
      the microphone about `PLAY_BUFFER_MS` later. `wait_until_said()` waits for all clips.
    - `close()` (or leaving a `with` block) stops the room and its process.
    """

    def __init__(self, microphone: VirtualMicrophone, acoustics: Acoustics | None = None,
                 echo_enabled: bool = True, history_s: float = HISTORY_S,
                 play_buffer_ms: int = PLAY_BUFFER_MS, margin_blocks: int = MARGIN_BLOCKS,
                 start_timeout: float = 20.0) -> None:
        self.microphone = microphone  # vmic must exist, and stay fed, while the room runs
        self.acoustics = acoustics or Acoustics()
        self.taps = self.acoustics.impulse_response()
        self.said_at: list[float] = []
        self._delay_ms: float | None = None
        self._requests = threading.Lock()  # one request at a time
        self._events = threading.Lock()
        self._replies: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._pending: set[int] = set()
        self._next_clip = 0
        self._idle = threading.Event()
        self._idle.set()
        self._closed = False
        self._echo_enabled = echo_enabled
        # A child started with subprocess, not multiprocessing: spawning would re-import the
        # parent's main module (any script without a __main__ guard would start rooms for
        # ever), and forking a process with audio threads is not safe.
        ours, theirs = socket.socketpair()
        with ours, theirs:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "harness.room", str(theirs.fileno())], cwd=REPO,
                pass_fds=(theirs.fileno(),))
            self._conn = Connection(ours.detach())
        self._conn.send({"acoustics": self.acoustics, "echo_enabled": echo_enabled,
                         "history_s": history_s, "play_buffer_ms": play_buffer_ms,
                         "margin_blocks": margin_blocks, "start_timeout": start_timeout})
        self._receiver = threading.Thread(target=self._receive, name="room-events",
                                          daemon=True)
        self._receiver.start()
        try:
            self.started: RoomStats = self._reply(start_timeout + 10)
        except HarnessError:
            self.close()
            raise

    # -- switches and clips ----------------------------------------------------------------

    @property
    def echo_enabled(self) -> bool:
        return self._echo_enabled

    @echo_enabled.setter
    def echo_enabled(self, on: bool) -> None:
        self._call("set_echo", bool(on))  # in force from the next block, when this returns
        self._echo_enabled = bool(on)

    def say(self, samples: np.ndarray, sample_rate: int = ROOM_RATE, gain_db: float = 0.0,
            relative_to_echo_db: float | None = None) -> float:
        """Start mixing `samples` into the microphone now (over whatever else plays); returns
        the gain in dB applied. With `relative_to_echo_db`, the clip's voiced RMS is set to
        the recent echo's voiced RMS plus that many dB (`gain_db` is then ignored; raises
        HarnessError if there was no echo in the last `ECHO_WINDOW_S`)."""
        clip = resample_to_room(samples, sample_rate)
        with self._events:
            ident = self._next_clip
            self._next_clip += 1
            self._pending.add(ident)
            self._idle.clear()
        try:
            gain: float = self._call("say", ident, clip, gain_db, relative_to_echo_db)
        except HarnessError:
            self._finished(ident)
            raise
        return gain

    def wait_until_said(self, timeout: float = 60.0) -> bool:
        """True once every clip has been handed to PulseAudio (heard ~30 ms later)."""
        return self._idle.wait(timeout)

    # -- levels ----------------------------------------------------------------------------

    def echo_level_dbfs(self) -> float | None:
        """Voiced RMS (dBFS) of the echo, before noise, over the last `ECHO_WINDOW_S`
        seconds; None if there was none. Measured whether or not `echo_enabled`."""
        level: float | None = self._call("echo_level_dbfs")
        return level

    def echo_voiced_s(self, window_s: float = ECHO_WINDOW_S) -> float:
        """Seconds of the last `window_s` (at most `ECHO_WINDOW_S`) in which the echo was
        voiced (within 30 dB of its loudest block): wait on this before a
        `relative_to_echo_db` clip."""
        seconds: float = self._call("echo_voiced_s", window_s)
        return seconds

    def echo_of(self, reference: np.ndarray, sample_rate: int = ROOM_RATE) -> np.ndarray:
        """The noiseless echo this room makes of `reference` (16 kHz), including the delay."""
        from scipy.signal import oaconvolve

        echo: np.ndarray = oaconvolve(resample_to_room(reference, sample_rate), self.taps)
        return echo.astype(np.float32)

    def gain_db_for(self, clip: np.ndarray, reference: np.ndarray,
                    reference_rate: int = ROOM_RATE, relative_db: float = 0.0,
                    clip_rate: int = ROOM_RATE) -> float:
        """The `gain_db` for `say(clip)` that puts the clip's voiced RMS `relative_db` above
        that of the echo of `reference` (what the app plays) in this room."""
        echo = voiced_rms(self.echo_of(reference, reference_rate))
        level = voiced_rms(resample_to_room(clip, clip_rate))
        if echo <= 0 or level <= 0:
            raise HarnessError("a silent clip or reference has no level to match")
        return float(20 * np.log10(echo / level) + relative_db)

    # -- what went in ----------------------------------------------------------------------

    def history(self, seconds: float = HISTORY_S) -> np.ndarray:
        """The last `seconds` of what went into the microphone (echo, noise, clips)."""
        mix: np.ndarray = self._call("history", seconds)
        return mix

    def captured(self, seconds: float = HISTORY_S) -> np.ndarray:
        """The last `seconds` of what the room heard from vsink (16 kHz, before the room)."""
        heard: np.ndarray = self._call("captured", seconds)
        return heard

    def stats(self) -> RoomStats:
        """Counters and CPU so far (`late_blocks` > 0: the machine stalled the room; `error`:
        a stream failed, and every other call now raises HarnessError)."""
        stats: RoomStats = self._call("stats")
        return stats

    # -- the delay -------------------------------------------------------------------------

    def measure_delay(self, probe_s: float = 0.3, level_dbfs: float = -20.0,
                      timeout: float = 5.0) -> float:
        """Milliseconds from a sound playing in vsink to its echo's direct path playing in
        vmic: the room's part of the end-to-end delay, `delay_ms` included. Plays a noise
        probe into vsink with pacat (vsink should otherwise be quiet) and records
        vmic.monitor with parec at the room's own 10 ms fragments, so the two recordings'
        arrival times differ by the room's delay alone. The echo is on while it measures.
        About 1 s. The delay is fixed once the room has started (see the module's doc)."""
        delay: float = self._call("measure_delay", probe_s, level_dbfs, timeout,
                                  timeout=4 * timeout + 5)
        self._delay_ms = delay
        return delay

    def measured_delay_ms(self) -> float:
        """The last `measure_delay()` (measuring now if there was none)."""
        return self._delay_ms if self._delay_ms is not None else self.measure_delay()

    # -- the process -----------------------------------------------------------------------

    def _call(self, name: str, *args: Any, timeout: float = 30.0) -> Any:
        with self._requests:
            if self._closed:
                raise HarnessError("the room is closed")
            try:
                self._conn.send((name, *args))
            except (OSError, ValueError) as error:
                raise HarnessError(f"the room's process is gone: {error}") from error
            return self._reply(timeout)

    def _reply(self, timeout: float) -> Any:
        try:
            kind, value = self._replies.get(timeout=timeout)
        except queue.Empty:
            raise HarnessError(f"the room's process did not answer in {timeout} s") from None
        if kind == "error":
            raise HarnessError(f"the room: {value}")
        return value

    def _receive(self) -> None:
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                self._replies.put(("error", "its process has ended"))
                with self._events:
                    self._pending.clear()
                    self._idle.set()
                return
            if message[0] == "said":
                with self._events:
                    self.said_at.append(message[2])
            elif message[0] == "done":
                self._finished(message[1])
            else:
                self._replies.put((message[0], message[1]))

    def _finished(self, ident: int) -> None:
        with self._events:
            self._pending.discard(ident)
            if not self._pending:
                self._idle.set()

    def close(self) -> None:
        """Stop the room (its threads free their streams) and end its process."""
        with self._requests:
            if not self._closed:
                self._closed = True
                with contextlib.suppress(OSError, ValueError, HarnessError):
                    self._conn.send(("close",))
                    self._reply(10)
        end_process(self._process, 5)
        self._conn.close()
        self._receiver.join(5)

    def __enter__(self) -> Room:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_REQUESTS = frozenset({"say", "echo_level_dbfs", "echo_voiced_s", "history", "captured",
                       "stats", "measure_delay", "set_echo"})


def _serve(conn: Connection) -> None:
    """The room's process: take the settings, start the engine, answer the parent until it
    says "close" (or goes away). Events (a clip started, a clip done) go out through a sender
    thread, so the writer never waits on the socket."""
    settings = conn.recv()
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, THREAD_NICE)
    sending = threading.Lock()
    events: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()

    def send(message: tuple[Any, ...]) -> None:
        with sending:
            conn.send(message)

    def sender() -> None:
        while (event := events.get()) is not None:
            with contextlib.suppress(OSError, ValueError):
                send(event)

    threading.Thread(target=sender, name="room-sender", daemon=True).start()
    try:
        engine = _Engine(notify=events.put, **settings)
    except BaseException as error:
        send(("error", f"{error}"))
        return
    try:
        send(("reply", engine.stats()))
        while True:
            try:
                request = conn.recv()
            except (EOFError, OSError):
                return  # the parent is gone
            if request[0] == "close" or request[0] not in _REQUESTS:
                return
            if engine.failure is not None and request[0] != "stats":
                send(("error", f"it has failed: {engine.failure!r}"))
                continue
            try:
                result = getattr(engine, request[0])(*request[1:])
            except Exception as error:
                send(("error", f"{error}"))
            else:
                send(("reply", result))
    finally:
        engine.close()
        events.put(None)
        with contextlib.suppress(OSError, ValueError):
            send(("reply", None))  # the parent's close() waits for this

def _timeline(arrivals: list[tuple[int, float]]) -> float:
    """The monotonic time of sample 0 of a stream whose block ending at sample `end` arrived
    at `at`: the earliest-arriving block's view (late arrivals are scheduling jitter)."""
    if not arrivals:
        raise HarnessError("no blocks arrived")
    return min(at - end / ROOM_RATE for end, at in arrivals)


def _onset(recording: np.ndarray, clip: np.ndarray) -> int:
    from scipy.signal import correlate

    if recording.size < clip.size:
        raise HarnessError("the recording is shorter than the probe")
    correlation = correlate(recording, clip, mode="valid", method="fft")
    return int(np.argmax(np.abs(correlation)))


if __name__ == "__main__":  # the room's own process (see Room): python -m harness.room FD
    # Through the package, so what it sends pickles as harness.room's classes, not __main__'s.
    from harness.room import _serve as serve

    serve(Connection(int(sys.argv[1])))
