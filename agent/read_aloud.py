"""Read it to me: text from anywhere (the selection, the clipboard, a file, standard input)
to the reader, in a voice that speaks its language.

The desktop shell gets the selection or the clipboard (agent.desktop.selection) and hands
over the text; files are opened here (agent.text.documents: read as they are spoken). The
first thousand characters decide the language: a text the current voice does not speak is
read by a voice that does, if one is installed, and the user is told either way.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent.events import EventBus, Notice, ReadingStatus
from agent.reader import Reader
from agent.speech import SpeechPipeline
from agent.text.documents import (
    Document,
    DocumentError,
    detect_language,
    document_from_text,
    open_document,
)
from agent.tts.voices import LANGUAGES

log = logging.getLogger(__name__)

LANGUAGE_SAMPLE_CHARS = 1000
NOTHING_SELECTED = "Nothing to read: select some text first"


@dataclass(frozen=True)
class ReadSource:
    """What to read, as `voice-agent read` asks the running agent (the request's text)."""

    kind: Literal["selection", "clipboard", "file", "text"]
    value: str = ""  # the file's absolute path, or the text

    def encode(self) -> str:
        return {"selection": "", "clipboard": "clipboard"}.get(self.kind,
                                                                 f"{self.kind}:{self.value}")

    @classmethod
    def decode(cls, request: str) -> ReadSource:
        """The request's text: "" the selection, "clipboard", "file:PATH", "text:TEXT"; any
        other text is itself what to read (a script that sends plain text)."""
        if request in ("", "selection"):
            return cls("selection")
        if request == "clipboard":
            return cls("clipboard")
        kind, _, value = request.partition(":")
        if kind == "file" and value:
            return cls("file", value)
        if kind == "text":
            return cls("text", value)
        return cls("text", request)


class ReadAloud:
    """The agent's reading: one Reader on the agent's speech pipeline, its status on the
    bus, its problems as notices. Any thread."""

    def __init__(self, speech: SpeechPipeline, bus: EventBus,
                 before_reading: Callable[[], None]) -> None:
        self.speech = speech
        self.bus = bus
        self._before_reading = before_reading  # ends a reply in progress
        self.reader = Reader(speech, bus.publish)
        self._text: tuple[str, str] = ("", "")  # (origin, text) of a text read whole

    def read_text(self, text: str, origin: str) -> bool:
        """Read `text` (the selection, the clipboard, standard input); False, with a notice
        saying why, if there is nothing to read."""
        try:
            document = document_from_text(text, origin)
        except DocumentError as error:
            self._tell(str(error))
            return False
        started = self.read(document)
        if started:
            self._text = (origin, text)
        return started

    def read_file(self, path: Path) -> bool:
        try:
            document = open_document(path)
        except DocumentError as error:
            self._tell(str(error))
            return False
        return self.read(document, shown_as=path.name)

    def text_to_ask_about(self) -> tuple[str, str]:
        """(origin, text) of what is being read or was read last: the whole selection or
        clipboard; of a file, the passages around where the reading is."""
        status = self.reader.status()
        origin, text = self._text
        if status.origin and status.origin == origin and text:
            return origin, text
        return status.origin, self.reader.recent_text()

    def read(self, document: Document, shown_as: str = "") -> bool:
        """Read `document` from its start; `shown_as`: its name in the overlay (a file's
        name, where its problems name the whole path)."""
        pieces = document.pieces()
        try:
            first = next(pieces)
        except StopIteration:
            self._tell(f"Nothing to read in {document.origin}.")
            return False
        except DocumentError as error:  # found on the first page (a scan, a locked PDF)
            self._tell(str(error))
            return False
        voice = self.voice_for(first[:LANGUAGE_SAMPLE_CHARS])
        self._text = ("", "")
        self._before_reading()
        self.reader.read(_reporting(itertools.chain([first], pieces), self._tell),
                         shown_as or document.origin, voice)
        log.info("reading %s (%s)%s", document.origin, document.kind,
                 f" with {voice}" if voice else "")
        return True

    def voice_for(self, sample: str) -> str | None:
        """None (the current voice) if it speaks the sample's language, else a voice that
        does, if one is installed; the user is told which when it is not the usual one."""
        language = detect_language(sample)
        current = self.speech.voice
        spoken = LANGUAGES.get(current[:1])
        if language is None or spoken is None or spoken.g2p == language \
                or (language.startswith("en-") and spoken.g2p.startswith("en-")):
            return None
        name = next((lang.name for lang in LANGUAGES.values() if lang.g2p == language),
                    language)
        voices = [info.name for info in self.speech.synth.voices() if info.available
                  and (lang := LANGUAGES.get(info.name[:1])) is not None
                  and lang.g2p == language]
        if voices:
            self._tell(f"This text looks {name}: reading it with {voices[0]} ({current} "
                       f"speaks {spoken.name}).")
            return voices[0]
        self._tell(f"This text looks {name}, and no {name} voice is installed: {current} "
                   f"reads it as {spoken.name} and it will sound wrong. `voice-agent voices` "
                   "lists the voices and where to get them.")
        return None

    # -- while reading ----------------------------------------------------------------------

    def status(self) -> ReadingStatus:
        return self.reader.status()

    def toggle_pause(self) -> bool:
        if self.reader.status().resumable:  # it goes on after a cut: a reply gives way
            self._before_reading()
        done = self.reader.toggle_pause()
        if not done:
            self._tell("Nothing is being read. Select some text and press the read key.")
        return done

    def resume(self) -> bool:
        status = self.reader.status()
        if status.resumable:
            self._before_reading()
        done = self.reader.resume()
        if not done:
            self._tell("It is being read already." if status.active and not status.paused
                       else "Nothing to resume: the last text was read to the end, or none "
                       "was.")
        return done

    def skip(self, passages: int) -> bool:
        return self.reader.skip(passages)

    def stop(self) -> bool:
        return self.reader.stop()

    def close(self) -> None:
        self.reader.close()

    def _tell(self, message: str) -> None:
        log.info("%s", message)
        self.bus.publish(Notice(message))


def _reporting(pieces: Iterator[str], tell: Callable[[str], None]) -> Iterator[str]:
    """The pieces; a problem found part way (a page that cannot be read) is told and ends
    the reading there, instead of ending the reader's thread."""
    try:
        yield from pieces
    except DocumentError as error:
        tell(str(error))
    except OSError as error:
        tell(f"Reading stopped: {error}")
