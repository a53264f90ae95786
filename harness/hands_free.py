"""The real assistant listening hands-free in a simulated room, for tests/test_hands_free.py and
bench/hands_free.py (one driver, so both measure the same thing).

`HandsFreeRig` starts the real `Assistant` (Kokoro, the real PortAudio player behind the ALSA
tap, the embedded LLM, Whisper) with its microphone on the virtual microphone that
`harness.room.Room` feeds: what the agent says comes back into its microphone as a laptop's
speakers would bring it. It records what the hands-free side did (talk-overs, wake words,
the questions it would have sent: `submit` is caught, not answered) and measures:

- self-interruptions while the agent speaks alone (`speak_alone`);
- a user talking over a reply (`talk_over`): from the onset of the voice at the microphone to
  the last non-zero sample of the reply at the DAC, and what Whisper heard afterwards;
- wake words said into the room (`say_into_room` + `wakes`).
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from agent.audio.player import AudioPlayer
from harness.microphone import VirtualMicrophone
from harness.services import HarnessError, wait_for

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from agent.assistant import Assistant
    from harness.room import Room

# Podcast-like speech for the agent to say: long, varied, ordinary sentences.
MONOLOGUE = (
    "Good morning, and welcome back to the show about the small things that make a day go "
    "well. Today we talk about kitchens, trains, and the art of the perfect cup of tea. "
    "Most people boil the water too long, which drives out the air and makes the tea taste "
    "flat. The trick is to stop the kettle just before it roars. Trains are another matter. "
    "The morning service into the city leaves every twenty minutes on weekdays, but on "
    "Sundays it runs only once an hour, so plan ahead. If you miss it, the bus across the "
    "river is slower but much prettier, with a view of the old mill and the bridge. My "
    "sister swears by cycling instead, even in the rain, and she is rarely late. Speaking "
    "of rain, the forecast says the weekend will be dry, with a light breeze from the west "
    "and clear skies in the evening. That is perfect weather for a walk in the park, a "
    "picnic, or simply reading a good book on the balcony with a slice of chocolate cake. "
    "Before we go, remember to turn off the lights in the kitchen before you go to bed. "
    "It saves a surprising amount of energy over a year, and it is one less thing to worry "
    "about. Thank you for listening, and see you next week."
)


@dataclass
class Happened:
    """What the hands-free side did, with monotonic times."""

    talk_overs: list[float] = field(default_factory=list)  # replies cut by hands-free
    holds: list[float] = field(default_factory=list)  # replies held (a voice heard)
    wakes: list[float] = field(default_factory=list)
    submitted: list[tuple[float, str]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TalkOver:
    """One user question said over a reply."""

    detected: bool  # the reply was cut
    latency_s: float | None  # voice onset at the microphone -> last reply sample at the DAC
    #                           (the reply holds at once, and is cut while silent)
    transcript: str
    gain_db: float  # the clip's gain, to sit at the level asked for relative to the echo
    cut_itself: bool = False  # the agent cut its own reply before the user spoke (no AEC)


class HandsFreeRig:
    def __init__(self, room: Room, *, talk_over: bool = True, wake_word: str = "",
                 echo_cancellation: bool = True, stt_model: str = "base") -> None:
        from agent.assistant import Assistant
        from agent.config import Config

        self.room = room
        cfg = Config()
        cfg.stt.input_device = VirtualMicrophone.device
        cfg.stt.model = stt_model
        cfg.llm.find_servers = False
        cfg.listen.talk_over = talk_over
        cfg.listen.wake_word = wake_word
        cfg.listen.echo_cancellation = echo_cancellation
        self.happened = Happened()
        self._changed = threading.Condition()
        self.assistant: Assistant = Assistant(cfg)
        self.assistant.submit = self._submitted  # type: ignore[method-assign]
        interrupt = self.assistant.interrupt

        def on_interrupt() -> None:
            """A cut by the hands-free side (talk-over, or a short "stop"), counted."""
            if threading.current_thread().name.startswith("hands-free"):
                self._record(self.happened.talk_overs, time.monotonic())
            interrupt()

        self.assistant.interrupt = on_interrupt  # type: ignore[method-assign]
        self.assistant.bus.subscribe(self._on_event)
        self.assistant.start()
        if not self.assistant.ready.wait(180):
            raise HarnessError("the assistant did not load in 180 s")
        self._hook()
        self._heard: collections.deque[tuple[float, np.ndarray]] = collections.deque(
            maxlen=round(20 / 0.032))  # the raw microphone, 20 s, to find a clip's onset
        self._sentences = itertools.cycle(
            [s.strip() + "." for s in MONOLOGUE.split(".") if s.strip()])

    # -- what happened ---------------------------------------------------------------------

    def _hook(self) -> None:
        """Record talk-overs and wake words as the hands-free side reports them."""
        hands_free = self.assistant.hands_free
        if hands_free is None or getattr(hands_free, "_rig_hooked", False):
            return
        hands_free.listener.on_block = lambda raw, _clean, _p: self._heard.append(
            (time.monotonic(), raw))
        woken, held = hands_free.woken, hands_free.held

        def on_hold() -> None:
            self._record(self.happened.holds, time.monotonic())
            held()

        def on_wake(phrase: str) -> None:
            self._record(self.happened.wakes, time.monotonic())
            woken(phrase)

        hands_free.held = on_hold  # type: ignore[method-assign]
        hands_free.woken = on_wake  # type: ignore[method-assign]
        hands_free._rig_hooked = True  # type: ignore[attr-defined]

    def _record(self, into: list, item: object) -> None:  # type: ignore[type-arg]
        with self._changed:
            into.append(item)
            self._changed.notify_all()

    def _submitted(self, text: str) -> None:
        """Caught instead of answered: the words end their "transcribing" as a turn would."""
        status = self.assistant.status
        status.post(status.end_transcribing)
        self._record(self.happened.submitted, (time.monotonic(), text))

    def _on_event(self, event: object) -> None:
        from agent.events import Notice

        if isinstance(event, Notice):
            self._record(self.happened.notices, event.message)
        else:
            with self._changed:
                self._changed.notify_all()

    def wait(self, predicate: object, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(predicate, timeout)  # type: ignore[arg-type]

    def set(self, key: str, value: bool | str) -> None:
        """A [listen] setting, as the tray's Hands-free menu changes it."""
        self.assistant.set_listen(key, value)
        self._hook()

    @property
    def state(self) -> str:
        return self.assistant.state.value

    # -- scenarios ---------------------------------------------------------------------------

    def start_speaking(self) -> None:
        """The agent says the monologue, a sentence at a time, until `stop_speaking`."""
        speech = self.assistant.speech
        if speech is None:
            raise HarnessError("speech did not load")
        for _ in range(3):
            self.assistant.say(next(self._sentences))
        if not wait_for(lambda: self.state == "speaking", timeout=60, step=0.02):
            raise HarnessError("the agent did not start speaking")

    def keep_speaking(self) -> None:
        """Queue more sentences while fewer than two wait (call often)."""
        speech = self.assistant.speech
        assert speech is not None
        if speech.pending < 3:
            self.assistant.say(next(self._sentences))

    def speak_alone(self, seconds: float) -> tuple[int, int, int, float]:
        """The agent speaks for `seconds` with nobody talking: (cuts, holds, wake-ups,
        seconds it actually spoke)."""
        before_t, before_w = len(self.happened.talk_overs), len(self.happened.wakes)
        before_h = len(self.happened.holds)
        self.start_speaking()
        started = time.monotonic()
        spoken = 0.0
        last = started
        while time.monotonic() - started < seconds:
            self.keep_speaking()
            time.sleep(0.1)  # a pacing loop, not a wait for an outcome
            now = time.monotonic()
            if self.state == "speaking":
                spoken += now - last
            last = now
        self.stop_speaking()
        return (len(self.happened.talk_overs) - before_t, len(self.happened.holds) - before_h,
                len(self.happened.wakes) - before_w, spoken)

    def stop_speaking(self) -> None:
        self.assistant.interrupt()
        wait_for(lambda: self.state in ("idle", "interrupted"), timeout=10, step=0.02)
        wait_for(lambda: self.state == "idle", timeout=10, step=0.02)

    def talk_over(self, clip: np.ndarray, sample_rate: int, relative_db: float,
                  after_s: float = 2.0, timeout: float = 90.0) -> TalkOver:
        """While the agent speaks, the user says `clip` at `relative_db` to the echo; wait
        for the reply to stop and the question to be transcribed."""
        before_t, before_s = len(self.happened.talk_overs), len(self.happened.submitted)
        if not self.speak_until_settled(after_s):
            return self._cut_itself()
        sink = self.assistant.speech.sink if self.assistant.speech else None
        player = sink if isinstance(sink, AudioPlayer) else None
        before_h = len(self.happened.holds)
        asked = time.monotonic()
        for attempt in range(5):
            try:
                gain = self.room.say(clip, sample_rate, relative_to_echo_db=relative_db)
                break
            except HarnessError as error:
                if len(self.happened.talk_overs) > before_t:  # no echo left to match
                    return self._cut_itself()
                if "no echo" not in str(error) or attempt == 4:
                    raise
                # A gap in the agent's speech (synthesis behind on a busy machine, a short
                # hold): speak on until there is echo to set the level against.
                log.info("talk-over: no echo to match yet (%s); speaking on", error)
                until = time.monotonic() + 2.0
                while time.monotonic() < until:
                    self.keep_speaking()
                    time.sleep(0.05)
                asked = time.monotonic()
        detected = self.wait(lambda: len(self.happened.talk_overs) > before_t, timeout=10)
        latency = None
        if len(self.happened.holds) > before_h and player is not None \
                and player.last_hold is not None:
            onset = self.onset_at_microphone(clip, sample_rate, since=asked)
            silent_at = (player.last_hold[0] + player.latency
                         + player.fade_samples / player.stream_rate)
            latency = silent_at - onset if onset is not None else None
        transcript = ""
        if detected and self.wait(lambda: len(self.happened.submitted) > before_s, timeout):
            transcript = self.happened.submitted[-1][1]
        if not detected:
            self.stop_speaking()
        wait_for(lambda: self.state == "idle", timeout=30, step=0.05)
        return TalkOver(detected, latency, transcript, gain)

    def speak_until_settled(self, after_s: float = 2.0) -> bool:
        """Start speaking; return once it has spoken `after_s` and the echo canceller has
        settled. False if it cut itself meanwhile (no echo cancellation)."""
        before_t = len(self.happened.talk_overs)
        self.start_speaking()
        deadline = time.monotonic() + after_s
        while time.monotonic() < deadline or not self._speaking_settled():
            self.keep_speaking()  # pacing: the agent talks a while, the echo level settles
            time.sleep(0.05)
            if len(self.happened.talk_overs) > before_t:
                return False
            if time.monotonic() > deadline + 30:
                raise HarnessError("the agent did not keep speaking")
        return True

    def _cut_itself(self) -> TalkOver:
        self.stop_speaking()
        return TalkOver(False, None, "", 0.0, cut_itself=True)

    def _speaking_settled(self) -> bool:
        hands_free = self.assistant.hands_free
        echo = hands_free.listener.echo_canceller if hands_free is not None else None
        return self.state == "speaking" and (echo is None or echo.settled)

    def onset_at_microphone(self, clip: np.ndarray, sample_rate: int,
                            since: float) -> float | None:
        """When the first sound of `clip` (said into the room after `since`) reached the
        microphone (monotonic time), found by correlating it with what the microphone heard
        (raw, echo and all). The block's arrival time, less the samples after the onset and
        the input stream's latency."""
        from scipy.signal import correlate, resample_poly

        blocks = [(at, block) for at, block in self._heard if at >= since]
        if not blocks:
            return None
        heard = np.concatenate([block for _, block in blocks])
        ends = np.cumsum([block.size for _, block in blocks])
        if sample_rate != 16_000:
            divisor = np.gcd(sample_rate, 16_000)
            clip = resample_poly(clip, 16_000 // divisor, sample_rate // divisor)
        start = _first_sound(clip)
        probe = clip[start:start + 8000]
        if probe.size < 1600 or heard.size < probe.size:
            return None
        score = correlate(heard, probe, mode="valid", method="fft")
        # Normalised by the heard signal's energy under the probe: a loud stretch of echo
        # must not outscore the quieter clip itself.
        energy = np.concatenate([[0.0], np.cumsum(heard.astype(np.float64) ** 2)])
        local = np.sqrt(energy[probe.size:] - energy[:-probe.size]) + 1e-9
        at = int(np.argmax(np.abs(score) / local))  # where the clip's first sound is
        index = int(np.searchsorted(ends, at, side="right"))
        if index >= len(blocks):
            return None
        arrived = blocks[index][0]
        after = int(ends[index]) - at
        listener = self.assistant.hands_free.listener if self.assistant.hands_free else None
        latency = listener.input_latency if listener is not None else 0.0
        return arrived - after / 16_000 - latency

    def say_into_room(self, clip: np.ndarray, sample_rate: int, gain_db: float = 0.0) -> None:
        """Someone says `clip` in the room (the agent idle or not); waits until it is out."""
        self.room.say(clip, sample_rate, gain_db=gain_db)
        if not self.room.wait_until_said(clip.size / sample_rate + 10):
            raise HarnessError("the room did not play the clip")

    def close(self) -> None:
        self.assistant.close()


def _first_sound(clip: np.ndarray) -> int:
    loud = np.flatnonzero(np.abs(clip) > 0.05 * float(np.max(np.abs(clip))))
    return int(loud[0]) if loud.size else 0
