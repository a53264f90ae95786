"""The interrupt overtakes everything, the state has one writer, and the history keeps exactly
what was heard (issue 14, points 1-3).

- A burst of interrupts, talk presses, `say` text and replies, on many threads at once, with
  the real audio stream: every state change is published by the core's loop thread, in
  sequence, and a tray that applies them through its own queue ends where the core is.
- Kokoro through the real stream, cut in the middle of a clause: the history holds the
  clauses played and the played share of the cut one, as the ALSA tap heard it (to a word).
- The desktop app's interrupt does not wait for the Tk thread, and every command of the
  table is carried out by the app.
"""

from __future__ import annotations

import gc
import queue
import random
import threading
from pathlib import Path

import numpy as np
import pytest

from agent.audio.events import PlaybackKind
from agent.config import ConversationConfig
from agent.conversation import Conversation
from agent.events import AgentEvent, AgentState, EventBus, StateChanged
from agent.history import History
from agent.speech import SpeechPipeline
from agent.state import LOOP_THREAD_NAME, AgentStatus, CoreLoop
from harness.fakes import PlaybackRecorder, RecordingPlayer, ScriptedBackend, ToneSynth
from harness.services import read_tap, wait_for

SR = 24_000


class TrayStandIn:
    """Applies state changes the way the desktop app does: through a queue of its own, on a
    thread of its own, dropping any change older than the one shown."""

    def __init__(self) -> None:
        self.received: list[StateChanged] = []
        self.publishers: set[str] = set()
        self.shown = AgentState.IDLE
        self._shown_seq = 0
        self._queue: queue.SimpleQueue[StateChanged | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._apply, name="tray-stand-in", daemon=True)
        self._thread.start()

    def __call__(self, event: AgentEvent) -> None:
        if isinstance(event, StateChanged):
            self.publishers.add(threading.current_thread().name)
            self.received.append(event)
            self._queue.put(event)

    def _apply(self) -> None:
        while (event := self._queue.get()) is not None:
            if event.seq <= self._shown_seq:
                continue
            self._shown_seq, self.shown = event.seq, event.state

    def drained(self) -> bool:
        return self._queue.empty()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(5)


@pytest.mark.audio
def test_a_burst_of_interrupts_talk_presses_and_replies_leaves_the_icon_where_the_core_is(
        audio_tap: Path, tmp_path: Path) -> None:
    replies: list[list[str] | Exception] = [
        ["Sure, ", "here is a reply of a few clauses, ", "long enough to be cut, ",
         "and then one more. "] for _ in range(400)]
    bus = EventBus()
    tray = TrayStandIn()
    bus.subscribe(tray)
    status = AgentStatus(bus, CoreLoop())
    speech = SpeechPipeline(ToneSynth(delay=0.005), RecordingPlayer(blocksize=256),
                            voice="v").start()
    conversation = Conversation(ScriptedBackend(replies), speech,
                                History(tmp_path / "history.jsonl"),
                                ConversationConfig(barge_in=True), "Be brief.", bus, status)
    conversation.start()
    stop = threading.Event()
    rng = random.Random(14)

    def every(low: float, high: float, action: object) -> threading.Thread:
        def run() -> None:
            while not stop.wait(rng.uniform(low, high)):
                action()  # type: ignore[operator]
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    talking = [False]

    def talk_press() -> None:  # what Assistant.start_listening / stop_listening post
        if talking[0]:
            status.post(status.set_listening, False, True)
            status.post(status.end_transcribing)
        else:
            conversation.interrupt()
            status.post(status.set_listening, True)
        talking[0] = not talking[0]

    threads = [every(0.01, 0.08, lambda: conversation.submit("a question")),
               every(0.01, 0.06, conversation.interrupt),
               every(0.02, 0.1, talk_press),
               every(0.03, 0.12, lambda: speech.say("Some text said aside."))]
    try:
        assert not stop.wait(3.0)
        stop.set()
        for thread in threads:
            thread.join(5)
        status.post(status.set_listening, False)
        status.post(status.end_transcribing)
        assert conversation.wait_idle(60)
        assert speech.wait_until_done(30)
        assert wait_for(lambda: status.shown is AgentState.IDLE and tray.drained()
                        and tray.shown is status.shown, 10), (status.shown, tray.shown)
    finally:
        conversation.close()
        speech.close()
        tray.close()
    seqs = [event.seq for event in tray.received]
    assert len(seqs) > 50  # the burst really changed the state many times
    assert tray.publishers == {LOOP_THREAD_NAME}  # one writer
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # in order, none skipped
    states = {event.state for event in tray.received}
    assert {AgentState.THINKING, AgentState.LISTENING, AgentState.INTERRUPTED} <= states


@pytest.mark.audio
def test_the_history_keeps_the_played_share_of_the_clause_being_cut(
        audio_tap: Path, tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    reply = ["Here is the plan for today. ", "First we walk down to the old harbour, ",
             "then we take the long coastal path all the way to the lighthouse, ",
             "and after lunch we come back along the cliffs before it gets dark. ",
             "In the evening there is music in the square."]
    player = RecordingPlayer(blocksize=256)
    recorder = PlaybackRecorder()
    speech = SpeechPipeline(engine, player, voice="af_bella", lookahead=3).start()
    speech.add_listener(recorder)
    history = History(tmp_path / "history.jsonl")
    conversation = Conversation(ScriptedBackend([reply]), speech, history,
                                ConversationConfig(), "Be brief.")
    with conversation:
        conversation.submit("What shall we do?")
        # Cut in the middle of the first chunk of at least seven words.
        assert wait_for(lambda: any(len(c.text.split()) >= 7 for c in player.given), 120)
        long_chunk = next(c for c in player.given if len(c.text.split()) >= 7)
        assert wait_for(lambda: any(e.seq == long_chunk.seq
                                    for e in recorder.of(PlaybackKind.STARTED)), 60)
        at_start = read_tap(audio_tap).size
        assert wait_for(lambda: read_tap(audio_tap).size > at_start
                        + long_chunk.samples.size // 2, 10)
        conversation.interrupt()
        assert conversation.wait_idle(30)
        assert player.last_cut is not None
        _seen, _dac, cut_frame = player.last_cut
        fade = player.fade_samples
        assert wait_for(lambda: read_tap(audio_tap).size > cut_frame + fade + 2 * 256, 5)
    speech.close()
    captured = read_tap(audio_tap)
    # Where each chunk lies in the tap, and how far into the cut one the sound went.
    position, heard_words = 0, []
    for chunk in player.given:
        if chunk.seq > long_chunk.seq:
            break
        lead = int(np.flatnonzero(chunk.samples)[0])
        start = position + int(np.flatnonzero(captured[position:])[0]) - lead
        words = chunk.text.split()
        if chunk.seq == long_chunk.seq:
            played = cut_frame + fade - start
            assert 0.2 < played / chunk.samples.size < 0.9  # really cut part way
            heard_words += words[:round(len(words) * played / chunk.samples.size)]
        else:
            heard_words += words
        position = start + chunk.samples.size
    entry = history.entries[-1]
    assert entry.role == "assistant" and entry.interrupted
    recorded = entry.content.split()
    assert abs(len(recorded) - len(heard_words)) <= 1, (entry.content, heard_words)
    shorter = min(len(recorded), len(heard_words))
    assert recorded[:shorter] == heard_words[:shorter]
    assert len(recorded) > len(" ".join(reply[:1]).split())  # the cut clause's share is in


def test_the_core_state_refuses_a_write_from_another_thread() -> None:
    status = AgentStatus(EventBus(), CoreLoop().start())
    try:
        with pytest.raises(RuntimeError, match="off the core loop thread"):
            status.set_listening(True)
        done = threading.Event()
        status.post(lambda: (status.set_listening(True), done.set()))
        assert done.wait(5)
        assert wait_for(lambda: status.shown is AgentState.LISTENING, 5)
    finally:
        status.core.stop()


@pytest.mark.desktop
def test_the_apps_interrupt_does_not_wait_for_the_tk_thread(
        xdisplay: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Tk thread here never runs its loop (as if a settings save held it): the interrupt
    posted from the hotkey thread still reaches the core at once, and every other command of
    the control table is answered and queued for Tk."""
    from agent.cli.table import AGENT_COMMANDS
    from agent.config import Config
    from agent.control import ControlRequest
    from agent.desktop.app import DesktopApp
    from agent.desktop.commands import Interrupt

    monkeypatch.setenv("VOICE_AGENT_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("VOICE_AGENT_DATA_DIR", str(tmp_path / "data"))
    app = DesktopApp(Config())
    try:
        interrupted = threading.Event()
        # Not monkeypatch: it would keep the app (and its Tk objects) alive past the test.
        app.assistant.interrupt = interrupted.set  # type: ignore[method-assign]
        hotkey = threading.Thread(target=app.post, args=(Interrupt(),), name="hotkeys")
        hotkey.start()
        assert interrupted.wait(2)
        for command in AGENT_COMMANDS:
            interrupted.clear()
            reply = app._on_control(ControlRequest(command.name, "hello"))
            assert reply.ok, (command.name, reply)
            if command.name == "interrupt":
                assert interrupted.is_set()
    finally:
        app.mailbox.close()
        app.root.destroy()
        # Tk objects must be freed on the thread that made them: a garbage collection on any
        # other thread later (a model loading in a later test) aborts in Tcl.
        del app
        gc.collect()
