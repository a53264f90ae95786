"""Run as a program (its own PulseAudio, so the tests' shared one is not touched): play a
long tone, kill -9 the sound server mid-tone, start a new one, queue more words. Prints one
line per step for tests/test_audio_recovery.py to check."""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from agent.audio.events import AudioChunk, PlaybackEvent, PlaybackKind
from agent.audio.player import AudioPlayer
from harness.services import Processes, reinitialise_portaudio, start_pulse_with_tap


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="voice-agent-restart-"))
    procs = Processes(work)
    try:
        tap = start_pulse_with_tap(procs, work)
        reinitialise_portaudio()
        events: list[PlaybackEvent] = []
        changed = threading.Condition()

        def record(event: PlaybackEvent) -> None:
            with changed:
                events.append(event)
                changed.notify_all()

        def wait_for(kind: PlaybackKind, count: int = 1, timeout: float = 15.0) -> bool:
            with changed:
                return changed.wait_for(
                    lambda: sum(e.kind is kind for e in events) >= count, timeout)

        n = np.arange(24_000 * 3)
        tone = (0.3 * np.sin(2 * np.pi * 440 * n / 24_000)).astype(np.float32)
        player = AudioPlayer()
        player.add_listener(record)
        player.start()
        player.enqueue(AudioChunk(tone, 0, 0))
        assert wait_for(PlaybackKind.STARTED)
        time.sleep(0.5)  # mid-tone
        server = next(p for p in procs.started if "pulseaudio" in str(p.args))
        server.kill()
        server.wait()
        print("server killed", flush=True)
        print(f"error reported: {wait_for(PlaybackKind.ERROR)} failed: {player.failed}",
              flush=True)
        for pid_file in (work / "xdg" / "pulse").glob("pid"):
            pid_file.unlink()  # left by the killed server; a new one refuses to start else
        tap.unlink(missing_ok=True)
        start_pulse_with_tap(procs, work)
        print("server restarted", flush=True)
        words = tone[:12_000].copy()
        player.enqueue(AudioChunk(words, 0, 1))
        print(f"reopened: {not player.failed}", flush=True)
        finished = wait_for(PlaybackKind.FINISHED, count=2, timeout=15)
        played = np.fromfile(tap, dtype="<f4") if tap.exists() else np.zeros(0, np.float32)
        loud = int((np.abs(played) > 0.1).sum())
        print(f"words played: {finished} samples at the new tap: {loud}", flush=True)
        player.close()
        return 0
    finally:
        procs.stop()


if __name__ == "__main__":
    sys.exit(main())
