"""Real desktop services for tests on a headless machine: a private PulseAudio with a null sink
behind an ALSA `file` tap, so every frame PortAudio plays lands in a file, paced in real time;
where the logs go, and reading the tap back.

Every process is started here and stopped by its own pid.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# One log file per program the harness starts (and the tests' own logs): $TEST_LOGS or logs/.
LOGS = Path(os.environ.get("TEST_LOGS") or REPO / "logs")


class HarnessError(RuntimeError):
    """A service the tests or the benchmarks need did not start, or a program is missing; the
    message says what to install or which log to read. A test fails with it, never skips."""


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, step: float = 0.01) -> bool:
    """Poll `predicate` until true or `timeout`; the polling is the wait, not a guess."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def end_process(process: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    """Terminate `process` if it runs, and kill it if it has not ended within `timeout`."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Processes:
    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{Path(args[0]).name}.log").open("ab")
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, **kwargs)  # type: ignore[call-overload]
        self.started.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.started):
            end_process(process, 3)


def missing_tools(*names: str) -> list[str]:
    return [n for n in names if shutil.which(n) is None]


def start_pulse_with_tap(procs: Processes, workdir: Path) -> Path:
    """PulseAudio (null sink `vsink`, 24 kHz float mono) behind an ALSA tap; returns the tap
    file path. Sets XDG_RUNTIME_DIR, ALSA_CONFIG_PATH and AUDIO_TAP_FILE for this process."""
    runtime = workdir / "xdg"
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    os.environ.pop("PULSE_SERVER", None)
    procs.start(["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1",
                 "--disallow-exit", "--log-target=stderr",
                 "--load=module-null-sink sink_name=vsink format=float32le rate=24000 channels=1",
                 "--load=module-native-protocol-unix"])
    if not wait_for(lambda: subprocess.run(["pactl", "info"], capture_output=True)
                    .returncode == 0, timeout=15):
        raise HarnessError(f"PulseAudio did not start; see {procs.logs / 'pulseaudio.log'}")
    # An idle null sink renders 2 s blocks, so a new stream stalls and loses its first frames;
    # a silent low-latency stream keeps the sink at about 1 ms.
    procs.start(["pacat", "--playback", "-d", "vsink", "--latency-msec=5",
                 "--format=float32le", "--rate=24000", "--channels=1", "--raw", "/dev/zero"])

    def sink_latency_us() -> int:
        out = subprocess.run(["pactl", "list", "sinks"], capture_output=True, text=True).stdout
        match = re.search(r"Latency: (\d+) usec", out)
        return int(match.group(1)) if match else 10**9

    if not wait_for(lambda: sink_latency_us() < 20_000, timeout=10, step=0.05):
        raise HarnessError("the PulseAudio null sink did not settle to a low latency")
    # 99-pulse.conf re-points "default" after ~/.asoundrc, so use a copy of alsa.conf that
    # loads only the pulse plugin's definitions, then our tap as the default device.
    stock = Path("/usr/share/alsa/alsa.conf").read_text()
    if '"/etc/alsa/conf.d"' not in stock:
        raise HarnessError("unexpected /usr/share/alsa/alsa.conf: no /etc/alsa/conf.d hook")
    conf = workdir / "alsa.conf"
    conf.write_text(stock.replace('"/etc/alsa/conf.d"',
                                  '"/usr/share/alsa/alsa.conf.d/50-pulseaudio.conf"')
                    + (HERE / "alsa-tap.conf").read_text())
    os.environ["ALSA_CONFIG_PATH"] = str(conf)
    tap = workdir / "tap.raw"
    os.environ["AUDIO_TAP_FILE"] = str(tap)
    return tap


def read_tap(path: Path) -> np.ndarray:
    """Every frame played through the ALSA tap since the file was last removed."""
    return np.fromfile(path, dtype="<f4") if path.exists() else np.zeros(0, np.float32)


def no_audio_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a machine with no sound server and no sound card, for a `voice-agent`
    subprocess: PortAudio finds no device."""
    env = dict(os.environ)
    env.pop("ALSA_CONFIG_PATH", None)
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env.update(XDG_RUNTIME_DIR=str(runtime), PULSE_SERVER="unix:/nonexistent")
    return env


def reinitialise_portaudio() -> None:
    """PortAudio reads the ALSA configuration when it initialises."""
    import sounddevice as sd

    sd._terminate()
    sd._initialize()


@contextlib.contextmanager
def read_only_mount(folder: Path, fill: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """`folder` on a small tmpfs mounted read-only (chmod does not stop root; mounting needs
    root, which CI has), after `fill(folder)` has put what it should hold there."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], check=True)
    try:
        if fill is not None:
            fill(folder)
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
