"""What the headless commands share: the settings, the progress line, the engine and sink."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from agent import config as config_module
from agent import redaction
from agent.audio.sinks import AudioSink, WavFileSink
from agent.config import Config

if TYPE_CHECKING:
    from agent.tts.base import Synthesizer

log = logging.getLogger("agent")

EXIT_INTERRUPTED = 130  # what a shell reports for a program ended by Ctrl-C


class ProgressBar:
    """A one-line progress report on stderr (redrawn on a terminal, milestones otherwise)."""

    def __init__(self) -> None:
        self._last = -1

    def __call__(self, what: str, done: int, total: int) -> None:
        percent = 100 * done // max(total, 1)
        if percent == self._last:
            return
        if sys.stderr.isatty():
            sys.stderr.write(f"\r{what}: {percent:3d}%" + ("\n" if done >= total else ""))
        elif percent in (0, 100) or percent // 25 != self._last // 25:
            sys.stderr.write(f"{what}: {percent}%\n")
        sys.stderr.flush()
        self._last = percent


def load_config(path: str | None) -> Config:
    cfg = config_module.load(Path(path) if path else None)
    redaction.add_secret(cfg.llm.api_key)
    for problem in cfg.problems:
        log.warning("config: %s", problem)
    return cfg


def load_engine(cfg: Config, voice: str | None = None) -> Synthesizer:
    from agent.assistant import load_engine as load  # the models' code: only when speaking

    return load(cfg, voice, progress=ProgressBar())


def make_sink(cfg: Config, device: str | None, out: str | None) -> AudioSink:
    if out:
        return WavFileSink(Path(out))
    from agent.assistant import make_player

    return make_player(cfg, device)
