"""Kokoro renders silence that we throw away: can it stop rendering it?

Kokoro's duration predictor gives every token (the pad token 0 at both ends included) a
number of 25 ms frames (600 samples at 24 kHz), and the decoder's generator (upsampling
convolutions + iSTFT, ~85% of a short chunk's synthesis time) costs the same per frame
whether the frame is speech or silence. For short chunks much of it is silence that
`trim_silence` cuts:

* the leading pad gets 13-16 frames, and only the last 1-4 of them carry the first
  phoneme's onset;
* the last phoneme gets 10-17 frames ("final lengthening"), and only the first 1-6 of them
  sound; the punctuation after it (5-9 frames) and the end pad (1, or 5-10 with no
  punctuation) are silent.

Removing frames is not free: the prosody predictor (a frame-level LSTM + AdaIN blocks) and
the decoder's AdaIN layers (instance norm over time) see the silent frames, so capping the
durations changes the speech too (the onset shrinks, the level drops). The variants:

    base        [0, tokens, 0], the model as it is (OnnxKokoro(slice_silence=False))
    drop-tail   [0, tokens]: the end pad left out (the "sometimes faster" observation: it
                only helps when there is no final punctuation, and then the model squeezes
                the last phoneme instead)
    cap-pads    durations = Min(durations, durations_cap) for the whole model: lead pad <= 8
                frames, trailing punctuation/spaces and end pad <= 1
    gen-soft    only the generator's input is sliced to the capped frames (the predictor and
                the frame-level decoder still see every frame): lead pad <= 10, trailing <= 3
    gen-pads    the same with cap-pads' caps: lead pad <= 8, trailing <= 1
    gen-tail2   lead pad <= 8, trailing <= 2: what agent/tts/kokoro_graph.py adopted
    gen-last    gen-pads and the last phoneme <= 8 frames

The patches are made on the serialized model (a few lines of protobuf, no `onnx` package),
in memory, in ~0.4 s; with no caps the patched models give the original's output bit for bit
(checked at start).

Speed: median wall and CPU (process) time per model call, variants interleaved in one
process (rotating order), chunks of 1, 2, 3, 4 and 8 words. Quality over 40 clauses (1-4
and 6-12 words): Whisper "base" (agent.listen) WER and whether the last word was heard, on
the trimmed audio; and signal checks against base: frames rendered, speech length after
trim_silence, onset/decay (sound before the first phoneme's frame / after the last
phoneme's start), raw output still loud at its very end (truncation), level change and
log-mel distance over the aligned speech (and its last 150 ms), spread of chunk levels.

    python -m bench.kokoro_pads [--reps 3] [--threads 2] [--voice jm_kumo]
                                [--skip-timing] [--skip-quality] [--skip-asr]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnxruntime as ort

from agent.tts import kokoro, models, voices
from agent.tts.base import SAMPLE_RATE, trim_silence
from agent.tts.kokoro_graph import (
    CAP_INPUT,
    CAP_INPUTS,
    DURATIONS,
    FRAME_SAMPLES,
    NO_CAP,
    NON_PHONEMES,
    edit_graph,
    frame_caps,
    generator_slice_patch,
    int64_value_info,
    node,
)

# -- the patches -----------------------------------------------------------------------------
# generator_slice_patch is the one the agent uses (agent/tts/kokoro_graph.py). The naive one
# below caps the durations for the whole model, as a comparison. /encoder/Gather is the only
# reader of DURATIONS: it drops the batch axis before CumSum/Range build the alignment.
DURATIONS_READER = "/encoder/Gather"


def cap_durations_patch(model: bytes, expose: bool = False) -> bytes:
    """Naive: durations = Min(durations, durations_cap) for the whole model. Every stage
    then sees fewer frames."""
    return edit_graph(
        model, {DURATIONS_READER: (DURATIONS, "cap/durations")},
        [node("Min", [DURATIONS, CAP_INPUT], ["cap/durations"], "cap/min")], [],
        CAP_INPUTS, [int64_value_info("cap/durations", None)] if expose else [])


# -- the variants ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Caps:
    lead: int = NO_CAP  # the start pad
    tail: int = NO_CAP  # punctuation/spaces after the last phoneme, and the end pad
    last: int = NO_CAP  # the last phoneme

    def array(self, phonemes: str, vocab: dict[str, int]) -> np.ndarray:
        return frame_caps(phonemes, vocab, self.lead, self.tail, self.last)


@dataclass(frozen=True)
class Variant:
    name: str
    model: str = "plain"  # plain | naive (durations capped everywhere) | generator (sliced)
    caps: Caps = Caps()
    drop_tail: bool = False


VARIANTS = [
    Variant("base"),
    Variant("drop-tail", drop_tail=True),
    Variant("cap-pads", "naive", Caps(lead=8, tail=1)),
    Variant("gen-soft", "generator", Caps(lead=10, tail=3)),
    Variant("gen-pads", "generator", Caps(lead=8, tail=1)),
    Variant("gen-tail2", "generator", Caps(lead=8, tail=2)),
    Variant("gen-last", "generator", Caps(lead=8, tail=1, last=8)),
]
BASE = VARIANTS[0]


@dataclass
class Result:
    audio: np.ndarray
    durations: np.ndarray  # frames each token got in the audio returned
    phonemes: str
    wall: float = 0.0
    cpu: float = 0.0


class Bench:
    def __init__(self, threads: int, voice: str) -> None:
        files = models.resolve("packaged")
        # for phonemes, vocab and voice packs
        self.engine = kokoro.OnnxKokoro(files, threads=threads, slice_silence=False)
        self.voice = voice
        self.pack = self.engine.pack(voice)
        self.vocab = self.engine.vocab
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        raw = files.model.read_bytes()

        def session(model: bytes | str) -> ort.InferenceSession:
            return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

        started = time.perf_counter()
        self.sessions = {"plain": session(str(files.model))}
        self.plain_load_s = time.perf_counter() - started
        started = time.perf_counter()
        patched = generator_slice_patch(raw, expose_caps=True)
        self.patch_s = time.perf_counter() - started
        started = time.perf_counter()
        self.sessions["generator"] = session(patched)
        self.patched_load_s = time.perf_counter() - started
        self.sessions["naive"] = session(cap_durations_patch(raw, expose=True))

    def feed(self, text: str, variant: Variant) -> tuple[dict[str, np.ndarray], str]:
        phonemes = self.engine.phonemes(text, self.voice)
        tokens = [self.vocab[p] for p in phonemes if p in self.vocab]
        sequence = [0, *tokens] if variant.drop_tail else [0, *tokens, 0]
        feed: dict[str, np.ndarray] = {
                "tokens": np.array([sequence], dtype=np.int64),
                "style": voices.style_for(self.pack, len(phonemes)),
                "speed": np.array([1.0], dtype=np.float32)}
        if variant.model != "plain":
            feed[CAP_INPUT] = variant.caps.array(phonemes, self.vocab)[:, :len(sequence)]
        return feed, phonemes

    def synth(self, text: str, variant: Variant) -> Result:
        """One timed model call, on the session production would use for this variant."""
        feed, phonemes = self.feed(text, variant)
        session = self.sessions[variant.model]
        wall, cpu = time.perf_counter(), time.process_time()
        outputs = session.run(None, feed)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        durations = outputs[1].reshape(-1) if len(outputs) > 1 else np.zeros(0, np.int64)
        return Result(np.asarray(outputs[0], np.float32).reshape(-1), durations, phonemes,
                      wall, cpu)

    def analyse(self, text: str, variant: Variant) -> Result:
        """Untimed; the plain variants run on the generator model with no caps (the same
        audio, bit for bit), which also says how many frames each token got."""
        if variant.model == "plain":
            variant = Variant(variant.name, "generator", Caps(), variant.drop_tail)
        return self.synth(text, variant)


# -- signal checks --------------------------------------------------------------------------

LOUD = 0.005  # trim_silence's threshold


def _mel_filters(n_fft: int = 1024, n_mels: int = 64, rate: int = SAMPLE_RATE) -> np.ndarray:
    def mel(f: np.ndarray) -> np.ndarray:
        return 2595 * np.log10(1 + f / 700)

    edges = 700 * (10 ** (np.linspace(mel(np.array(60.0)), mel(np.array(rate / 2 - 500.0)),
                                      n_mels + 2) / 2595) - 1)
    bins = np.fft.rfftfreq(n_fft, 1 / rate)
    filters = np.zeros((n_mels, bins.size))
    for m in range(n_mels):
        lo, mid, hi = edges[m:m + 3]
        rising, falling = (bins - lo) / (mid - lo), (hi - bins) / (hi - mid)
        filters[m] = np.clip(np.minimum(rising, falling), 0, None)
    return filters


MEL = _mel_filters()


def log_mel(audio: np.ndarray, hop: int = 240, n_fft: int = 1024) -> np.ndarray:
    if audio.size < n_fft:
        audio = np.pad(audio, (0, n_fft - audio.size))
    frames = np.lib.stride_tricks.sliding_window_view(audio, n_fft)[::hop] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    return np.asarray(10 * np.log10(power @ MEL.T + 1e-10))


@dataclass
class Checks:
    frames: int
    speech_ms: float  # length after trim_silence
    onset_ms: float  # sound before the first phoneme's first frame (its onset in the pad)
    decay_ms: float  # sound after the last phoneme's first frame
    end_peak: float  # |audio| in the raw output's last 10 ms: > LOUD means cut off
    mel_db: float  # mean |log-mel difference| against base over base's speech, aligned,
    level_db: float  # after taking out this overall level difference
    mel_end_db: float  # the same over the last 150 ms of base's speech (the last phoneme)
    active_db: float  # speech level, dBFS (frames within 40 dB of the loudest)
    lead_frames: int  # frames the start pad got
    last_frames: int  # frames the last phoneme got
    trail_frames: int  # frames of the tokens after it (punctuation, end pad)


def active_level(audio: np.ndarray) -> float:
    usable = audio[:audio.size // FRAME_SAMPLES * FRAME_SAMPLES].reshape(-1, FRAME_SAMPLES)
    if usable.size == 0:
        return -120.0
    power = np.mean(usable.astype(np.float64) ** 2, axis=1) + 1e-12
    loud = power > power.max() * 1e-4
    return float(10 * np.log10(np.mean(power[loud])))


def checks(result: Result, base: Result | None) -> Checks:
    audio, d = result.audio, result.durations
    bounds = np.concatenate([[0], np.cumsum(d)]) * FRAME_SAMPLES
    kept = [p for p in result.phonemes if p in VOCAB]
    sounding = [i for i, p in enumerate(kept, start=1) if p not in NON_PHONEMES]
    last = sounding[-1] if sounding else 1
    loud = np.flatnonzero(np.abs(audio) > LOUD)
    first, final = (int(loud[0]), int(loud[-1])) if loud.size else (0, 0)
    mel_db = level_db = mel_end_db = 0.0
    if base is not None and loud.size:
        # The first phoneme starts at frame d[0]: line the two up there.
        shift = (int(base.durations[0]) - int(d[0])) * FRAME_SAMPLES
        b = base.audio
        b_loud = np.flatnonzero(np.abs(b) > LOUD)
        start = max(int(b_loud[0]), shift)
        end = min(int(b_loud[-1]) + 1, shift + audio.size)
        if end - start > 2048:
            ref, var = log_mel(b[start:end]), log_mel(audio[start - shift:end - shift])
            voiced = ref.max(axis=1) > ref.max() - 50  # frames within 50 dB of the loudest
            diff = (np.maximum(var, -80) - np.maximum(ref, -80))[voiced]
            level_db = float(np.median(diff))  # a gain change: harmless, reported apart
            mel_db = float(np.mean(np.abs(diff - level_db)))
            tail = np.zeros(len(ref), bool)
            tail[max(0, len(ref) - 15):] = True  # 10 ms hops
            end_diff = (np.maximum(var, -80) - np.maximum(ref, -80))[voiced & tail]
            mel_end_db = float(np.mean(np.abs(end_diff - level_db))) if end_diff.size else 0.0
    return Checks(
        frames=int(d.sum()),
        speech_ms=trim_silence(audio).size / SAMPLE_RATE * 1000,
        onset_ms=(bounds[1] - first) / SAMPLE_RATE * 1000,
        decay_ms=(final - bounds[last]) / SAMPLE_RATE * 1000,
        end_peak=float(np.abs(audio[-240:]).max()),
        mel_db=mel_db, level_db=level_db, mel_end_db=mel_end_db,
        active_db=active_level(trim_silence(audio)),
        lead_frames=int(d[0]), last_frames=int(d[last]), trail_frames=int(d[last + 1:].sum()))


VOCAB: dict[str, int] = {}


# -- words ----------------------------------------------------------------------------------

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
         "fourteen fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def _number(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if not rest else " " + _number(rest))
    if 1100 <= n < 2100 and n % 100:  # years: 1879 -> eighteen seventy nine
        return _number(n // 100) + " " + (_number(n % 100) if n % 100 >= 10
                                          else "oh " + _number(n % 100))
    rest = n % 1000
    return _number(n // 1000) + " thousand" + ("" if not rest else " " + _number(rest))


SPELLING = {"ok": "okay", "mr": "mister", "dr": "doctor", "percent": "percent", "%": "percent",
            "ana": "anna", "hi": "hi", "alright": "all right"}


def words(text: str) -> list[str]:
    text = text.lower().replace("%", " percent").replace("-", " ").replace(",", "")
    text = re.sub(r"(\d+)(st|nd|rd|th)\b", r"\1", text)
    text = re.sub(r"\d+", lambda m: " " + _number(int(m.group())) + " ", text)
    text = re.sub(r"[^a-z' ]", " ", text).replace(" and ", " ")  # "two hundred (and) five"
    out = []
    for word in text.split():
        word = SPELLING.get(word.strip("'"), word.strip("'"))
        out.extend(word.split())
    return [w for w in out if w != "and"]


def edit_distance(a: list[str], b: list[str]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


# -- the texts ------------------------------------------------------------------------------

TIMED = {  # words -> chunks, like the first chunk of an LLM reply
    1: ["Sure,", "Okay."],
    2: ["Of course.", "Good morning!"],
    3: ["Yes, it is.", "Let me check."],
    4: ["The capital of France", "Paris is the capital"],
    8: ["The weather today is sunny with a breeze.", "I found three restaurants near you that"],
}

CLAUSES = [
    "Sure,", "Yes.", "Okay.", "Absolutely!", "Hello!", "Well,", "Certainly.", "Thanks!",
    "Of course.", "Good morning!", "Great question!", "No problem.", "John Smith", "Forty-two.",
    "Yes, it is.", "I think so.", "Let me check.", "Here you go.", "That's right, Anna.",
    "It's 7 o'clock.", "The capital of France", "Paris is the capital", "The answer is 42.",
    "Hi, I'm Kokoro.", "In 1969, Apollo", "Good question, Michael.",
    "The weather today is sunny with a light breeze.",
    "Your meeting with Sarah starts at 10 tomorrow.",
    "Paris is the capital and largest city of France.",
    "I found three restaurants near you that are open now.",
    "The population of Tokyo is about 14 million people.",
    "Let me walk you through the steps one by one.",
    "Mount Everest is 8849 meters tall.",
    "Albert Einstein was born in Germany in 1879.",
    "Here is a quick summary of the main points,",
    "To reset your password, open the settings page",
    "The train to London leaves every twenty minutes.",
    "Water boils at 100 degrees Celsius at sea level.",
    "Sure, here is the plan for tomorrow.",
    "Turn off the lights in the kitchen.",
]


# -- the passes -----------------------------------------------------------------------------

Table = dict[str, dict[int, dict[str, float]]]


def timing_pass(bench: Bench, reps: int,
                log: Callable[[str], None]) -> tuple[Table, dict[str, list[Result]]]:
    for variant in VARIANTS:  # warm-up: the first calls allocate
        for texts in TIMED.values():
            bench.synth(texts[0], variant)
    samples: dict[str, dict[int, list[Result]]] = {v.name: {n: [] for n in TIMED}
                                                    for v in VARIANTS}
    for rep in range(reps):
        for n, texts in TIMED.items():
            for i, text in enumerate(texts):
                turn = (rep + i) % len(VARIANTS)  # rotate who goes first
                for variant in VARIANTS[turn:] + VARIANTS[:turn]:
                    samples[variant.name][n].append(bench.synth(text, variant))
        log(f"  timing: rep {rep + 1}/{reps}")
    flat = {name: [r for results in by_words.values() for r in results]
            for name, by_words in samples.items()}
    return {name: {n: {"wall": statistics.median(r.wall for r in results),
                       "cpu": statistics.median(r.cpu for r in results),
                       "audio": statistics.median(r.audio.size / SAMPLE_RATE for r in results)}
                   for n, results in by_words.items()}
            for name, by_words in samples.items()}, flat


@dataclass
class Quality:
    refs: int = 0
    errors: int = 0
    last_word_wrong: list[str] = field(default_factory=list)
    transcripts: dict[str, str] = field(default_factory=dict)
    checks: dict[str, Checks] = field(default_factory=dict)


def quality_pass(bench: Bench, asr: bool, log: Callable[[str], None]) -> dict[str, Quality]:
    transcribe: Callable[[np.ndarray], str] | None = None
    if asr:
        from agent.listen import Transcriber
        from agent.listen.whisper import resample

        transcriber = Transcriber("base")
        transcriber.load()

        def transcribe(audio: np.ndarray) -> str:
            return transcriber.transcribe(resample(audio, SAMPLE_RATE), 16_000)

    out = {v.name: Quality() for v in VARIANTS}
    for k, text in enumerate(CLAUSES):
        base = bench.analyse(text, BASE)
        for variant in VARIANTS:
            result = base if variant is BASE else bench.analyse(text, variant)
            q = out[variant.name]
            q.checks[text] = checks(result, None if variant is BASE else base)
            if transcribe is not None:
                heard = transcribe(trim_silence(result.audio))  # what the pipeline plays
                ref, hyp = words(text), words(heard)
                q.refs += len(ref)
                q.errors += edit_distance(ref, hyp)
                q.transcripts[text] = heard
                if not hyp or hyp[-1] != ref[-1]:
                    q.last_word_wrong.append(f"{text!r} -> {heard!r}")
        if (k + 1) % 10 == 0:
            log(f"  quality: {k + 1}/{len(CLAUSES)} clauses")
    return out


def report_timing(timing: Table, samples: dict[str, list[Result]], reps: int,
                  threads: int) -> None:
    names = list(timing)
    print(f"\nmedian synthesis time per chunk, s: wall (cpu) and wall vs base; {reps} reps x "
          f"{len(TIMED[1])} chunks per row, {threads} threads, variants interleaved")
    print("words" + "".join(f"{name:>22}" for name in names))
    for n in TIMED:
        cells = []
        for name in names:
            t = timing[name][n]
            ratio = t["wall"] / timing["base"][n]["wall"]
            cells.append(f"{t['wall']:.3f} ({t['cpu']:.3f}) {ratio:4.0%}")
        print(f"{n:>5}" + "".join(f"{c:>22}" for c in cells))
    print("audio rendered, s (before trim):")
    for name in names:
        print(f"  {name:10} " + "  ".join(f"{n}w {timing[name][n]['audio']:.2f}" for n in TIMED))
    print("time = fixed + per second of audio rendered (least squares over every call):")
    for name in names:
        x = np.array([r.audio.size / SAMPLE_RATE for r in samples[name]])
        fits = []
        for what in ("wall", "cpu"):
            y = np.array([getattr(r, what) for r in samples[name]])
            slope, fixed = np.polyfit(x, y, 1)
            fits.append(f"{what} {fixed:+.3f} s + {slope:.3f} s/s")
        print(f"  {name:10} " + ";  ".join(fits))


def report_quality(quality: dict[str, Quality]) -> None:
    print(f"\nquality over {len(CLAUSES)} clauses (medians; onset = sound before the first "
          "phoneme's frame, decay = sound after the last phoneme's start; mel = mean |log-mel "
          "diff| vs base after removing the level difference, whole speech / its last 150 ms)")
    print(f"{'variant':10} {'WER':>6} {'lastword':>8} {'frames':>6} {'speech':>7} {'onset':>6} "
          f"{'decay':>6} {'cut-off':>7} {'level':>6} {'mel':>5} {'melEnd':>6} {'lvl-spread':>10}")
    for name, q in quality.items():
        c = list(q.checks.values())
        wer = f"{q.errors / q.refs:6.1%}" if q.refs else "   n/a"
        levels = [x.active_db for x in c]
        print(f"{name:10} {wer} {len(q.last_word_wrong):8d} "
              f"{statistics.median(x.frames for x in c):6.0f} "
              f"{statistics.median(x.speech_ms for x in c):5.0f}ms "
              f"{statistics.median(x.onset_ms for x in c):4.0f}ms "
              f"{statistics.median(x.decay_ms for x in c):4.0f}ms "
              f"{sum(x.end_peak > LOUD for x in c):7d} "
              f"{statistics.median(x.level_db for x in c):+5.1f} "
              f"{statistics.median(x.mel_db for x in c):5.1f} "
              f"{statistics.median(x.mel_end_db for x in c):6.1f} "
              f"{statistics.pstdev(levels):7.1f} dB")
    c = list(quality["base"].checks.values())
    short = [x for text, x in quality["base"].checks.items() if len(text.split()) <= 4]
    print("\nbase, frames per region (median, min-max): start pad "
          f"{statistics.median(x.lead_frames for x in c):.0f} "
          f"({min(x.lead_frames for x in c)}-{max(x.lead_frames for x in c)}), last phoneme "
          f"{statistics.median(x.last_frames for x in c):.0f} "
          f"({min(x.last_frames for x in c)}-{max(x.last_frames for x in c)}), after it "
          f"{statistics.median(x.trail_frames for x in c):.0f} "
          f"({min(x.trail_frames for x in c)}-{max(x.trail_frames for x in c)}); rendered audio "
          "cut by trim_silence: 1-4 words "
          f"{statistics.median(1 - x.speech_ms / (x.frames * 25) for x in short):.0%}, all "
          f"{statistics.median(1 - x.speech_ms / (x.frames * 25) for x in c):.0%}")
    print("\nper clause: frames/speech ms/onset ms/decay ms/level dB/mel dB "
          "(! = still loud at the end of the raw output)")
    print(f"{'':34} " + " ".join(f"{name:>26}" for name in quality))
    for text in CLAUSES:
        cells = []
        for q in quality.values():
            x = q.checks[text]
            cells.append(f"{x.frames:3d}/{x.speech_ms:4.0f}/{x.onset_ms:4.0f}/{x.decay_ms:4.0f}"
                         f"/{x.level_db:+4.1f}/{x.mel_db:3.1f}{'!' if x.end_peak > LOUD else ' '}")
        print(f"{text[:34]:34} " + " ".join(f"{c:>26}" for c in cells))
    base = quality["base"]
    if base.transcripts:
        print("\ntranscripts (base, then any variant that heard other words)")
        for text in CLAUSES:
            line = f"  {text!r}: base {base.transcripts[text]!r}"
            for name, q in quality.items():
                if name != "base" and words(q.transcripts[text]) != words(base.transcripts[text]):
                    line += f"; {name} {q.transcripts[text]!r}"
            print(line)
        for name, q in quality.items():
            if q.last_word_wrong:
                print(f"last word not heard, {name}: " + "; ".join(q.last_word_wrong))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--voice", default="jm_kumo")
    parser.add_argument("--skip-asr", action="store_true")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--variants", default="",
                        help="comma-separated names to run (base always runs)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: 1 rep, 1 chunk per row, 6 clauses")
    args = parser.parse_args(argv)
    if args.variants:
        wanted = {"base", *args.variants.split(",")}
        VARIANTS[:] = [v for v in VARIANTS if v.name in wanted]
    if args.quick:
        args.reps = 1
        for n in TIMED:
            TIMED[n] = TIMED[n][:1]
        del CLAUSES[6:]

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.perf_counter()
    bench = Bench(args.threads, args.voice)
    VOCAB.update(bench.vocab)
    print(f"model load: plain session {bench.plain_load_s:.2f} s; generator-slice patch "
          f"{bench.patch_s:.2f} s + session from the patched bytes {bench.patched_load_s:.2f} s",
          flush=True)
    for text in ("Sure,", "The capital of France"):  # no caps: the original model, exactly
        a = bench.synth(text, BASE).audio
        for model in ("generator", "naive"):
            b = bench.synth(text, Variant("caps-off", model)).audio
            if not np.array_equal(a, b):
                raise SystemExit(f"the {model} patch with no caps changed the output")
    print("patched models with no caps: bit-identical to the original", flush=True)

    if not args.skip_timing:
        log("timing...")
        table, samples = timing_pass(bench, args.reps, log)
        report_timing(table, samples, args.reps, args.threads)
        sys.stdout.flush()
    if not args.skip_quality:
        log("quality...")
        report_quality(quality_pass(bench, not args.skip_asr, log))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
