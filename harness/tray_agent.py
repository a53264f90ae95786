"""The tray agent as a user runs it, for tests and benchmarks that start and stop it: `python
-m agent` in a process of its own with its own config, data, runtime and log folders (and, for
a first run that fetches the voices, its own cache), its output collected line by line so a
caller can wait for one; and a registry on loopback that accepts and never answers, so npm
stalls in the middle of a fetch for as long as a test needs.

    agent = TrayAgent(home, dict(os.environ), first_run=False)
    agent.wait_for(r"models ready", timeout=120)
    ended = agent.quit()          # `voice-agent quit`, then the process waited on
    assert ended.returncode == 0 and not ended.bad_lines

The agent runs under `python -X faulthandler`: a crash in native code, or a hang that
`dump_threads` ends, leaves every thread's Python stack in the output.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from harness.services import end_process, read_tap, wait_for

__all__ = [
    "BAD_EXIT_SIGNS",
    "QuitResult",
    "StallingRegistry",
    "TrayAgent",
    "bad_lines",
    "descendants",
    "kill_left_behind",
    "link_assembled_model",
    "sounding_since",
    "tap_samples",
    "tray_icon_shown",
]

# What must never show in the agent's output when it quits.
BAD_EXIT_SIGNS = ("Task was destroyed but it is pending", "Fatal Python error",
                  "terminate called", "Traceback")


@dataclass
class QuitResult:
    """How a `voice-agent quit` went: from starting the command to the agent process gone."""

    seconds: float  # `voice-agent quit` started -> the agent's process reaped
    returncode: int | None  # None: still running after the timeout (then killed)
    command_rc: int  # the `voice-agent quit` command's own status
    agent_said: float | None  # the agent's own "quit in X s"
    # From starting the command to the agent logging "quit in" (its clock, to the ms): less
    # agent_said, when the agent began to quit; the rest of `seconds`, its way out after that.
    logged_after: float | None = None
    bad_lines: list[str] = field(default_factory=list)  # lines with a BAD_EXIT_SIGNS string
    left_behind: list[str] = field(default_factory=list)  # "pid cmdline" still running after


class TrayAgent:
    """`python -X faulthandler -m agent` with the folders under `home`; pynput hotkeys
    (under Xvfb) unless `hotkeys` says otherwise. `voice=None` keeps the default voice (which
    needs the npm voices); `first_run=False` writes the first-run marker first; `cache`: a
    cache folder of its own (else the caller's VOICE_AGENT_CACHE_DIR or the user's);
    `command`: another program to run in its place (one that instruments the agent)."""

    def __init__(self, home: Path, env: dict[str, str], *, voice: str | None = "jm_kumo",
                 first_run: bool = True, hotkeys: str = "pynput", cache: Path | None = None,
                 settings: str = "", command: list[str] | None = None) -> None:
        from agent.first_run import MARKER_NAME

        self.home = home
        data = home / "data"
        if not first_run:
            data.mkdir(parents=True, exist_ok=True)
            (data / MARKER_NAME).touch()
        config = home / "config" / "config.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text((f'[tts]\nvoice = "{voice}"\n\n' if voice else "")
                          + "[llm]\nmax_tokens = 40\n\n"
                          f'[hotkeys]\nbackend = "{hotkeys}"\n\n'
                          "[overlay]\nhide_after_s = 0\n\n" + settings, encoding="utf-8")
        self.env = {**env, "VOICE_AGENT_CONFIG_DIR": str(config.parent),
                    "VOICE_AGENT_DATA_DIR": str(data),
                    "VOICE_AGENT_RUNTIME_DIR": str(home / "run"),
                    "VOICE_AGENT_LOG_DIR": str(home / "log"),
                    "PYSTRAY_BACKEND": "gtk", "PYTHONUNBUFFERED": "1"}
        if cache is not None:
            self.env["VOICE_AGENT_CACHE_DIR"] = str(cache)
        self.lines: list[str] = []  # its standard output and error
        self._lines_lock = threading.Lock()
        program = command or [sys.executable, "-X", "faulthandler", "-m", "agent"]
        self.proc = subprocess.Popen(program, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, errors="replace")
        self._reader = threading.Thread(target=self._read, name="agent-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lines_lock:
                self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        """What the agent wrote to its standard output and error."""
        with self._lines_lock:
            return "\n".join(self.lines)

    @property
    def log_file(self) -> Path:
        return self.home / "log" / "voice-agent.log"

    def log_lines(self) -> list[str]:
        """The agent's log file. Waits read it rather than the console: while llama.cpp
        loads, llama-cpp-python points the process's stdout and stderr at /dev/null, and
        every line any thread logs to the console meanwhile is lost (the file keeps it)."""
        try:
            return self.log_file.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return []

    def mark(self) -> int:
        return len(self.log_lines())

    def wait_for(self, pattern: str, since: int = 0, timeout: float = 30.0) -> re.Match[str]:
        """The first log line from line `since` on that matches `pattern`; TimeoutError
        (with the output) if none does in time or the agent ends first."""
        regex = re.compile(pattern)
        found: list[re.Match[str]] = []

        def seen() -> bool:
            found[:] = [m for line in self.log_lines()[since:] if (m := regex.search(line))][:1]
            return bool(found) or self.proc.poll() is not None

        wait_for(seen, timeout, step=0.02)
        if not found:
            ended = self.proc.poll()
            why = "ended" if ended is not None else f"did not log it in {timeout:.0f} s"
            raise TimeoutError(f"no log line matching {pattern!r}: the agent {why}; its "
                               "output:\n" + self.output)
        return found[0]

    def lost_from_console(self) -> list[str]:
        """The log file's messages that never reached the console (see `log_lines`)."""
        with self._lines_lock:
            shown = set(self.lines)
        messages = [m[1] for line in self.log_lines()
                    if (m := re.match(r"\S+ \S+ \w+ \S+: (.*)$", line))]
        return [message for message in messages if message not in shown]

    def cli(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """`voice-agent ARGS` from another process, as a desktop shortcut runs it."""
        return subprocess.run([sys.executable, "-m", "agent", *args], env=self.env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)

    def quit(self, timeout: float = 10.0) -> QuitResult:
        """`voice-agent quit`, timed from starting that command until this process is reaped.
        An agent still running after `timeout` has its threads dumped and is killed."""
        children = descendants(self.proc.pid)
        began, began_wall = time.monotonic(), time.time()
        command = subprocess.Popen([sys.executable, "-m", "agent", "quit"], env=self.env,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            returncode: int | None = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            returncode = None
        seconds = time.monotonic() - began
        command_rc = command.wait(30)
        if returncode is None:
            self.dump_threads()
            self.stop()
        self._reader.join(5)  # the rest of the output (the pipe closed with the process)
        said = re.search(r"^(\S+ \S+) .*quit in ([\d.]+) s", "\n".join(self.log_lines()),
                         re.MULTILINE)
        logged_after = None
        if said:
            stamp = datetime.strptime(said[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            logged_after = stamp - began_wall

        def still_running() -> list[str]:
            return [f"{pid} {cmdline}" for pid, cmdline in children.items()
                    if _alive(pid) and _cmdline(pid) == cmdline]

        wait_for(lambda: not still_running(), timeout=1.0)  # what dies with the agent: gone
        left = still_running()
        return QuitResult(seconds, returncode, command_rc, float(said[2]) if said else None,
                          logged_after,
                          bad_lines(self.output) + bad_lines("\n".join(self.log_lines())),
                          left)

    def dump_threads(self) -> None:
        """SIGABRT: faulthandler writes every thread's stack to the output, then it dies."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGABRT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)

    def stop(self) -> None:
        """End the agent (and anything it started that is still running), by pid."""
        children = descendants(self.proc.pid) if self.proc.poll() is None else {}
        end_process(self.proc)
        for pid, cmdline in children.items():
            if _alive(pid) and _cmdline(pid) == cmdline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def bad_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if any(s in line for s in BAD_EXIT_SIGNS)]


def kill_left_behind(result: QuitResult) -> None:
    """Kill what an agent left running (each "pid cmdline" of `result.left_behind`)."""
    for entry in result.left_behind:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(entry.split()[0]), signal.SIGKILL)


def descendants(pid: int) -> dict[int, str]:
    """Every process below `pid` now: pid -> command line."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, its_parent in parents.items():
            if its_parent == parent and child not in found:
                found[child] = _cmdline(child)
                frontier.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2:].split()[0] != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def tray_icon_shown() -> bool:
    """Whether an icon is embedded in trayer (bottom right): a small window, not the panel."""
    from harness.desktop import find_windows, xdotool

    found = find_windows(".", predicate=lambda g: g.y > 700 and 16 <= g.width <= 40
                         and g.height >= 16, timeout=0)
    return any("panel" not in xdotool("getwindowname", w) for w in found)


def tap_samples(tap: Path) -> int:
    """How many samples the ALSA tap holds."""
    return tap.stat().st_size // 4 if tap.exists() else 0


def sounding_since(tap: Path, start: int) -> bool:
    """Whether the tap holds sound (not the warm sink's silence) in its last 0.2 s, past
    sample `start` (or anywhere, if the tap was started again since)."""
    samples = read_tap(tap)
    tail = samples[start:] if samples.size >= start else samples
    return bool(tail.size) and float(np.abs(tail[-4800:]).max()) > 0.01


def link_assembled_model(source_cache: Path, cache: Path) -> bool:
    """Give a fresh cache folder the Kokoro model that `source_cache` has assembled and
    verified already (a symlink and its stamp), so a first run there goes straight to the
    voice fetch instead of assembling 92 MB again. False: there is none to link (the agent
    will assemble it)."""
    from agent.tts.models import PACKAGED_NAME

    model = source_cache / "kokoro" / PACKAGED_NAME
    stamp = model.with_suffix(".verified")
    if not (model.is_file() and stamp.is_file()):
        return False
    (cache / "kokoro").mkdir(parents=True, exist_ok=True)
    (cache / "kokoro" / PACKAGED_NAME).symlink_to(model.resolve())
    (cache / "kokoro" / stamp.name).write_text(stamp.read_text())
    return True


class StallingRegistry:
    """An npm registry on 127.0.0.1 that accepts every connection and never answers: npm
    (pointed at it by `env()`) waits in the middle of its fetch until it gives up (minutes).
    `wait_for_request` tells when npm has connected."""

    def __init__(self) -> None:
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(16)
        self.port = int(self._server.getsockname()[1])
        self._held: list[socket.socket] = []
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="stalling-registry",
                                        daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._server.accept()
            except OSError:  # closed: stopping
                return
            self._held.append(connection)  # never read, never answered, kept open
            self._connected.set()

    def env(self, npm_cache: Path) -> dict[str, str]:
        """What points npm at this registry, with a cache of its own (npm's cache answers
        a package it has seen before without asking any registry)."""
        return {"npm_config_registry": f"http://127.0.0.1:{self.port}/",
                "npm_config_cache": str(npm_cache)}

    def wait_for_request(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def reset(self) -> None:
        self._connected.clear()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        self._thread.join(2)
        for connection in self._held:
            connection.close()
