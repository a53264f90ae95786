"""Push-to-talk end to end with the embedded LLM: key release -> first audio of the answer,
beside the naive way in the same run.

The utterance is a recording of a question (Kokoro reading it, resampled to 16 kHz: what the
microphone gives after the release; `bench.listen` measures the microphone itself, whose
stop() takes 12-25 ms). Ours: the fitted-window Whisper base transcribes it and the
conversation (warmed up, as in the tray agent) streams and speaks the answer clause by
clause. Baseline: faster-whisper's usual call (30 s window, beam 5), then the whole reply,
then speech.

    python -m bench.push_to_talk [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

from agent.config import DEFAULT_SYSTEM_PROMPT, LLMConfig
from agent.listen import Transcriber
from agent.listen.whisper import resample
from bench.conversation import naive, spoken_conversation
from bench.harness import start_audio

QUESTIONS = ["What is the capital of France?", "How do I boil an egg?",
             "Why is the sky blue?", "Name a good book to read."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    start_audio()
    from agent.tts import kokoro, models

    engine = kokoro.load_engine(models.resolve("packaged"))
    engine.warm_up("jm_kumo")
    recordings = {q: resample(engine.synthesize(q, "jm_kumo"), engine.sample_rate, 16_000)
                  for q in QUESTIONS}
    fitted = Transcriber("base")
    full = Transcriber("base", beam_size=5, window="full")
    fitted.load()
    full.load()
    llm = LLMConfig(backend="embedded", max_tokens=120, temperature=0.0)
    naive(engine, "Hello.", llm)  # warm the LLM for both sides

    ours, heard_ms, baseline = [], [], []
    with spoken_conversation(engine, llm, DEFAULT_SYSTEM_PROMPT) as (conversation, marks):
        assert conversation.warmed.wait(60)
        for _ in range(args.rounds):
            for samples in recordings.values():
                conversation.history.clear()
                marks.reset()
                released = time.monotonic()
                text = fitted.transcribe(samples, 16_000)
                heard_ms.append(time.monotonic() - released)
                conversation.submit(text)
                assert marks.audio.wait(120)
                ours.append(marks.first_audio - released)
                conversation.interrupt()
                conversation.wait_idle(30)

                released = time.monotonic()
                text = full.transcribe(samples, 16_000)
                transcribed = time.monotonic() - released
                baseline.append(transcribed + naive(engine, text, llm))

    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):6.2f} ({min(values):.2f}-{max(values):.2f})"

    print(f"{len(ours)} spoken questions, median seconds (min-max)")
    print(f"{'key release -> transcript':34}{cell(heard_ms):>18}")
    print(f"{'key release -> first audio':34}{cell(ours):>18}   (target <= 1.6 s)")
    print(f"{'baseline (30 s window, whole reply)':34}{cell(baseline):>18}")


if __name__ == "__main__":
    main()
