"""Interrupt path: a hotkey press -> the last non-zero sample at the ALSA tap, today's path
beside the new one, in the same run (issue 14, point 1).

Today's path: the hotkey posts the interrupt to the Tk thread's mailbox, first in first out
with every reply token, and it waits behind whatever the Tk thread is doing (a DesktopApp whose
`post` sends everything to the mailbox, as it did before). The new path: `DesktopApp.post`
calls the core's thread-safe interrupt on the hotkey's own thread. The two alternate, trial
by trial, in one agent, so both see the same machine.

The real tray agent runs in a child process per hotkey backend (DesktopApp: the Tk overlay,
the pystray tray, the control socket, the real Kokoro model and audio stream), under Xvfb
with the tapped PulseAudio. `keyboard` reads the FIFO evdev keyboard (harness.desktop);
pynput listens to X while one long-lived `xdotool -` types. The press time is taken just
before the chord's last key goes out (ctrl and alt are already down). Each case while speech
plays:

  (a) idle    `say` of a long text; the Tk thread has nothing else to do
  (b) tokens  a reply from a loopback OpenAI-compatible server (harness.token_flood, its own
              process): once its opening sentence is playing, the server floods the rest
              (--flood-tokens) as fast as it can, every token an event for the Tk thread;
              the key goes down once 300 of them have reached the core
  (c) busy    `say`, and the Tk thread blocked for 2 s just before the press

When the sound ends: the last non-zero sample in the tap file, found sample-exactly in what
the agent's audio callback wrote (the 1024 samples up to it match the tap bit for bit; where
an underrun made the device path lose samples before it, its last 64 samples are looked up),
and timed by that callback: its clock when it ran plus the sample's place in its block. (The
tap file's own growth is no clock: the file plugin writes about 32 ms behind, more after an
underrun.) When the callback ran so late that the device ran dry and dropped the block with
the fade, the tap's sound ends before the fade; such a trial is timed by the callback's own
last non-zero sample, and the report says how many there were.

The floor, in this run, is the bare callback stream of bench.cut_latency (zeros from the first
block after a flag, no fade, no queue), timed the same way. Target: every case within one
audio block plus the fade of that floor, at the median and at p90.

Also shown, from the press (medians; the hotkey also at its worst): the hotkey backend
calls DesktopApp.post; the core's Assistant.interrupt() is called; the audio callback starts
the fade; and how many commands waited in the Tk mailbox at the press. A trial counts only if
sound was playing at the press and the callback faded it after the press; otherwise (a pause
between clauses, a chord the hotkey library missed) it is tried again, and said so.

    python -m bench.interrupt_path [--repeats 6] [--backend both|keyboard|pynput]
                                   [--cases idle,tokens,busy] [--flood-tokens 8000]
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import logging
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from bench.harness import start_audio, start_desktop
from harness import token_flood
from harness.services import end_process

SR = 24_000
BLOCKSIZE, FADE_MS = 256, 3.0  # the [audio] defaults, which the agent runs with here
CASES = {"idle": "(a) idle", "tokens": "(b) tokens", "busy": "(c) Tk busy 2 s"}
PATHS = ("today", "new")
BUSY_S = 2.0
MATCH = 1024  # samples up to the last non-zero one that should equal the callback's
TAIL = 64  # at least these must, to find the tap's last sound in what the callback wrote
LONG_TEXT = " ".join([
    "This is a long announcement, read so that there is always something to cut.",
    "It goes on for a while about nothing in particular, the weather, the trains, the price "
    "of bread, and then some more, until somebody stops it.",
] * 6)
QUESTION = "Tell me a long story about a river."
FLOOD_STARTED = 300  # tokens of the flood that have reached the core before the press
Samples = npt.NDArray[np.float32]
log = logging.getLogger("bench.interrupt_path")


# --- what the callback wrote, and when ---------------------------------------------------------


class BlockLog:
    """Every block an audio callback wrote while armed: its samples and when it ran."""

    def __init__(self, seconds: float = 90.0) -> None:
        self.samples: Samples = np.zeros(int(seconds * SR), np.float32)
        self.walls: list[float] = []
        self.starts: list[int] = []
        self.used = 0

    def add(self, wall: float, block: Samples) -> None:
        n = block.shape[0]
        if self.used + n > self.samples.shape[0]:
            return  # full: the trial is long over
        self.samples[self.used:self.used + n] = block
        self.walls.append(wall)
        self.starts.append(self.used)
        self.used += n

    def written(self) -> Samples:
        return self.samples[:self.used]

    def time_of(self, index: int) -> float:
        """When sample `index` went out: its block's callback time plus its place in it."""
        block = bisect.bisect_right(self.starts, index) - 1
        return self.walls[block] + (index - self.starts[block] + 1) / SR

    def block_at(self, wall: float) -> int:
        """The end (exclusive) of the last block written by time `wall`."""
        block = bisect.bisect_right(self.walls, wall)
        return self.starts[block] if block < len(self.starts) else self.used


def last_nonzero(samples: Samples) -> int | None:
    found = np.flatnonzero(samples)
    return int(found[-1]) if found.size else None


def find_tail(written: Samples, tail: Samples) -> int | None:
    """The index in `written` of the last sample of the last place where `tail` occurs."""
    if tail.size == 0:
        return None
    for end in np.flatnonzero(written == tail[-1])[::-1]:
        start = int(end) - tail.size + 1
        if start >= 0 and np.array_equal(written[start:end + 1], tail):
            return int(end)
    return None


def read_tap_from(tap: Path, first: int) -> Samples:
    """The tap's samples from index `first` on."""
    if not tap.exists():
        return np.zeros(0, np.float32)
    return np.fromfile(tap, dtype="<f4", offset=4 * first)


def tap_samples(tap: Path) -> int:
    return tap.stat().st_size // 4 if tap.exists() else 0


# --- the parent: services, the floor, one child per backend, the table ---------------------


def measure_floor(tap: Path) -> tuple[float, bool]:
    """Flag set -> the last non-zero sample, for a bare stream that writes zeros from the
    first block that sees the flag (no fade): timed by its callback; and whether the tap
    holds exactly the non-zero samples the callback wrote (not so after an underrun)."""
    import sounddevice as sd

    blocks = BlockLog(5.0)
    state = {"cut": False}

    def callback(out: Any, frames: int, timeinfo: Any, status: Any) -> None:
        wall = time.monotonic()
        out.fill(0.0 if state["cut"] else 0.3)
        blocks.add(wall, out[:, 0])

    tap.unlink(missing_ok=True)
    with sd.OutputStream(samplerate=SR, channels=1, dtype="float32", blocksize=BLOCKSIZE,
                         latency="low", callback=callback):
        time.sleep(random.uniform(0.3, 0.6))  # a random moment in a block
        flagged = time.monotonic()
        state["cut"] = True
        time.sleep(0.3)
    last = last_nonzero(blocks.written())
    assert last is not None
    return (blocks.time_of(last) - flagged,
            int(np.count_nonzero(read_tap_from(tap, 0))) == last + 1)


@contextlib.contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """File descriptor 2 (where ALSA reports each underrun) into `path` meanwhile."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with path.open("ab") as sink:
            os.dup2(sink.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def run_worker(backend: str, args: argparse.Namespace, flood_url: str,
               workdir: Path) -> dict[str, Any]:
    home = workdir / backend
    (home / "config").mkdir(parents=True)
    (home / "data").mkdir()
    (home / "data" / "first-run-done").touch()  # agent.first_run.MARKER_NAME: not a first run
    (home / "config" / "config.toml").write_text(
        f'[tts]\nvoice = "{args.voice}"\n\n'
        f'[llm]\nbackend = "openai"\nbase_url = "{flood_url}"\nmodel = "flood"\n'
        "max_tokens = 32768\n\n"
        f'[hotkeys]\nbackend = "{backend}"\n', encoding="utf-8")
    out = home / "results.json"
    log_file = home / "worker.log"
    env = {**os.environ, "VOICE_AGENT_CONFIG_DIR": str(home / "config"),
           "VOICE_AGENT_DATA_DIR": str(home / "data"),
           "VOICE_AGENT_RUNTIME_DIR": str(home / "run"),
           "VOICE_AGENT_LOG_DIR": str(home / "logs"),
           "PYSTRAY_BACKEND": "gtk", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "bench.interrupt_path", "--worker", backend,
               "--repeats", str(args.repeats), "--cases", args.cases, "--out", str(out),
               "--seed", str(args.seed)]
    if backend == "keyboard":
        command = private_input_devices(command)
    with log_file.open("w") as sink:
        child = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL,
                                 cwd=Path(__file__).resolve().parents[1])
        try:
            child.wait(args.worker_timeout)
        except subprocess.TimeoutExpired:
            end_process(child, 10)
    if not out.exists():
        tail = log_file.read_text(errors="replace")[-3000:]
        raise SystemExit(f"the {backend} worker left no results (exit {child.returncode}); "
                         f"its log, {log_file}:\n{tail}")
    results: dict[str, Any] = json.loads(out.read_text())
    results["log"] = str(log_file)
    return results


def private_input_devices(command: list[str]) -> list[str]:
    """`command` in a mount namespace of its own with an empty /dev/input: `keyboard` in any
    other process reads every /dev/input/by-id/*-event-kbd it finds, FIFOs included, and a
    test run beside this one would take our key events (and we theirs). Root only, as the
    FIFO keyboard is."""
    if not shutil.which("unshare"):
        print("unshare (util-linux) is missing: the FIFO keyboard is shared with any other "
              "process that runs `keyboard` meanwhile", flush=True)
        return command
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount -t tmpfs -o mode=755 bench-input /dev/input && exec "$@"', "sh", *command]


def quantiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


def ms(value: float, width: int = 7) -> str:
    return f"{1000 * value:{width}.1f}"


def report(floor: list[float], runs: dict[str, dict[str, Any]], repeats: int) -> None:
    allowance = BLOCKSIZE / SR + FADE_MS / 1000
    floor_median, floor_p90 = quantiles(floor)
    target = (floor_median + allowance, floor_p90 + allowance)
    print(f"\ninterrupt path: hotkey press -> the last non-zero sample at the ALSA tap "
          f"({repeats} trials a row)")
    print(f"audio: blocksize {BLOCKSIZE} ({1000 * BLOCKSIZE / SR:.1f} ms a block), fade "
          f"{FADE_MS:g} ms: one block + fade = {1000 * allowance:.1f} ms")
    print(f"floor, the bare stream (flag -> its last non-zero sample, timed the same way): "
          f"median {ms(floor_median, 0)}  p90 {ms(floor_p90, 0)}  max {ms(max(floor), 0)} ms "
          f"(n={len(floor)})")
    print(f"target: within one block + fade of the floor: median <= {ms(target[0], 0)} ms, "
          f"p90 <= {ms(target[1], 0)} ms")
    print(f"\n{'':34}press -> last sound, ms | press -> ..., ms: medians  | Tk mailbox | within")
    print(f"{'backend':9} {'case':16} {'path':6} {'median':>7} {'p90':>7} {'max':>7} | "
          f"{'hotkey (max)':>14} {'interrupt':>9} {'fade':>6} | {'at press':>10} | target")
    verdicts = []
    notes: list[str] = []
    for backend, run in runs.items():
        trials = [Trial(**t) for t in run.get("trials", [])]
        for case, label in CASES.items():
            for path in PATHS:
                rows = [t for t in trials if t.case == case and t.path == path and t.valid]
                if not rows:
                    continue
                silence = [t.silence for t in rows]
                median, p90 = quantiles(silence)
                met = median <= target[0] and p90 <= target[1]
                if path == "new":
                    verdicts.append(met)
                hotkey = [t.hotkey for t in rows]
                print(f"{backend:9} {label:16} {path:6} {ms(median)} {ms(p90)} "
                      f"{ms(max(silence))} | {ms(statistics.median(hotkey))} "
                      f"({ms(max(hotkey), 0):>4}) "
                      f"{ms(statistics.median(t.interrupt for t in rows), 9)} "
                      f"{ms(statistics.median(t.fade_start for t in rows), 6)} | "
                      f"{statistics.median(t.backlog for t in rows):10.0f} | "
                      f"{'yes' if met else 'NO'}")
            again = [t for t in trials if t.case == case and not t.valid]
            if again:
                reasons = "; ".join(sorted({t.why for t in again}))
                notes.append(f"{backend} {label}: {len(again)} trial(s) tried again: {reasons}")
        found = sum(1 for t in trials if t.valid and t.tap == "found")
        if found:
            notes.append(f"{backend}: in {found} counted trial(s) an underrun had made the tap "
                         "differ from the callback's output before the end; the tap's last "
                         f"sound was found by its last {TAIL} samples")
        lost = [t for t in trials if t.valid and t.tap == "fade lost"]
        if lost:
            notes.append(f"{backend}: in {len(lost)} counted trial(s) ("
                         + ", ".join(f"{CASES[t.case]} {t.path}" for t in lost)
                         + ") the audio callback came late, the device ran dry and dropped "
                         "the block with the fade: timed by the callback's own last sound")
        rates = [t.token_rate for t in trials if t.case == "tokens" and t.valid]
        if rates:
            notes.append(f"{backend} (b): reply tokens reaching the core in the 0.1 s before "
                         f"the press: median {statistics.median(rates):,.0f} a second")
        if run.get("error"):
            notes.append(f"{backend}: the worker stopped early: "
                         f"{run['error'].strip().splitlines()[-1]} (log: {run['log']})")
    print("\nhotkey: the backend calls DesktopApp.post; interrupt: Assistant.interrupt() is "
          "called;\nfade: the audio callback starts the fade; Tk mailbox: commands waiting "
          "for the Tk thread")
    for note in notes:
        print(note)
    if verdicts:
        print(f"new path: within the target in {sum(verdicts)} of {len(verdicts)} backend x "
              "case rows")


def parent(args: argparse.Namespace) -> None:
    began = time.monotonic()
    tap = start_audio()
    start_desktop()
    workdir = Path(tempfile.mkdtemp(prefix="voice-agent-bench-interrupt-"))
    with stderr_to(workdir / "floor.log"):  # ALSA's "underrun occurred" lines
        floors = [measure_floor(tap) for _ in range(max(10, 2 * args.repeats))]
    floor = [value for value, _ in floors]
    if not all(exact for _, exact in floors):
        print(f"floor: in {sum(not exact for _, exact in floors)} of {len(floors)} trials the "
              "tap lost samples (an underrun)")
    flood = token_flood.start_token_flood(args.flood_tokens)
    runs: dict[str, dict[str, Any]] = {}
    made_input = not Path("/dev/input").exists()  # the keyboard worker mounts over it
    Path("/dev/input").mkdir(exist_ok=True)
    try:
        backends = ("keyboard", "pynput") if args.backend == "both" else (args.backend,)
        for backend in backends:
            print(f"{backend}: running the agent ({time.monotonic() - began:.0f} s so far)",
                  flush=True)
            tap.unlink(missing_ok=True)
            runs[backend] = run_worker(backend, args, flood.base_url, workdir)
    finally:
        flood.stop()
        tap.unlink(missing_ok=True)  # tens of megabytes of speech
        if made_input:
            with contextlib.suppress(OSError):
                Path("/dev/input").rmdir()
    report(floor, runs, args.repeats)
    print(f"\n(the whole run took {time.monotonic() - began:.0f} s; the agents' logs are in "
          f"{workdir})")


# --- the child: the real agent, in this process, and a driver thread -----------------------


@dataclass
class Trial:
    case: str
    path: str
    valid: bool
    why: str = ""
    silence: float = 0.0  # press -> the last non-zero sample (found in the tap)
    hotkey: float = 0.0  # press -> DesktopApp.post(Interrupt) called by the hotkey backend
    interrupt: float = 0.0  # press -> Assistant.interrupt() called
    fade_start: float = 0.0  # press -> the audio callback that started the fade
    backlog: int = 0  # commands waiting in the Tk mailbox at the press
    token_rate: float = 0.0  # reply tokens a second reaching the core just before the press
    # "exact": the tap's last MATCH samples are the callback's last, bit for bit; "found":
    # an underrun lost samples before, the tap's last sound is found by its last TAIL; "fade
    # lost": the device ran dry before the fade block and dropped it (timed by the callback)
    tap: str = "exact"


@dataclass(frozen=True)
class Busy:
    """Keep the Tk thread blocked this long (as a settings save or autostart toggle may)."""

    seconds: float
    started: threading.Event = field(compare=False)


@dataclass(frozen=True)
class Marker:
    """Set when the Tk thread reaches it: everything posted before it has been handled."""

    reached: threading.Event = field(compare=False)


class Presser:
    """Sends the interrupt chord (ctrl+alt+x, the default); press() returns the time just
    before its last key went out."""

    def press(self) -> float:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class EvdevPresser(Presser):
    def __init__(self, keyboard: Any) -> None:
        self.kb = keyboard

    def press(self) -> float:
        kb = self.kb
        kb.press(kb.KEY_LEFTCTRL)
        kb.press(kb.KEY_LEFTALT)
        time.sleep(kb.gap)  # keyboard's matcher wants paced events; none is held back after
        pressed = time.monotonic()
        kb.press(kb.KEY_X)
        return pressed

    def release(self) -> None:
        kb = self.kb
        for key in (kb.KEY_X, kb.KEY_LEFTALT, kb.KEY_LEFTCTRL):
            kb.release(key)


class XdotoolPresser(Presser):
    """One `xdotool -` for the whole run: it carries out each line as it arrives (starting an
    xdotool per key would add about 3 ms)."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(["xdotool", "-"], stdin=subprocess.PIPE, text=True)

    def _send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def press(self) -> float:
        self._send("keydown ctrl+alt")
        time.sleep(0.05)
        pressed = time.monotonic()
        self._send("keydown x")
        return pressed

    def release(self) -> None:
        self._send("keyup x keyup alt keyup ctrl")

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(3)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def make_app_class() -> type:
    """DesktopApp with the switch between the two paths and the bench's Tk-thread commands
    (imported late: the child sets up its environment first)."""
    from agent.desktop import commands as cmd
    from agent.desktop.app import DesktopApp

    class BenchApp(DesktopApp):
        today = False  # True: today's path, every command through the mailbox
        on_post: Callable[[object], None] = staticmethod(lambda command: None)

        def post(self, command: cmd.Command) -> None:
            self.on_post(command)
            if self.today:
                self.mailbox.post(command)  # as before: the Tk thread carries it out
            else:
                super().post(command)

        def handle(self, command: cmd.Command) -> None:
            bench_command = cast(object, command)
            if isinstance(bench_command, Busy):
                bench_command.started.set()
                time.sleep(bench_command.seconds)  # the Tk thread blocked, on purpose
            elif isinstance(bench_command, Marker):
                bench_command.reached.set()
            else:
                if isinstance(command, cmd.Interrupt):  # today's handler, on the Tk thread
                    self.assistant.interrupt()  # (DesktopApp.handle has none any more)
                super().handle(command)  # then the menu and the header, as for any command

    return BenchApp


def timed_player_factory(blocks: list[BlockLog | None]) -> Callable[[Any], Any]:
    """The agent's own AudioPlayer, whose callback also notes, while `blocks[0]` is set, each
    block it wrote and when it ran."""
    from agent.assistant import make_player
    from agent.audio.player import AudioPlayer

    class TimedPlayer(AudioPlayer):
        def _callback(self, outdata: Any, frames: int, timeinfo: Any, status: Any) -> None:
            wall = time.monotonic()
            super()._callback(outdata, frames, timeinfo, status)
            log_ = blocks[0]
            if log_ is not None:
                log_.add(wall, outdata[:, 0])

    def make(cfg: Any) -> AudioPlayer:
        player = make_player(cfg)
        player.__class__ = TimedPlayer  # built as the agent builds it; the callback noted
        return player

    return make


class Driver:
    def __init__(self, app: Any, presser: Presser, tap: Path, blocks: list[BlockLog | None],
                 args: argparse.Namespace) -> None:
        self.app = app
        self.presser = presser
        self.tap = tap
        self.armed = blocks
        self.log = BlockLog()
        self.args = args
        self.trials: list[Trial] = []
        self.error = ""
        self.posted: list[float] = []
        self.interrupted: list[float] = []
        self.deltas: list[float] = []

    def instrument(self) -> None:
        """When the hotkey posted, when the core was told, and the tokens reaching the core."""
        from agent.desktop import commands as cmd
        from agent.events import ReplyDelta

        app = self.app

        def on_post(command: object) -> None:
            if isinstance(command, cmd.Interrupt):
                self.posted.append(time.monotonic())

        app.on_post = on_post
        interrupt = app.assistant.interrupt

        def timed_interrupt() -> None:
            self.interrupted.append(time.monotonic())
            interrupt()

        setattr(app.assistant, "interrupt", timed_interrupt)  # noqa: B010 (a method on purpose)
        def count_tokens(event: object) -> None:
            if isinstance(event, ReplyDelta):
                self.deltas.append(time.monotonic())

        app.bus.subscribe(count_tokens)

    @staticmethod
    def wait(predicate: Callable[[], bool], timeout: float, what: str) -> bool:
        end = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > end:
                if what:
                    raise TimeoutError(f"{what}: not within {timeout:g} s")
                return False
            time.sleep(0.005)
        return True

    def settle(self) -> None:
        """Idle, the Tk thread has handled everything posted, nothing left to play."""
        from agent.events import AgentState

        app = self.app
        self.wait(lambda: app.assistant.state is AgentState.IDLE, 60, "idle")
        reached = threading.Event()
        app.mailbox.post(Marker(reached))
        if not reached.wait(60):
            raise TimeoutError("the Tk thread did not drain its mailbox in 60 s")
        speech = app.assistant.speech
        self.wait(lambda: not speech.busy, 10, "speech done")
        time.sleep(0.2)

    def trial(self, case: str, path: str) -> Trial:
        app = self.app
        app.today = path == "today"
        self.settle()
        player = app.assistant.speech.sink
        first = tap_samples(self.tap)
        self.log = BlockLog()
        self.armed[0] = self.log
        try:
            return self._trial(case, path, player, first)
        finally:
            self.armed[0] = None

    def _trial(self, case: str, path: str, player: Any, first: int) -> Trial:
        from agent.desktop import commands as cmd
        from agent.events import AgentState

        app = self.app
        if case == "tokens":
            app.assistant.submit(QUESTION)  # as the overlay does with typed text
        else:
            app.post(cmd.Say(LONG_TEXT))  # as the control socket does
        self.wait(lambda: app.assistant.state is AgentState.SPEAKING, 60, "speaking")
        time.sleep(random.uniform(0.4, 0.7))  # into the speech, at a random block phase
        if case == "tokens":  # the reply's opening is playing: now its flood
            flooding = len(self.deltas) + FLOOD_STARTED
            token_flood.go(app.cfg.llm.base_url)
            self.wait(lambda: len(self.deltas) >= flooding, 30, "the flood")
            time.sleep(random.uniform(0.0, 0.1))
        if case == "busy":
            started = threading.Event()
            app.mailbox.post(Busy(BUSY_S, started))
            if not started.wait(30):
                raise TimeoutError("the Tk thread did not start the busy command")
        cut_before = player.last_cut
        backlog = app.mailbox._queue.qsize()
        self.posted.clear()
        self.interrupted.clear()
        pressed = self.presser.press()
        rate = (len(self.deltas) - bisect.bisect_left(self.deltas, pressed - 0.1)) / 0.1
        trial = Trial(case, path, valid=False, backlog=backlog, token_rate=rate)
        try:
            fired = self.wait(lambda: bool(self.posted), 3, "")
            # the cut, or the interrupt landing in a pause (then no fade comes)
            cut = fired and self.wait(lambda: player.last_cut is not cut_before
                                      or (bool(self.interrupted) and not player._busy),
                                      BUSY_S + 10, "")
        finally:
            self.presser.release()
        if not fired:
            trial.why = "the hotkey library missed the chord"
            app.assistant.interrupt()  # end the speech; the trial is tried again
            return trial
        if not cut:
            log.error("no cut: posted %s interrupted %s last_cut %s busy %s state %s "
                      "mailbox %d", [p - pressed for p in self.posted],
                      [i - pressed for i in self.interrupted], player.last_cut,
                      player._busy, app.assistant.state, app.mailbox._queue.qsize())
            trial.why = "no cut came"
            app.assistant.interrupt()
            return trial
        trial.hotkey = self.posted[0] - pressed
        trial.interrupt = self.interrupted[0] - pressed
        if player.last_cut is cut_before or player.last_cut[0] < pressed:
            trial.why = "nothing was playing when the interrupt came (a pause between clauses)"
            return trial
        trial.fade_start = player.last_cut[0] - pressed
        time.sleep(0.1)  # a few blocks after the fade: the log holds its end
        written = self.log.written()
        at_press = self.log.block_at(pressed)
        if np.abs(written[max(0, at_press - SR // 10):at_press]).max(initial=0.0) < 0.005:
            trial.why = "silence at the press (a pause between clauses)"
            return trial
        fade = self.log.block_at(player.last_cut[0]) - BLOCKSIZE  # the fade starts its block
        end = last_nonzero(written)
        if end is None or end < fade:
            trial.why = "the sound had stopped before the fade (a pause between clauses)"
            return trial
        expected = written[max(0, end - MATCH + 1):end + 1]

        def tap_agrees() -> bool:
            heard = read_tap_from(self.tap, first)
            last = last_nonzero(heard)
            return (last is not None and last + 1 >= expected.size
                    and np.array_equal(heard[last + 1 - expected.size:last + 1], expected))

        if self.wait(tap_agrees, 1.0, ""):
            trial.silence = self.log.time_of(end) - pressed
            trial.valid = True
            return trial
        # The device path lost or added samples near the end (an underrun): find the tap's
        # last sound in what the callback wrote, by its last TAIL samples, bit for bit.
        heard = read_tap_from(self.tap, first)
        last = last_nonzero(heard)
        found = None if last is None else find_tail(written, heard[max(0, last - TAIL + 1):
                                                                   last + 1])
        log.warning("the tap differs from the callback's output before the end (underflows "
                    "so far %d); its last sound found in the log at %s (the fade starts at "
                    "%d, the log's last sound is at %d)", player.underflows, found, fade, end)
        if found is None:
            trial.why = "the tap's last sound is nothing the callback wrote"
            return trial
        if found >= fade:
            trial.tap = "found"
            trial.silence = self.log.time_of(found) - pressed
        else:  # the device ran dry before the fade came, and dropped it: the path's own end
            trial.tap = "fade lost"
            trial.silence = self.log.time_of(end) - pressed
        trial.valid = True
        return trial

    def run(self) -> None:
        app = self.app
        try:
            if not app.assistant.ready.wait(180):
                raise TimeoutError("the models did not load in 180 s")
            conversation = app.assistant.conversation
            if app.assistant.speech is None or conversation is None:
                raise RuntimeError("speech did not load; see the log")
            conversation.warmed.wait(60)
            if app._hotkeys_thread is not None:
                app._hotkeys_thread.join(30)
            self.instrument()
            cases = self.args.cases.split(",")
            for case in cases:  # each case once, untimed: everything warm
                self.trial(case, "new")
            for case in cases:
                for i in range(self.args.repeats):
                    for path in (PATHS if i % 2 == 0 else PATHS[::-1]):
                        for _attempt in range(4):
                            result = self.trial(case, path)
                            self.trials.append(result)
                            log.info("trial %s", result)
                            if result.valid:
                                break
        except Exception:
            self.error = traceback.format_exc()
            log.error("%s", self.error)
        finally:
            from agent.desktop import commands as cmd

            Path(self.args.out).write_text(json.dumps(
                {"trials": [asdict(t) for t in self.trials], "error": self.error}))
            app.post(cmd.Quit())


@contextlib.contextmanager
def hotkey_presser(backend: str) -> Iterator[Presser]:
    if backend == "keyboard":
        from harness.desktop import evdev_keyboard_fifo

        with evdev_keyboard_fifo() as keyboard:  # before keyboard's listener looks for devices
            yield EvdevPresser(keyboard)
    else:
        presser = XdotoolPresser()
        try:
            yield presser
        finally:
            presser.close()


def worker(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(threadName)s %(name)s: %(message)s")
    random.seed(args.seed)
    from agent import config as config_module

    tap = Path(os.environ["AUDIO_TAP_FILE"])
    code = 1
    with hotkey_presser(args.worker) as presser:
        cfg = config_module.load()
        app = make_app_class()(cfg)
        blocks: list[BlockLog | None] = [None]
        app.assistant._make_player = timed_player_factory(blocks)  # before it starts
        driver = Driver(app, presser, tap, blocks, args)
        threading.Thread(target=driver.run, name="bench-driver", daemon=True).start()
        app.run()
        code = 0 if not driver.error else 1
    # As the agent leaves (agent.desktop.app.end_process): native model threads are
    # abandoned, not waited for.
    logging.shutdown()
    sys.stdout.flush()
    os._exit(code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=6, help="trials per backend x case x "
                        "path (default 6)")
    parser.add_argument("--backend", choices=("both", "keyboard", "pynput"), default="both")
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--voice", default="jm_kumo")
    parser.add_argument("--flood-tokens", type=int, default=8000,
                        help="tokens in each reply's flood in case (b) (default 8000)")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--worker-timeout", type=float, default=300.0,
                        help="seconds one backend's agent may run (default 300)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    unknown = set(args.cases.split(",")) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s) {', '.join(sorted(unknown))}; known: {', '.join(CASES)}")
    if args.worker:
        worker(args)
    else:
        parent(args)


if __name__ == "__main__":
    main()
