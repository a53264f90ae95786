"""The chat history: JSON Lines in the user data dir, appended one whole line at a time.

A crash or `kill -9` can at worst leave the last line half-written: loading skips it (and
says so), and the next append starts on a fresh line, so earlier lines are never damaged.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from agent import paths
from agent.llm.base import Message

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class HistoryEntry:
    role: Literal["user", "assistant"]
    content: str  # for an interrupted reply: only what the user heard
    time: str = field(default_factory=_now)
    interrupted: bool = False
    full: str = ""  # an interrupted reply's whole text, kept for the record, not the LLM


class History:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or paths.data_dir() / "history.jsonl"
        self._lock = threading.Lock()
        self.entries: list[HistoryEntry] = self._load()

    def _load(self) -> list[HistoryEntry]:
        if not self.path.exists():
            return []
        entries: list[HistoryEntry] = []
        with self.path.open("r", encoding="utf-8", errors="replace") as file:
            for number, line in enumerate(file, start=1):
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                    entries.append(HistoryEntry(
                        role=data["role"], content=str(data["content"]),
                        time=str(data.get("time", "")),
                        interrupted=bool(data.get("interrupted", False)),
                        full=str(data.get("full", ""))))
                except (ValueError, KeyError, TypeError):
                    log.warning("%s:%d is damaged (probably cut off by a crash); skipped",
                                self.path, number)
        return entries

    def append(self, entry: HistoryEntry) -> None:
        """Write one entry as one line and flush it to disk before returning."""
        record = asdict(entry)
        for optional in ("interrupted", "full"):  # kept short: only when they say something
            if not record[optional]:
                del record[optional]
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a+b") as file:
                if file.tell() > 0:  # a crash mid-line must not glue two entries together
                    file.seek(-1, os.SEEK_END)
                    if file.read(1) != b"\n":
                        file.write(b"\n")
                file.write(line.encode("utf-8"))
                file.flush()
                os.fsync(file.fileno())
            self.entries.append(entry)

    def clear(self) -> None:
        with self._lock:
            self.path.unlink(missing_ok=True)
            self.entries.clear()

    def context(self, max_turns: int, max_chars: int) -> list[Message]:
        """The most recent entries that fit both limits, oldest first, for the LLM."""
        picked: list[HistoryEntry] = []
        users = chars = 0
        for entry in reversed(self.entries):
            if entry.role == "user":
                users += 1
                if users > max_turns:
                    break
            chars += len(entry.content)
            if chars > max_chars:
                break
            picked.append(entry)
        picked.reverse()
        while picked and picked[0].role != "user":  # start on a question, not a dangling answer
            picked.pop(0)
        return [Message(e.role, e.content) for e in picked if e.content]


def render(entries: Sequence[HistoryEntry]) -> str:
    lines = []
    for entry in entries:
        who = "you" if entry.role == "user" else "assistant"
        mark = " [interrupted]" if entry.interrupted else ""
        lines.append(f"{entry.time}  {who}{mark}: {entry.content}")
    return "\n".join(lines)
