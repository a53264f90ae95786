"""The chat history: JSON Lines in the user data dir, appended one whole line at a time.

A crash or `kill -9` can at worst leave the last line half-written: loading skips it (and
says so), and the next append starts on a fresh line, so earlier lines are never damaged.
A write that fails (a full disk) is undone to the last whole line; the entry stays in memory
and is written with the next one that can be, so nothing said is lost while the agent runs.
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


class HistoryNotSaved(OSError):
    """The history file could not be written; the entries are kept in memory meanwhile."""


class History:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or paths.data_dir() / "history.jsonl"
        self._lock = threading.Lock()
        self.entries: list[HistoryEntry] = self._load()
        self._unsaved: list[HistoryEntry] = []  # in memory, waiting for room on the disk

    @property
    def unsaved(self) -> int:
        """How many entries are only in memory (the last write failed)."""
        return len(self._unsaved)

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
        """Write one entry as one line and flush it to disk before returning. If that fails,
        the file is left as it was, the entry is kept (in memory and for the LLM) and
        HistoryNotSaved says why; the next append writes it first."""
        with self._lock:
            self.entries.append(entry)
            self._unsaved.append(entry)
            self._write_unsaved()

    def save(self) -> None:
        """Retry writing the entries a failed append kept in memory (HistoryNotSaved again if
        it still cannot)."""
        with self._lock:
            if self._unsaved:
                self._write_unsaved()

    def _write_unsaved(self) -> None:
        data = b"".join(_line(entry) for entry in self._unsaved)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Unbuffered: a buffered file retries its flush on close and in truncate(),
            # which fails again on a full disk and would leave part of a line behind.
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT
                         | getattr(os, "O_BINARY", 0), 0o600)
            try:
                start = os.lseek(fd, 0, os.SEEK_END)
                try:
                    # a crash mid-line must not glue two entries together
                    if start > 0:
                        os.lseek(fd, start - 1, os.SEEK_SET)
                        if os.read(fd, 1) != b"\n":
                            data = b"\n" + data
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                    os.fsync(fd)
                except OSError:
                    os.ftruncate(fd, start)  # no half line left behind (frees what it took)
                    raise
            finally:
                os.close(fd)
        except OSError as error:
            reason = error.strerror or str(error)
            raise HistoryNotSaved(
                f"the chat history could not be saved to {self.path} ({reason}); "
                f"{len(self._unsaved)} message(s) are kept in memory and saved as soon as "
                "there is room") from error
        self._unsaved.clear()

    def clear(self) -> None:
        with self._lock:
            self.path.unlink(missing_ok=True)
            self.entries.clear()
            self._unsaved.clear()

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


def _line(entry: HistoryEntry) -> bytes:
    record = asdict(entry)
    for optional in ("interrupted", "full"):  # kept short: only when they say something
        if not record[optional]:
            del record[optional]
    # "replace": a lone surrogate (from a broken decoder upstream) must not lose the entry
    return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8", errors="replace")


def render(entries: Sequence[HistoryEntry]) -> str:
    lines = []
    for entry in entries:
        who = "you" if entry.role == "user" else "assistant"
        mark = " [interrupted]" if entry.interrupted else ""
        lines.append(f"{entry.time}  {who}{mark}: {entry.content}")
    return "\n".join(lines)
