"""The tray agent in a process of its own (`python -m agent`), as users run it: its own
config, data and runtime folders, its log lines collected so a test can wait for one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

from agent.control import ControlRequest, send
from agent.first_run import MARKER_NAME
from harness.services import end_process


class AgentProcess:
    """`python -m agent` with its own config, data and runtime folders; its log lines are
    collected so a test can wait for one."""

    def __init__(self, home: Path, hotkeys: str, env: dict[str, str],
                 first_run: bool = True, voice: str | None = "jm_kumo") -> None:
        self.home = home
        if not first_run:  # as if the user had run it before
            (home / "data").mkdir(parents=True, exist_ok=True)
            (home / "data" / MARKER_NAME).touch()
        self.config_file = home / "config" / "config.toml"
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(
            "# written by the test\n"
            + (f"[tts]\nvoice = \"{voice}\"\n\n" if voice else "")  # None: the default
            + "[llm]\nmax_tokens = 40\n\n"
            f"[hotkeys]\nbackend = \"{hotkeys}\"\n\n"
            "[overlay]\nhide_after_s = 0\n", encoding="utf-8")
        self.env = {**env,
                    "VOICE_AGENT_CONFIG_DIR": str(home / "config"),
                    "VOICE_AGENT_DATA_DIR": str(home / "data"),
                    "VOICE_AGENT_RUNTIME_DIR": str(home / "run"),
                    "PYSTRAY_BACKEND": "gtk", "PYTHONUNBUFFERED": "1"}
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.proc = subprocess.Popen([sys.executable, "-m", "agent"], env=self.env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._read, name="agent-log", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def mark(self) -> int:
        with self._changed:
            return len(self.lines)

    def wait_for(self, pattern: str, since: int = 0, timeout: float = 30.0) -> re.Match[str]:
        """The first log line from `since` on that matches; fails with the log if none does."""
        regex = re.compile(pattern)
        found: list[re.Match[str]] = []

        def seen() -> bool:
            found[:] = [m for line in self.lines[since:] if (m := regex.search(line))][:1]
            return bool(found) or self.proc.poll() is not None

        with self._changed:
            self._changed.wait_for(seen, timeout)
        assert found, f"no log line matching {pattern!r}; the log:\n" + "\n".join(self.lines)
        return found[0]

    def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """`voice-agent ARGS` from another process, as a desktop shortcut would run it."""
        return subprocess.run([sys.executable, "-m", "agent", *args], env=self.env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)

    def send(self, command: str, text: str = "") -> None:
        previous = os.environ.get("VOICE_AGENT_RUNTIME_DIR")
        os.environ["VOICE_AGENT_RUNTIME_DIR"] = self.env["VOICE_AGENT_RUNTIME_DIR"]
        try:
            assert send(ControlRequest(command, text)).ok
        finally:
            if previous is not None:
                os.environ["VOICE_AGENT_RUNTIME_DIR"] = previous

    def stop(self) -> None:
        end_process(self.proc)
