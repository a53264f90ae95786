"""(b) Time to first audio for a 40-word paragraph: our pipeline (first clause synthesised and
played while the rest is synthesised) against the naive way (synthesise the whole paragraph,
then play it). Both play through the real PortAudio stream (ALSA tap); the clock stops when
the first sample is handed to the device (the STARTED event), the same point for both.

    python -m bench.first_audio [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from agent.audio.events import AudioChunk, PlaybackEvent, PlaybackKind
from agent.audio.player import AudioPlayer
from agent.speech import SpeechPipeline
from bench.harness import start_audio

PARAGRAPH = (
    "Sure, here is the plan for tomorrow. In the morning you have a meeting with the design "
    "team at nine, then a call with the supplier. After lunch, please review the budget and "
    "send your notes to Anna before five."
)


def first_audio_pipeline(engine, voice: str) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    started = threading.Event()
    player = AudioPlayer()
    pipeline = SpeechPipeline(engine, player, voice=voice).start()
    marks: dict[str, float] = {}

    def on_event(event: PlaybackEvent) -> None:
        if event.kind is PlaybackKind.STARTED and "first" not in marks:
            marks["first"] = event.at
            started.set()

    pipeline.add_listener(on_event)
    begin = time.monotonic()
    pipeline.say(PARAGRAPH)
    assert started.wait(120)
    pipeline.wait_until_done(300)
    total = time.monotonic() - begin
    pipeline.close()
    return marks["first"] - begin, total


def first_audio_whole(engine, voice: str) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    started, drained = threading.Event(), threading.Event()
    marks: dict[str, float] = {}

    def on_event(event: PlaybackEvent) -> None:
        if event.kind is PlaybackKind.STARTED:
            marks["first"] = event.at
            started.set()
        elif event.kind is PlaybackKind.DRAINED:
            drained.set()

    with AudioPlayer() as player:
        player.add_listener(on_event)
        begin = time.monotonic()
        player.enqueue(AudioChunk(engine.synthesize(PARAGRAPH, voice), 0, 0))
        assert started.wait(120) and drained.wait(300)
        total = time.monotonic() - begin
    return marks["first"] - begin, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    start_audio()
    from agent.tts import kokoro, models

    engine = kokoro.load_engine(models.resolve("packaged"))
    voice = "jm_kumo"
    engine.warm_up(voice)
    ours, naive = [], []
    for _ in range(args.rounds):  # alternate, so drifting machine load hits both alike
        naive.append(first_audio_whole(engine, voice))
        ours.append(first_audio_pipeline(engine, voice))
    words = len(PARAGRAPH.split())
    first_ours = statistics.median(o[0] for o in ours)
    first_naive = statistics.median(n[0] for n in naive)
    print(f"{words}-word paragraph, {args.rounds} rounds, median seconds")
    print(f"{'':28}{'ours':>8}{'baseline':>10}")
    print(f"{'say -> first audio':28}{first_ours:8.2f}{first_naive:10.2f}"
          f"   ratio {first_ours / first_naive:.2f}")
    print(f"{'say -> last audio queued':28}{statistics.median(o[1] for o in ours):8.2f}"
          f"{statistics.median(n[1] for n in naive):10.2f}")


if __name__ == "__main__":
    main()
