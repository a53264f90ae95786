"""A virtual microphone on the tests' private PulseAudio.

A second null sink, `vmic` (16 kHz float mono), whose monitor becomes the default source: what
is played into `vmic` is what a recording hears. A feeder (`pacat` reading a pipe that a
thread keeps writing) plays silence into it all the time: an idle null sink renders 2 s blocks
and a new recording would get nothing for about 2 s. `say()` splices samples into that feed
at once, so a test knows when the "speaker" starts (within the feed's buffering, about 64 ms
of pipe plus pacat's 20 ms); `play_into_mic()` plays a file or samples with `paplay -d vmic`.

Where the recorder must point: the tests' ALSA config makes "default" the output tap (an
ALSA `file` plugin over "pulse"). Recording from "default" would append the microphone's
samples to the playback tap file, so the recorder uses the ALSA device "pulse", which
reaches PulseAudio's default source (here `vmic.monitor`): `VirtualMicrophone.device`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import queue
import subprocess
import tempfile
import threading
import wave
from pathlib import Path

import numpy as np

from harness.services import HarnessError, Processes, wait_for

MIC_RATE = 16_000
FEED_BLOCK = 160  # 10 ms per write: small enough to splice speech in at once
PIPE_BYTES = 4096  # the smallest pipe: 1024 float samples (64 ms) between us and pacat
F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Linux), named in Python 3.10+ only on some builds

__all__ = ["MIC_RATE", "VirtualMicrophone", "clip_offset", "play_into_mic"]


class VirtualMicrophone:
    """The `vmic` null sink as the default source, fed by a thread (stop with `close()`)."""

    device = "pulse"  # the ALSA PCM that records PulseAudio's default source under the tests

    def __init__(self, procs: Processes) -> None:
        _pactl("load-module", "module-null-sink", "sink_name=vmic", f"rate={MIC_RATE}",
               "channels=1", "format=float32le",
               "sink_properties=device.description=Virtual_microphone")
        # A new sink must not take over the speakers: the app's output goes to vsink.
        _pactl("set-default-sink", "vsink")
        _pactl("set-default-source", "vmic.monitor")
        self._feeder = procs.start(
            ["pacat", "--playback", "-d", "vmic", "--latency-msec=20", "--format=float32le",
             f"--rate={MIC_RATE}", "--channels=1", "--raw"], stdin=subprocess.PIPE)
        assert self._feeder.stdin is not None
        self._pipe = self._feeder.stdin
        fcntl.fcntl(self._pipe.fileno(), getattr(fcntl, "F_SETPIPE_SZ", F_SETPIPE_SZ),
                    PIPE_BYTES)
        self._speech: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._feed, name="virtual-mic", daemon=True)
        self._thread.start()
        if not wait_for(lambda: _sink_latency_us("vmic") < 40_000, timeout=10, step=0.05):
            raise HarnessError("the virtual microphone's null sink did not settle")

    def say(self, samples: np.ndarray, sample_rate: int = MIC_RATE) -> None:
        """Start playing `samples` into the microphone now (after what is still queued)."""
        clip = np.asarray(samples, np.float32)
        if sample_rate != MIC_RATE:
            from scipy.signal import resample_poly

            divisor = np.gcd(sample_rate, MIC_RATE)
            clip = resample_poly(clip, MIC_RATE // divisor, sample_rate // divisor).astype(
                np.float32)
        self._idle.clear()
        self._speech.put(clip)

    def wait_until_said(self, timeout: float = 60.0) -> bool:
        """True once every queued clip has gone into the feed (it plays within ~0.1 s)."""
        return self._idle.wait(timeout)

    def _feed(self) -> None:
        silence = np.zeros(FEED_BLOCK, np.float32).tobytes()
        current, position = np.zeros(0, np.float32), 0
        while not self._stop.is_set():
            if position >= current.size:
                try:
                    current, position = self._speech.get_nowait(), 0
                except queue.Empty:
                    self._idle.set()
                    current, position = np.zeros(0, np.float32), 0
            if position < current.size:
                block = current[position:position + FEED_BLOCK]
                position += block.size
                data = block.tobytes()
            else:
                data = silence
            try:
                self._pipe.write(data)  # blocks while the pipe is full: pacat paces us
                self._pipe.flush()
            except (BrokenPipeError, ValueError):
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(BrokenPipeError):
            self._pipe.close()
        self._feeder.terminate()
        self._feeder.wait(5)


def _pactl(*args: str) -> str:
    result = subprocess.run(["pactl", *args], capture_output=True, text=True, timeout=10)
    if result.returncode != 0:
        raise HarnessError(f"pactl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def _sink_latency_us(name: str) -> int:
    out = _pactl("list", "sinks")
    for section in out.split("Sink #")[1:]:
        if f"Name: {name}\n" in section:
            for line in section.splitlines():
                if "Latency:" in line:
                    return int(line.split()[1])
    return 10**9


def play_into_mic(path_or_samples: str | Path | np.ndarray, sample_rate: int = MIC_RATE,
                  wait: bool = True) -> subprocess.Popen[bytes]:
    """Play a sound file (or samples) into the virtual microphone with paplay."""
    if isinstance(path_or_samples, np.ndarray):
        descriptor, name = tempfile.mkstemp(suffix=".wav")
        os.close(descriptor)
        path = Path(name)
        write_wav(path, path_or_samples, sample_rate)
    else:
        path = Path(path_or_samples)
    player = subprocess.Popen(["paplay", "-d", "vmic", str(path)])
    if wait:
        player.wait(120)
        if isinstance(path_or_samples, np.ndarray):
            path.unlink(missing_ok=True)
    return player


def write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())


def clip_offset(recording: np.ndarray, clip: np.ndarray) -> int:
    """Where `clip` starts in `recording`, in samples: negative when the recording began after
    the clip had started (that many samples of it were lost)."""
    from scipy.signal import correlate

    correlation = correlate(recording, clip, mode="full", method="fft")
    return int(np.argmax(correlation)) - (clip.size - 1)

