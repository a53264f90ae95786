"""(a) Cut latency: from the interrupt command to the last non-zero sample at the device.

Ours: AudioPlayer.cut() (a fade of fade_ms, then zeros). Baseline, in the same run: the floor
of this audio path, a bare callback stream that goes to zeros at once when a flag is set (no
fade, no queue, no events). Both are checked at the ALSA tap; the DAC time comes from
PortAudio's outputBufferDacTime for the block that saw the cut.

    python -m bench.cut_latency [--trials 30] [--blocksizes 256,512,1024]
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from typing import Any

import numpy as np

from agent.audio.events import AudioChunk, PlaybackKind
from agent.audio.player import AudioPlayer
from bench.harness import start_audio, summary

SR = 24_000


def tone(seconds: float) -> np.ndarray:
    n = np.arange(int(seconds * SR))
    return (0.4 * np.sin(2 * np.pi * 440 * n / SR) + 0.05).astype(np.float32)


def measure_player(tap: Any, blocksize: int, fade_ms: float) -> tuple[float, float, int]:
    """(command -> callback saw it, command -> last non-zero sample at the DAC, samples after
    the cut block at the tap)"""
    tap.unlink(missing_ok=True)
    cut_done = threading.Event()
    with AudioPlayer(blocksize=blocksize, fade_ms=fade_ms) as player:
        player.add_listener(lambda e: e.kind is PlaybackKind.CUT and cut_done.set())
        player.enqueue(AudioChunk(tone(2.0), 0, 0))
        time.sleep(random.uniform(0.3, 0.6))  # a random moment in the middle of speech
        commanded_wall, commanded_stream = time.monotonic(), player.stream_time
        player.cut(1)
        assert cut_done.wait(2)
        assert player.last_cut is not None
        seen_wall, dac, frame = player.last_cut
        silence_at_dac = dac + (player.fade_samples - 1) / SR - commanded_stream
        time.sleep(player.latency + 0.05)  # let the tail reach the tap before closing
    captured = np.fromfile(tap, dtype="<f4")
    tail = int(np.flatnonzero(captured)[-1]) + 1 - frame
    return seen_wall - commanded_wall, silence_at_dac, tail


def measure_floor(blocksize: int) -> tuple[float, float]:
    """The bare stream: zeros from the first block that sees the flag."""
    import sounddevice as sd

    state: dict[str, Any] = {"cut": False, "seen": None}

    def callback(out: Any, frames: int, timeinfo: Any, status: Any) -> None:
        if state["cut"]:
            out.fill(0)
            if state["seen"] is None:
                state["seen"] = (time.monotonic(), timeinfo.outputBufferDacTime)
        else:
            out[:, 0] = 0.3

    with sd.OutputStream(samplerate=SR, channels=1, dtype="float32", blocksize=blocksize,
                         latency="low", callback=callback) as stream:
        time.sleep(random.uniform(0.3, 0.6))
        wall, stream_time = time.monotonic(), stream.time
        state["cut"] = True
        while state["seen"] is None:
            time.sleep(0.001)
        seen_wall, dac = state["seen"]
    return seen_wall - wall, dac - stream_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--blocksizes", default="256,512,1024")
    parser.add_argument("--fade-ms", type=float, default=3.0)
    args = parser.parse_args()
    tap = start_audio()
    for blocksize in (int(b) for b in args.blocksizes.split(",")):
        ours = [measure_player(tap, blocksize, args.fade_ms) for _ in range(args.trials)]
        floor = [measure_floor(blocksize) for _ in range(args.trials)]
        print(f"\nblocksize {blocksize} ({1000 * blocksize / SR:.1f} ms per block), "
              f"fade {args.fade_ms} ms")
        print(f"  command -> callback  ours      {summary([o[0] for o in ours])}")
        print(f"                       baseline  {summary([f[0] for f in floor])}")
        print(f"  command -> silence   ours      {summary([o[1] for o in ours])}")
        print(f"    at the DAC         baseline  {summary([f[1] for f in floor])}")
        tails = sorted({o[2] for o in ours})
        print(f"  tap: last non-zero sample, counted from the cut block: {tails} "
              f"(fade = {round(args.fade_ms * SR / 1000)} samples)")


if __name__ == "__main__":
    main()
