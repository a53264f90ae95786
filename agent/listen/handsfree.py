"""Hands-free listening: a microphone left open so the user can talk over the agent (voice
barge-in) or start a turn with a wake word, without a key.

    microphone block (32 ms) -> echo canceller (the agent's own voice out) -> Silero VAD
        -> talk-over: the user's voice while the agent speaks, for `min_speech_s`
        -> wake word: the phrase, whenever detection is on
        -> a turn: from just before the voice began (talk-over) or from the wake word, until
           a pause; handed over as samples for Whisper

The owner (the Assistant) opens and closes the microphone: it is open only while talk-over
or the wake word needs it. Nothing heard is written anywhere; the samples of a turn go to
the owner and the rest is forgotten block by block. Events reach the owner on this module's
thread; it posts them to its own loop.

`TalkOverDetector` and `TurnCapture` are plain state machines (fed probabilities), tested on
their own; `HandsFreeListener` is the stream and the thread around them.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from agent.listen.microphone import LOST_HELP, NoInputDevice, dbfs, open_input_stream
from agent.listen.vad import VAD_RATE, WINDOW, EndOfSpeech, SilenceStop

if TYPE_CHECKING:
    from agent.audio.tap import PlaybackTap
    from agent.listen.echo import EchoCanceller
    from agent.listen.wakeword import WakeWordDetector

log = logging.getLogger(__name__)

Samples = npt.NDArray[np.float32]
WINDOW_S = WINDOW / VAD_RATE


@dataclass(frozen=True)
class TalkOverRule:
    """When the user's voice over the agent stops it.

    The reply *holds* (fades out, keeps its place) as soon as `hold_s` of voice is heard
    (VAD probability over `threshold` in consecutive windows): that is the latency the user
    hears. It is *cut* once `min_speech_s` of voice has been heard (gaps of silence between
    words allowed). A voice that ends sooner (quiet for `end_s`) was short: "stop", "wait",
    "mm-hmm", "yeah"; the owner hears what it was and cuts or goes on. Sounds that are not a
    voice (coughs, clicks, doors, typing) do not reach the threshold at all: measured in
    docs/hands-free.md."""

    hold_s: float = 0.096
    # Or at once: one window the VAD finds a little like a voice (AEC3 damps the start of a
    # voice over the echo, so the VAD is slow to be sure) that is also well above the echo's
    # residue of the last second. Coughs and clicks get no VAD at all.
    quick_probability: float = 0.25
    quick_rise_db: float = 18.0
    min_speech_s: float = 0.8
    threshold: float = 0.5
    end_s: float = 0.3
    min_short_s: float = 0.15  # less voice than this, then quiet: nothing said, go on
    pre_roll_s: float = 1.0  # kept before the hold: the start of the user's words


class Verdict(enum.Enum):
    WAIT = "wait"  # not decided yet
    CUT = "cut"  # long enough: the user is talking
    SHORT = "short"  # a short utterance: hear what it was
    NOTHING = "nothing"  # a blip: go on


class TalkOverDetector:
    """Feeds on VAD probabilities. While watching, `heard_voice` is True once `hold_s` of
    voice in a row has been heard; then `judge` says what it was, block by block."""

    def __init__(self, rule: TalkOverRule) -> None:
        self.rule = rule
        self.levels: deque[float] = deque(maxlen=round(1.0 / WINDOW_S))  # dBFS, last second
        self.run_s = 0.0  # voice in a row, while watching
        self.speech_s = 0.0  # voice since the hold
        self.quiet_s = 0.0  # quiet since the last voice, after the hold

    def reset(self) -> None:
        self.run_s = self.speech_s = self.quiet_s = 0.0

    def forget_levels(self) -> None:
        self.levels.clear()

    def heard_voice(self, probabilities: Samples, level_db: float = -100.0) -> bool:
        """True when the voice should hold the reply: `hold_s` of it, or one window that is
        both a little like a voice and `quick_rise_db` over the recent floor."""
        floor = sorted(self.levels)[len(self.levels) // 4] if self.levels else 0.0
        self.levels.append(level_db)
        if probabilities.size and len(self.levels) >= 8 \
                and float(probabilities.max()) >= self.rule.quick_probability \
                and level_db >= floor + self.rule.quick_rise_db:
            self.speech_s, self.quiet_s = WINDOW_S, 0.0
            return True
        for probability in probabilities:
            self.run_s = self.run_s + WINDOW_S if probability >= self.rule.threshold else 0.0
            if self.run_s >= self.rule.hold_s - 1e-9:
                self.speech_s, self.quiet_s = self.run_s, 0.0
                return True
        return False

    def judge(self, probabilities: Samples) -> Verdict:
        rule = self.rule
        for probability in probabilities:
            if probability >= rule.threshold:
                self.speech_s += WINDOW_S
                self.quiet_s = 0.0
            else:
                self.quiet_s += WINDOW_S
            if self.speech_s >= rule.min_speech_s - 1e-9:
                return Verdict.CUT
            if self.quiet_s >= rule.end_s - 1e-9:
                return Verdict.SHORT if self.speech_s >= rule.min_short_s else Verdict.NOTHING
        return Verdict.WAIT


class TurnCapture:
    """The samples of one spoken turn, from its first block until the pause that ends it."""

    def __init__(self, settings: SilenceStop, trigger: str) -> None:
        self.trigger = trigger  # "talk-over" or "wake word"
        self.end_of_speech = EndOfSpeech(settings)
        self.blocks: list[Samples] = []

    def add(self, block: Samples, probabilities: Samples) -> str:
        """The reason the turn ended ("silence", "no speech", "time limit"), or ""."""
        self.blocks.append(block)
        reason = self.end_of_speech.update(probabilities)
        if not reason and self.end_of_speech.heard_s >= MAX_TURN_S:
            reason = "time limit"
        return reason

    def samples(self) -> Samples:
        return np.concatenate(self.blocks) if self.blocks else np.zeros(0, np.float32)


MAX_TURN_S = 60.0
NO_PROBABILITIES: Samples = np.zeros(0, np.float32)  # a block the VAD did not look at
SHORT_LEAD_S = 0.15  # of a short utterance, kept from before the hold


class HandsFreeEvents(Protocol):
    """What the listener tells its owner (called on the listener's thread: post, return)."""

    def held(self) -> None:
        """A voice over the reply: hold it (silence, its place kept) while we listen."""

    def released(self) -> None:
        """It was nothing (a blip): go on with the reply."""

    def short_voice(self, samples: Samples, sample_rate: int) -> None:
        """A short utterance over the reply ("stop", "mm-hmm"): hear it, then cut or go on."""

    def talked_over(self) -> None:
        """The user is talking over the reply: cut it; their words follow as a turn."""

    def woken(self, phrase: str) -> None:
        """The wake word was heard: a turn starts (show that the agent listens)."""

    def heard(self, samples: Samples, sample_rate: int, trigger: str, reason: str) -> None:
        """A hands-free turn ended; `samples` (16 kHz) are what to transcribe."""

    def lost(self, message: str) -> None:
        """The microphone stopped by itself (unplugged, sound server gone)."""


@dataclass(frozen=True)
class HandsFreeSettings:
    talk_over: bool = False
    wake_word: str = ""  # a name from agent.listen.wakeword; "" is off
    echo_cancellation: bool = True
    rule: TalkOverRule = field(default_factory=TalkOverRule)
    silence: SilenceStop = field(
        default_factory=lambda: SilenceStop(silence_s=1.0, no_speech_s=5.0))


class HandsFreeListener:
    """The open microphone, its thread, and the detectors. `open()` and `close()` from the
    owner's threads (serialised here); `speaking` says whether the agent's voice is playing
    (talk-over listens only then); `suspended` (push-to-talk is recording) ignores the
    microphone without closing it."""

    def __init__(self, settings: HandsFreeSettings, events: HandsFreeEvents,
                 speaking: Callable[[], bool], device: str | int | None = None,
                 tap: PlaybackTap | None = None) -> None:
        self.settings = settings
        self.events = events
        self.speaking = speaking
        self.device = device
        self.tap = tap
        self.suspended = threading.Event()
        self.error = ""
        self.sample_rate = VAD_RATE
        self.blocks_heard = 0
        self.level = -100.0
        self.input_latency = 0.0  # the input stream's, in seconds (for measurements)
        self.cpu_s = 0.0  # thread CPU time spent on blocks (bench/hands_free.py reads it)
        # For benchmarks and tests only: called with each block as heard, as cleaned, and its
        # VAD probabilities (nothing is kept unless someone sets this).
        self.on_block: Callable[[Samples, Samples, Samples], None] | None = None
        self._lock = threading.Lock()
        self._stream: Any = None
        self._live: object | None = None
        self._blocks: queue.SimpleQueue[Samples | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # Made on the first open, kept between openings (the echo canceller keeps what it
        # learnt of the room; the models load once).
        self._echo: EchoCanceller | None = None
        self._vad: Any = None
        self._wake: WakeWordDetector | None = None
        self._wake_name = ""

    @property
    def is_open(self) -> bool:
        return self._stream is not None

    @property
    def echo_canceller(self) -> EchoCanceller | None:
        return self._echo

    # -- opening and closing (the owner's threads) ------------------------------------------

    def open(self) -> None:
        """Open the microphone (a no-op when open); raises NoInputDevice saying what to do,
        or WakeWordError for a wake word that cannot be loaded."""
        with self._lock:
            if self._stream is not None:
                return
            self._prepare_models()
            if self._echo is not None:
                self._echo.resync()
            self.error = ""
            self._blocks = queue.SimpleQueue()
            token = object()
            self._live = token
            try:
                stream, self.sample_rate = open_input_stream(
                    self.device, VAD_RATE, self._callback, lambda: self._on_finished(token))
            except BaseException:
                self._live = None
                raise
            self._stream = stream
            self.input_latency = float(stream.latency)
            self._thread = threading.Thread(target=self._run, args=(self._blocks,),
                                            name="hands-free", daemon=True)
            self._thread.start()
            log.info("hands-free microphone open (%s)", self.describe())

    def close(self) -> None:
        """Close the microphone and end the thread; a turn being captured is dropped."""
        with self._lock:
            stream, self._stream = self._stream, None
            self._live = None
            thread, self._thread = self._thread, None
            if stream is not None:
                import sounddevice as sd

                try:
                    stream.abort()
                except sd.PortAudioError as error:
                    log.warning("closing the hands-free microphone: %s", error)
                finally:
                    with contextlib.suppress(sd.PortAudioError):
                        stream.close()
            self._blocks.put(None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2)
        if stream is not None:
            log.info("hands-free microphone closed")

    def release(self) -> None:
        """Close, and free the models (the settings turned hands-free off)."""
        self.close()
        if self._wake is not None:
            self._wake.close()
        self._wake, self._wake_name, self._vad, self._echo = None, "", None, None

    def describe(self) -> str:
        parts = []
        if self.settings.talk_over:
            parts.append("talk-over")
        if self.settings.wake_word:
            parts.append(f"wake word {self.settings.wake_word}")
        parts.append("echo cancellation " + ("on" if self._echo is not None else "off"))
        return ", ".join(parts)

    def _prepare_models(self) -> None:
        from agent.listen.vad import SileroVad

        if self._vad is None:
            self._vad = SileroVad()
        want_echo = self.settings.echo_cancellation and self.tap is not None
        if want_echo and self._echo is None:
            from agent.listen.echo import EchoCanceller

            assert self.tap is not None
            self._echo = EchoCanceller(self.tap)
        elif not want_echo:
            self._echo = None
        name = self.settings.wake_word
        if name != self._wake_name:
            if self._wake is not None:
                self._wake.close()
                self._wake = None
            if name:
                from agent.listen.wakeword import WakeWordDetector

                self._wake = WakeWordDetector(name)
            self._wake_name = name

    # -- the PortAudio callback: copy and return ---------------------------------------------

    def _callback(self, indata: Any, _frames: int, _timeinfo: Any, _status: Any) -> None:
        self._blocks.put_nowait(indata[:, 0].copy())

    def _on_finished(self, token: object) -> None:
        if token is not self._live:
            return  # close() ended it
        self._live = None
        self.error = LOST_HELP
        log.warning("the hands-free microphone stopped by itself (device or sound server gone)")
        threading.Thread(target=self._report_lost, name="hands-free-lost", daemon=True).start()

    def _report_lost(self) -> None:
        self.close()
        self.events.lost(LOST_HELP)

    # -- the thread --------------------------------------------------------------------------

    def _run(self, blocks: queue.SimpleQueue[Samples | None]) -> None:
        try:
            self._listen(blocks)
        except Exception as error:  # never a dead thread behind an open microphone
            log.exception("hands-free listening failed")
            self.close()
            self.events.lost(f"Hands-free listening stopped after an error ({error}); it "
                             "starts again when next needed.")

    def _listen(self, blocks: queue.SimpleQueue[Samples | None]) -> None:
        from agent.listen.echo import StreamResampler

        vad, echo, wake = self._vad, self._echo, self._wake
        # A microphone that refuses 16 kHz: one resampler for the stream, no seams at the
        # blocks' edges (AEC3 and the VAD would hear them).
        to_vad_rate = StreamResampler(self.sample_rate, VAD_RATE)
        vad.reset()
        if wake is not None:
            wake.reset()
        talk_over = TalkOverDetector(self.settings.rule)
        pre_roll: deque[tuple[Samples, Samples]] = deque(
            maxlen=max(1, round(self.settings.rule.pre_roll_s / (WINDOW_S))))
        capture: TurnCapture | None = None
        holding = False  # the reply is held while the voice over it is judged
        vad_running = False
        held_from = 0  # where in the capture the hold began, less SHORT_LEAD_S
        while (block := blocks.get()) is not None:
            started = time.thread_time()
            if self.sample_rate != VAD_RATE:
                block = to_vad_rate.process(block)
            raw = block
            if echo is not None:
                block = echo.process(block)
            self.level = dbfs(block)
            self.blocks_heard += 1
            # The VAD only where a voice matters: a turn being heard, a reply held, or one
            # that may be talked over. The wake word alone does without it: that is most of
            # an idle agent's listening, and Silero costs more than the wake word does.
            if capture is not None or holding or (self.settings.talk_over
                                                  and self.speaking()):
                if not vad_running:
                    vad.reset()
                    vad_running = True
                probabilities = vad.feed(block)
            else:
                vad_running, probabilities = False, NO_PROBABILITIES
            if self.on_block is not None:
                self.on_block(raw, block, probabilities)
            if self.suspended.is_set():  # push-to-talk has the user's words
                if holding or capture is not None:  # a turn dropped: its owner hears so
                    self.events.released()
                capture, holding = None, False
                talk_over.reset()
                pre_roll.clear()
            elif holding:
                assert capture is not None
                capture.add(block, probabilities)
                verdict = talk_over.judge(probabilities)
                if verdict is Verdict.CUT:
                    log.info("talk-over: the user is talking over the reply")
                    holding = False
                    self.events.talked_over()
                elif verdict is Verdict.SHORT:
                    log.info("talk-over: a short utterance (%.2f s of voice)",
                             talk_over.speech_s)
                    # From just before the hold: the pre-roll before that is echo's residue,
                    # which Whisper would make words of.
                    self.events.short_voice(capture.samples()[held_from:], VAD_RATE)
                    capture, holding = None, False
                elif verdict is Verdict.NOTHING:
                    log.debug("talk-over: a blip, the reply goes on")
                    self.events.released()
                    capture, holding = None, False
                if not holding:
                    talk_over.reset()
            elif capture is not None:
                reason = capture.add(block, probabilities)
                if reason:
                    self.events.heard(capture.samples(), VAD_RATE, capture.trigger, reason)
                    capture = None
                    talk_over.reset()
                    if wake is not None:
                        wake.reset()
            else:
                pre_roll.append((block, probabilities))
                speaking = self.speaking()
                settled = echo is None or echo.settled  # AEC3 may leak while it settles
                if not settled:
                    talk_over.reset()
                    talk_over.forget_levels()
                elif self.settings.talk_over and speaking and \
                        talk_over.heard_voice(probabilities, self.level):
                    log.info("talk-over: a voice over the reply; holding it")
                    self.events.held()
                    holding = True
                    capture = TurnCapture(self.settings.silence, "talk-over")
                    for old_block, old_probabilities in pre_roll:
                        capture.add(old_block, old_probabilities)
                    pre_roll.clear()
                    held_from = max(0, sum(b.size for b in capture.blocks) - round(
                        SHORT_LEAD_S * VAD_RATE))
                elif not speaking:
                    talk_over.reset()
                    talk_over.forget_levels()
                if capture is None and wake is not None and wake.feed(block):
                    log.info("wake word heard: %s", wake.info.phrase)
                    self.events.woken(wake.info.phrase)
                    capture = TurnCapture(self.settings.silence, "wake word")
                    pre_roll.clear()
            self.cpu_s += time.thread_time() - started


__all__ = ["HandsFreeEvents", "HandsFreeListener", "HandsFreeSettings", "NoInputDevice",
           "TalkOverDetector", "TalkOverRule", "TurnCapture", "Verdict"]
