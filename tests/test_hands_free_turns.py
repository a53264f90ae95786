"""What the hands-free side does with a reply it holds, when something else happens meanwhile:
push-to-talk, new settings, a lost microphone, a short utterance judged too late. The owner
here records what it is asked (the real Assistant and room are in tests/test_hands_free.py);
the microphone never opens (talk-over and the wake word are off), so no device is needed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from agent.config.schema import ListenConfig
from agent.events import AgentState
from agent.hands_free import HandsFree
from agent.listen.handsfree import Samples
from harness.services import wait_for


class RecordingOwner:
    """A HandsFreeOwner that writes down each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.state = AgentState.SPEAKING
        self.transcribing = threading.Event()  # set: transcribe() may answer
        self.transcribing.set()
        self.heard = "stop"

    def interrupt(self) -> None:
        self.calls.append(("interrupt", None))

    def hold_speech(self, held: bool) -> None:
        self.calls.append(("hold", held))

    def transcribe(self, samples: Samples, rate: int) -> str:
        assert self.transcribing.wait(10)
        return self.heard

    def submit(self, text: str) -> None:
        self.calls.append(("submit", text))

    def hands_free_listening(self, listening: bool, transcribing: bool = False) -> None:
        self.calls.append(("listening", listening))

    def wake_chime(self) -> None:
        self.calls.append(("chime", None))

    def transcribe_and_submit(self, samples: Samples, rate: int, heard_nothing: str,
                              wake_phrase: str = "") -> None:
        self.calls.append(("transcribe", None))

    def notice(self, message: str) -> None:
        self.calls.append(("notice", message))


@pytest.fixture
def owner() -> RecordingOwner:
    return RecordingOwner()


@pytest.fixture
def hands_free(owner: RecordingOwner) -> Iterator[HandsFree]:
    subject = HandsFree(owner, ListenConfig(), vad_silence_s=0.8, device=None, tap=None)
    yield subject
    subject.close()


VOICE = np.zeros(1600, np.float32)


def test_push_to_talk_over_a_held_reply_cuts_it_and_keeps_its_own_listening(
        hands_free: HandsFree, owner: RecordingOwner) -> None:
    hands_free.held()
    assert owner.calls == [("hold", True), ("listening", True)]
    owner.calls.clear()
    hands_free.suspend(True)  # the talk key: the reply must not play into the recording
    assert owner.calls == [("interrupt", None)]
    hands_free.released()  # the listener, seeing the suspension, lets go of its turn
    assert ("listening", False) not in owner.calls  # push-to-talk shows "listening" now
    assert ("hold", False) not in owner.calls  # no second word on the reply: it was cut


def test_a_short_utterance_judged_after_push_to_talk_changes_nothing(
        hands_free: HandsFree, owner: RecordingOwner) -> None:
    hands_free.held()
    owner.transcribing.clear()
    hands_free.short_voice(VOICE, 16_000)  # "stop?" is being heard, off the listener
    hands_free.suspend(True)
    owner.calls.clear()
    owner.transcribing.set()
    judge = next(t for t in threading.enumerate() if t.name == "hands-free-short")
    judge.join(10)
    assert owner.calls == []  # neither a second cut nor a question in the middle of talking


@pytest.mark.parametrize(("heard", "expected"), [
    ("Mm-hmm.", [("hold", False), ("listening", False)]),
    ("Stop.", [("interrupt", None), ("listening", False)]),
    ("What?", [("interrupt", None), ("listening", False), ("submit", "What?")])])
def test_a_short_utterance_judged_in_time_decides(
        hands_free: HandsFree, owner: RecordingOwner, heard: str,
        expected: list[tuple[str, object]]) -> None:
    owner.heard = heard
    hands_free.held()
    owner.calls.clear()
    hands_free.short_voice(VOICE, 16_000)
    assert wait_for(lambda: len(owner.calls) >= len(expected), timeout=10)
    assert owner.calls == expected


def test_new_settings_or_a_lost_microphone_mid_hold_let_the_reply_go_on(
        hands_free: HandsFree, owner: RecordingOwner) -> None:
    hands_free.held()
    owner.calls.clear()
    hands_free.update(ListenConfig(talk_over=True), vad_silence_s=0.8)
    assert owner.calls == [("hold", False), ("listening", False)]
    hands_free.held()
    owner.calls.clear()
    hands_free.lost("The microphone went away.")
    assert owner.calls == [("hold", False), ("listening", False),
                           ("notice", "The microphone went away.")]


def test_a_microphone_lost_again_and_again_is_told_once_and_retried_ever_later(
        hands_free: HandsFree, owner: RecordingOwner) -> None:
    for _ in range(4):
        hands_free._opened_at = time.monotonic()  # it had just opened
        hands_free.lost("Hands-free listening stopped after an error (boom).")
    assert [c for c in owner.calls if c[0] == "notice"] == [
        ("notice", "Hands-free listening stopped after an error (boom).")]
    assert hands_free._retry_s == 8.0  # 1, 2, 4, 8 s before the next try


def test_an_error_in_the_listener_closes_the_microphone_and_says_so() -> None:
    """Never a dead thread behind an open microphone: the error ends the listening, the owner
    hears of it (and opens again later, see above)."""
    import queue

    from agent.hands_free import settings_from
    from agent.listen.handsfree import HandsFreeListener

    lost: list[str] = []

    class Events:
        def __getattr__(self, name: str) -> object:
            return lambda *args: lost.append(args[0]) if name == "lost" else None

    class BrokenVad:
        def reset(self) -> None:
            raise RuntimeError("the model file is damaged")

    listener = HandsFreeListener(settings_from(ListenConfig(), 0.8), Events(),  # type: ignore[arg-type]
                                 speaking=lambda: False)
    listener._vad = BrokenVad()
    blocks: queue.SimpleQueue[Samples | None] = queue.SimpleQueue()
    blocks.put(VOICE)
    listener._run(blocks)
    assert not listener.is_open
    assert lost and "the model file is damaged" in lost[0]


def test_a_new_input_device_reaches_the_hands_free_microphone(hands_free: HandsFree) -> None:
    """[stt] input_device changed in the settings: hands-free listens on the new one too."""
    hands_free.update(ListenConfig(), 0.8, device="USB headset")
    assert hands_free.listener.device == "USB headset"
    hands_free.update(ListenConfig(), 0.8, device=None)
    assert hands_free.listener.device is None


def test_a_cough_while_stop_is_being_heard_does_not_undo_it(
        hands_free: HandsFree, owner: RecordingOwner) -> None:
    """"Stop", then a cough while Whisper hears the "stop": the cough does not let the reply
    go on, and the "stop" still stops it."""
    hands_free.held()
    owner.transcribing.clear()
    owner.heard = "Stop."
    hands_free.short_voice(VOICE, 16_000)
    hands_free.held()  # the cough holds again (it is held already)...
    hands_free.released()  # ...and is judged no voice
    owner.calls.clear()
    owner.transcribing.set()
    assert wait_for(lambda: len(owner.calls) >= 2, timeout=10)
    assert owner.calls == [("interrupt", None), ("listening", False)]
