"""Conversation latency with the embedded model (SmolLM2 in llama.cpp), the real Kokoro model
and the real audio stream (ALSA tap), each beside the naive way in the same run.

- Enter -> first audio: submit() to the first sample handed to the device.
  Baseline: wait for the whole reply text, then synthesise it whole and play it.
- First token -> first audio: the first reply text to the first sample.
- Interrupt -> generation stopped: with the real llama.cpp server on loopback, from
  interrupt() until the server process stops using CPU. Baseline: a client that lets the
  reply finish (what a blocking client does), i.e. the time the server keeps generating.

    python -m bench.conversation [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from agent.audio.events import PlaybackEvent, PlaybackKind
from agent.audio.player import AudioPlayer
from agent.config import DEFAULT_SYSTEM_PROMPT, ConversationConfig, LLMConfig
from agent.conversation import Conversation
from agent.events import AgentEvent, ReplyDelta
from agent.history import History
from agent.llm import make_backend
from agent.speech import SpeechPipeline
from agent.tts.base import SAMPLE_RATE
from bench.harness import start_audio

QUESTIONS = ["What is the capital of France?", "How do I boil an egg?",
             "Why is the sky blue?", "Name a good book to read."]


class Marks:
    def __init__(self) -> None:
        self.audio = threading.Event()
        self.reset()

    def reset(self) -> None:
        self.first_text = 0.0
        self.first_audio = 0.0
        self.audio.clear()
        self.playback: list[PlaybackEvent] = []

    def on_agent(self, event: AgentEvent) -> None:
        if isinstance(event, ReplyDelta) and event.text and not self.first_text:
            self.first_text = time.monotonic()

    def on_playback(self, event: PlaybackEvent) -> None:
        self.playback.append(event)
        if event.kind is PlaybackKind.STARTED and not self.first_audio:
            self.first_audio = event.at
            self.audio.set()


@contextlib.contextmanager
def spoken_conversation(engine, llm: LLMConfig,  # type: ignore[no-untyped-def]
                        prompt: str) -> Iterator[tuple[Conversation, Marks]]:
    """A conversation speaking through the real stream, with its timing marks; on exit the
    reply is interrupted and everything is closed."""
    speech = SpeechPipeline(engine, AudioPlayer(), voice="jm_kumo").start()
    marks = Marks()
    speech.add_listener(marks.on_playback)
    with tempfile.TemporaryDirectory() as folder:
        conversation = Conversation(make_backend(llm), speech,
                                    History(Path(folder) / "h.jsonl"), ConversationConfig(),
                                    prompt)
        conversation.bus.subscribe(marks.on_agent)
        conversation.start()
        try:
            yield conversation, marks
        finally:
            conversation.interrupt()
            conversation.wait_idle(30)
            conversation.close()
            speech.close()


def streamed(conversation: Conversation, marks: Marks, question: str) -> tuple[float, float]:
    """One question to a running (warmed-up) conversation, as in the tray agent; the history
    is cleared first, so every question starts from the same prompt."""
    conversation.history.clear()
    marks.reset()
    begin = time.monotonic()
    conversation.submit(question)
    assert marks.audio.wait(120)
    conversation.interrupt()
    conversation.wait_idle(30)
    return marks.first_audio - begin, marks.first_audio - marks.first_text


@dataclass
class Stalls:
    """Silence the listener was not meant to hear: a chunk finished playing before the next
    one was synthesised (the pauses between clauses are part of the chunks)."""

    seconds: list[float]  # each stall between two chunks of the reply
    chunks: int
    speech_s: float  # the reply's audio, pauses included


def stalls(conversation: Conversation, marks: Marks, question: str) -> Stalls:
    """One whole spoken reply; how long the audio stopped between its chunks."""
    conversation.history.clear()
    marks.reset()
    conversation.submit(question)
    assert conversation.wait_idle(300)
    started = {e.seq: e for e in marks.playback if e.kind is PlaybackKind.STARTED}
    finished = {e.seq: e for e in marks.playback if e.kind is PlaybackKind.FINISHED}
    order = sorted(started)
    gaps = [max(0.0, started[b].at - finished[a].at) for a, b in itertools.pairwise(order)
            if a in finished]
    return Stalls(gaps, len(order), sum(e.total for e in finished.values()) / SAMPLE_RATE)


def naive(engine, question: str, llm: LLMConfig) -> float:  # type: ignore[no-untyped-def]
    """Wait for the whole reply, then synthesise it in one piece and play it."""
    import asyncio

    from agent.llm.base import Message

    speech = SpeechPipeline(engine, AudioPlayer(), voice="jm_kumo").start()
    marks = Marks()
    speech.add_listener(marks.on_playback)
    backend = make_backend(llm)

    async def whole_reply() -> str:
        text = ""
        async for delta in backend.stream([Message("system", DEFAULT_SYSTEM_PROMPT),
                                           Message("user", question)]):
            text += delta.text
        await backend.aclose()
        return text

    begin = time.monotonic()
    reply = asyncio.run(whole_reply())
    speech.say_clause(reply)  # one piece: synthesised whole, then played
    assert marks.audio.wait(300)
    speech.interrupt()
    speech.wait_until_done(10)
    speech.close()
    return marks.first_audio - begin


def generation_stop(engine, server, interrupt: bool) -> float:  # type: ignore[no-untyped-def]
    """Seconds from the interrupt (or, for the baseline, from the same moment with no
    interrupt: the client lets the reply finish) until the server's CPU goes quiet."""
    from harness.llm_servers import cpu_seconds

    llm = LLMConfig(backend="openai", base_url=server.base_url, model="smollm2",
                    max_tokens=600, temperature=0.0)
    with spoken_conversation(engine, llm, "You are a helpful assistant.") as (conversation,
                                                                              marks):
        conversation.submit("Write a very long story about a dragon who bakes bread.")
        assert marks.audio.wait(120)
        begin = time.monotonic()
        if interrupt:
            conversation.interrupt()
        while True:  # quiet: under 3% of a core over 200 ms
            before = cpu_seconds(server.pid)
            time.sleep(0.2)
            if cpu_seconds(server.pid) - before < 0.006:
                break
        stopped = time.monotonic() - begin - 0.2  # the quiet window itself is not counted
    return max(stopped, 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=1, help="passes over the questions")
    args = parser.parse_args()
    start_audio()
    from agent.tts import kokoro, models

    engine = kokoro.load_engine(models.resolve("packaged"))
    engine.warm_up("jm_kumo")
    llm = LLMConfig(backend="embedded", max_tokens=120, temperature=0.0)
    naive(engine, "Hello.", llm)  # warm the LLM (and its page cache) for both sides
    ours, token_to_audio, baseline = [], [], []
    with spoken_conversation(engine, llm, DEFAULT_SYSTEM_PROMPT) as (conversation, marks):
        assert conversation.warmed.wait(60)
        for _ in range(args.rounds):
            for question in QUESTIONS:
                # ours first: llama.cpp keeps the last prompt, and the question must be new to
                # it (the baseline gains a little from what ours leaves)
                enter, first = streamed(conversation, marks, question)
                ours.append(enter)
                token_to_audio.append(first)
                baseline.append(naive(engine, question, llm))
    print(f"{len(ours)} questions, median seconds (min-max)")
    print(f"{'':30}{'ours':>18}{'baseline':>18}")

    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):6.2f} ({min(values):.2f}-{max(values):.2f})"

    print(f"{'Enter -> first audio':30}{cell(ours):>18}{cell(baseline):>18}")
    print(f"{'first token -> first audio':30}{cell(token_to_audio):>18}")

    # Whole replies: a short first chunk must not leave holes after it.
    with spoken_conversation(engine, llm, DEFAULT_SYSTEM_PROMPT) as (conversation, marks):
        assert conversation.warmed.wait(60)
        replies = [stalls(conversation, marks, question) for question in QUESTIONS]
    every = [gap for reply in replies for gap in reply.seconds]
    audible = [gap for gap in every if gap > 0.05]
    print(f"whole replies: {len(replies)}, {sum(r.chunks for r in replies)} chunks, "
          f"{sum(r.speech_s for r in replies):.1f} s of speech; stalls between chunks: "
          f"{len(audible)} over 50 ms, total {sum(every):.2f} s, "
          f"longest {max(every, default=0):.2f} s")

    from agent.llm.embedded import locate_model
    from harness.llm_servers import start_llama_server

    server = start_llama_server(locate_model(), Path(tempfile.mkdtemp()))
    try:
        stop_ours = [generation_stop(engine, server, True) for _ in range(3)]
        stop_naive = [generation_stop(engine, server, False) for _ in range(2)]
    finally:
        server.stop()
    print(f"{'interrupt -> server idle':30}{cell(stop_ours):>18}{cell(stop_naive):>18}")


if __name__ == "__main__":
    main()
