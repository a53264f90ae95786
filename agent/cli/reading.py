"""`voice-agent read`: the selection, the clipboard, a file or standard input, read aloud by
the running agent, or here when none runs (Ctrl-C stops)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from agent.audio.devices import NoAudioDevice
from agent.cli.common import EXIT_INTERRUPTED, load_config
from agent.control import MAX_REQUEST_BYTES
from agent.events import AgentEvent, EventBus, Notice, ReadingStatus
from agent.read_aloud import ReadAloud, ReadSource

log = logging.getLogger("agent")

# Standard input larger than this goes to the running agent... not at all: one request line
# is at most MAX_REQUEST_BYTES. A bigger text is read here, or from a file by the agent.
_MAX_SENT_TEXT = MAX_REQUEST_BYTES - 1024


def add_read_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                    speech_options: Callable[[argparse.ArgumentParser], None],
                    help_text: str) -> None:
    read = sub.add_parser("read", help=help_text, description=(
        "Read text aloud: with no FILE, the selection (X11's primary selection, Wayland's "
        "through wl-paste); --clipboard, the clipboard; FILE, a text, Markdown, HTML or PDF "
        "file; -, standard input. The running agent reads it (pause, resume and skip with "
        "its keys, the overlay, or `voice-agent pause`); with none running it is read here."))
    speech_options(read)
    read.add_argument("--clipboard", action="store_true", help="read the clipboard")
    read.add_argument("file", nargs="?", metavar="FILE", help="a file to read, or -")
    read.set_defaults(func=cmd_read)


def cmd_read(args: argparse.Namespace) -> int:
    if args.file and args.clipboard:
        log.error("read: give a FILE or --clipboard, not both")
        return 2
    source, text = _source(args)
    if source is None:
        return 2
    here = bool(args.out or args.device or args.voice or args.speed)
    if not here and (source.kind != "text" or len(source.encode().encode()) <= _MAX_SENT_TEXT):
        from agent.control import tell_running_agent

        sent = tell_running_agent("read", source.encode(), quiet_if_absent=True)
        if sent is not None:
            return 0 if sent else 1
    return _read_here(args, source, text)


def _source(args: argparse.Namespace) -> tuple[ReadSource | None, str]:
    if args.file == "-":
        text = sys.stdin.read()
        if not text.strip():
            log.error("read: standard input was empty; nothing to read")
            return None, ""
        return ReadSource("text", text), text
    if args.file:
        path = Path(args.file).expanduser().resolve()
        return ReadSource("file", str(path)), ""
    return ReadSource("clipboard" if args.clipboard else "selection"), ""


def _read_here(args: argparse.Namespace, source: ReadSource, text: str) -> int:
    """No agent runs: read with a speech pipeline of our own, until the end or Ctrl-C."""
    from agent.cli.speaking import speech_pipeline

    cfg = load_config(args.config)
    if source.kind in ("selection", "clipboard"):
        from agent.desktop.selection import (
            SelectionError,
            read_clipboard_headless,
            read_primary_headless,
        )

        try:
            text = (read_clipboard_headless() if source.kind == "clipboard"
                    else read_primary_headless()).text
        except SelectionError as error:
            log.error("read: %s", error)
            return 1
    try:
        pipeline = speech_pipeline(cfg, args)
    except NoAudioDevice as error:
        log.error("%s", error)
        return 2
    bus = EventBus()
    ended = threading.Event()
    problems: list[str] = []

    def on_event(event: AgentEvent) -> None:
        if isinstance(event, Notice):
            print(event.message, file=sys.stderr)
            problems.append(event.message)
        elif isinstance(event, ReadingStatus):
            if not event.active:
                ended.set()
            elif event.passage and args.verbose:
                print(event.passage, file=sys.stderr)

    bus.subscribe(on_event)

    def on_sigint(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    reading = None
    try:
        pipeline.start()
        reading = ReadAloud(pipeline, bus, lambda: None)
        started = (reading.read_file(Path(source.value)) if source.kind == "file"
                   else reading.read_text(text, _origin(source)))
        if not started:
            return 1
        while not ended.wait(0.2):
            pass
        status = 0
    except KeyboardInterrupt:
        pipeline.interrupt()
        pipeline.wait_until_done(timeout=2)
        status = EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGINT, previous)
        if reading is not None:
            reading.close()
        pipeline.close()
    if args.out and status == 0:
        log.info("wrote %s", args.out)
    return status


def _origin(source: ReadSource) -> str:
    return {"selection": "the selection", "clipboard": "the clipboard"}.get(
        source.kind, "standard input")
