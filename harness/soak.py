"""Soak: a day of use and abuse in minutes, through the core the tray agent runs (Assistant),
with the embedded LLM, the real Kokoro, the real PortAudio stream (checked at the ALSA tap)
and push-to-talk through the virtual microphone.

Each turn is typed or spoken and follows a plan drawn at random: finish; interrupt before the
first token, while tokens stream, or while audio plays; interrupt twice in a row (the second
lands in the fade) with new input right behind; new input typed while the reply is still
going; or barge in by voice (the talk key pressed while the agent speaks). Afterwards:

- every turn ended (finished or interrupted) within a bound; no wait timed out (no deadlock);
- after every interrupt the tap is silent from the end of the fade until the next turn's
  first audio;
- the thread count is back to its warmed-up baseline; RSS growth after warm-up;
- the history has one line per turn's question and answer, and every line parses.

The command is bench/soak.py (`python -m bench.soak [--turns 300] [--seed 1]`); the tests run
a short version (tests/test_soak.py).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.assistant import Assistant
from agent.audio.events import AudioChunk
from agent.audio.player import AudioPlayer
from agent.config import Config
from agent.conversation import WAITER_THREAD_NAME, WAITER_THREADS
from agent.events import (
    AgentEvent,
    AgentState,
    EventBus,
    Notice,
    ReplyDelta,
    ReplyDone,
    StateChanged,
    UserSaid,
)
from agent.history import History
from harness.services import read_tap

QUESTIONS = ["What is the capital of France?", "How do I boil an egg?", "Why is the sky blue?",
             "Name a good book to read.", "What is two plus two?", "Tell me a fun fact.",
             "How far away is the moon?", "What should I cook tonight?",
             "Give me a tip for sleeping well.", "What is a rainbow?"]
# How often each plan is drawn (a turn's fate).
PLANS = {"finish": 2, "before-token": 2, "streaming": 2, "audio": 3, "fade": 2, "overlap": 2,
         "barge-in-by-voice": 1}
SPOKEN_SHARE = 0.25
WAIT_S = 120.0  # any single wait longer than this is counted as a deadlock
HEARD_NOTHING = "I heard nothing"


SIGNATURE = 256  # samples kept per chunk start and per cut, to find them in the tap


@dataclass
class ChunkStart:
    frame: int  # the stream frame of the block it started in
    turn: int
    lead: int  # its first sound is this many samples in
    signature: np.ndarray | None  # its first SIGNATURE samples of sound
    tap_index: int | None = None  # where the tap has it (found afterwards)


@dataclass
class Cut:
    frame: int  # the stream frame where the fade began
    before: np.ndarray  # the samples played just before it


class SoakPlayer(AudioPlayer):
    """The real player, also noting at which stream frame each chunk starts and each cut
    begins, with a few samples of each so that they can be found in the tap exactly (an
    underrun can make the tap drop frames, so frame numbers alone drift)."""

    def __init__(self, **kwargs: Any) -> None:
        self.starts: list[ChunkStart] = []
        self.cuts: list[Cut] = []
        super().__init__(**kwargs)

    @property  # type: ignore[override]
    def last_cut(self) -> tuple[float, float, int] | None:
        return self._last_cut

    @last_cut.setter
    def last_cut(self, value: tuple[float, float, int] | None) -> None:
        self._last_cut = value
        chunk = getattr(self, "_current", None)
        if value is not None and chunk is not None:
            before = chunk.samples[max(0, self._pos - SIGNATURE):self._pos].copy()
            self.cuts.append(Cut(value[2], before))

    def _next_chunk(self) -> AudioChunk | None:
        chunk = super()._next_chunk()
        if chunk is not None:
            sound = np.flatnonzero(chunk.samples)
            lead = int(sound[0]) if sound.size else 0
            signature = chunk.samples[lead:lead + SIGNATURE].copy() if sound.size else None
            self.starts.append(ChunkStart(self.frames_written, chunk.turn, lead, signature))
        return chunk


def find_in_tap(tap: np.ndarray, signature: np.ndarray, around: int,
                reach: int = 48_000) -> int | None:
    """Where `signature` begins in the tap, nearest to `around` (None: not there)."""
    lo, hi = max(0, around - reach), min(tap.size, around + reach + signature.size)
    key = int(np.argmax(np.abs(signature)))  # its loudest sample: few places match it
    found = [int(i) + lo for i in np.flatnonzero(tap[lo + key:hi] == signature[key])]
    found = [i for i in found
             if np.array_equal(tap[i:i + signature.size], signature)]
    return min(found, key=lambda i: abs(i - around)) if found else None


class Watch:
    """The bus, kept (reply deltas only the first per turn) with a condition to wait on."""

    def __init__(self) -> None:
        self.events: list[tuple[float, AgentEvent]] = []
        self._first_delta: set[int] = set()
        self._changed = threading.Condition()

    def __call__(self, event: AgentEvent) -> None:
        if isinstance(event, ReplyDelta):
            if not event.text or event.turn in self._first_delta:
                return
            self._first_delta.add(event.turn)
        with self._changed:
            self.events.append((time.monotonic(), event))
            self._changed.notify_all()

    def mark(self) -> int:
        with self._changed:
            return len(self.events)

    def wait(self, test: Callable[[AgentEvent], bool], since: int = 0,
             timeout: float = WAIT_S) -> tuple[float, AgentEvent] | None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for seen in self.events[since:]:
                    if test(seen[1]):
                        return seen
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)

    def of_turn(self, turn: int) -> list[AgentEvent]:
        with self._changed:
            return [e for _, e in self.events if getattr(e, "turn", None) == turn]


@dataclass
class Interrupt:
    turn: int
    at: float
    frame: int  # the player's next frame when it was asked
    speech_turn: int  # the speech turn it cut
    phase: str  # what was going on: before the first token / tokens / audio / fade


@dataclass
class TurnRecord:
    how: str
    plan: str
    submitted: float
    turn: int = 0  # 0: no question came of it (nothing heard)
    ended: float = 0.0
    interrupted: bool = False


@dataclass
class SoakReport:
    turns: list[TurnRecord] = field(default_factory=list)
    interrupts: list[Interrupt] = field(default_factory=list)
    timeouts: list[str] = field(default_factory=list)
    loud_after_interrupt: list[tuple[int, float]] = field(default_factory=list)  # (turn, peak)
    checked_interrupts: int = 0
    interrupt_to_end_s: list[float] = field(default_factory=list)
    threads: tuple[int, int] = (0, 0)  # (warmed-up baseline, end)
    native_threads: tuple[int, int] = (0, 0)
    thread_names: tuple[list[str], list[str]] = ([], [])
    pool_threads: int = 0  # the conversation's waiters at the end (at most WAITER_THREADS)
    rss_mb: tuple[float, float, float] = (0.0, 0.0, 0.0)  # (warmed up, peak, end)
    history_lines: int = 0
    history_bad_lines: int = 0
    history_expected: int = 0
    tap_drift_frames: int = 0
    aligned: tuple[int, int] = (0, 0)  # chunk starts found in the tap, of all
    seconds: float = 0.0

    @property
    def rss_growth(self) -> float:
        return (self.rss_mb[2] - self.rss_mb[0]) / self.rss_mb[0]

    def problems(self, turn_bound_s: float, interrupt_bound_s: float) -> list[str]:
        """What broke a promise ([] when the soak passed)."""
        found = list(self.timeouts)
        found += [f"sound after the interrupt of turn {t} (peak {p:.3f})"
                  for t, p in self.loud_after_interrupt]
        slow = [t for t in self.turns if t.turn and t.ended - t.submitted > turn_bound_s]
        found += [f"turn {t.turn} took {t.ended - t.submitted:.1f} s" for t in slow]
        if self.interrupt_to_end_s and max(self.interrupt_to_end_s) > interrupt_bound_s:
            found.append(f"an interrupt took {max(self.interrupt_to_end_s):.2f} s to end its turn")
        if self.pool_threads > WAITER_THREADS:
            found.append(f"{self.pool_threads} waiter threads (at most {WAITER_THREADS})")
        if self.threads[1] > self.threads[0]:
            found.append(f"threads: {self.threads[1]} at the end ({self.thread_names[1]}), "
                         f"{self.threads[0]} at the start ({self.thread_names[0]})")
        if self.rss_growth > 0.10:
            found.append(f"memory grew {100 * self.rss_growth:.1f} % after warm-up")
        if self.history_bad_lines or self.history_lines != self.history_expected:
            found.append(f"history: {self.history_lines} lines ({self.history_bad_lines} bad), "
                         f"{self.history_expected} expected")
        return found


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def thread_names() -> list[str]:
    return sorted(thread.name for thread in threading.enumerate())


def own_threads() -> int:
    """Threads, less the conversation's pool of waiters: it grows lazily to a fixed size."""
    return sum(1 for thread in threading.enumerate()
               if not thread.name.startswith(WAITER_THREAD_NAME))


def pool_threads() -> int:
    return threading.active_count() - own_threads()


def native_threads() -> int:
    return len(os.listdir("/proc/self/task"))


class Soak:
    def __init__(self, microphone: Any, tap: Path, seed: int, workdir: Path,
                 log: Callable[[str], None] = print,
                 player_class: type[SoakPlayer] = SoakPlayer) -> None:
        self.player_class = player_class
        self.microphone = microphone  # harness.microphone.VirtualMicrophone
        self.tap = tap
        self.rng = random.Random(seed)
        self.log = log
        cfg = Config()
        cfg.tts.voice = "jm_kumo"
        cfg.llm.max_tokens = 24  # a turn that finishes speaks ~5 s
        cfg.stt.input_device = microphone.device
        self.history_path = workdir / "history.jsonl"
        self.watch = Watch()
        bus = EventBus()
        bus.subscribe(self.watch)
        self.players: list[SoakPlayer] = []
        self.assistant = Assistant(cfg, bus, History(self.history_path),
                                   player_factory=self._player)
        self.report = SoakReport()
        self.turn = 0  # the conversation's last turn number
        self.presubmitted: str | None = None  # "typed" / "spoken": the next input is in
        self.recordings: dict[str, np.ndarray] = {}
        self.input_mark = 0

    def _player(self, cfg: Config) -> SoakPlayer:
        # Never paused while idle: the tap's sample index stays the stream's frame index.
        player = self.player_class(blocksize=cfg.audio.blocksize, fade_ms=cfg.audio.fade_ms,
                            idle_stop_s=None)
        self.players.append(player)
        return player

    @property
    def player(self) -> SoakPlayer:
        return self.players[0]

    # -- the run ---------------------------------------------------------------------------------

    def run(self, turns: int, script: list[tuple[str, str]] | None = None) -> SoakReport:
        """`turns` turns of random plans, or the (how, plan) pairs of `script` in order."""
        if script is not None:
            turns = len(script)
        started = time.monotonic()
        assistant = self.assistant.start()
        assert assistant.ready.wait(120) and assistant.speech is not None, "models not loaded"
        assert assistant.conversation is not None and assistant.conversation.warmed.wait(60)
        from agent.listen.whisper import resample

        synth = assistant.speech.synth
        for question in QUESTIONS:
            samples = synth.synthesize(question, "jm_kumo")  # type: ignore[attr-defined]
            self.recordings[question] = resample(samples, 24_000, 16_000)
        warm_up = max(3, turns // 10)
        baseline_taken = False
        try:
            for index in range(turns + 1):
                last = index == turns
                if last and self.presubmitted is None:
                    break
                plan = "finish" if index < 2 or last else self.rng.choices(
                    list(PLANS), weights=list(PLANS.values()))[0]
                how = "spoken" if index == 0 or self.rng.random() < SPOKEN_SHARE else "typed"
                if script is not None and not last:
                    how, plan = script[index]
                self.one_turn(index, how, plan)  # the extra last one takes an input given
                if index + 1 >= warm_up and not baseline_taken and self.presubmitted is None:
                    baseline_taken = True
                    self.settle()
                    self.report.threads = (own_threads(), 0)
                    self.report.thread_names = (thread_names(), [])
                    self.report.native_threads = (native_threads(), 0)
                    self.report.rss_mb = (rss_mb(), 0.0, 0.0)
                elif baseline_taken:
                    warm, peak, _ = self.report.rss_mb
                    self.report.rss_mb = (warm, max(peak, rss_mb()), 0.0)
                if (index + 1) % 25 == 0:
                    self.log(f"  {index + 1} turns, {time.monotonic() - started:.0f} s, "
                             f"RSS {rss_mb():.0f} MiB, {threading.active_count()} threads")
            self.settle()
            base, base_native = self.report.threads[0], self.report.native_threads[0]
            wait_until(lambda: own_threads() <= base, 10)
            wait_until(lambda: native_threads() <= base_native, 10)
            warm, peak, _ = self.report.rss_mb
            self.report.threads = (base, own_threads())
            self.report.pool_threads = pool_threads()
            self.report.thread_names = (self.report.thread_names[0], thread_names())
            self.report.native_threads = (base_native, native_threads())
            self.report.rss_mb = (warm, max(peak, rss_mb()), rss_mb())
        finally:
            frames = self.player.frames_written if self.players else 0
            assistant.close()
        self.report.seconds = time.monotonic() - started
        self.check_tap(frames)
        self.check_history()
        return self.report

    def settle(self) -> None:
        """Wait until every input has had its turn and the speech is over."""
        assistant = self.assistant
        assert assistant.conversation is not None and assistant.speech is not None
        if not assistant.conversation.wait_idle(WAIT_S):
            self.report.timeouts.append("the conversation never went idle")
        if not assistant.speech.wait_until_done(WAIT_S):
            self.report.timeouts.append("the speech never ended")

    # -- one turn ---------------------------------------------------------------------------

    def one_turn(self, index: int, how: str, plan: str) -> None:
        record = TurnRecord(how=self.presubmitted or how, plan=plan, submitted=time.monotonic())
        self.report.turns.append(record)
        if self.presubmitted is None:
            self.give_input(how)
        self.presubmitted = None
        expected = self.turn + 1
        seen = self.watch.wait(lambda e: (isinstance(e, UserSaid) and e.turn == expected)
                               or (isinstance(e, Notice) and HEARD_NOTHING in e.message),
                               since=self.input_mark)
        if seen is None:
            self.report.timeouts.append(f"input {index} never became a turn")
            return
        if isinstance(seen[1], Notice):  # nothing heard: no question, nothing to answer
            record.ended = seen[0]
            return
        self.turn = record.turn = expected
        record.submitted = min(record.submitted, seen[0])
        turn = expected

        def after(kind: type, state: AgentState | None = None) -> bool:
            return self.wait_turn(turn, kind, state) is not None

        if plan == "before-token" or (plan == "streaming" and after(ReplyDelta)):
            self.interrupt(turn)
        elif plan in ("audio", "fade", "barge-in-by-voice"):
            if after(StateChanged, AgentState.SPEAKING):
                self.pause_unless_done(turn, self.rng.uniform(0.0, 2.0))
                if plan == "audio":
                    self.interrupt(turn)
                elif plan == "fade":
                    self.interrupt(turn)
                    self.interrupt(turn, phase="fade")  # lands while the first fades out
                    self.give_input("typed")  # new input right behind
                    self.presubmitted = "typed"
                else:
                    self.note_interrupt(turn)  # start_listening cuts the speech itself
                    self.give_input("spoken")
                    self.presubmitted = "spoken"
        elif plan == "overlap" and after(ReplyDelta):
            self.give_input("typed")  # waits until this reply's speech is over
            self.presubmitted = "typed"
        done = self.wait_turn(turn, ReplyDone)
        error = next((e for e in self.watch.of_turn(turn) if isinstance(e, StateChanged)
                      and e.state is AgentState.ERROR), None)
        if done is None:
            self.report.timeouts.append(f"turn {turn} never ended")
            return
        record.ended = done[0]
        record.interrupted = isinstance(done[1], ReplyDone) and done[1].interrupted
        if error is not None:
            self.report.timeouts.append(f"turn {turn} failed: {error.message}")
        for interrupt in self.report.interrupts:
            if interrupt.turn == turn and interrupt.phase != "fade":
                self.report.interrupt_to_end_s.append(done[0] - interrupt.at)

    def wait_turn(self, turn: int, kind: type, state: AgentState | None = None,
                  timeout: float = WAIT_S) -> tuple[float, AgentEvent] | None:
        def test(event: AgentEvent) -> bool:
            if isinstance(event, ReplyDone) and event.turn == turn and kind is not ReplyDone:
                return True  # the reply ended before what was awaited
            return (isinstance(event, kind) and getattr(event, "turn", None) == turn
                    and (state is None or getattr(event, "state", None) is state))
        seen = self.watch.wait(test, timeout=timeout)
        if seen is None or (kind is not ReplyDone and isinstance(seen[1], ReplyDone)):
            return None
        return seen

    def pause_unless_done(self, turn: int, seconds: float) -> None:
        self.watch.wait(lambda e: isinstance(e, ReplyDone) and e.turn == turn, timeout=seconds)

    def give_input(self, how: str) -> None:
        self.input_mark = self.watch.mark()  # its turn (or "heard nothing") comes after this
        question = self.rng.choice(QUESTIONS)
        if how == "typed":
            self.assistant.submit(question)
            return
        if not self.assistant.start_listening():
            self.report.timeouts.append("the microphone did not open")
            return
        self.microphone.say(self.recordings[question])
        if not self.microphone.wait_until_said(30):
            self.report.timeouts.append("the virtual microphone stalled")
        time.sleep(0.25)  # the user lets go of the key just after the last word
        self.assistant.stop_listening()

    def note_interrupt(self, turn: int, phase: str = "") -> None:
        events = self.watch.of_turn(turn)
        if any(isinstance(e, ReplyDone) for e in events):
            return  # over already: nothing to cut
        if not phase:
            speaking = any(isinstance(e, StateChanged) and e.state is AgentState.SPEAKING
                           for e in events)
            phase = ("audio" if speaking else "tokens streaming"
                     if any(isinstance(e, ReplyDelta) for e in events)
                     else "before the first token")
        speech = self.assistant.speech
        assert speech is not None
        self.report.interrupts.append(Interrupt(turn, time.monotonic(),
                                                self.player.frames_written, speech.turn, phase))

    def interrupt(self, turn: int, phase: str = "") -> None:
        self.note_interrupt(turn, phase)
        self.assistant.interrupt()

    # -- checks afterwards ------------------------------------------------------------------

    def check_tap(self, frames: int) -> None:
        """From the end of each interrupt's fade (or two blocks on, when nothing was
        playing) to the next turn's first audio, the tap must be silent. Frame numbers are
        mapped to tap positions by finding each chunk start and cut in the tap."""
        tap = read_tap(self.tap)
        player = self.player
        self.report.tap_drift_frames = frames - tap.size
        block, fade = player.blocksize, player.fade_samples
        # Tap index = frame + offset; the offset changes only when an underrun drops frames.
        offsets: list[tuple[int, int]] = [(0, 0)]  # (frame, offset from there on)
        exact_cut: dict[int, int] = {}  # cut frame -> its tap index
        marks = sorted([(c.frame, c) for c in player.cuts] + [(s.frame, s) for s in player.starts],
                       key=lambda pair: pair[0])
        for frame, mark in marks:
            offset = offsets[-1][1]
            if isinstance(mark, ChunkStart) and mark.signature is not None:
                found = find_in_tap(tap, mark.signature, frame + mark.lead + offset)
                if found is not None:
                    mark.tap_index = found - mark.lead
                    # Its block began up to one block before: an upper bound on the offset.
                    offsets.append((frame, mark.tap_index - frame))
            elif isinstance(mark, Cut) and np.any(mark.before):
                found = find_in_tap(tap, mark.before, frame - mark.before.size + offset)
                if found is not None:
                    exact_cut[frame] = found + mark.before.size
                    offsets.append((frame, exact_cut[frame] - frame))
        self.report.aligned = (sum(s.tap_index is not None for s in player.starts),
                               len(player.starts))

        def offset_at(frame: int) -> int:  # offsets are in frame order
            return [o for f, o in offsets if f <= frame][-1]

        for interrupt in self.report.interrupts:
            if interrupt.phase == "fade":
                continue  # its window is the first interrupt's
            frame = interrupt.frame
            start = frame + 2 * block + offset_at(frame)
            cuts = [c for c in exact_cut if frame <= c <= frame + 4 * block]
            if cuts:
                start = max(start, exact_cut[cuts[0]] + fade)
            later = [s for s in player.starts
                     if s.turn > interrupt.speech_turn and s.frame >= frame]
            if not later:
                end = tap.size
            elif later[0].tap_index is not None:
                end = later[0].tap_index
            else:  # not found in the tap: stop well short of where it should be
                end = later[0].frame + offset_at(later[0].frame) - 2 * block
            window = tap[start:end]
            self.report.checked_interrupts += 1
            if window.size and np.any(window):
                self.report.loud_after_interrupt.append(
                    (interrupt.turn, float(np.max(np.abs(window)))))

    def check_history(self) -> None:
        lines = self.history_path.read_bytes().splitlines()
        self.report.history_lines = len(lines)
        for line in lines:
            try:
                json.loads(line)
            except ValueError:
                self.report.history_bad_lines += 1
        questions = sum(1 for _, e in self.watch.events if isinstance(e, UserSaid))
        answers = sum(1 for _, e in self.watch.events if isinstance(e, ReplyDone)
                      and (e.text or not e.interrupted))
        self.report.history_expected = questions + answers


def wait_until(test: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not test():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def describe(report: SoakReport) -> str:
    def spread(values: list[float]) -> str:
        if not values:
            return "none"
        ordered = sorted(values)
        p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
        return (f"median {statistics.median(ordered):.2f}  p90 {p90:.2f}  "
                f"max {ordered[-1]:.2f} s  (n={len(values)})")

    turns = [t for t in report.turns if t.turn]
    phases: dict[str, int] = {}
    for interrupt in report.interrupts:
        phases[interrupt.phase] = phases.get(interrupt.phase, 0) + 1
    plans: dict[str, int] = {}
    for record in report.turns:
        plans[record.plan] = plans.get(record.plan, 0) + 1
    rss_warm, rss_peak, rss_end = report.rss_mb
    lines = [
        f"{len(report.turns)} inputs in {report.seconds:.0f} s: "
        f"{sum(t.how == 'typed' for t in report.turns)} typed, "
        f"{sum(t.how == 'spoken' for t in report.turns)} spoken "
        f"({sum(1 for t in report.turns if not t.turn)} heard as nothing); "
        f"{len(turns)} turns, {sum(t.interrupted for t in turns)} interrupted",
        "plans: " + ", ".join(f"{k} {v}" for k, v in sorted(plans.items())),
        "interrupts by moment: " + ", ".join(f"{k} {v}" for k, v in sorted(phases.items())),
        f"input -> turn ended:       {spread([t.ended - t.submitted for t in turns])}",
        f"interrupt -> turn ended:   {spread(report.interrupt_to_end_s)}",
        f"waits that timed out (deadlock bound {WAIT_S:.0f} s): {len(report.timeouts)}",
        f"audio after an interrupt (beyond the fade): {len(report.loud_after_interrupt)} of "
        f"{report.checked_interrupts} checked; tap vs stream frames: "
        f"{report.tap_drift_frames} frames apart at the end; {report.aligned[0]} of "
        f"{report.aligned[1]} chunk starts found in the tap",
        f"Python threads: {report.threads[0]} warmed up, {report.threads[1]} at the end, "
        f"besides {report.pool_threads} of at most {WAITER_THREADS} waiters; "
        f"OS threads {report.native_threads[0]} -> {report.native_threads[1]}; at the end: "
        f"{', '.join(report.thread_names[1])}",
        f"RSS: {rss_warm:.0f} MiB warmed up, peak {rss_peak:.0f}, end {rss_end:.0f} "
        f"({100 * report.rss_growth:+.1f} %)",
        f"history: {report.history_lines} lines, {report.history_bad_lines} damaged, "
        f"{report.history_expected} expected",
    ]
    return "\n".join(lines)
