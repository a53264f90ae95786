"""What a `voice-agent doctor` probe reports: the `Check` line and the `Probe` shape.

Each subsystem probes itself next to its code (agent/audio/doctor.py, agent/tts/doctor.py,
agent/llm/doctor.py, agent/listen/doctor.py, agent/desktop/doctor.py); agent/doctor.py runs
them in order, prints the lines and decides the exit status. This module is the vocabulary
they share, kept apart so that a probe never imports the runner (nor the runner a probe, until
it runs them).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from agent.config import Config

# The shared ending of a FAIL that takes speech away but not the answers.
TEXT_ONLY = "speech is off; the agent still works as text"

Progress = Callable[[str, int, int], None]  # (what, done, total), as the CLI's ProgressBar


class Status(enum.Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


class Area(enum.Enum):
    """What a FAIL takes away: `ANSWERS` stops the agent; the others limit it."""

    ANSWERS = "answers"
    SPEECH = "speech"
    DESKTOP = "desktop"
    OTHER = "other"


@dataclass(frozen=True)
class Check:
    status: Status
    name: str
    detail: str
    fix: str = ""
    area: Area = Area.OTHER

    def line(self) -> str:
        text = f"{self.status.value:<4} {self.name}: {self.detail.rstrip('.')}"
        if self.fix and self.status is not Status.OK:
            text += f". Fix: {self.fix.rstrip('.')}"
        return text + "."


def ok(name: str, detail: str, area: Area = Area.OTHER) -> Check:
    return Check(Status.OK, name, detail, area=area)


def warn(name: str, detail: str, fix: str, area: Area = Area.OTHER) -> Check:
    return Check(Status.WARN, name, detail, fix, area)


def fail(name: str, detail: str, fix: str, area: Area = Area.OTHER) -> Check:
    return Check(Status.FAIL, name, detail, fix, area)


class Probe(Protocol):
    """One subsystem's look at this machine: a line per thing it checked, in order. It never
    raises (what fails is a FAIL line) and never prints; `progress` hears about long work
    (assembling a model) for the probes that do any."""

    def __call__(self, cfg: Config, progress: Progress | None = None, /) -> Iterable[Check]: ...
