"""The speech pipeline (the original design's dialogue system): text in, speech out, cut on
command.

    say / add_dialogue -> split into clauses -> jobs
    jobs -> synthesis workers (bounded look-ahead) -> feeder (in order) -> audio sink

Every job carries the turn it belongs to. `interrupt()` starts a new turn and cuts the sink:
jobs of older turns are dropped wherever they are (queued, synthesising, waiting, queued in
the player), never played late. One owner per thread: workers own synthesis, the feeder owns
the order of delivery, the sink owns playback.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from agent.audio.events import AudioChunk, PlaybackEvent, PlaybackKind, PlaybackListener
from agent.audio.sinks import AudioSink
from agent.config import TTSConfig
from agent.text import split_for_speech
from agent.tts.base import CancelToken, Samples, SynthesisCancelled, Synthesizer, pause_after

log = logging.getLogger(__name__)


DEFAULT_LOOKAHEAD = TTSConfig.lookahead  # why 3: see TTSConfig


@dataclass(eq=False)
class _Job:
    text: str
    voice: str
    speed: float
    speaker: str
    turn: int
    seq: int
    ready: threading.Event = field(default_factory=threading.Event)
    cancel: CancelToken = field(default_factory=CancelToken)
    samples: Samples | None = None
    error: str = ""
    holds_slot: bool = False
    retired: bool = False


def _two_notes(first_hz: float, second_hz: float, seconds: float, level: float,
               sample_rate: int) -> Samples:
    """Two notes, half the time each, under one smooth swell: a cue, not a beep."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    tone = np.where(t < seconds / 2, np.sin(2 * np.pi * first_hz * t),
                    np.sin(2 * np.pi * second_hz * t))
    envelope = np.sin(np.pi * t / t[-1]) ** 2
    cue: Samples = (level * tone * envelope).astype(np.float32)
    return cue


def interrupt_blip(sample_rate: int = 24_000) -> Samples:
    """A soft 60 ms two-note blip that says "stopped" without startling."""
    return _two_notes(880, 660, 0.06, 0.15, sample_rate)


def listening_chime(sample_rate: int = 24_000) -> Samples:
    """A soft 120 ms rising two-note chime (the blip's notes, upwards) that says "listening"."""
    return _two_notes(660, 990, 0.12, 0.12, sample_rate)


class SpeechPipeline:
    def __init__(self, synth: Synthesizer, sink: AudioSink, voice: str = "af_bella",
                 speed: float = 1.0, workers: int = 1, lookahead: int = DEFAULT_LOOKAHEAD,
                 interrupt_sound: bool = False) -> None:
        self.synth = synth
        self.sink = sink
        self.voice = voice
        self.speed = speed
        self.interrupt_sound = interrupt_sound
        self.speaker_voices: dict[str, str] = {}
        self._listeners: list[PlaybackListener] = []
        self._cond = threading.Condition()
        self._turn = 0
        self._pending = 0  # jobs submitted and not yet retired
        self._pending_by_turn: Counter[int] = Counter()
        self._seq = itertools.count()
        self._slots = threading.Semaphore(lookahead)  # synthesised but not yet played
        self._jobs: queue.Queue[_Job | None] = queue.Queue()  # owned by the workers
        self._order: queue.Queue[_Job | None] = queue.Queue()  # owned by the feeder
        self._in_sink: dict[int, _Job] = {}
        self._synthesizing: set[_Job] = set()
        self._resolved_voices: dict[str, str] = {}
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"tts-worker-{i}", daemon=True)
                         for i in range(workers)]
        self._threads.append(threading.Thread(target=self._feed, name="tts-feeder", daemon=True))
        sink.add_listener(self._on_playback)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> SpeechPipeline:
        self.sink.start()
        for thread in self._threads:
            thread.start()
        return self

    def close(self) -> None:
        """Stop every thread; what is still queued is dropped."""
        self.interrupt(sound=False)
        self.wait_until_done(timeout=1.0)  # let the fade finish before the stream stops
        self._closed = True
        for _ in self._threads[:-1]:
            self._jobs.put(None)
        self._order.put(None)
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=5)
        self.sink.close()

    def warm_up_in_background(self) -> threading.Thread:
        """One short synthesis off the caller's thread (phonemizer setup, first model run), so
        the first real clause is as fast as the tenth."""

        def warm() -> None:
            try:
                self.synth.synthesize("Hello.", self.resolve_voice(self.voice), self.speed)
            except Exception:
                log.exception("speech warm-up failed")

        thread = threading.Thread(target=warm, name="tts-warm-up", daemon=True)
        thread.start()
        return thread

    def __enter__(self) -> SpeechPipeline:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- what callers use --------------------------------------------------------------------

    @property
    def turn(self) -> int:
        return self._turn

    def add_listener(self, listener: PlaybackListener) -> None:
        self._listeners.append(listener)

    def say(self, text: str, voice: str | None = None, speed: float | None = None,
            speaker: str = "") -> int:
        """Queue `text` in the current turn, split into clauses; returns how many."""
        clauses = split_for_speech(text)
        for clause in clauses:
            self.say_clause(clause, voice, speed, speaker)
        return len(clauses)

    def say_clause(self, clause: str, voice: str | None = None, speed: float | None = None,
                   speaker: str = "", turn: int | None = None) -> int:
        """Queue one clause that is already speakable (from the streaming chunker); returns
        its sequence number, which its playback events carry. `turn`: the turn the caller's
        text belongs to (default: the current one); if an interrupt has ended that turn
        since, the clause is dropped, never played."""
        job = _Job(clause, self.resolve_voice(voice or self.voice), speed or self.speed,
                   speaker, self._turn if turn is None else turn, next(self._seq))
        with self._cond:
            self._pending += 1
            self._pending_by_turn[job.turn] += 1
        self._order.put(job)
        self._jobs.put(job)
        return job.seq

    def add_dialogue(self, speaker: str, text: str, voice: str | None = None) -> int:
        """A line for `speaker`; the voice given once is remembered for the speaker's later
        lines, else the default voice speaks."""
        if voice:
            self.speaker_voices[speaker] = voice
        return self.say(text, self.speaker_voices.get(speaker, self.voice), speaker=speaker)

    def interrupt(self, sound: bool | None = None) -> int:
        """Cut what is playing (fade within one audio block), drop everything queued, and
        return the new turn id, ready for the next thing to say."""
        with self._cond:
            self._turn += 1
            turn = self._turn
            stale = list(self._synthesizing)
        self.sink.cut(turn)
        for job in stale:
            job.cancel.cancel()
        if self.interrupt_sound if sound is None else sound:
            self.play_cue(interrupt_blip(self.sink.sample_rate))
        return turn

    def play_cue(self, samples: Samples) -> None:
        """Play a short sound (a blip, a chime) in the current turn: cut like speech, but
        sequence -1, so nothing takes it for the reply's voice."""
        with self._cond:
            turn = self._turn
        self.sink.enqueue(AudioChunk(samples, turn, -1))

    def wait_until_done(self, timeout: float | None = None) -> bool:
        """Block until everything queued has been played or dropped (the original design's
        `wait_for_speaking_complete`); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout)

    def wait_turn_done(self, turn: int, timeout: float | None = None) -> bool:
        """Block until every job of `turn` and older ones has been played, cut or dropped,
        and its playback event delivered to the listeners; False on timeout. Later turns'
        jobs (a sample spoken right after an interrupt) are not waited for."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not any(t <= turn for t in self._pending_by_turn), timeout)

    @property
    def busy(self) -> bool:
        return self._pending > 0

    def pending_in_turn(self, turn: int) -> int:
        """Clauses of `turn` queued and not yet played, cut or dropped."""
        with self._cond:
            return self._pending_by_turn.get(turn, 0)

    @property
    def pending(self) -> int:
        """Clauses queued and not yet played, cut or dropped."""
        return self._pending

    def resolve_voice(self, voice: str) -> str:
        if voice not in self._resolved_voices:
            self._resolved_voices[voice] = self.synth.default_voice(voice)
        return self._resolved_voices[voice]

    # -- threads -----------------------------------------------------------------------------

    def _stale(self, job: _Job) -> bool:
        return job.turn < self._turn or self._closed

    def _retire(self, job: _Job) -> None:
        with self._cond:
            if job.retired:
                return
            job.retired = True
            if job.holds_slot:
                job.holds_slot = False
                self._slots.release()
            self._pending -= 1
            self._pending_by_turn[job.turn] -= 1
            if self._pending_by_turn[job.turn] <= 0:
                del self._pending_by_turn[job.turn]
            self._cond.notify_all()

    def _acquire_slot(self, job: _Job) -> bool:
        while not self._slots.acquire(timeout=0.05):
            if self._stale(job):
                return False
        with self._cond:
            job.holds_slot = True
            if job.retired:  # the feeder gave up on it meanwhile
                job.holds_slot = False
                self._slots.release()
                return False
        return True

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            if not self._stale(job) and self._acquire_slot(job) and not self._stale(job):
                with self._cond:
                    self._synthesizing.add(job)
                if self._stale(job):  # interrupted while we registered
                    job.cancel.cancel()
                try:
                    audio = self.synth.synthesize(job.text, job.voice, job.speed, job.cancel)
                    pause = np.zeros(pause_after(job.text, job.speed), dtype=np.float32)
                    job.samples = np.concatenate([audio, pause]) if audio.size else audio
                except SynthesisCancelled:
                    pass
                except Exception as error:
                    log.exception("synthesis failed for %r", job.text)
                    job.error = f"could not synthesise {job.text[:40]!r}: {error}"
                finally:
                    with self._cond:
                        self._synthesizing.discard(job)
            job.ready.set()

    def _feed(self) -> None:
        while (job := self._order.get()) is not None:
            while not job.ready.wait(0.05):
                if self._stale(job):
                    break
            if self._stale(job) or job.samples is None or job.samples.size == 0:
                if job.error:
                    self._notify(PlaybackEvent(PlaybackKind.ERROR, job.turn, job.seq,
                                               text=job.text, message=job.error))
                self._retire(job)
                continue
            with self._cond:
                self._in_sink[job.seq] = job
            self.sink.enqueue(AudioChunk(job.samples, job.turn, job.seq, job.text, job.speaker))

    def _on_playback(self, event: PlaybackEvent) -> None:
        # Listeners hear of a chunk's end before it is retired: whoever waits for the speech
        # to be done then knows how much of each chunk was played.
        self._notify(event)
        if event.kind in (PlaybackKind.FINISHED, PlaybackKind.CUT, PlaybackKind.DROPPED):
            with self._cond:
                job = self._in_sink.pop(event.seq, None)
            if job is not None:
                self._retire(job)

    def _notify(self, event: PlaybackEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("speech listener failed on %s", event.kind)
