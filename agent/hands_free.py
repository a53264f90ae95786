"""The Assistant's side of hands-free listening ([listen] talk_over, wake_word): when the
microphone is open, and what a talk-over, a wake word or a finished turn does.

The microphone is open only while something needs it: always while a wake word is on;
while a reply is being thought or spoken when talk-over is on; and while a hands-free turn
is being heard. A thread of its own ("hands-free-switch") opens and closes it, so the core
loop, which tells it the state has changed, never waits on the sound server.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from agent.config.schema import ListenConfig
from agent.events import AgentEvent, AgentState, StateChanged
from agent.listen.handsfree import HandsFreeListener, HandsFreeSettings, Samples, TalkOverRule
from agent.listen.vad import SilenceStop

if TYPE_CHECKING:
    from agent.audio.tap import PlaybackTap

log = logging.getLogger(__name__)

BUSY = (AgentState.THINKING, AgentState.SPEAKING)
CLOSE_AFTER_S = 2.0  # talk-over: the microphone stays open this long after a reply
# A microphone lost soon after it opened (a device that keeps failing, an error on every
# block) is opened again after a pause that doubles each time, up to a minute.
RETRY_FIRST_S, RETRY_MAX_S, SOON_S = 1.0, 60.0, 10.0


class HandsFreeOwner(Protocol):
    """What the hands-free side needs of the Assistant."""

    @property
    def state(self) -> AgentState: ...

    def interrupt(self) -> None: ...

    def hold_speech(self, held: bool) -> None:
        """Hold the reply's audio (silent, its place kept), or let it go on."""

    def transcribe(self, samples: Samples, rate: int) -> str: ...

    def submit(self, text: str) -> None: ...

    def hands_free_listening(self, listening: bool, transcribing: bool = False) -> None: ...

    def wake_chime(self) -> None:
        """Say "listening" with a short chime, when the settings want one."""

    def transcribe_and_submit(self, samples: Samples, rate: int, heard_nothing: str,
                              wake_phrase: str = "") -> None: ...

    def notice(self, message: str) -> None: ...


@dataclass(frozen=True)
class MicrophoneUse:
    """Why the hands-free microphone is open now ("" parts are off): for the tray, the
    overlay and doctor."""

    is_open: bool
    talk_over: bool
    wake_word: str
    echo_cancellation: bool

    def describe(self) -> str:
        if not self.is_open:
            return "microphone closed"
        why = [w for w in ("talk-over" if self.talk_over else "",
                           f"wake word {self.wake_word}" if self.wake_word else "") if w]
        return f"microphone open ({', '.join(why) or 'a turn'}; echo cancellation " \
               f"{'on' if self.echo_cancellation else 'off'})"


def settings_from(listen: ListenConfig, vad_silence_s: float) -> HandsFreeSettings:
    return HandsFreeSettings(
        talk_over=listen.talk_over, wake_word=listen.wake_word,
        echo_cancellation=listen.echo_cancellation,
        rule=TalkOverRule(min_speech_s=listen.talk_over_min_s),
        silence=SilenceStop(silence_s=vad_silence_s, no_speech_s=5.0))


# Said over a reply, these stop it (with nothing to answer). A short question ("What?", "Why
# not?") stops it and is asked; anything else short ("mm-hmm", "yeah", a cough Whisper made
# words of) lets the reply go on: a reply is not derailed by a sound it half heard.
STOP = frozenset({"stop", "stop it", "stop talking", "wait", "hold on", "hang on", "enough",
                  "shut up", "quiet", "be quiet", "no", "no no", "pause", "cancel", "never mind",
                  "nevermind", "thanks", "thank you", "okay stop", "ok stop", "stop please",
                  "please stop", "that's enough", "wait wait", "sorry"})
QUESTION_WORDS = frozenset({"what", "why", "how", "who", "where", "when", "which", "can",
                            "could", "would", "will", "is", "are", "do", "does", "did",
                            "should", "tell", "say", "repeat", "again"})


def short_utterance_kind(text: str) -> str:
    """"go on", "stop" or "question", for what Whisper heard of a short voice over a reply."""
    words = " ".join(re.findall(r"[a-z']+", text.lower().replace("-", " ")))
    if not words:
        return "go on"
    if words in STOP:
        return "stop"
    if text.strip().endswith("?") or words.split()[0] in QUESTION_WORDS:
        return "question"
    return "go on"


def strip_wake_phrase(text: str, phrase: str) -> str:
    """The question without the wake word Whisper may have heard at its start ("Okay Nabu,
    what time is it?" -> "what time is it?")."""
    words = [re.escape(word) for word in re.findall(r"[a-z]+", phrase.lower())]
    if not words:
        return text
    pattern = r"^\W*" + r"[\s,.!-]*".join(words) + r"\b[\s,.!?-]*"
    stripped = re.sub(pattern, "", text, count=1, flags=re.IGNORECASE)
    return stripped[:1].upper() + stripped[1:] if stripped != text else text


class HandsFree:
    """Owns the HandsFreeListener and decides when its microphone is open."""

    def __init__(self, owner: HandsFreeOwner, listen: ListenConfig, vad_silence_s: float,
                 device: str | int | None, tap: PlaybackTap | None,
                 on_microphone: Callable[[MicrophoneUse], None] | None = None) -> None:
        self.owner = owner
        self.listener = HandsFreeListener(settings_from(listen, vad_silence_s), self,
                                          speaking=self._speaking, device=device, tap=tap)
        self.on_microphone = on_microphone
        self._capturing = False  # a hands-free turn is being heard (keeps the mic open)
        # The reply is held while a voice over it is judged; each hold has a number, so a
        # judgement that comes after the hold ended some other way changes nothing.
        self._hold_lock = threading.Lock()
        self._hold: int | None = None
        self._holds = 0
        self._judging: int | None = None  # the hold whose short utterance is being heard
        self._wake_phrase = ""
        self._wanted = threading.Event()  # something changed: look again
        self._stop = False
        self._failed_open = ""  # the last open error, reported once until it changes
        self._opened_at = 0.0
        self._retry_s = 0.0  # the pause before opening again after a loss (0: none)
        self._reopen_at = 0.0
        self._thread = threading.Thread(target=self._switch, name="hands-free-switch",
                                        daemon=True)
        self._thread.start()
        self._wanted.set()

    @property
    def settings(self) -> HandsFreeSettings:
        return self.listener.settings

    def update(self, listen: ListenConfig, vad_silence_s: float,
               device: str | int | None = None) -> None:
        """New settings or input device: the microphone is closed and opened again with them
        if needed."""
        new = settings_from(listen, vad_silence_s)
        if new == self.listener.settings and device == self.listener.device:
            return
        self.listener.close()
        self.listener.settings, self.listener.device = new, device
        self._abandon_turn()
        self._retry_s = self._reopen_at = 0.0  # a new device is tried at once
        self._failed_open = ""
        self._wanted.set()

    def on_event(self, event: AgentEvent) -> None:
        """The bus listener (the core loop's thread): a state change may open or close it."""
        if isinstance(event, StateChanged):
            self._wanted.set()

    def suspend(self, suspended: bool) -> None:
        """Push-to-talk is recording: the open microphone's detectors stand aside. A reply
        held for a voice over it is cut: the user chose to talk (and push-to-talk hears
        without echo cancellation, so it must not play on)."""
        if suspended:
            hold = self._end_hold()  # before the listener, seeing the suspension, releases it
            self.listener.suspended.set()
            hold = self._end_hold() or hold  # (one it made as it saw the suspension)
            self._capturing = False
            if hold is not None:
                self.owner.interrupt()
        else:
            self.listener.suspended.clear()
        self._wanted.set()

    def use(self) -> MicrophoneUse:
        settings = self.listener.settings
        return MicrophoneUse(self.listener.is_open, settings.talk_over, settings.wake_word,
                             self.listener.echo_canceller is not None)

    def close(self) -> None:
        self._stop = True
        self._wanted.set()
        self._thread.join(timeout=3)
        self.listener.release()
        self._abandon_turn()

    def _end_hold(self) -> int | None:
        """The hold in force, now over (the caller says what becomes of the reply); None if
        there was none."""
        with self._hold_lock:
            hold, self._hold = self._hold, None
        return hold

    def _abandon_turn(self) -> None:
        """The microphone closed (settings changed, unplugged, quit) in the middle of a
        hands-free turn: a held reply plays on, and the agent stops showing that it listens."""
        if self._end_hold() is not None:
            self.owner.hold_speech(False)
        if self._capturing:
            self._capturing = False
            if not self.listener.suspended.is_set():  # push-to-talk's "listening" is its own
                self.owner.hands_free_listening(False)

    # -- when the microphone is open --------------------------------------------------------

    def needed(self) -> bool:
        settings = self.listener.settings
        return bool(settings.wake_word) or self._capturing or (
            settings.talk_over and self.owner.state in BUSY)

    def _speaking(self) -> bool:
        return self.owner.state is AgentState.SPEAKING

    def _switch(self) -> None:
        from agent.listen.microphone import NoInputDevice
        from agent.listen.wakeword import WakeWordError

        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._stop:
                return
            was_open = self.listener.is_open
            # A gap between sentences or replies: keep listening a moment, so the echo
            # canceller stays in step and a quick next reply is covered from its start.
            deadline = time.monotonic() + CLOSE_AFTER_S
            while was_open and not self._stop and not self.needed() \
                    and (left := deadline - time.monotonic()) > 0:
                self._wanted.wait(left)
                self._wanted.clear()
            if self._stop:
                return
            while self.needed() and not was_open and not self._stop \
                    and (left := self._reopen_at - time.monotonic()) > 0:
                self._wanted.wait(left)  # lost a moment ago: not at once again
                self._wanted.clear()
            if self._stop:
                return
            if self.needed() and not was_open:
                try:
                    self.listener.open()
                    self._opened_at = time.monotonic()
                    if not self._retry_s:  # not one of a run of losses: say the next one
                        self._failed_open = ""
                except (NoInputDevice, WakeWordError) as error:
                    self._cannot_open(str(error))
                except Exception as error:  # a model or the echo canceller that cannot load
                    log.exception("hands-free listening could not start")
                    self._cannot_open(str(error) or type(error).__name__)
            elif not self.needed() and was_open:
                self.listener.close()
            if self.listener.is_open != was_open and self.on_microphone is not None:
                self.on_microphone(self.use())

    def _cannot_open(self, why: str) -> None:
        """Said once until the reason changes (the switch tries again at the next need)."""
        if why != self._failed_open:
            self._failed_open = why
            self.owner.notice(f"Hands-free listening is off: {why}")

    # -- HandsFreeEvents (the listener's thread) ----------------------------------------------

    def held(self) -> None:
        with self._hold_lock:
            if self._hold is None:  # a second voice while one is judged: the same hold
                self._holds += 1
                self._hold = self._holds
        self._capturing = True
        self.owner.hold_speech(True)
        self.owner.hands_free_listening(True)

    def released(self) -> None:
        with self._hold_lock:
            judged = self._hold is not None and self._hold == self._judging
        if judged:  # a cough after "stop": the short utterance's judgement decides
            self._wanted.set()
            return
        self._capturing = False
        if self._end_hold() is not None:
            self.owner.hold_speech(False)
        if not self.listener.suspended.is_set():  # push-to-talk's "listening" is its own
            self.owner.hands_free_listening(False)
        self._wanted.set()

    def talked_over(self) -> None:
        self._end_hold()
        self._capturing = True
        self.owner.interrupt()  # ends the hold too
        self.owner.hands_free_listening(True)

    def short_voice(self, samples: Samples, sample_rate: int) -> None:
        """Hear what the short utterance was, off the listener's thread; meanwhile the reply
        stays held."""
        with self._hold_lock:
            hold = self._judging = self._hold
        threading.Thread(target=self._judge_short, args=(samples, sample_rate, hold),
                         name="hands-free-short", daemon=True).start()

    def _judge_short(self, samples: Samples, sample_rate: int, hold: int | None) -> None:
        try:
            text = self.owner.transcribe(samples, sample_rate)
        except Exception:  # no recogniser: a voice over the reply stops it
            log.exception("could not hear the short utterance")
            text = "stop"
        kind = short_utterance_kind(text)
        with self._hold_lock:
            current = hold is not None and self._hold == hold
            if current:
                self._hold = None
            if self._judging == hold:
                self._judging = None
        if not current:  # push-to-talk, a cut or new settings ended the hold meanwhile
            log.info("talk-over: short utterance %r, after its hold had ended", text)
            return
        log.info("talk-over: short utterance %r: %s", text, kind)
        self._capturing = False
        if kind == "go on":
            self.owner.hold_speech(False)
            self.owner.hands_free_listening(False)
        else:
            self.owner.interrupt()
            self.owner.hands_free_listening(False)
            if kind == "question":
                self.owner.submit(text)
        self._wanted.set()

    def woken(self, phrase: str) -> None:
        self._capturing = True
        self._wake_phrase = phrase
        if self.owner.state in BUSY:
            self.owner.interrupt()
        self.owner.wake_chime()
        self.owner.hands_free_listening(True)

    def heard(self, samples: Samples, sample_rate: int, trigger: str, reason: str) -> None:
        self._capturing = False
        self._wanted.set()
        log.info("hands-free turn (%s) ended: %s, %.1f s", trigger, reason,
                 samples.size / sample_rate)
        if reason == "no speech":
            self.owner.hands_free_listening(False)
            return
        self.owner.hands_free_listening(False, True)
        woken = trigger == "wake word"
        heard_nothing = ("I heard the wake word, then nothing; say it again, then your "
                         "question." if woken else "I heard you over the reply, but no words.")
        threading.Thread(target=self.owner.transcribe_and_submit,
                         args=(samples, sample_rate, heard_nothing,
                               self._wake_phrase if woken else ""),
                         name="stt", daemon=True).start()

    def lost(self, message: str) -> None:
        self._abandon_turn()
        soon = time.monotonic() - self._opened_at < SOON_S
        if not soon:  # it had been working: this loss is news, whatever was said before
            self._failed_open = ""
        self._retry_s = min(RETRY_MAX_S, self._retry_s * 2) if soon and self._retry_s \
            else RETRY_FIRST_S if soon else 0.0
        self._reopen_at = time.monotonic() + self._retry_s
        if message != self._failed_open:  # once, until something else happens
            self._failed_open = message
            self.owner.notice(message)
        self._wanted.set()  # it opens again at the next need (the device may be back)
