"""Reading a text aloud (the selection, the clipboard, a file): a stage beside the
conversation that feeds the speech pipeline a few passages ahead of what is playing.

    pieces (lazy: a file is read as it is spoken) -> PassageSource -> numbered passages
        -> Reader (its own thread: keeps LOOKAHEAD clauses queued) -> speech pipeline

A passage is a sentence as the clause chunker cuts it (speakable: markdown, links and code
read as the rest of the agent reads them). Only the last KEEP passages are remembered, so
memory does not grow with the text; "previous" reaches back that far. After a start, a skip
or a resume, the first passage is cut again the way a reply's first words are (two words,
then growing), so reading starts as fast as a reply does, whatever the text's length.

Pause holds the audio where it is (the player keeps its place and plays zeros); an
interrupt from anywhere ends the reading and remembers the passage that was cut, which
`resume_reading()` starts again from.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator

from agent.audio.events import PlaybackEvent, PlaybackKind
from agent.events import ReadingStatus
from agent.speech import SpeechPipeline
from agent.text import ChunkLimits, ClauseChunker

log = logging.getLogger(__name__)

# Clauses queued ahead of what plays: synthesis stays this far ahead and no further, so a
# book costs what a paragraph does. Three covers a long sentence's synthesis (~1/3 of its
# playing time on two cores) while the one before it plays.
LOOKAHEAD = 3
KEEP = 256  # passages remembered behind the reading position, for "previous"
# Passages: whole sentences (short ones merged), a long one cut at a clause boundary past
# 150 characters, as a reply's later chunks are (a 300-character sentence takes ~10 s to
# synthesise here: the audio would stall behind it).
PASSAGE_CHUNKING: ChunkLimits = {"first_chunk_max_words": 0, "min_chunk_words": 6,
                                 "max_chunk_chars": 150}
# The first passage after a (re)start: a reply's ramp (see agent.conversation).
START_CHUNKING: ChunkLimits = {"first_chunk_min_words": 2, "first_chunk_max_words": 2,
                               "second_chunk_max_words": 3,
                               "later_chunk_max_words": (5, 7, 9, 12, 16),
                               "max_chunk_chars": 150}


class PassageSource:
    """Numbered passages of a text, cut as they are asked for; the last `keep` are kept."""

    def __init__(self, pieces: Iterable[str], keep: int = KEEP) -> None:
        self._pieces: Iterator[str] = iter(pieces)
        self._chunker = ClauseChunker(**PASSAGE_CHUNKING)
        self._kept: deque[str] = deque(maxlen=keep)
        self._first_kept = 0  # the number of the oldest passage kept
        self._exhausted = False

    @property
    def first_kept(self) -> int:
        return self._first_kept

    def get(self, index: int) -> str | None:
        """Passage `index` (0 = the first), reading on as far as needed; None past the end
        or before the oldest one kept."""
        while index >= self._first_kept + len(self._kept) and not self._exhausted:
            self._read_on()
        offset = index - self._first_kept
        if 0 <= offset < len(self._kept):
            return self._kept[offset]
        return None

    def _read_on(self) -> None:
        try:
            piece = next(self._pieces)
        except StopIteration:
            self._exhausted = True
            passages = self._chunker.flush()
        else:
            # A piece is a paragraph: its end ends a sentence, heading or not.
            passages = self._chunker.feed(piece + "\n\n")
        for passage in passages:
            if len(self._kept) == self._kept.maxlen:
                self._first_kept += 1
            self._kept.append(passage)

    def kept(self, index: int) -> str:
        """Passage `index` if it is still kept, without reading on ("" if not)."""
        offset = index - self._first_kept
        return self._kept[offset] if 0 <= offset < len(self._kept) else ""

    def kept_text(self) -> str:
        """The passages kept (those read lately, and a few queued ahead), as one text."""
        return " ".join(self._kept)

    def close(self) -> None:
        close = getattr(self._pieces, "close", None)
        if callable(close):  # a generator reading a file: its file closes now
            close()


class Reader:
    """One reading at a time. Commands come from any thread; one thread ("reader") feeds
    the pipeline. The speech pipeline's turns tell it when someone else interrupted."""

    def __init__(self, speech: SpeechPipeline,
                 on_change: Callable[[ReadingStatus], None] = lambda status: None) -> None:
        self.speech = speech
        self._on_change = on_change
        self._cond = threading.Condition()
        self._source: PassageSource | None = None
        self._origin = ""
        self._voice: str | None = None
        self._turn = -1  # the speech turn our clauses are in
        self._next = 0  # the next passage to queue
        self._ramp = False  # the next passage starts a (re)start: cut it like a reply's start
        self._playing = -1  # the passage whose audio is playing (or was cut)
        self._seqs: dict[int, int] = {}  # clause seq -> passage index, this turn
        self._active = False
        self._paused = False
        self._done = False  # read to the end
        self._closed = False
        # A speed change waits for the end of passage `_respeed_after` (its last clause,
        # `_respeed_seq`), then the text goes on from the next passage at the new speed.
        self._respeed_after = -1
        self._respeed_seq = -1
        # Sources replaced by a new reading: closed by the reader thread, which may be inside
        # one (a generator cannot be closed from another thread while it runs).
        self._retired: list[PassageSource] = []
        self._thread = threading.Thread(target=self._run, name="reader", daemon=True)
        self._thread.start()
        speech.add_listener(self._on_playback)

    # -- commands (any thread) ------------------------------------------------------------

    def read(self, pieces: Iterable[str], origin: str, voice: str | None = None) -> None:
        """Read `pieces` from the start, in place of any reading before it. The caller has
        interrupted what was speaking (the conversation's reply, if any)."""
        source = PassageSource(pieces)
        with self._cond:
            if self._source is not None:
                self._retired.append(self._source)
            self._source = source
            self._origin, self._voice = origin, voice
            self._start_at(0)
        self._publish()

    def pause(self) -> bool:
        """Hold the audio where it is (exact silence); False if nothing is being read."""
        with self._cond:
            if not self._active or self._paused or self.speech.turn != self._turn:
                return False  # (a turn moved on: interrupted, the reader has yet to notice)
            self._paused = True
        self._hold(True)
        self._publish()
        return True

    def resume(self) -> bool:
        """Go on after `pause()` from the same sample; or, after a reading was cut, from
        the passage that was cut. False if there is nothing to go on with."""
        with self._cond:
            if self._active and self._paused:
                self._paused = False
            elif not self._active and self._source is not None and self._playing >= 0 \
                    and not self._done:
                self._start_at(self._playing)
            else:
                return False
        self._hold(False)
        self._publish()
        return True

    def toggle_pause(self) -> bool:
        """Pause if reading, else resume; False if neither applies."""
        return self.pause() or self.resume()

    def skip(self, passages: int) -> bool:
        """Go `passages` forward (1: the next sentence) or back (-1: the one before the one
        playing; again to go further)."""
        with self._cond:
            if self._source is None or not self._active:
                return False
            target = max(self._source.first_kept, max(self._playing, 0) + passages)
            paused = self._paused
            self._start_at(target)  # (not paused after it)
        if paused:  # a skip while paused plays: the user asked to hear that sentence
            self._hold(False)
        self._publish()
        return True

    def speed_changed(self) -> None:
        """The pipeline's speed changed: the clauses queued were made at the old one, so
        from the sentence after the one playing the text is said again at the new speed.
        The player holds at that sentence's end (no cut is heard); a sink that cannot hold
        starts the next sentence at once."""
        with self._cond:
            if not self._active:
                return
            boundary = max((seq for seq, index in self._seqs.items()
                            if index == self._playing), default=-1)
            self._respeed_after = self._playing
            hold_after = getattr(self.speech.sink, "hold_after", None)
            if boundary >= 0 and callable(hold_after):
                # Known before the player is told: its end may come at any moment.
                self._respeed_seq = boundary
        if boundary >= 0 and callable(hold_after):
            hold_after(boundary)
            return
        with self._cond:  # nothing to wait for: now
            self._respeed_after = -1
            paused = self._paused
            self._start_at(max(self._playing, 0) + 1)
            self._paused = paused
        if paused:  # the cut ended the pause's hold: it stays paused, at the new speed
            self._hold(True)
        self._publish()

    def stop(self) -> bool:
        """End the reading (it can be resumed from the passage playing); False if none."""
        with self._cond:
            if not self._active:
                return False
            self._active = self._paused = False
            self._turn = -1
        self.speech.interrupt(sound=False)
        self._publish()
        return True

    def status(self) -> ReadingStatus:
        with self._cond:
            return self._status()

    def recent_text(self) -> str:
        """What was read lately (for "ask about it"); "" if nothing was."""
        with self._cond:
            return self._source.kept_text() if self._source is not None else ""

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._active = False
            self._cond.notify_all()
        self._thread.join(timeout=2)
        with self._cond:
            sources = [*self._retired, *([self._source] if self._source else [])]
            self._retired, self._source = [], None
        _close_all(sources)

    # -- inside -----------------------------------------------------------------------------

    def _start_at(self, index: int) -> None:
        """(under the lock) Queue from passage `index` in a fresh speech turn: whatever was
        queued or playing is cut."""
        self._turn = self.speech.interrupt(sound=False)
        self._next = self._playing = index
        self._ramp = True
        self._seqs.clear()
        self._active, self._paused, self._done = True, False, False
        self._respeed_after = self._respeed_seq = -1
        self._cond.notify_all()

    def _hold(self, held: bool) -> None:
        sink = self.speech.sink
        hold = getattr(sink, "hold" if held else "release", None)
        if callable(hold):  # the audio player; a file sink has nothing to hold
            hold("pause")

    def _status(self) -> ReadingStatus:
        source = self._source
        passage = source.kept(self._playing) if source is not None else ""
        resumable = (not self._active and not self._done and source is not None
                     and self._playing >= 0)
        return ReadingStatus(self._origin, passage, self._playing, self._active,
                             self._paused, resumable, self._done)

    def _publish(self) -> None:
        status = self.status()
        try:
            self._on_change(status)
        except Exception:
            log.exception("reading listener failed")

    def _on_playback(self, event: PlaybackEvent) -> None:
        if event.kind is not PlaybackKind.STARTED:
            with self._cond:
                if event.kind in _DONE:
                    self._seqs.pop(event.seq, None)
                boundary = (event.kind is PlaybackKind.FINISHED and event.seq >= 0
                            and event.seq == self._respeed_seq)
                restart = boundary and self._active and event.turn == self._turn
                if restart:  # held silent at the sentence's end: on at the new speed
                    self._start_at(self._respeed_after + 1)
                elif boundary:  # the reading ended meanwhile: never leave the player held
                    self._respeed_seq = -1
                    release = getattr(self.speech.sink, "release", None)
                    if callable(release):
                        release("boundary")
                self._cond.notify_all()  # a clause done: maybe room for the next
            if restart:
                self._publish()
            return
        with self._cond:
            if event.turn != self._turn or event.seq not in self._seqs:
                return
            index = self._seqs[event.seq]
            changed = index != self._playing
            self._playing = index
            late = 0 <= self._respeed_after < index  # the boundary passed before the hold
            if late:
                self._start_at(index)
        if changed or late:
            self._publish()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or self._active or self._retired)
                retired, self._retired = self._retired, []
            _close_all(retired)
            with self._cond:
                if self._closed:
                    return
                if not self._active:
                    continue
                turn, index, ramp, source = self._turn, self._next, self._ramp, self._source
                was_paused = self._paused
                if self.speech.turn != turn:  # interrupted from elsewhere: stop, resumable
                    self._active = self._paused = False
                    interrupted = True
                else:
                    interrupted = False
                    queued = self.speech.pending_in_turn(turn)
                    if queued >= LOOKAHEAD or source is None:
                        # Until a clause is done (a playback event wakes us); the timeout is
                        # a safety net for a clause that synthesised to nothing.
                        self._cond.wait(timeout=0.1)
                        continue
            if interrupted:
                if was_paused:  # paused just as the cut came: never leave the player held
                    self._hold(False)
                self._publish()
                continue
            assert source is not None
            try:
                passage = source.get(index)  # reads on in the file: outside the lock
            except Exception:  # a bug in a document's reader: this reading ends, not us
                log.exception("reading %s failed at passage %d", self._origin, index)
                passage = None
            with self._cond:
                if turn != self._turn or not self._active:  # skipped or stopped meanwhile
                    continue
                if passage is None:  # the end: done once the last clause has played
                    if queued == 0:
                        finished_paused = self._paused
                        self._active, self._paused, self._done = False, False, True
                    else:
                        self._cond.wait(timeout=0.1)
                        continue
                else:
                    clauses = start_clauses(passage) if ramp else [passage]
                    for clause in clauses:
                        self._seqs[self.speech.say_clause(clause, self._voice, turn=turn)] = index
                    self._next, self._ramp = index + 1, False
                    continue
            if finished_paused:  # paused after the last word: the player must not stay held
                self._hold(False)
            self._publish()  # finished


def _close_all(sources: Iterable[PassageSource]) -> None:
    for source in sources:
        try:
            source.close()
        except Exception:  # a document reader that fails to close: its file is let go
            log.exception("closing a text that was read")


_DONE = (PlaybackKind.FINISHED, PlaybackKind.CUT, PlaybackKind.DROPPED, PlaybackKind.ERROR)


def start_clauses(passage: str) -> list[str]:
    chunker = ClauseChunker(**START_CHUNKING)
    return chunker.feed(passage) + chunker.flush() or [passage]
