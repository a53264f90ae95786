"""What the benchmarks share: a private PulseAudio behind the ALSA tap, the virtual microphone
and the headless desktop, started once per process from the top-level `harness` package (the
tests' services too), and small statistics helpers."""

from __future__ import annotations

import atexit
import os
import statistics
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from harness.microphone import VirtualMicrophone

if TYPE_CHECKING:
    from harness.room import Acoustics, Room
from harness.services import Processes, reinitialise_portaudio, start_pulse_with_tap


def start_audio() -> Path:
    """Start the tapped sound server for this process; stopped at exit."""
    return _start_audio()[0]


def start_audio_and_microphone() -> tuple[Path, VirtualMicrophone]:
    """The tapped sound server and the virtual microphone on it; stopped at exit."""
    tap, procs = _start_audio()
    microphone = VirtualMicrophone(procs)
    atexit.register(microphone.close)
    reinitialise_portaudio()  # PortAudio lists the new source
    return tap, microphone


def start_audio_and_room(acoustics: Acoustics | None = None
                         ) -> tuple[Path, VirtualMicrophone, Room]:
    """The tapped sound server, the virtual microphone, and a room that brings what is played
    back into the microphone (harness.room, with `acoustics` or its defaults); stopped at
    exit."""
    from harness.room import Room

    tap, procs = _start_audio()
    microphone = VirtualMicrophone(procs)
    atexit.register(microphone.close)
    reinitialise_portaudio()
    room = Room(microphone, acoustics)
    atexit.register(room.close)
    return tap, microphone, room


def _start_audio() -> tuple[Path, Processes]:
    workdir = Path(tempfile.mkdtemp(prefix="voice-agent-bench-"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    procs = Processes(workdir)
    atexit.register(procs.stop)
    tap = start_pulse_with_tap(procs, workdir)
    reinitialise_portaudio()
    return tap, procs


def start_desktop() -> None:
    """Xvfb, a session bus with dunst, and the trayer tray host, for this process and its
    children (DISPLAY, DBUS_SESSION_BUS_ADDRESS); stopped at exit."""
    from harness.desktop import start_session_bus, start_tray_host, start_xvfb

    workdir = Path(tempfile.mkdtemp(prefix="voice-agent-bench-desktop-"))
    procs = Processes(workdir)
    atexit.register(procs.stop)
    start_xvfb(procs)
    start_session_bus(procs)
    start_tray_host(procs)


def summary(values: list[float], unit: str = "ms", scale: float = 1000.0) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return (f"min {scale * ordered[0]:7.1f}  median {scale * statistics.median(ordered):7.1f}  "
            f"p90 {scale * p90:7.1f}  max {scale * ordered[-1]:7.1f} {unit}  (n={len(values)})")
