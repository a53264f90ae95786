"""Hands-free listening on real parts: the real assistant (Kokoro, the PortAudio player behind
the ALSA tap, Whisper, Silero VAD, WebRTC AEC3, microWakeWord) in a simulated room that brings
its own voice back into its microphone (harness.room: 40 ms, reflections with RT60 0.25 s,
-6 dB, noise at -60 dBFS, through PulseAudio).

(a) the agent speaking alone never interrupts itself and never wakes itself up;
(b) a held-out voice talking over it, at 0 and -6 dB to the echo, stops the reply, and the
    question after the cut is heard;
(c) coughs, clicks, a door, typing and "mm-hmm" do not stop it;
(d) the wake word in several voices and levels starts a turn, and other speech does not;
(e) with echo cancellation off, (a) fails: the agent interrupts itself.
Timings and hour-long counts are in bench/hands_free.py; these are minutes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import pytest

from harness.services import wait_for
from harness.speech_samples import wer

if TYPE_CHECKING:
    from harness.hands_free import HandsFreeRig
    from harness.room import Room

pytestmark = pytest.mark.slow  # the real models, minutes of speech

WAKE_WORD = "hey_jarvis"
# Measured here (bench/hands_free.py, docs/hands-free.md): the questions heard after the cut
# come out with a word error rate of 0-29% at 0 dB; the bound leaves room for a loaded CI.
MAX_TALK_OVER_WER = 0.5


@pytest.fixture(scope="module")
def rig(room: Room) -> Iterator[HandsFreeRig]:
    from harness.hands_free import HandsFreeRig

    rig = HandsFreeRig(room, talk_over=True, wake_word=WAKE_WORD)
    yield rig
    rig.close()


@pytest.fixture
def echo_on(rig: HandsFreeRig) -> Iterator[HandsFreeRig]:
    rig.set("echo_cancellation", True)
    rig.set("talk_over", True)
    rig.set("wake_word", WAKE_WORD)
    yield rig
    rig.stop_speaking()


def _synth(rig: HandsFreeRig, text: str, voice: str) -> np.ndarray:
    speech = rig.assistant.speech
    assert speech is not None, "speech did not load"
    return np.asarray(speech.synth.synthesize(text, voice), np.float32)


def test_the_microphone_is_open_only_while_something_needs_it(rig: HandsFreeRig) -> None:
    listener_of = lambda: rig.assistant.hands_free  # noqa: E731
    rig.set("wake_word", "")
    rig.set("talk_over", True)
    hands_free = listener_of()
    assert hands_free is not None
    assert wait_for(lambda: not hands_free.listener.is_open, timeout=10), "open while idle"
    rig.start_speaking()
    assert wait_for(lambda: hands_free.listener.is_open, timeout=10), "closed while speaking"
    rig.stop_speaking()
    assert wait_for(lambda: not hands_free.listener.is_open, timeout=10)
    rig.set("talk_over", False)
    assert rig.assistant.hands_free is None  # neither on: no microphone, no models
    rig.set("wake_word", WAKE_WORD)
    hands_free = listener_of()
    assert hands_free is not None
    assert wait_for(lambda: hands_free.listener.is_open, timeout=10), "wake word: always open"


def test_speaking_alone_it_never_interrupts_or_wakes_itself(echo_on: HandsFreeRig) -> None:
    """(a) Two minutes of the agent's own speech through the room, talk-over and the wake
    word both listening."""
    cuts, holds, wakes, spoken = echo_on.speak_alone(120.0)
    assert spoken > 90, f"the agent spoke only {spoken:.0f} s of 120"
    assert cuts == 0, f"{cuts} self-interruptions in {spoken:.0f} s"
    # A hold is a pause of a few tenths of a second, then the reply goes on; measured 0-1 in
    # 90 s here (bench/hands_free.py counts them per hour): a few more on a loaded machine.
    assert holds <= 3, f"{holds} pauses on its own voice in {spoken:.0f} s"
    assert wakes == 0, f"{wakes} wake-ups on its own voice in {spoken:.0f} s"


def test_without_echo_cancellation_it_interrupts_itself(rig: HandsFreeRig) -> None:
    """(e) The same room with echo cancellation off: the test above has teeth."""
    rig.set("echo_cancellation", False)
    rig.set("talk_over", True)
    before = len(rig.happened.talk_overs)
    try:
        rig.start_speaking()
        deadline = time.monotonic() + 60
        while len(rig.happened.talk_overs) == before and time.monotonic() < deadline:
            rig.keep_speaking()
            rig.wait(lambda: len(rig.happened.talk_overs) > before, timeout=0.2)
        assert len(rig.happened.talk_overs) > before, "no self-interruption in 60 s"
    finally:
        rig.stop_speaking()
        rig.set("echo_cancellation", True)


@pytest.mark.parametrize(("relative_db", "voice", "question"), [
    (0.0, "am_michael", "What time does the train leave tomorrow morning?"),
    (-6.0, "bf_emma", "Could you turn the lights off in the kitchen?"),
])
def test_talking_over_a_reply_stops_it_and_hears_the_question(
        echo_on: HandsFreeRig, relative_db: float, voice: str, question: str) -> None:
    """(b) A voice the agent does not speak with, as loud as the echo or 6 dB quieter."""
    outcome = echo_on.talk_over(_synth(echo_on, question, voice), 24_000, relative_db)
    assert outcome.detected, "the reply did not stop"
    assert outcome.latency_s is not None, "no cut reached the player"
    error = wer(question, outcome.transcript)
    assert error <= MAX_TALK_OVER_WER, f"heard {outcome.transcript!r} ({error:.0%} WER)"


def test_the_talk_key_over_a_held_reply_cuts_it_and_records_the_user(
        echo_on: HandsFreeRig) -> None:
    """A voice over the reply holds it; the user then presses the talk key: the reply is cut
    (not resumed into the recording, which has no echo cancellation), push-to-talk keeps its
    "listening", and the hands-free judge stands aside."""
    from agent.audio.player import AudioPlayer

    rig = echo_on
    rig.set("talk_over_min_s", 3.0)  # the hold lasts while the user's words are judged
    speech = rig.assistant.speech
    assert speech is not None and isinstance(speech.sink, AudioPlayer)
    clip = _synth(rig, "Well, let me think about that one for a moment.", "am_michael")
    try:
        assert rig.speak_until_settled()
        before_h, before_s = len(rig.happened.holds), len(rig.happened.submitted)
        before_t = len(rig.happened.talk_overs)
        rig.room.say(clip, 24_000, relative_to_echo_db=0.0)
        assert rig.wait(lambda: len(rig.happened.holds) > before_h, timeout=10), "no hold"
        turn = speech.turn
        assert rig.assistant.start_listening()  # the talk key
        assert speech.turn > turn, "the held reply was not cut"
        assert wait_for(lambda: not speech.sink.holding and not speech.busy, timeout=5)
        assert rig.room.wait_until_said(15)
        assert rig.state == "listening"
        rig.assistant.stop_listening()
        assert rig.wait(lambda: len(rig.happened.submitted) > before_s, timeout=90)
        assert len(rig.happened.talk_overs) == before_t  # no cut or question of its own
    finally:
        rig.set("talk_over_min_s", 0.8)


def test_coughs_clicks_a_door_and_mm_hmm_do_not_stop_it(echo_on: HandsFreeRig) -> None:
    """(c) Short sounds over the reply, as loud as the echo. None is a voice but "mm-hmm":
    that one holds the reply while it is heard, and then the reply goes on."""
    from harness import noises

    speech = echo_on.assistant.speech
    assert speech is not None
    sounds = {"cough": noises.cough(count=2), "click": noises.click(),
              "door": noises.door_slam(), "typing": noises.typing(seconds=1.5),
              "mm-hmm": noises.mm_hmm(),
              "kokoro mm-hmm": noises.kokoro_backchannel(speech.synth, "Mm-hmm.", "am_adam")}
    cut_by, held_by = [], []
    echo_on.start_speaking()
    for name, clip in sounds.items():
        for _ in range(15):  # pacing: the echo level settles between sounds
            echo_on.keep_speaking()
            time.sleep(0.1)
        cuts, holds = len(echo_on.happened.talk_overs), len(echo_on.happened.holds)
        echo_on.room.say(clip, 16_000, relative_to_echo_db=0.0)
        assert echo_on.room.wait_until_said(10)
        # Long enough for a hold, the short utterance heard by Whisper, and the verdict.
        echo_on.wait(lambda c=cuts: len(echo_on.happened.talk_overs) > c, timeout=4.0)
        if len(echo_on.happened.talk_overs) > cuts:
            cut_by.append(name)
            echo_on.wait(lambda: echo_on.state == "idle", timeout=30)
            echo_on.start_speaking()
        elif len(echo_on.happened.holds) > holds:
            held_by.append(name)
            assert echo_on.wait(lambda: echo_on.state == "speaking", timeout=10), name
    assert cut_by == []
    assert set(held_by) <= {"mm-hmm", "kokoro mm-hmm"}, held_by


def test_the_wake_word_starts_a_turn_and_other_speech_does_not(echo_on: HandsFreeRig) -> None:
    """(d) "Hey Jarvis", then a question, in three voices and two levels, with the agent idle;
    then a minute of other speech (the human clips, a Kokoro monologue)."""
    from faster_whisper.audio import decode_audio

    from agent.audio.events import PlaybackEvent, PlaybackKind
    from harness.hands_free import MONOLOGUE
    from harness.speech_samples import human_clip

    rig = echo_on
    speech = rig.assistant.speech
    assert speech is not None
    chimes: list[PlaybackEvent] = []  # cues (sequence -1) the player started at the device
    speech.add_listener(lambda event: chimes.append(event)
                        if event.kind is PlaybackKind.STARTED and event.seq < 0 else None)
    question = "What is the weather like today?"
    tried, woke, heard = 0, 0, []
    for voice in ("af_heart", "am_michael", "bf_emma"):
        for gain_db in (0.0, -10.0):
            before_wake, before_said = len(rig.happened.wakes), len(rig.happened.submitted)
            clip = np.concatenate([_synth(rig, "Hey Jarvis.", voice),
                                   np.zeros(9600, np.float32), _synth(rig, question, voice)])
            rig.say_into_room(clip, 24_000, gain_db)
            tried += 1
            if rig.wait(lambda b=before_wake: len(rig.happened.wakes) > b, timeout=5):
                woke += 1
                if rig.wait(lambda b=before_said: len(rig.happened.submitted) > b, 90):
                    heard.append(rig.happened.submitted[-1][1])
            rig.wait(lambda: rig.state == "idle", timeout=60)
    assert woke >= 5, f"woke {woke} times of {tried}"
    assert len(chimes) == woke, f"{len(chimes)} chimes for {woke} wake-ups"
    assert heard and all(wer(question, text) <= 0.34 for text in heard), heard

    before = len(rig.happened.wakes)
    other = [decode_audio(str(human_clip("beckett.wav")), sampling_rate=16_000),
             decode_audio(str(human_clip("two_cities.wav")), sampling_rate=16_000)]
    for clip in other:
        rig.say_into_room(np.asarray(clip, np.float32), 16_000, 0.0)
    monologue = _synth(rig, " ".join(MONOLOGUE.split(". ")[:6]), "am_adam")
    rig.say_into_room(monologue, 24_000, -3.0)
    assert len(rig.happened.wakes) == before, "woke up on other speech"
