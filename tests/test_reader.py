"""The reader's bookkeeping: passages cut lazily, fed a few ahead, in order, to the end; pause,
skip, stop and resume. Narrow tests with a tone synthesiser; the real player's pause at the
ALSA tap is in test_audio_player, and the whole path (selection, Kokoro, the tap, Whisper)
in test_read_aloud."""

from __future__ import annotations

import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from agent.audio.events import AudioChunk, PlaybackKind
from agent.audio.sinks import MemorySink
from agent.events import EventBus, Notice, ReadingStatus
from agent.read_aloud import ReadAloud
from agent.reader import KEEP, LOOKAHEAD, PassageSource, Reader, start_clauses
from agent.speech import SpeechPipeline
from agent.text.documents import open_document
from harness.fakes import SlowSink, ToneSynth
from harness.services import wait_for

SENTENCES = [f"This is sentence number {n}, which has a few more words in it." for n in
             range(40)]


def paragraphs(count: int, taken: list[int] | None = None) -> Iterator[str]:
    for n in range(count):
        if taken is not None:
            taken.append(n)
        yield " ".join(SENTENCES[(n * 3 + k) % len(SENTENCES)] for k in range(3))


def test_passages_are_read_from_the_text_only_as_far_as_asked_and_few_are_kept() -> None:
    taken: list[int] = []
    source = PassageSource(paragraphs(10_000, taken), keep=50)
    assert source.get(0) == SENTENCES[0]
    assert taken == [0]  # one paragraph is enough for its first sentences
    assert source.get(4) == SENTENCES[4]
    assert len(taken) <= 3
    assert source.get(500) is not None and len(taken) < 200
    assert source.get(400) is None  # fell out of the window: memory stays bounded
    assert source.first_kept == 451 and source.kept(451) == source.get(451)


def test_a_heading_ends_a_sentence_and_markdown_is_read_as_words() -> None:
    source = PassageSource(["# Chapter one", "It was a **dark** and stormy night, as usual.",
                            "See [the map](https://example.com/map) now."])
    # Short sentences are merged into one passage; the heading still ends a sentence.
    assert source.get(0) == "Chapter one. It was a dark and stormy night, as usual."
    assert source.get(1) == "See the map now."
    assert source.get(2) is None


class Statuses:
    def __init__(self) -> None:
        self.seen: list[ReadingStatus] = []
        self.changed = threading.Condition()

    def __call__(self, status: ReadingStatus) -> None:
        with self.changed:
            self.seen.append(status)
            self.changed.notify_all()

    def wait(self, predicate: object, timeout: float = 10) -> ReadingStatus:
        with self.changed:
            assert self.changed.wait_for(
                lambda: any(predicate(s) for s in self.seen), timeout), self.seen[-3:]  # type: ignore[operator]
            return next(s for s in self.seen if predicate(s))  # type: ignore[operator]


def test_a_long_text_is_read_to_the_end_in_order_starting_with_short_clauses() -> None:
    sink = MemorySink()
    statuses = Statuses()
    with SpeechPipeline(ToneSynth(), sink, voice="v") as speech:
        reader = Reader(speech, statuses)
        reader.read(paragraphs(20), "a test")
        done = statuses.wait(lambda s: s.finished)
        reader.close()
    spoken = [chunk.text for chunk in sink.chunks]
    # The first sentence is cut like a reply's start (two words first), then sentences.
    assert spoken[0] == "This is" and len(spoken[1].split()) <= 3
    expected = " ".join(" ".join(SENTENCES[(n * 3 + k) % 40] for k in range(3)) for n in range(20))
    assert " ".join(spoken).split() == expected.split()
    assert done.index == 59 and not done.active and not done.resumable
    shown = [s.index for s in statuses.seen if s.active]
    assert shown == sorted(shown) and set(range(60)) <= set(shown)


def queued(sink: SlowSink) -> list[str]:
    return [chunk.text for chunk in sink.waiting if chunk.turn >= sink._min_turn]


def play_next(sink: SlowSink) -> str:
    """Drop what an interrupt left behind, then play the next chunk (started and finished)."""
    while sink.waiting and sink.waiting[0].turn < sink._min_turn:
        sink.play_one()  # DROPPED
    text = sink.waiting[0].text
    sink.play_one()
    return text


def test_synthesis_stays_a_few_clauses_ahead_of_what_plays() -> None:
    sink = SlowSink()  # plays nothing until told: the reader must stop feeding
    synth = ToneSynth()
    with SpeechPipeline(synth, sink, voice="v") as speech:
        reader = Reader(speech)
        reader.read(paragraphs(1000), "a book")
        assert wait_for(lambda: speech.pending >= LOOKAHEAD, 5)
        # The first sentence goes in whole, cut small (a reply's start); nothing after it.
        start = len(start_clauses(SENTENCES[0]))
        assert start >= 3
        assert not wait_for(lambda: speech.pending > max(start, LOOKAHEAD), 0.5)
        for _ in range(start + 10):  # then each clause played makes room for one more
            play_next(sink)
            assert wait_for(lambda: len(queued(sink)) >= LOOKAHEAD, 5)
        assert not wait_for(lambda: speech.pending > LOOKAHEAD, 0.3)
        assert len(synth.calls) == start + 10 + LOOKAHEAD
        reader.close()


def test_skip_stop_and_resume_go_to_the_sentence_asked_for() -> None:
    sink = SlowSink()
    statuses = Statuses()
    with SpeechPipeline(ToneSynth(), sink, voice="v") as speech:
        reader = Reader(speech, statuses)
        reader.read(paragraphs(50), "a test")
        assert wait_for(lambda: len(queued(sink)) >= 1, 5)
        assert play_next(sink) == "This is"  # passage 0 starts
        assert reader.status().index == 0 and reader.status().active
        assert reader.skip(1)
        assert wait_for(lambda: len(queued(sink)) >= 1, 5)
        first = play_next(sink)
        assert SENTENCES[1].startswith(first) and len(first.split()) == 2  # a fresh start
        status = reader.status()
        assert status.index == 1 and status.passage == SENTENCES[1]
        assert reader.skip(-1)
        assert wait_for(lambda: len(queued(sink)) >= 1, 5)
        assert play_next(sink) == "This is"
        assert reader.status().index == 0
        # An interrupt from elsewhere (the interrupt key) ends the reading, resumable.
        speech.interrupt()
        stopped = statuses.wait(lambda s: s.resumable)
        assert stopped.index == 0 and not stopped.active
        assert reader.resume()
        assert wait_for(lambda: len(queued(sink)) >= 1, 5)
        assert play_next(sink) == "This is"
        assert reader.status().index == 0 and reader.status().active
        assert reader.stop() and reader.status().resumable
        reader.close()


def test_the_window_of_passages_kept_is_what_previous_can_reach() -> None:
    assert KEEP >= 100  # a few pages back
    source = PassageSource(paragraphs(200), keep=KEEP)
    assert source.get(KEEP + 10) is not None
    assert source.get(5) is None and source.get(11) is not None


class HoldingSink(SlowSink):
    """Writes down each hold and release (the real player's are in test_audio_player)."""

    def __init__(self) -> None:
        super().__init__()
        self.holds: list[tuple[str, str]] = []

    def hold(self, reason: str = "talk-over") -> None:
        self.holds.append(("hold", reason))

    def release(self, reason: str = "talk-over") -> None:
        self.holds.append(("release", reason))


def test_pause_holds_the_player_and_resume_releases_it() -> None:
    sink = HoldingSink()
    holds = sink.holds
    with SpeechPipeline(ToneSynth(), sink, voice="v") as speech:
        reader = Reader(speech)
        reader.read(paragraphs(5), "a test")
        assert reader.pause() and reader.status().paused
        assert not reader.pause()
        assert reader.resume() and not reader.status().paused
        reader.close()
    assert holds == [("hold", "pause"), ("release", "pause")]


def test_pause_just_after_an_interrupt_never_leaves_the_player_held() -> None:
    """The interrupt came first (the reader has not noticed yet): pause says no. Paused just
    before a cut the reader notices: its hold is let go with the reading."""
    sink = HoldingSink()
    holds = sink.holds
    statuses = Statuses()
    with SpeechPipeline(ToneSynth(), sink, voice="v") as speech:
        reader = Reader(speech, statuses)
        reader.read(paragraphs(5), "a test")
        with reader._cond:  # the reader thread is kept from noticing the cut meanwhile
            speech.interrupt()
            assert not reader.pause()
        statuses.wait(lambda s: s.resumable)
        assert holds == []
        assert reader.resume()
        with reader._cond:
            assert reader.pause()  # (takes the lock again: it is re-entrant)
            speech.interrupt()
            statuses.seen.clear()
        statuses.wait(lambda s: s.resumable and not s.paused)
        reader.close()
    assert holds.count(("hold", "pause")) == 1
    assert holds[-2:] == [("hold", "pause"), ("release", "pause")]


def test_a_new_reading_closes_the_old_text_even_while_it_is_being_read() -> None:
    """A document's generator is inside a read (a slow PDF page) when a new reading replaces
    it: it is closed by the reader's own thread once the read is over, never from under it."""
    inside, go_on, closed = threading.Event(), threading.Event(), threading.Event()

    def slow_document() -> Iterator[str]:
        try:
            inside.set()
            assert go_on.wait(10)
            yield "The first page, at last."
            yield "The second page."
        finally:
            closed.set()

    with SpeechPipeline(ToneSynth(), SlowSink(), voice="v") as speech:
        reader = Reader(speech)
        reader.read(slow_document(), "a slow file")
        assert inside.wait(10)
        reader.read(paragraphs(2), "another text")  # raised "generator already executing"
        assert not closed.is_set()
        go_on.set()
        assert closed.wait(10)
        reader.close()


def test_nothing_to_resume_or_skip_when_nothing_was_read() -> None:
    with SpeechPipeline(ToneSynth(), MemorySink(), voice="v") as speech:
        reader = Reader(speech)
        assert not reader.resume() and not reader.skip(1) and not reader.pause()
        assert not reader.stop()
        reader.close()


class _SilentSynth(ToneSynth):
    """A tone per clause, remembering nothing (ToneSynth keeps every call)."""

    def synthesize(self, text: str, voice: str, speed: float = 1.0,
                   cancel: object = None) -> np.ndarray:
        return np.full(8, 0.1, dtype=np.float32)


class _ForgetfulSink(MemorySink):
    """Plays at once and keeps nothing: what grows is the reader's, not the sink's."""

    def enqueue(self, chunk: AudioChunk) -> None:
        if chunk.turn < self._min_turn:
            self._emit(PlaybackKind.DROPPED, chunk)
            return
        self._emit(PlaybackKind.STARTED, chunk)
        self._emit(PlaybackKind.FINISHED, chunk, chunk.samples.size)
        self._emit(PlaybackKind.DRAINED)


def test_a_2_mb_file_is_read_to_the_end_in_memory_that_does_not_grow(tmp_path: Path) -> None:
    big = tmp_path / "book.txt"
    paragraph = " ".join(SENTENCES[:8]) + "\n\n"
    with big.open("w") as out:
        while out.tell() < 2_000_000:
            out.write(paragraph)
    last: list[ReadingStatus] = []  # the newest only: a list of all would be what grows
    finished = threading.Event()

    def follow(status: ReadingStatus) -> None:
        last[:] = [status]
        if status.finished:
            finished.set()

    with SpeechPipeline(_SilentSynth(), _ForgetfulSink(), voice="v") as speech:
        reader = Reader(speech, follow)
        tracemalloc.start()
        try:
            reader.read(open_document(big).pieces(), "book.txt")
            assert finished.wait(300)
            done = last[0]
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        reader.close()
    assert done.index > 25_000  # every sentence went through (2 MB / ~62 characters)
    print(f"2 MB read through: peak {peak / 1e3:.0f} KB traced")
    assert peak < 1_000_000, f"{peak} bytes: memory grew with the text"


FRENCH = ("Le train pour Lyon partira demain matin à huit heures. Les voyageurs sont priés "
          "de se présenter au quai dix minutes avant le départ, avec leur billet.")


def test_a_text_in_another_language_is_read_by_a_voice_that_speaks_it(
        engine) -> None:  # type: ignore[no-untyped-def]
    bus = EventBus()
    notices: list[str] = []
    bus.subscribe(lambda event: notices.append(event.message)
                  if isinstance(event, Notice) else None)
    with SpeechPipeline(engine, _ForgetfulSink(), voice="af_bella") as speech:
        reading = ReadAloud(speech, bus, lambda: None)
        try:
            french = [v.name for v in engine.voices() if v.available and v.name[0] == "f"]
            assert reading.voice_for(FRENCH) == (french[0] if french else None)
            assert any("looks French" in n for n in notices), notices
            assert reading.voice_for("The train leaves at eight tomorrow morning.") is None
        finally:
            reading.close()


class _SpeedSynth(ToneSynth):
    def __init__(self) -> None:
        super().__init__()
        self.speeds: list[tuple[str, float]] = []

    def synthesize(self, text: str, voice: str, speed: float = 1.0,
                   cancel: object = None) -> np.ndarray:
        self.speeds.append((text, speed))
        return super().synthesize(text, voice, speed, cancel)


def test_a_speed_change_applies_from_the_next_sentence() -> None:
    sink = SlowSink()  # no hold_after: the next sentence starts again at once
    synth = _SpeedSynth()
    with SpeechPipeline(synth, sink, voice="v") as speech:
        reader = Reader(speech)
        reader.read(paragraphs(20), "a test")
        assert wait_for(lambda: len(queued(sink)) >= 1, 5)
        play_next(sink)  # passage 0 playing
        speech.speed = 1.5
        before = len(synth.speeds)
        reader.speed_changed()
        assert wait_for(lambda: len(queued(sink)) >= 1, 5)
        first = play_next(sink)
        assert SENTENCES[1].startswith(first)  # the next sentence, from its start
        assert reader.status().index == 1
        after = synth.speeds[before:]
        assert after and after[0][0] == first and all(speed == 1.5 for _, speed in after)
        reader.close()


def test_resuming_after_a_cut_ends_a_reply_in_progress_and_says_why_it_cannot() -> None:
    """Resume reading (or the pause key on a cut reading) while a reply streams: the reply
    gives way, as it does to a new reading; resume while reading says it reads already."""
    bus = EventBus()
    notices: list[str] = []
    bus.subscribe(lambda event: notices.append(event.message)
                  if isinstance(event, Notice) else None)
    replies_ended: list[int] = []
    with SpeechPipeline(ToneSynth(), SlowSink(), voice="v") as speech:
        reading = ReadAloud(speech, bus, lambda: replies_ended.append(1))
        try:
            assert reading.read_text(" ".join(SENTENCES[:6]), "the selection")
            assert len(replies_ended) == 1
            assert not reading.resume()
            assert notices[-1] == "It is being read already."
            speech.interrupt()  # a question typed meanwhile
            assert wait_for(lambda: reading.reader.status().resumable, 10)
            assert reading.resume() and len(replies_ended) == 2
            speech.interrupt()
            assert wait_for(lambda: reading.reader.status().resumable, 10)
            assert reading.toggle_pause() and len(replies_ended) == 3
        finally:
            reading.close()
