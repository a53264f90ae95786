"""Faults an always-on agent meets, on real parts: a full disk under the history (a real
tmpfs, filled), the LLM server killed in the middle of a reply and started again (the real
llama.cpp server), and the settings file edited while the agent runs. Each gives a clear
error state, nothing said is lost, no file is left damaged, and the next turn works without
a restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import config
from agent.assistant import Assistant
from agent.config import ConversationConfig, LLMConfig
from agent.conversation import Conversation
from agent.events import (
    AgentState,
    EventBus,
    Notice,
    ReplyDelta,
    SettingsChanged,
    StateChanged,
)
from agent.history import History, HistoryEntry, HistoryNotSaved
from agent.llm import make_backend
from agent.llm.embedded import locate_model
from harness.fakes import EventLog
from harness.llm_servers import start_llama_server
from harness.services import LOGS, wait_for


def lines_of(path: Path) -> list[dict[str, object]]:
    """Every line of a history file, parsed (fails the test on a damaged line)."""
    raw = path.read_bytes()
    assert raw.endswith(b"\n"), "the file ends in half a line"
    return [json.loads(line) for line in raw.decode("utf-8").splitlines()]


# --- a full disk under the history -----------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs of its own: filling it fills no one else's disk."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(mount)],
                   check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Write a file until the disk is full; deleting it makes room again."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_leaves_the_file_whole_and_keeps_the_entries_until_there_is_room(
        small_disk: Path) -> None:
    history = History(small_disk / "history.jsonl")
    history.append(HistoryEntry("user", "written before the disk filled"))
    before = history.path.read_bytes()
    filler = fill(small_disk)

    long_question = "Tell me about the sea. " * 1000  # more than the room left in its page
    with pytest.raises(HistoryNotSaved) as failure:
        history.append(HistoryEntry("user", long_question))
    message = str(failure.value)
    assert str(history.path) in message and "No space left on device" in message
    assert "kept in memory" in message
    assert history.path.read_bytes() == before, "a failed write left part of a line behind"
    assert history.unsaved == 1 and history.entries[-1].content == long_question

    with pytest.raises(HistoryNotSaved):  # still full: still kept, still not glued
        history.append(HistoryEntry("assistant", "An answer while the disk is full."))
    assert history.path.read_bytes() == before and history.unsaved == 2

    filler.unlink()  # room again: the next write saves everything kept, in order
    history.append(HistoryEntry("user", "after the disk had room"))
    assert history.unsaved == 0
    assert [line["content"] for line in lines_of(history.path)] == [
        "written before the disk filled", long_question, "An answer while the disk is full.",
        "after the disk had room"]
    assert [e.content for e in History(history.path).entries][1] == long_question


@pytest.fixture(scope="module")
def embedded_config() -> LLMConfig:
    return LLMConfig(backend="embedded", max_tokens=24)


@pytest.mark.slow  # the embedded LLM
def test_a_full_disk_is_shown_the_turn_is_answered_and_the_next_turn_saves_it_all(
        small_disk: Path, embedded_config: LLMConfig) -> None:
    history = History(small_disk / "history.jsonl")
    history.append(HistoryEntry("user", "an earlier question"))
    history.append(HistoryEntry("assistant", "an earlier answer"))
    filler = fill(small_disk)
    events = EventLog()
    padding = " (and a long aside to need more room than the disk has) " * 100
    conversation = Conversation(make_backend(embedded_config), None, history,
                                ConversationConfig(), "Answer in one short sentence.")
    conversation.bus.subscribe(events)
    with conversation:
        conversation.submit("What colour is the sky?" + padding)
        assert conversation.wait_idle(60)
        notices = [e.message for e in events.seen if isinstance(e, Notice)]
        assert any("could not be saved" in n and "No space left" in n for n in notices), notices
        last = events.last_state()
        assert last is not None and last.state is AgentState.ERROR
        assert "could not be saved" in last.message
        assert events.done()[-1].text.strip(), "the question was not answered"
        assert lines_of(history.path) == [
            {"role": "user", "content": "an earlier question", "time": history.entries[0].time},
            {"role": "assistant", "content": "an earlier answer",
             "time": history.entries[1].time}]

        filler.unlink()
        conversation.submit("And the grass?")
        assert conversation.wait_idle(60)
        last = events.last_state()
        assert last is not None and last.state is AgentState.IDLE, last
    saved = lines_of(history.path)
    assert [(line["role"], str(line["content"])[:23]) for line in saved] == [
        ("user", "an earlier question"), ("assistant", "an earlier answer"),
        ("user", "What colour is the sky?"), ("assistant", saved[3]["content"][:23]),
        ("user", "And the grass?"), ("assistant", saved[5]["content"][:23])]
    assert all(str(line["content"]).strip() for line in saved)


# --- the LLM server killed mid-reply, then started again ---------------------------------------

@pytest.mark.slow  # llama.cpp's server with SmolLM2
def test_llm_server_killed_mid_reply_is_shown_and_the_next_turn_works_once_it_is_back(
        tmp_path: Path) -> None:
    server = start_llama_server(locate_model(), LOGS)
    port = server.port
    events = EventLog()
    history = History(tmp_path / "history.jsonl")
    settings = LLMConfig(backend="openai", base_url=server.base_url, max_tokens=200,
                         timeout_s=5)
    conversation = Conversation(make_backend(settings), None, history, ConversationConfig(),
                                "You are a storyteller.")
    conversation.bus.subscribe(events)
    try:
        with conversation:
            conversation.submit("Tell me a long story about a dragon and a lighthouse.")
            assert wait_for(lambda: any(isinstance(e, ReplyDelta) and e.text
                                        for e in events.seen), 30), events.seen
            os.kill(server.pid, signal.SIGKILL)
            server.process.wait(5)
            assert conversation.wait_idle(15), "the turn never ended after the server died"
            last = events.last_state()
            assert last is not None and last.state is AgentState.ERROR
            assert f"127.0.0.1:{port}" in last.message, last.message
            print(f"\nserver killed mid-reply: {last.message}")
            partial = events.done()[-1]
            assert partial.interrupted and partial.text
            assert [(e.role, e.interrupted) for e in history.entries] == [
                ("user", False), ("assistant", True)]

            conversation.submit("Are you there?")  # still down: said at once, clearly
            assert conversation.wait_idle(15)
            last = events.last_state()
            assert last is not None and last.state is AgentState.ERROR
            assert "connection refused" in last.message.lower(), last.message
            print(f"server down: {last.message}")

            server = start_llama_server(locate_model(), LOGS, port=port)
            conversation.submit("Say hello.")
            assert conversation.wait_idle(60)
            last = events.last_state()
            assert last is not None and last.state is AgentState.IDLE, last
            assert not events.done()[-1].interrupted and events.done()[-1].text.strip()
    finally:
        server.stop()
    assert len(lines_of(history.path)) == len(history.entries) == 5


# --- the settings file edited while the agent runs ----------------------------------------------

@pytest.mark.slow  # the assistant: Kokoro and the embedded LLM
def test_settings_edited_while_running_apply_on_the_next_turn_and_a_broken_edit_changes_nothing(
        tmp_path: Path, pulse: Path) -> None:
    settings = tmp_path / "config.toml"
    settings.write_text('[tts]\nvoice = "jf_alpha"\n\n[llm]\nmax_tokens = 16\n')
    events = EventLog()
    bus = EventBus()
    bus.subscribe(events)
    assistant = Assistant(config.load(settings), bus, History(tmp_path / "history.jsonl"))
    assistant.start()
    try:
        assert assistant.ready.wait(60) and assistant.speech is not None
        assert assistant.conversation is not None
        assert assistant.speech.voice == "jf_alpha"

        edited = ('[tts]\nvoice = "jm_kumo"  # changed by hand\nspeed = 1.25\n\n'
                  '[llm]\nmax_tokens = 16\nsystem_prompt = "Answer in French."\n\n'
                  '[hotkeys]\ntalk = "ctrl+alt+j"\n')
        settings.write_text(edited)
        assistant.submit("Hello!")
        assert assistant.conversation.wait_idle(60)
        changed = [e for e in events.seen if isinstance(e, SettingsChanged)]
        assert [c.sections for c in changed] == [("tts", "llm", "hotkeys")]
        assert (assistant.speech.voice, assistant.speech.speed) == ("jm_kumo", 1.25)
        assert assistant.conversation.system_prompt == "Answer in French."
        notices = [e.message for e in events.seen if isinstance(e, Notice)]
        assert any("hotkeys.talk" in n and "after a restart" in n for n in notices), notices

        events.seen.clear()
        settings.write_text(edited.replace("speed = 1.25", "speed = = 2"))  # half-typed
        assistant.submit("Still there?")
        assert assistant.conversation.wait_idle(60)
        notices = [e.message for e in events.seen if isinstance(e, Notice)]
        assert any(f"{settings}:3" in n and "stay as they were" in n for n in notices), notices
        assert (assistant.speech.voice, assistant.speech.speed) == ("jm_kumo", 1.25)
        assert events.last_state() == StateChanged(AgentState.IDLE, 2)
        assert settings.read_text() == edited.replace("speed = 1.25", "speed = = 2")

        events.seen.clear()
        settings.write_text(edited.replace("speed = 1.25", "speed = 0.8"))  # fixed
        assistant.submit("And now?")
        assert assistant.conversation.wait_idle(60)
        assert assistant.speech.speed == 0.8
        assert [e.sections for e in events.seen if isinstance(e, SettingsChanged)] == [("tts",)]
    finally:
        assistant.close()


def test_without_any_usable_llm_the_agent_finishes_loading_and_each_turn_says_what_to_fix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong server setting and no embedded model either (its package removed): the loader
    used to die there, leaving the agent "loading" for good with typed input queued."""
    from agent import assistant as assistant_module
    from agent.audio.devices import NoAudioDevice
    from agent.llm.base import LLMError

    def no_llm(settings: LLMConfig, _user_set: object = (), env_key: bool = True) -> object:
        if settings.backend == "embedded":
            raise ImportError("No module named 'llama_cpp'")
        raise LLMError("llm.base_url is not a URL: fix it in the settings.")

    def no_device(_cfg: object) -> object:
        raise NoAudioDevice("no audio output device")

    monkeypatch.setattr(assistant_module, "make_backend", no_llm)
    events = EventLog()
    bus = EventBus()
    bus.subscribe(events)
    cfg = config.Config()
    cfg.llm.backend = "openai"
    assistant = Assistant(cfg, bus, History(tmp_path / "history.jsonl"),
                          player_factory=no_device)  # type: ignore[arg-type]
    assistant.submit("typed while loading")
    assistant.start()
    try:
        assert assistant.ready.wait(30)
        assert wait_for(lambda: any(isinstance(e, StateChanged) and e.state is AgentState.ERROR
                                    for e in events.seen), 10)
        error = next(e for e in events.seen
                     if isinstance(e, StateChanged) and e.state is AgentState.ERROR)
        assert "llm.base_url" in error.message and "llama_cpp" in error.message
        assert History(tmp_path / "history.jsonl").entries[0].content == "typed while loading"
    finally:
        assistant.close()
