"""The soak's short version (`python -m bench.soak` runs 300 turns): every kind of turn and
interrupt, typed and spoken, through the core the tray agent runs, with the embedded LLM, the
real Kokoro, the real PortAudio stream checked at the ALSA tap and the virtual microphone."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.microphone import VirtualMicrophone
from harness.soak import Soak, SoakPlayer, describe

pytestmark = [pytest.mark.audio, pytest.mark.slow]  # Kokoro, Whisper and the embedded LLM

EVERY_KIND = [("spoken", "finish"), ("typed", "finish"), ("typed", "before-token"),
              ("spoken", "streaming"), ("typed", "audio"), ("typed", "fade"),
              ("typed", "overlap"), ("typed", "barge-in-by-voice"), ("typed", "audio")]


def test_a_short_soak_keeps_every_promise(audio_tap: Path, virtual_mic: VirtualMicrophone,
                                          tmp_path: Path) -> None:
    report = Soak(virtual_mic, audio_tap, seed=1, workdir=tmp_path).run(0, script=EVERY_KIND)
    print("\n" + describe(report))
    assert report.problems(turn_bound_s=60.0, interrupt_bound_s=1.0) == []
    assert report.checked_interrupts >= 5, "the interrupts did not land while replying"
    assert report.aligned[0] == report.aligned[1] > 0, "chunks missing from the tap"
    assert sum(1 for t in report.turns if t.how == "spoken" and t.turn) >= 2


class DeafToCuts(SoakPlayer):
    """A broken player that ignores interrupts: the soak's tap check must catch it."""

    def cut(self, drop_below_turn: int) -> None:
        pass


def test_the_soak_catches_audio_played_after_an_interrupt(
        audio_tap: Path, virtual_mic: VirtualMicrophone, tmp_path: Path) -> None:
    soak = Soak(virtual_mic, audio_tap, seed=1, workdir=tmp_path, player_class=DeafToCuts)
    report = soak.run(0, script=[("typed", "finish"), ("typed", "audio"), ("typed", "audio")])
    assert report.loud_after_interrupt, describe(report)
