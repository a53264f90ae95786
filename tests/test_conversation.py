"""The conversation's bookkeeping: one turn at a time, waiting for speech, barge-in,
interrupts trimmed to what was heard, errors, states; and the history on disk.

The LLM here is a scripted stand-in (a narrow unit test); the real servers and the embedded
model are exercised in test_llm.py and test_end_to_end.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agent.audio.sinks import MemorySink
from agent.config import ConversationConfig
from agent.conversation import Conversation
from agent.events import AgentState, StateChanged, UserSaid
from agent.history import History, HistoryEntry
from agent.llm.base import LLMStalled, Message
from agent.speech import SpeechPipeline
from harness.fakes import EventLog, ScriptedBackend, SlowSink, ToneSynth
from harness.services import wait_for


def make(tmp_path: Path, backend: ScriptedBackend, sink: MemorySink | None = None,
         barge_in: bool = False) -> tuple[Conversation, SpeechPipeline, EventLog]:
    speech = SpeechPipeline(ToneSynth(), sink or MemorySink(), voice="v").start()
    events = EventLog()
    conversation = Conversation(backend, speech, History(tmp_path / "history.jsonl"),
                                ConversationConfig(barge_in=barge_in), "Be brief.")
    conversation.bus.subscribe(events)
    return conversation, speech, events


def test_a_turn_streams_text_speaks_it_and_records_it(tmp_path: Path) -> None:
    backend = ScriptedBackend([["Hello there, ", "nice to meet you. ", "How can I help?"]])
    sink = MemorySink()
    conversation, speech, events = make(tmp_path, backend, sink)
    with conversation:
        conversation.submit("Hi!")
        assert conversation.wait_idle(10)
    speech.close()
    assert events.states() == [AgentState.THINKING, AgentState.SPEAKING, AgentState.IDLE]
    assert events.done()[0].text == "Hello there, nice to meet you. How can I help?"
    assert " ".join(c.text for c in sink.chunks) == "Hello there, nice to meet you. How can I help?"
    assert backend.requests[0][0] == Message("system", "Be brief.")
    assert backend.requests[0][-1] == Message("user", "Hi!")
    entries = History(tmp_path / "history.jsonl").entries
    assert [(e.role, e.content, e.interrupted) for e in entries] == [
        ("user", "Hi!", False),
        ("assistant", "Hello there, nice to meet you. How can I help?", False)]


def test_new_input_waits_until_speaking_completes(tmp_path: Path) -> None:
    sink = SlowSink()
    backend = ScriptedBackend([["Second answer."]])
    conversation, speech, events = make(tmp_path, backend, sink)
    with conversation:
        speech.say("Something already being said, at length.")
        assert wait_for(lambda: bool(sink.waiting), 5)
        conversation.submit("A question typed meanwhile")
        assert not conversation.wait_idle(0.3)
        assert not any(isinstance(e, UserSaid) for e in events.seen)  # still waiting
        while sink.waiting or speech.busy:
            if sink.waiting:
                sink.play_one()
            speech.wait_until_done(0.05)
        assert wait_for(lambda: any(isinstance(e, UserSaid) for e in events.seen), 5)
        while not conversation.wait_idle(0.05):
            if sink.waiting:
                sink.play_one()
    speech.close()
    assert events.done()[0].text == "Second answer."


def test_barge_in_interrupts_the_reply_in_progress(tmp_path: Path) -> None:
    backend = ScriptedBackend([["First reply starts, ", "and never ends."], ["Second."]])
    backend.hold.clear()
    conversation, speech, events = make(tmp_path, backend, barge_in=True)
    with conversation:
        conversation.submit("first")
        assert wait_for(lambda: AgentState.SPEAKING in events.states(), 5)
        conversation.submit("second")
        assert backend.cancelled.wait(5)
        backend.hold.set()
        assert conversation.wait_idle(10)
    speech.close()
    done = events.done()
    assert done[0].interrupted and not done[1].interrupted
    assert AgentState.INTERRUPTED in events.states()


def test_interrupt_keeps_only_what_was_heard(tmp_path: Path) -> None:
    sink = SlowSink()
    backend = ScriptedBackend([["One two three. ", "Six seven eight nine ten. ",
                                "Never sent."]])
    backend.hold.clear()
    conversation, speech, events = make(tmp_path, backend, sink)
    with conversation:
        conversation.submit("count")
        assert wait_for(lambda: bool(sink.waiting), 5)
        sink.play_one()  # the first chunk was heard in full; the rest never reached the ear
        conversation.interrupt()
        assert conversation.wait_idle(5)
    speech.close()
    entries = History(tmp_path / "history.jsonl").entries
    assert entries[-1].role == "assistant" and entries[-1].interrupted
    assert entries[-1].content == "One two"  # the first chunk: two words
    assert entries[-1].full == "One two three. "
    assert events.states()[-2:] == [AgentState.INTERRUPTED, AgentState.IDLE]
    assert backend.cancelled.is_set()


def test_an_llm_error_is_shown_and_the_next_question_works(tmp_path: Path) -> None:
    backend = ScriptedBackend([LLMStalled("the server at http://x stalled for 5 s"), ["Fine."]])
    conversation, speech, events = make(tmp_path, backend)
    with conversation:
        conversation.submit("first")
        assert conversation.wait_idle(5)
        assert events.states()[-1] is AgentState.ERROR
        error = [e for e in events.seen if isinstance(e, StateChanged)][-1]
        assert "stalled" in error.message
        conversation.submit("second")
        assert conversation.wait_idle(5)
    speech.close()
    assert events.states()[-1] is AgentState.IDLE and events.done()[-1].text == "Fine."
    roles = [e.role for e in History(tmp_path / "history.jsonl").entries]
    assert roles == ["user", "user", "assistant"]  # the unanswered question is kept


# -- history ---------------------------------------------------------------------------------

def test_history_context_respects_turn_and_character_limits(tmp_path: Path) -> None:
    history = History(tmp_path / "h.jsonl")
    for i in range(5):
        history.append(HistoryEntry("user", f"question {i}"))
        history.append(HistoryEntry("assistant", f"answer {i}"))
    recent = history.context(max_turns=2, max_chars=10_000)
    assert [m.content for m in recent] == ["question 3", "answer 3", "question 4", "answer 4"]
    short = history.context(max_turns=10, max_chars=25)
    assert [m.content for m in short] == ["question 4", "answer 4"]


def test_a_cut_off_last_line_is_skipped_and_never_glued_to_the_next(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    history = History(path)
    history.append(HistoryEntry("user", "kept"))
    with path.open("ab") as file:
        file.write(b'{"role": "assistant", "content": "half writ')  # a crash mid-write
    reloaded = History(path)
    assert [e.content for e in reloaded.entries] == ["kept"]
    reloaded.append(HistoryEntry("user", "after the crash"))
    assert [e.content for e in History(path).entries] == ["kept", "after the crash"]


def test_kill_9_while_writing_never_damages_earlier_lines(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    writer = subprocess.Popen([sys.executable, "-c", (
        "import sys; from pathlib import Path; from agent.history import History, HistoryEntry\n"
        f"h = History(Path({str(path)!r}))\n"
        "i = 0\n"
        "while True:\n"
        "    h.append(HistoryEntry('user', f'line {i} ' + 'x' * 500)); i += 1\n")],
        cwd=Path(__file__).resolve().parent.parent)
    try:
        assert wait_for(lambda: path.exists() and path.stat().st_size > 50_000, 30)
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    lines = path.read_bytes().split(b"\n")
    complete = [json.loads(line) for line in lines[:-1]]
    assert [c["content"].split()[1] for c in complete] == [str(i) for i in range(len(complete))]
    assert len(History(path).entries) == len(complete)


@pytest.mark.parametrize("argv", [["history"], ["history", "--clear"]])
def test_history_command(tmp_path: Path, argv: list[str]) -> None:
    env = dict(os.environ, VOICE_AGENT_DATA_DIR=str(tmp_path))
    History(tmp_path / "history.jsonl").append(HistoryEntry("user", "remember me"))
    result = subprocess.run([sys.executable, "-m", "agent", *argv], capture_output=True,
                            text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    if "--clear" in argv:
        assert not (tmp_path / "history.jsonl").exists()
    else:
        assert "you: remember me" in result.stdout
