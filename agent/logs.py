"""Logging for every front end: the console, the log file, secrets kept out of both, and
per-turn timings.

- `setup_logging(verbose, to_file)`: console logging (a terminal tool's terse lines; `-v` for
  debug), plus, for the tray agent, a rotating file in the user log dir (1 MB x 3).
- Secrets never reach a handler: a filter on each handler blanks out what agent.redaction
  keeps secret (the OPENAI_API_KEY environment value and every value given to
  `redaction.add_secret()`, such as the configured llm.api_key), in the message, its
  arguments, exception text and stack text alike.
- `TurnTimer`: one debug line per conversation turn ("turn 3: first token 0.15 s, first
  audio 1.42 s, done 3.90 s"), fed by the event bus and the playback events it listens to.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from io import TextIOWrapper
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Protocol

from agent import paths, redaction
from agent.audio.events import PlaybackEvent, PlaybackKind, PlaybackListener
from agent.events import AgentEvent, AgentState, EventBus, ReplyDelta, StateChanged, UserSaid

LOG_NAME = "voice-agent.log"
LOG_MAX_BYTES = 1_000_000
LOG_BACKUPS = 3
# Libraries that talk too much for a terminal tool.
QUIET_LIBRARIES = ("phonemizer", "huggingface_hub", "urllib3", "httpx")


class SecretFilter(logging.Filter):
    """Rewrites a record so that no secret is left in it. It runs on the handler before the
    formatter, and changes the record itself, so every later handler gets the clean one."""

    def filter(self, record: logging.LogRecord) -> bool:
        values = redaction.secrets()
        if not values:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: logging reports it, with the raw msg
            return True
        clean = redaction.redact(message, values)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            # The formatter uses exc_text when it is set: format it here, clean.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redaction.redact(record.exc_text, values)
        if record.stack_info:
            record.stack_info = redaction.redact(record.stack_info, values)
        return True


SECRET_FILTER = SecretFilter()


def protect(handler: logging.Handler) -> logging.Handler:
    """Put the secret filter on `handler` (once); returns it."""
    if SECRET_FILTER not in handler.filters:
        handler.addFilter(SECRET_FILTER)
    return handler


def log_file() -> Path:
    return paths.log_dir() / LOG_NAME


class PrivateRotatingFileHandler(RotatingFileHandler):
    """The log holds what the user said: the file (and each one after a rollover) is made
    readable by its owner only."""

    def _open(self) -> TextIOWrapper:
        descriptor = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return open(descriptor, "a", encoding=self.encoding, errors=self.errors)


def setup_logging(verbose: bool, to_file: bool = False) -> Path | None:
    """Console logging (debug with `verbose`), and with `to_file` the rotating log file.
    Returns the log file's path, or None without one (or when it cannot be opened: the
    console says why). Safe to call again, e.g. with to_file once the tray agent starts."""
    root = logging.getLogger()
    logging.basicConfig(format="%(name)s: %(message)s" if verbose else "%(message)s")
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.ERROR)
    path: Path | None = None
    if to_file:
        path = _add_file_handler(root)
    for handler in root.handlers:
        protect(handler)
    return path


def _add_file_handler(root: logging.Logger) -> Path | None:
    path = log_file()
    for handler in root.handlers:
        if isinstance(handler, RotatingFileHandler) and Path(handler.baseFilename) == path:
            return path
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        handler = PrivateRotatingFileHandler(path, maxBytes=LOG_MAX_BYTES,
                                             backupCount=LOG_BACKUPS, encoding="utf-8")
    except OSError as error:
        logging.getLogger(__name__).warning("cannot write the log file %s (%s); logging to "
                                            "the console only", path, error)
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(protect(handler))
    return path


# -- per-turn timings ----------------------------------------------------------------------------


class PlaybackSource(Protocol):
    """What reports playback events: the SpeechPipeline (or an AudioPlayer)."""

    def add_listener(self, listener: PlaybackListener) -> None: ...


@dataclass
class _Turn:
    number: int
    submitted: float
    first_token: float | None = None
    first_audio: float | None = None
    interrupted: float | None = None
    silent: float | None = None
    ended: float | None = None
    failed: bool = False


class TurnTimer:
    """Times each conversation turn from the events the core already publishes, and logs one
    debug line when the turn is over, e.g.

        turn 3: first token 0.15 s, first audio 1.42 s, done 3.90 s
        turn 4: first token 0.12 s, first audio 0.98 s, interrupt -> silence 0.03 s

    Times count from the request (UserSaid): first token is the first reply text
    (ReplyDelta), first audio the first sample of the reply at the device (PlaybackEvent
    STARTED, timed in the audio callback), done the return to idle. Interrupt -> silence runs
    from `mark_interrupt()` (call it where the interrupt is asked for) or, without that, from
    the INTERRUPTED state (about a millisecond after the request), to the end of the fade
    (CUT) or the device running dry (DRAINED); 0 when nothing was playing.

    Listeners run on the publishers' threads (the conversation loop, the audio events thread):
    they only take a lock and note a time.
    """

    def __init__(self, logger: logging.Logger | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log = logger or logging.getLogger("agent.timing")
        self._clock = clock
        self._lock = threading.Lock()
        self._turn: _Turn | None = None
        self._playing = False  # a chunk of speech is at the device
        self._cut_at: float | None = None  # a CUT seen before the turn said it was interrupted

    def attach(self, bus: EventBus, speech: PlaybackSource | None = None) -> TurnTimer:
        """Listen to the conversation's bus and (if there is speech) its playback events."""
        bus.subscribe(self.on_agent_event)
        if speech is not None:
            speech.add_listener(self.on_playback)
        return self

    # -- the listeners -----------------------------------------------------------------------------

    def on_agent_event(self, event: AgentEvent) -> None:
        now = self._clock()
        if isinstance(event, UserSaid):
            self.submitted(event.turn, now)
        elif isinstance(event, ReplyDelta):
            if event.text:
                self.first_token(event.turn, now)
        elif isinstance(event, StateChanged):
            if event.state is AgentState.INTERRUPTED:
                self.interrupted(event.turn, now)
            elif event.state in (AgentState.IDLE, AgentState.ERROR):
                self.ended(event.turn, now, failed=event.state is AgentState.ERROR)

    def on_playback(self, event: PlaybackEvent) -> None:
        at = event.at or self._clock()
        if event.kind is PlaybackKind.STARTED and event.seq >= 0:  # seq -1: the interrupt blip
            self.audio_started(at)
        elif event.kind is PlaybackKind.FINISHED:
            with self._lock:
                self._playing = False
        elif event.kind in (PlaybackKind.CUT, PlaybackKind.DRAINED):
            self.silent(at, cut=event.kind is PlaybackKind.CUT)

    def mark_interrupt(self) -> None:
        """The user asked to interrupt, now (a more exact start for interrupt -> silence)."""
        with self._lock:
            turn = self._turn
            if turn is not None and turn.ended is None and turn.interrupted is None:
                turn.interrupted = self._clock()
                if not self._playing:
                    turn.silent = turn.interrupted

    # -- what the listeners feed (public, for a front end that times things itself) ----------------

    def submitted(self, number: int, at: float) -> None:
        with self._lock:
            unfinished, self._turn, self._cut_at = self._turn, _Turn(number, at), None
        if unfinished is not None and unfinished.ended is not None:
            # Interrupted, and the end of its fade was never reported: log what is known.
            self.log.debug("%s", describe_turn(unfinished))

    def first_token(self, number: int, at: float) -> None:
        with self._lock:
            turn = self._turn
            if turn is not None and turn.number == number and turn.first_token is None:
                turn.first_token = at

    def audio_started(self, at: float) -> None:
        with self._lock:
            self._playing, self._cut_at = True, None
            turn = self._turn
            if turn is None:
                return  # `say` text between turns
            if turn.interrupted is None:
                if turn.first_audio is None:
                    turn.first_audio = at
            elif turn.silent is not None and turn.silent <= turn.interrupted:
                # It looked silent at the interrupt, but a chunk had just begun: wait for its cut.
                turn.silent = None

    def interrupted(self, number: int, at: float) -> None:
        with self._lock:
            turn = self._turn
            if turn is None or turn.number != number or turn.interrupted is not None:
                return
            turn.interrupted = at
            # Quiet already: nothing was playing, or the fade ended before the reply said it
            # was cut (that is within the millisecond the news takes to reach the loop).
            if self._cut_at is not None or not self._playing:
                turn.silent = at

    def silent(self, at: float, cut: bool = False) -> None:
        """The device went quiet: an interrupt's fade ended (`cut`), or nothing is left."""
        line = None
        with self._lock:
            self._playing = False
            turn = self._turn
            if turn is None:
                return
            if turn.interrupted is None:
                if cut:
                    self._cut_at = at
                return
            if turn.silent is None:
                turn.silent = max(at, turn.interrupted)
                if turn.ended is not None:
                    line = self._finish(turn)
        if line:
            self.log.debug("%s", line)

    def ended(self, number: int, at: float, failed: bool = False) -> None:
        line = None
        with self._lock:
            turn = self._turn
            if turn is None or turn.number != number or turn.ended is not None:
                return
            turn.ended, turn.failed = at, failed
            if turn.interrupted is None or turn.silent is not None or failed:
                line = self._finish(turn)
            # else: interrupted while speaking; the line follows the fade's end (silent()).
        if line:
            self.log.debug("%s", line)

    def _finish(self, turn: _Turn) -> str:
        self._turn = None
        return describe_turn(turn)


def describe_turn(turn: _Turn) -> str:
    def since(at: float | None) -> str:
        return "-" if at is None else f"{at - turn.submitted:.2f} s"

    parts = [f"first token {since(turn.first_token)}"]
    if turn.first_audio is not None:
        parts.append(f"first audio {since(turn.first_audio)}")
    if turn.interrupted is not None:
        silence = ("-" if turn.silent is None
                   else f"{max(0.0, turn.silent - turn.interrupted):.2f} s")
        parts.append(f"interrupt -> silence {silence}")
    elif turn.failed:
        parts.append(f"failed at {since(turn.ended)}")
    else:
        parts.append(f"done {since(turn.ended)}")
    return f"turn {turn.number}: " + ", ".join(parts)
