"""`voice-agent doctor`: what works on this machine, and how to fix what does not.

One line per check: `ok`, `warn` or `FAIL`, what was found and, for the others, the fix. The
checks do the real thing where it is cheap: open (and close) the audio output, list the
Kokoro voices, ask the LLM server for its models (3 s at most), load pystray and Tk in a
separate process.

Each subsystem probes itself, next to its code; this module is the runner: the order of the
probes, the config and log checks (which belong to no subsystem), the printing and the exit
status. The `Check` line and the `Probe` shape are in agent/checks.py.

    config              here
    audio output        agent/audio/doctor.py    check_audio
    Kokoro, voice       agent/tts/doctor.py      check_kokoro
    LLM                 agent/llm/doctor.py      check_llm
    hotkeys             agent/desktop/doctor.py  check_hotkeys
    microphone, speech recognition
                        agent/listen/doctor.py   check_speech_input
    display, tray, overlay
                        agent/desktop/doctor.py  check_desktop
    log                 here

The exit status says whether the agent can work:

- 0: it can answer, in some front end. Warnings are allowed, and so are FAIL lines for speech
  (no audio output device, no Kokoro model) or the desktop (no tray, no overlay): without
  speech the replies are shown as text, and without a desktop `voice-agent chat` talks in a
  terminal. The last line says which of these limits apply.
- 1: it cannot answer at all: the LLM it would use (the configured server, and the embedded
  model where that stands in for it) fails its check.

Nothing printed contains an API key: the lines pass through agent.redaction, as the log does.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from agent import logs, paths, redaction
from agent.checks import Area, Check, Probe, Progress, Status, ok, warn
from agent.config import Config

# -- config ----------------------------------------------------------------------------------------


def check_config(cfg: Config, progress: Progress | None = None) -> list[Check]:
    path = cfg.path or paths.config_file()
    if not cfg.problems:
        where = str(path) if path.exists() else f"none yet at {path}: the defaults apply"
        return [ok("config", where)]
    return [warn("config", problem, "correct the key in the file (the default applies "
                 "meanwhile); every key is documented in config.example.toml")
            for problem in cfg.problems]


# -- the log ---------------------------------------------------------------------------------------


def check_log(cfg: Config, progress: Progress | None = None) -> list[Check]:
    path = logs.log_file()
    folder = path.parent
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        return [warn("log", f"cannot create {folder} ({error})",
                     "set VOICE_AGENT_LOG_DIR to a writable folder")]
    if not os.access(folder, os.W_OK):
        return [warn("log", f"{folder} is not writable", "set VOICE_AGENT_LOG_DIR to a "
                     "writable folder")]
    return [ok("log", f"{path} (the tray agent's log)")]


# -- putting it together ---------------------------------------------------------------------------


def probes() -> list[Probe]:
    """Every probe, in the order of the lines. The subsystems' probes are imported here, not
    at the top: the CLI imports this module for its parser, and they bring numpy, httpx,
    the model tables."""
    from agent.audio.doctor import check_audio
    from agent.desktop.doctor import check_desktop, check_hotkeys
    from agent.listen.doctor import check_speech_input
    from agent.llm.doctor import check_llm
    from agent.tts.doctor import check_kokoro

    return [check_config, check_audio, check_kokoro, check_llm, check_hotkeys,
            check_speech_input, check_desktop, check_log]


def run_checks(cfg: Config, progress: Progress | None = None) -> Iterator[Check]:
    """Each probe's lines as soon as that probe is done (a slow one, the LLM server or the
    display, does not hold back the lines before it)."""
    for probe in probes():
        yield from probe(cfg, progress)


def verdict(checks: Sequence[Check]) -> tuple[int, str]:
    """The exit status and the closing line (the rule is in the module docstring)."""
    failed = {check.area for check in checks if check.status is Status.FAIL}
    warnings = sum(check.status is Status.WARN for check in checks)
    if Area.ANSWERS in failed:
        return 1, "voice-agent cannot answer: no LLM works (the FAIL lines say how to fix it)."
    limits = []
    if Area.SPEECH in failed:
        limits.append("as text only (no speech)")
    if Area.DESKTOP in failed:
        limits.append("in the terminal only (`voice-agent chat`; no tray)")
    if limits:
        return 0, f"voice-agent works, {' and '.join(limits)}: see the FAIL lines."
    if warnings:
        return 0, f"voice-agent works ({warnings} warning{'s' * (warnings != 1)})."
    return 0, "voice-agent is ready."


class StderrProgress:
    """The packaged model is assembled once (~92 MB, a few seconds): say so when it starts
    and when it is done, on stderr (stdout holds the check lines)."""

    def __init__(self) -> None:
        self._started: set[str] = set()

    def __call__(self, what: str, done: int, total: int) -> None:
        if what not in self._started or done >= total:
            self._started.add(what)
            sys.stderr.write(f"{what}: {100 * done // max(total, 1)}%\n")
            sys.stderr.flush()


def run_doctor(cfg: Config, progress: Progress | None = None) -> int:
    """Print one line per check, then the verdict; 0 when the agent can work, 1 when it
    cannot answer at all (see the module docstring)."""
    redaction.add_secret(cfg.llm.api_key)
    checks = []
    for check in run_checks(cfg, progress or StderrProgress()):
        checks.append(check)
        print(redaction.redact(check.line()), flush=True)
    status, closing = verdict(checks)
    print(closing)
    return status


def cmd_doctor(args: argparse.Namespace) -> int:
    from agent import config as config_module

    cfg = config_module.load(Path(args.config) if args.config else None)
    return run_doctor(cfg)


def add_doctor_parser(sub: Any) -> argparse.ArgumentParser:
    """The `doctor` subcommand on the CLI's subparsers (it uses the global --config)."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "doctor", help="check the audio, the models, the LLM and the desktop; say what to fix")
    parser.set_defaults(func=cmd_doctor)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m agent.doctor [--config FILE]`: the same as `voice-agent doctor`."""
    parser = argparse.ArgumentParser(
        prog="voice-agent doctor", description="Check what works here and say what to fix.")
    parser.add_argument("--config", help="config file (default: the user config dir)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug output")
    args = parser.parse_args(argv)
    logs.setup_logging(args.verbose)
    return cmd_doctor(args)


if __name__ == "__main__":
    raise SystemExit(main())
