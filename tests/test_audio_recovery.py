"""The sound server dies during playback and comes back: the agent says so, then speaks
again without a restart (a real PulseAudio, killed with SIGKILL, in a process of its own)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.audio


def test_playback_recovers_after_the_sound_server_is_killed_and_restarted() -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("XDG_RUNTIME_DIR", "ALSA_CONFIG_PATH", "AUDIO_TAP_FILE")}
    done = subprocess.run([sys.executable, "-m", "harness.sound_server_restart"],
                          env=env, capture_output=True, text=True, timeout=120)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr[-3000:]
    assert "error reported: True failed: True" in out, out
    assert "reopened: True" in out, out
    line = next(row for row in out.splitlines() if row.startswith("words played:"))
    assert "words played: True" in line, out
    assert int(line.rsplit(" ", 1)[1]) > 12_000 // 2, out  # the new words reached the new tap
