"""Hands-free listening in a simulated room (harness.room: the agent's own voice back into its
microphone after 40 ms, with reflections (RT60 0.25 s) at -6 dB and noise at -60 dBFS),
with echo cancellation on and off, side by side:

- talk-over latency: from the onset of the user's voice at the microphone to the last
  non-zero sample of the reply at the DAC (target 300 ms or less), at 0 and -6 dB relative
  to the echo, and the word error rate of the question heard after the cut;
- self-interruptions per hour of the agent's own speech (target 0), and wake-ups on it;
- wake words said in the room in several voices and levels: detections, and false accepts
  per hour over other speech (Kokoro monologue and the human clips);
- CPU with the wake word on and the agent idle (target under 3% of a core).

    python -m bench.hands_free [--speak-s 120] [--trials 4] [--wake-word hey_jarvis]
                               [--other-speech-s 120] [--idle-s 30] [--off-speak-s S]
    python -m bench.hands_free --drift-ppm 100 [--speak-s 600] [--trials 4]

An hour of each: --speak-s 3600 --other-speech-s 3600 (--off-speak-s 600 keeps the
off column short).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import TYPE_CHECKING

import numpy as np

from bench.harness import start_audio_and_room, summary

if TYPE_CHECKING:
    from harness.hands_free import HandsFreeRig

QUESTIONS = (
    "What time does the train leave tomorrow morning?",
    "Could you turn the lights off in the kitchen?",
    "Please remind me to call the doctor this afternoon.",
    "I need to buy milk and bread on the way home.",
)
USER_VOICES = ("am_michael", "bf_emma", "am_adam", "bm_george")  # not the agent's af_bella
WAKE_VOICES = ("af_heart", "am_michael", "bf_emma", "bm_george", "af_nicole", "am_adam")
WAKE_GAINS_DB = (0.0, -6.0, -12.0)  # "distances"


def _process_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speak-s", type=float, default=120.0,
                        help="seconds of the agent speaking alone, per echo setting")
    parser.add_argument("--off-speak-s", type=float, default=None,
                        help="seconds of speaking alone with echo cancellation off (default: "
                        "--speak-s; off cuts itself within minutes, so an hour adds nothing)")
    parser.add_argument("--trials", type=int, default=4, help="talk-overs per level and setting")
    parser.add_argument("--wake-word", default="hey_jarvis")
    parser.add_argument("--other-speech-s", type=float, default=120.0,
                        help="seconds of other speech for wake-word false accepts")
    parser.add_argument("--idle-s", type=float, default=30.0, help="seconds for the CPU figure")
    parser.add_argument("--drift-ppm", type=float, default=0.0,
                        help="the speakers' and the microphone's clocks this far apart (two "
                        "sound cards; the echo comes later and later): then only speaking "
                        "alone and talk-over at 0 dB are measured, echo cancellation on")
    args = parser.parse_args()

    from harness.hands_free import HandsFreeRig
    from harness.room import Acoustics
    from harness.speech_samples import human_clip, wer

    _, _, room = start_audio_and_room(Acoustics(drift_ppm=args.drift_ppm))
    print(f"room: {room.acoustics.delay_ms:.0f} ms + reflections (RT60 "
          f"{room.acoustics.rt60_s} s) at {room.acoustics.echo_db:+.0f} dB, noise "
          f"{room.acoustics.noise_dbfs:.0f} dBFS; vsink -> microphone measured "
          f"{room.measure_delay():.0f} ms"
          + (f"; clocks {args.drift_ppm:g} ppm apart" if args.drift_ppm else ""))
    rig = HandsFreeRig(room, talk_over=True, wake_word=args.wake_word)
    engine = rig.assistant.speech.synth if rig.assistant.speech else None
    assert engine is not None, "speech did not load"

    def synth(text: str, voice: str) -> np.ndarray:
        return np.asarray(engine.synthesize(text, voice), np.float32)

    # Every clip is made now, while the agent is idle: its own worker uses the same engine
    # once it speaks, and one Kokoro session is not run from two threads at once.
    question_clips = [(question, synth(question, USER_VOICES[i % len(USER_VOICES)]))
                      for i, question in enumerate(QUESTIONS)]
    if args.drift_ppm:
        _drifting(rig, args, question_clips)
        return
    wake_text = f"{rig.assistant.cfg.listen.wake_word.replace('_', ' ')}."
    wake_clips = [synth(wake_text, voice) for voice in WAKE_VOICES]
    other_clips: list[tuple[np.ndarray, int]] = []
    from faster_whisper.audio import decode_audio

    for name in ("beckett.wav", "two_cities.wav"):
        other_clips.append((decode_audio(str(human_clip(name)), sampling_rate=16_000), 16_000))
    voices = iter(WAKE_VOICES * 100)
    other_total = sum(clip.size / rate for clip, rate in other_clips)
    while other_total < args.other_speech_s:
        at = len(other_clips) * 3 % len(MONOLOGUE_SENTENCES)
        text = " ".join((MONOLOGUE_SENTENCES * 2)[at:at + 3])
        clip = synth(text, next(voices))
        other_clips.append((clip, 24_000))
        other_total += clip.size / 24_000

    results: dict[bool, _Printed] = {}
    for echo_on in (True, False):
        rig.set("echo_cancellation", echo_on)
        column = _Printed(f"echo cancellation {'on' if echo_on else 'off'}")
        # -- the agent alone ------------------------------------------------------------------
        speak_s = args.speak_s if echo_on or args.off_speak_s is None else args.off_speak_s
        cuts, holds, wakes, spoken = rig.speak_alone(speak_s)
        hours = spoken / 3600
        column["speaking alone"] = f"{spoken:.0f} s"
        column["self-interruptions (cuts) /h"] = f"{cuts / hours:.1f} ({cuts})"
        column["pauses on its own voice /h"] = f"{holds / hours:.1f} ({holds})"
        column["wake-ups on own voice /h"] = f"{wakes / hours:.1f} ({wakes})"
        # -- talk-over ------------------------------------------------------------------------
        for relative in (0.0, -6.0):
            latencies, errors, missed, cut_itself = [], [], 0, 0
            for trial in range(args.trials):
                question, clip = question_clips[trial % len(question_clips)]
                outcome = rig.talk_over(clip, 24_000, relative)
                if outcome.cut_itself:  # on its own voice, before the user said a word
                    cut_itself += 1
                    continue
                if not outcome.detected:
                    missed += 1
                    continue
                if outcome.latency_s is not None:
                    latencies.append(outcome.latency_s)
                errors.append(wer(question, outcome.transcript))
            label = f"talk-over at {relative:+.0f} dB"
            column[f"{label}: stopped"] = (f"{args.trials - missed - cut_itself}/{args.trials}"
                                           + (f" ({cut_itself} cut itself first)"
                                              if cut_itself else ""))
            column[f"{label}: latency"] = (summary(latencies) if latencies else "-")
            column[f"{label}: WER"] = (f"{statistics.mean(errors):.0%}" if errors else "-")
        results[echo_on] = column

    # -- wake words (echo cancellation on: the agent is idle, so it matters little) ---------
    rig.set("echo_cancellation", True)
    detected = tried = 0
    for phrase in wake_clips:
        for gain in WAKE_GAINS_DB:
            before = len(rig.happened.wakes)
            rig.say_into_room(np.concatenate([np.zeros(4800, np.float32), phrase]), 24_000, gain)
            tried += 1
            if rig.wait(lambda b=before: len(rig.happened.wakes) > b, timeout=3):
                detected += 1
                rig.wait(lambda: rig.state == "idle", timeout=60)
    wake_column = _Printed("wake word")
    wake_column["wake word"] = args.wake_word
    wake_column["detected (voices x levels)"] = f"{detected}/{tried}"
    before = len(rig.happened.wakes)
    other = 0.0
    started = time.monotonic()
    for clip, rate in other_clips:
        rig.say_into_room(clip, rate, -6.0)
        other += clip.size / rate
        rig.wait(lambda: rig.state == "idle", timeout=60)
    false_accepts = len(rig.happened.wakes) - before
    wake_column["other speech"] = f"{other:.0f} s ({time.monotonic() - started:.0f} s wall)"
    wake_column["false accepts /h"] = f"{false_accepts / (other / 3600):.1f} ({false_accepts})"

    # -- CPU, the agent idle ------------------------------------------------------------------
    cpu: dict[str, float] = {}
    for label, wake in (("microphone closed", ""), ("wake word on", args.wake_word)):
        rig.set("talk_over", False)
        rig.set("wake_word", wake)
        rig.wait(lambda: False, timeout=2)  # settle: the microphone opens or closes
        start_cpu, start = _process_cpu_s(), time.monotonic()
        rig.wait(lambda: False, timeout=args.idle_s)
        cpu[label] = (_process_cpu_s() - start_cpu) / (time.monotonic() - start)
    listener = rig.assistant.hands_free.listener if rig.assistant.hands_free else None
    rig.close()

    print(f"\n{'':44} {'echo cancellation ON':>26} {'echo cancellation OFF':>26}")
    for key in results[True]:
        print(f"{key:44} {results[True][key]:>26} {results[False][key]:>26}")
    print()
    for key, value in wake_column.items():
        print(f"{key:44} {value:>26}")
    print()
    for label, share in cpu.items():
        print(f"CPU, agent idle, {label:27} {share:25.1%} of a core (whole process)")
    print(f"CPU of the wake word alone {cpu['wake word on'] - cpu['microphone closed']:30.1%}"
          " of a core")
    if listener is not None and listener.blocks_heard:
        print(f"listener thread: {listener.cpu_s / (listener.blocks_heard * 0.032) * 1000:.1f} "
              "ms of CPU per second of audio")


def _drifting(rig: HandsFreeRig, args: argparse.Namespace,
              question_clips: list[tuple[str, np.ndarray]]) -> None:
    """Two clocks apart: the echo path's delay moves by `drift_ppm` microseconds a second,
    and the canceller must follow it. Echo cancellation on only (off fails without drift)."""
    from harness.speech_samples import wer

    column = _Printed(f"clocks {args.drift_ppm:g} ppm apart, echo cancellation on")
    started = rig.room.measure_delay()
    cuts, holds, wakes, spoken = rig.speak_alone(args.speak_s)
    hours = spoken / 3600
    column["speaking alone"] = f"{spoken:.0f} s"
    column["self-interruptions (cuts) /h"] = f"{cuts / hours:.1f} ({cuts})"
    column["pauses on its own voice /h"] = f"{holds / hours:.1f} ({holds})"
    column["wake-ups on own voice /h"] = f"{wakes / hours:.1f} ({wakes})"
    column["echo delay moved"] = f"{rig.room.measure_delay() - started:+.0f} ms"
    latencies, errors, stopped = [], [], 0
    for trial in range(args.trials):
        question, clip = question_clips[trial % len(question_clips)]
        outcome = rig.talk_over(clip, 24_000, 0.0)
        if outcome.detected and not outcome.cut_itself:
            stopped += 1
            if outcome.latency_s is not None:
                latencies.append(outcome.latency_s)
            errors.append(wer(question, outcome.transcript))
    column["talk-over at +0 dB: stopped"] = f"{stopped}/{args.trials}"
    column["talk-over at +0 dB: latency"] = summary(latencies) if latencies else "-"
    column["talk-over at +0 dB: WER"] = f"{statistics.mean(errors):.0%}" if errors else "-"
    rig.close()


class _Printed(dict[str, str]):
    """A column of results that prints each as it is measured: a long run that fails late
    still leaves what it measured."""

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label

    def __setitem__(self, key: str, value: str) -> None:
        print(f"  [{self.label}] {key}: {value}", flush=True)
        super().__setitem__(key, value)


MONOLOGUE_SENTENCES: list[str] = []


def _sentences() -> list[str]:
    from harness.hands_free import MONOLOGUE

    return [s.strip() + "." for s in MONOLOGUE.split(".") if s.strip()]


MONOLOGUE_SENTENCES.extend(_sentences())

if __name__ == "__main__":
    main()
