"""Quit at any moment: `voice-agent quit` -> the agent's process gone, for the real tray agent
(`python -m agent` under Xvfb with the trayer tray host, the tapped PulseAudio, the virtual
microphone, the real Kokoro model and embedded LLM), at each moment a user may quit:

- loading:   a fresh data dir (first run), quit as soon as the tray icon is in the tray, while
             the models load (issue 14 measured 4.6-5.1 s here; the agent logged 0.14 s);
- warm-up:   quit as soon as the agent logs "models ready": the embedded LLM is then still
             loading and warming up on a waiter thread (what held issue 14's quit for seconds:
             the interpreter joined that thread at exit);
- say:       mid-speech: `voice-agent say` a long text, quit once the tap has its audio;
- answer:    mid-reply from the embedded model: a question typed into the overlay, quit once
             the tap has the answer's audio;
- listening: `voice-agent listen` opened the microphone (the virtual one);
- fetch:     a first run in fresh config/data/cache folders fetching the 54 Kokoro voices with
             npm, pointed at a loopback registry that accepts and never answers: quit while npm
             waits in the middle of the fetch;
- idle:      models loaded, warm-ups done, nothing happening.

Each run is timed from starting `voice-agent quit` (a Python process of its own, as a desktop
shortcut runs it) until waiting on the agent's Popen returns; "CLI alone" is what that command
costs by itself (no agent to talk to). Per moment: median and max, the agent's own "quit in X
s", its exit codes, the lines of its output with "Task was destroyed but it is pending", "Fatal
Python error", "terminate called" or "Traceback", and any child process it left running. The
target is 1 s. Every agent's output is kept in the folder printed at the start.

    python -m bench.quit [--repeats 3] [--cases loading,say,...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.harness import start_audio_and_microphone, start_desktop
from harness.desktop import find_windows, wait_until, xdotool
from harness.llm_servers import cpu_seconds
from harness.microphone import VirtualMicrophone
from harness.tray_agent import (
    QuitResult,
    StallingRegistry,
    TrayAgent,
    kill_left_behind,
    link_assembled_model,
    sounding_since,
    tap_samples,
    tray_icon_shown,
)

CASES = ("loading", "warm-up", "say", "answer", "listening", "fetch", "idle")
LONG_TEXT = ("This is a long announcement so that there is time to quit in the middle of it. "
             "It goes on for a while about nothing in particular, and then some more, until "
             "somebody stops it.")
QUESTION = "Tell me about the moon."
TARGET_S = 1.0


class Bench:
    def __init__(self, root: Path, tap: Path) -> None:
        self.root = root
        self.tap = tap
        self.env = dict(os.environ)
        self.registry = StallingRegistry()
        from agent import paths

        self.shared_cache = paths.cache_dir()  # the packaged model is assembled there
        self.current: TrayAgent | None = None  # stopped whatever happens

    def launch(self, home: Path, env: dict[str, str] | None = None, *,
               voice: str | None = "jm_kumo", first_run: bool = True,
               cache: Path | None = None, settings: str = "") -> TrayAgent:
        self.current = TrayAgent(home, env or self.env, voice=voice, first_run=first_run,
                                 cache=cache, settings=settings)
        return self.current

    def home(self, case: str, run: int) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{case}-{run}-", dir=self.root))

    def ready_agent(self, home: Path, settings: str = "") -> TrayAgent:
        agent = self.launch(home, first_run=False, settings=settings)
        agent.wait_for(r"models ready", timeout=180)
        return agent

    # -- the moments -----------------------------------------------------------------------

    def loading(self, home: Path) -> TrayAgent:
        agent = self.launch(home)  # a fresh data dir: the first run
        if not wait_until(tray_icon_shown, timeout=60, step=0.02):
            raise TimeoutError(f"the tray icon did not appear; the agent's output:\n"
                               f"{agent.output}")
        return agent

    def warm_up(self, home: Path) -> TrayAgent:
        return self.ready_agent(home)

    def say(self, home: Path) -> TrayAgent:
        agent = self.ready_agent(home)
        start = tap_samples(self.tap)
        agent.cli("say", LONG_TEXT)
        wait_for_audio(self.tap, start, agent)
        return agent

    def answer(self, home: Path) -> TrayAgent:
        agent = self.ready_agent(home)
        start = tap_samples(self.tap)
        agent.cli("talk")
        overlay = find_windows("^voice-agent$", visible=True, timeout=10)
        if not overlay or not wait_until(lambda: has_focus(int(overlay[0])), 5):
            raise TimeoutError("the overlay did not open with the keyboard focus")
        xdotool("type", "--delay", "10", QUESTION)
        xdotool("key", "Return")
        wait_for_audio(self.tap, start, agent, timeout=90)
        return agent

    def listening(self, home: Path) -> TrayAgent:
        agent = self.ready_agent(home, f'[stt]\ninput_device = "{VirtualMicrophone.device}"\n')
        since = agent.mark()
        agent.cli("listen")
        agent.wait_for(r"tray: listening", since, timeout=10)
        return agent

    def fetch(self, home: Path) -> TrayAgent:
        cache = home / "cache"
        link_assembled_model(self.shared_cache, cache)
        self.registry.reset()
        env = {**self.env, **self.registry.env(home / "npm-cache")}
        agent = self.launch(home, env, voice=None, cache=cache)  # the default voice: npm's
        agent.wait_for(r"Fetching the Kokoro voices", timeout=60)
        if not self.registry.wait_for_request(30):
            raise TimeoutError("npm did not reach the registry")
        return agent

    def idle(self, home: Path) -> TrayAgent:
        agent = self.ready_agent(home)
        wait_until_quiet(agent.proc.pid)
        return agent


def has_focus(window: int) -> bool:
    """Whether the keyboard focus is in `window` (Tk focuses a window inside its toplevel)."""
    from Xlib import display as xdisplay

    conn = xdisplay.Display()
    try:
        focused = conn.get_input_focus().focus  # an int: no window (None or PointerRoot)
        while not isinstance(focused, int):
            if focused.id == window:
                return True
            tree = focused.query_tree()
            if isinstance(tree.parent, int) or tree.parent.id == tree.root.id:
                return False
            focused = tree.parent
        return False
    finally:
        conn.close()


def wait_for_audio(tap: Path, start: int, agent: TrayAgent, timeout: float = 60.0) -> None:
    if not wait_until(lambda: sounding_since(tap, start), timeout, step=0.05):
        raise TimeoutError(f"no audio in the tap; the agent's output:\n{agent.output}")


def wait_until_quiet(pid: int, timeout: float = 60.0) -> None:
    """Until the agent uses under 5 % of a core over half a second (the warm-ups are done)."""
    def quiet() -> bool:
        before = cpu_seconds(pid)
        time.sleep(0.5)  # the measuring window
        return cpu_seconds(pid) - before < 0.025

    wait_until(quiet, timeout, step=0)


def phases(result: QuitResult) -> str:
    """Where the time went: until the agent began to quit (the command starting, the request,
    the Tk thread picking it up), its quit (what it logs), and its way out after that."""
    if result.agent_said is None or result.logged_after is None:
        return "the agent logged no \"quit in\""
    began = result.logged_after - result.agent_said
    out = result.seconds - result.logged_after
    return f"to quit() {began:.2f} + quit() {result.agent_said:.2f} + exit {out:.2f} s"


def staging_gone(folder: Path) -> bool:
    """Whether a cut voice fetch's staging folder is gone (the npm watchdog removes it)."""
    return wait_until(lambda: not list(folder.glob(".voices-kokoro-js-*")), timeout=2)


def stderr_muted(pid: int) -> bool:
    """Whether the process's standard error points at /dev/null now (llama-cpp-python does
    that to the whole process while it loads a model)."""
    try:
        return os.readlink(f"/proc/{pid}/fd/2") == os.devnull
    except OSError:
        return False


def cli_alone(env: dict[str, str], root: Path) -> float:
    """`voice-agent quit` with no agent running: what the command itself costs."""
    runs = []
    for _ in range(3):
        began = time.monotonic()
        subprocess.run([sys.executable, "-m", "agent", "quit"],
                       env={**env, "VOICE_AGENT_RUNTIME_DIR": str(root / "nobody")},
                       capture_output=True)
        runs.append(time.monotonic() - began)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated, of {', '.join(CASES)}")
    args = parser.parse_args()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(cases) - set(CASES)
    if unknown:
        parser.error(f"unknown cases: {', '.join(sorted(unknown))}")

    tap, _microphone = start_audio_and_microphone()
    start_desktop()
    root = Path(tempfile.mkdtemp(prefix="voice-agent-bench-quit-"))
    print(f"agent outputs in {root}", flush=True)
    bench = Bench(root, tap)
    began = time.monotonic()
    results: dict[str, list[QuitResult]] = {}
    try:
        for case in cases:
            moment: Callable[[Path], TrayAgent] = getattr(bench, case.replace("-", "_"))
            for run in range(args.repeats):
                home = bench.home(case, run)
                agent = moment(home)
                try:
                    ready_before = any("models ready" in line for line in agent.log_lines())
                    muted = stderr_muted(agent.proc.pid)
                    result = agent.quit()
                finally:
                    agent.stop()
                lost = agent.lost_from_console()
                kill_left_behind(result)
                if case == "fetch" and not staging_gone(home / "cache" / "kokoro"):
                    result.left_behind.append(f"a staging folder in {home}/cache/kokoro")
                (home / "agent-output.txt").write_text(agent.output + "\n")
                results.setdefault(case, []).append(result)
                late = " (the models were ready already)" if (
                    case in ("loading", "fetch") and ready_before) else ""
                if muted:
                    late += "; at the quit, its stderr was /dev/null (llama.cpp loading)"
                if lost:
                    late += f"; {len(lost)} log lines missing from its console: {lost}"
                print(f"  {case:<9} run {run + 1}: {result.seconds:5.2f} s, exit "
                      f"{result.returncode}, {phases(result)}{late}", flush=True)
                shutil.rmtree(home / "cache", ignore_errors=True)
        overhead = cli_alone(bench.env, root)
    finally:
        if bench.current is not None:
            bench.current.stop()
        bench.registry.close()
    print()
    print(f"`voice-agent quit` -> the agent's process gone (target {TARGET_S:.1f} s; "
          f"{args.repeats} runs each; CLI alone {overhead:.2f} s)")
    print(f"{'moment':<10} {'median':>7} {'max':>7} {'agent said':>11}  exit  problems")
    for case, runs in results.items():
        times = [r.seconds for r in runs]
        said = [r.agent_said for r in runs if r.agent_said is not None]
        codes = sorted({str(r.returncode) for r in runs})
        problems = [line.strip() for r in runs for line in r.bad_lines]
        problems += [f"left running: {entry}" for r in runs for entry in r.left_behind]
        problems += [f"`voice-agent quit` exited {r.command_rc}" for r in runs
                     if r.command_rc != 0]
        slow = max(times) > TARGET_S
        print(f"{case:<10} {statistics.median(times):6.2f}s {max(times):6.2f}s "
              f"{(f'{statistics.median(said):.2f}s' if said else '-'):>11}  "
              f"{','.join(codes):<4}  {'; '.join(sorted(set(problems))) or 'none'}"
              f"{'  OVER TARGET' if slow else ''}")
    print(f"\ntotal {time.monotonic() - began:.0f} s; outputs in {root}")


if __name__ == "__main__":
    main()
