"""A question in, text streamed out, speech at the ALSA tap: the embedded LLM (SmolLM2 in
llama.cpp), the real Kokoro weights and the real PortAudio stream."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from agent.config import DEFAULT_SYSTEM_PROMPT, ConversationConfig, LLMConfig
from agent.conversation import Conversation
from agent.events import AgentState, ReplyDelta
from agent.history import History
from agent.llm import make_backend
from agent.speech import SpeechPipeline
from harness.fakes import EventLog, RecordingPlayer
from harness.services import read_tap, wait_for

pytestmark = pytest.mark.audio
SR = 24_000


def assert_silent_after_interrupt(player: RecordingPlayer, tap: Path, interrupted_at: int,
                                  ) -> None:
    """Silence at the tap from the end of the fade on; or, if the interrupt came between two
    clauses (nothing playing, the next still being synthesised), from the next block on."""
    if player.last_cut is not None:
        silent_from = player.last_cut[2] + player.fade_samples - 1
    else:
        silent_from = interrupted_at + 2 * player.blocksize
    assert wait_for(lambda: read_tap(tap).size > silent_from + 4 * player.blocksize, 5)
    assert not np.any(read_tap(tap)[silent_from:]), "sound after the interrupt"


def converse(engine, tmp_path: Path, max_tokens: int, prompt: str,  # type: ignore[no-untyped-def]
             ) -> tuple[Conversation, RecordingPlayer, EventLog]:
    player = RecordingPlayer()
    speech = SpeechPipeline(engine, player, voice="jm_kumo").start()
    backend = make_backend(LLMConfig(backend="embedded", max_tokens=max_tokens,
                                     temperature=0.0))
    conversation = Conversation(backend, speech, History(tmp_path / "history.jsonl"),
                                ConversationConfig(), prompt)
    seen = EventLog()
    conversation.bus.subscribe(seen)
    return conversation.start(), player, seen


def test_a_spoken_answer_from_the_embedded_model(audio_tap: Path, engine,  # type: ignore[no-untyped-def]
                                                 tmp_path: Path) -> None:
    conversation, player, seen = converse(engine, tmp_path, 40, DEFAULT_SYSTEM_PROMPT)
    try:
        conversation.submit("What is the capital of France?")
        assert conversation.wait_idle(240)
    finally:
        conversation.close()
        conversation.speech.close()  # type: ignore[union-attr]
    deltas = [e for e in seen.of(ReplyDelta) if e.text]
    reply = seen.done()[0]
    assert len(deltas) >= 3 and reply.text.strip() and not reply.interrupted
    assert seen.states() == [AgentState.THINKING, AgentState.SPEAKING, AgentState.IDLE]
    spoken = sum(c.samples.size for c in player.given)
    assert spoken > SR // 2
    assert np.count_nonzero(read_tap(audio_tap)) >= 0.9 * np.count_nonzero(
        np.concatenate([c.samples for c in player.given]))
    entries = History(tmp_path / "history.jsonl").entries
    assert [e.role for e in entries] == ["user", "assistant"]
    assert entries[1].content == reply.text and not entries[1].interrupted


def test_interrupt_mid_reply_silences_at_once_and_keeps_what_was_heard(
        audio_tap: Path, engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    prompt = "You are a storyteller. Tell long, detailed stories in plain sentences."
    conversation, player, seen = converse(engine, tmp_path, 200, prompt)
    try:
        conversation.submit("Tell me a long story about a dragon who learns to bake bread.")
        assert seen.speaking.wait(240)
        # Mid-reply: once the second clause is playing, the first was heard in full.
        assert wait_for(lambda: len(player.given) >= 2 and player.started >= 2, 120)
        assert wait_for(lambda: np.count_nonzero(read_tap(audio_tap)) > SR // 2, 60)
        interrupted_at = player.frames_written
        conversation.interrupt()
        assert conversation.wait_idle(10)
        assert_silent_after_interrupt(player, audio_tap, interrupted_at)
    finally:
        conversation.close()
        conversation.speech.close()  # type: ignore[union-attr]
    assert seen.states()[-2:] == [AgentState.INTERRUPTED, AgentState.IDLE]
    entry = History(tmp_path / "history.jsonl").entries[-1]
    assert entry.role == "assistant" and entry.interrupted
    heard, full = entry.content.split(), entry.full.split()
    assert 0 < len(heard) < len(full), (entry.content, entry.full)


def test_interrupt_stops_the_llama_server_and_the_audio(
        audio_tap: Path, engine, llama_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from harness.llm_servers import cpu_seconds

    player = RecordingPlayer()
    speech = SpeechPipeline(engine, player, voice="jm_kumo").start()
    backend = make_backend(LLMConfig(backend="openai", base_url=llama_server.base_url,
                                     model="smollm2", max_tokens=1500, temperature=0.0))
    conversation = Conversation(backend, speech, History(tmp_path / "history.jsonl"),
                                ConversationConfig(), "You are a helpful assistant.")
    seen = EventLog()
    conversation.bus.subscribe(seen)
    conversation.start()
    pid = llama_server.pid
    try:
        conversation.submit("Write a very long story about a dragon who bakes bread. "
                            "Use at least 50 sentences.")
        assert wait_for(lambda: player.started >= 2, 240)
        generating_from = cpu_seconds(pid)
        assert wait_for(lambda: cpu_seconds(pid) > generating_from + 0.2, 10), \
            "the server should still be generating the long story"
        interrupted_at = player.frames_written
        conversation.interrupt()
        assert conversation.wait_idle(10)

        def server_idle() -> bool:
            before = cpu_seconds(pid)
            threading.Event().wait(0.3)
            return cpu_seconds(pid) - before < 0.03

        assert wait_for(server_idle, 5), "the server kept generating after the interrupt"
        assert_silent_after_interrupt(player, audio_tap, interrupted_at)
    finally:
        conversation.close()
        speech.close()
    entry = History(tmp_path / "history.jsonl").entries[-1]
    assert entry.role == "assistant" and entry.interrupted
    assert 0 < len(entry.content.split()) < len(entry.full.split())
