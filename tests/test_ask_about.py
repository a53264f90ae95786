"""Ask about it: a question goes to the real LLM with the attached text (the selection), as
much of it as the model's context holds, measured with the model's own tokenizer; the
history keeps the question and a short note, not the text."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from agent.config import ConversationConfig, LLMConfig
from agent.conversation import Attachment, Conversation
from agent.events import Notice
from agent.history import History
from agent.llm import make_backend
from agent.llm.base import ChatBackend, Delta, Message
from agent.llm.budget import ASSUMED_WINDOW, attachment_budget, clip_to_budget
from harness.fakes import EventLog

pytestmark = pytest.mark.slow

PARAGRAPH = ("The Riverside library opens at nine in the morning and closes at six in the "
             "evening. Books may be borrowed for three weeks.")


class Recording:
    """The real backend, keeping the messages of each request (what the model was sent)."""

    def __init__(self, backend: ChatBackend) -> None:
        self.backend = backend
        self.sent: list[list[Message]] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.backend, name)

    async def stream(self, messages: Sequence[Message]) -> AsyncIterator[Delta]:
        self.sent.append(list(messages))
        async for delta in self.backend.stream(messages):
            yield delta

    @property
    def measuring(self) -> ChatBackend:
        return self.backend


def ask(backend: ChatBackend, tmp_path: Path, question: str,
        attachment: Attachment) -> tuple[Conversation, EventLog]:
    conversation = Conversation(backend, None, History(tmp_path / "history.jsonl"),
                                ConversationConfig(), "Answer in one short sentence.")
    seen = EventLog()
    conversation.bus.subscribe(seen)
    conversation.start()
    conversation.submit(question, attachment)
    assert conversation.wait_idle(300)
    return conversation, seen


def test_a_question_about_the_selection_is_answered_from_it(tmp_path: Path) -> None:
    backend = Recording(make_backend(LLMConfig(backend="embedded", max_tokens=40,
                                               temperature=0.0)))
    conversation, seen = ask(backend, tmp_path, "When does the library open?",
                             Attachment("the selection", PARAGRAPH))
    conversation.close()
    reply = seen.done()[0].text
    assert "nine" in reply.lower() or "9" in reply, reply
    sent = backend.sent[0][-1]
    assert sent.role == "user" and PARAGRAPH in sent.content
    entries = History(tmp_path / "history.jsonl").entries
    assert entries[0].content == ("When does the library open? [about the selection: "
                                  f"{len(PARAGRAPH.split())} words]")
    assert "Riverside" not in entries[0].content  # the note, not the text


def test_a_long_text_is_cut_to_the_context_measured_with_the_models_tokenizer(
        tmp_path: Path) -> None:
    long_text = " ".join([PARAGRAPH] * 400)  # ~8,000 words: far more than 2,048 tokens
    backend = Recording(make_backend(LLMConfig(backend="embedded", max_tokens=40,
                                               temperature=0.0)))
    messages = [Message("system", "Answer in one short sentence."),
                Message("user", "Summarise it.")]
    budget = asyncio.run(attachment_budget(backend, messages, long_text))
    assert budget.measured and budget.window == 2048
    assert 3.0 < budget.chars_per_token < 6.0  # English prose, SmolLM2's tokenizer
    conversation, seen = ask(backend, tmp_path, "Summarise it.",
                             Attachment("the selection", long_text))
    conversation.close()
    notices = [n.message for n in seen.of(Notice)]
    assert any("fit the model's context (2048 tokens)" in n for n in notices), notices
    done = seen.done()[0]
    assert done.text.strip() and not done.interrupted  # no context overflow: an answer
    sent = backend.sent[0][-1].content
    tokens = asyncio.run(backend.backend.count_tokens(  # type: ignore[attr-defined]
        "\n".join(m.content for m in backend.sent[0])))
    assert 1000 < tokens <= 2048 - 40, tokens  # most of the window, and room to answer
    assert sent.rstrip().endswith('"""')


def test_a_server_that_tells_its_tokens_is_measured_and_its_window_kept_small(
        llama_server) -> None:  # type: ignore[no-untyped-def]
    backend = make_backend(LLMConfig(backend="openai", base_url=llama_server.base_url,
                                     model="smollm2", max_tokens=40))
    messages = [Message("system", "Be brief."), Message("user", "Summarise it.")]
    budget = asyncio.run(attachment_budget(backend, messages, " ".join([PARAGRAPH] * 50)))
    # llama-cpp-python counts tokens (/extras/tokenize/count) but does not say its window:
    # the smallest default stands in.
    assert budget.window == ASSUMED_WINDOW and not budget.measured
    assert 3.0 < budget.chars_per_token < 6.0
    assert 0 < budget.chars < ASSUMED_WINDOW * 6


def test_a_cut_ends_at_a_sentence() -> None:
    text = "One sentence here. Another one there. A third one follows."
    assert clip_to_budget(text, 45) == "One sentence here. Another one there."
    assert clip_to_budget(text, 1000) == text
