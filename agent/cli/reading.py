"""`voice-agent read`: the selection, the clipboard, a file or standard input, read aloud by
the running agent, or here when none runs (Ctrl-C stops)."""

from __future__ import annotations

import argparse
import io
import json
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
from agent.text.documents import Document, DocumentError, document_from_stream

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
    source, text, document = _source(args)
    if source is None:
        return 2
    here = bool(args.out or args.device or args.voice or args.speed) or document is not None
    # The request goes as JSON, where "é" or a newline takes 6 or 2 bytes: measured so.
    if not here and (source.kind != "text"
                     or len(json.dumps(source.encode())) <= _MAX_SENT_TEXT):
        from agent.control import tell_running_agent

        sent = tell_running_agent("read", source.encode(), quiet_if_absent=True)
        if sent is not None:
            return 0 if sent else 1
    return _read_here(args, source, text, document)


def _source(args: argparse.Namespace) -> tuple[ReadSource | None, str, Document | None]:
    """What to read: (the source, its text when it is standard input's, or a document for
    standard input that is not plain text: a PDF, say, read here)."""
    if args.file == "-":
        data = sys.stdin.buffer.read()
        if not data.strip():
            log.error("read: standard input was empty; nothing to read")
            return None, "", None
        head = data[:4096].lstrip()
        if head.startswith(b"%PDF-") or b"\0" in head:  # not text: read as a document
            try:
                document = document_from_stream(io.BytesIO(data))
            except DocumentError as error:
                log.error("read: %s", error)
                return None, "", None
            return ReadSource("text", ""), "", document
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:  # Latin-1 or Windows' own: its accents, not "?"
            text = data.decode("cp1252", errors="replace")
        return ReadSource("text", text), text, None
    if args.file:
        path = Path(args.file).expanduser().resolve()
        return ReadSource("file", str(path)), "", None
    return ReadSource("clipboard" if args.clipboard else "selection"), "", None


def _read_here(args: argparse.Namespace, source: ReadSource, text: str,
               document: Document | None = None) -> int:
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
        if document is not None:
            started = reading.read(document)
        elif source.kind == "file":
            started = reading.read_file(Path(source.value))
        else:
            started = reading.read_text(text, _origin(source))
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
