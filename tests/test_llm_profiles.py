"""The embedded model's profile: the packaged SmolLM2-135M answers with its own tuned sampling,
system prompt and worked examples (bench.answers), any other GGUF with the generic ones, and
what the user wrote in [llm] always wins; [llm] model_path runs another GGUF, and one that
has gone missing leaves the packaged model answering, with a notice."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent import config
from agent.assistant import Assistant
from agent.audio.devices import NoAudioDevice
from agent.config import DEFAULT_SYSTEM_PROMPT, LLMConfig
from agent.events import EventBus, Notice
from agent.history import History
from agent.llm import LLMError, Message, make_backend
from agent.llm.embedded import EmbeddedBackend, locate_model
from agent.llm.profiles import GENERIC, SMOLLM2_135M, with_user_settings
from harness.fakes import EventLog
from harness.services import wait_for

CONVERSATION = [Message("system", DEFAULT_SYSTEM_PROMPT), Message("user", "Hi there")]


def embedded(llm: LLMConfig, user_set: set[str] | None = None) -> EmbeddedBackend:
    backend = make_backend(llm, user_set or set())
    assert isinstance(backend, EmbeddedBackend)
    return backend


def test_the_packaged_model_answers_with_its_tuned_profile() -> None:
    backend = embedded(LLMConfig())
    assert backend.profile == SMOLLM2_135M
    sent = backend._wire(CONVERSATION)
    assert sent[0] == {"role": "system", "content": SMOLLM2_135M.system_prompt}
    assert sent[1:-1] == [{"role": m.role, "content": m.content} for m in SMOLLM2_135M.examples]
    assert sent[-1] == {"role": "user", "content": "Hi there"}
    assert backend.label.startswith("SmolLM2-135M")


def test_what_the_user_wrote_wins_over_the_tuned_values() -> None:
    llm = LLMConfig(temperature=1.1, max_tokens=77, system_prompt="Talk like a pirate.")
    backend = embedded(llm, {"llm.temperature", "llm.max_tokens", "llm.system_prompt"})
    assert backend.profile.sampling.temperature == 1.1
    assert backend.profile.sampling.max_tokens == 77
    sent = backend._wire([Message("system", "Talk like a pirate."), Message("user", "Hi")])
    # Their own prompt, without the examples written for the tuned one.
    assert sent == [{"role": "system", "content": "Talk like a pirate."},
                    {"role": "user", "content": "Hi"}]
    # Values equal to the defaults but not written in the file: the tuned ones stay.
    untouched = embedded(LLMConfig(temperature=0.7), set())
    assert untouched.profile.sampling == SMOLLM2_135M.sampling


def test_only_the_written_keys_change_the_profile() -> None:
    tuned = with_user_settings(SMOLLM2_135M, LLMConfig(temperature=0.0), {"llm.temperature"})
    assert tuned.sampling.temperature == 0.0
    assert tuned.sampling.max_tokens == SMOLLM2_135M.sampling.max_tokens
    assert tuned.system_prompt == SMOLLM2_135M.system_prompt
    assert tuned.examples == SMOLLM2_135M.examples


def test_another_gguf_gets_the_generic_profile_and_is_named(tmp_path: Path) -> None:
    other = tmp_path / "Other-Model-Q4.gguf"
    shutil.copyfile(locate_model(), other)
    backend = embedded(LLMConfig(model_path=str(other)))
    assert backend.profile.sampling == GENERIC.sampling
    assert backend.profile.system_prompt == GENERIC.system_prompt
    assert backend.label == "Other-Model-Q4 (embedded)"
    assert "Other-Model-Q4" in backend.description


def test_a_backend_made_without_a_profile_sends_the_messages_as_given() -> None:
    backend = EmbeddedBackend(temperature=0.0)
    given = [Message("system", "Answer in one word."), Message("user", "Colour of snow?")]
    assert backend._wire(given) == [{"role": m.role, "content": m.content} for m in given]
    assert backend.profile.sampling.temperature == 0.0


def test_a_missing_model_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(LLMError, match=r"llm\.model_path = .*gone\.gguf.*no such file"):
        make_backend(LLMConfig(model_path=str(tmp_path / "gone.gguf")))


def test_a_missing_downloaded_model_leaves_the_packaged_one_answering_with_a_notice(
        tmp_path: Path) -> None:
    def no_device(_cfg: object) -> object:
        raise NoAudioDevice("no audio output device")

    events = EventLog()
    bus = EventBus()
    bus.subscribe(events)
    cfg = config.Config()
    cfg.llm.model_path = str(tmp_path / "gone.gguf")
    cfg.llm.find_servers = False
    assistant = Assistant(cfg, bus, History(tmp_path / "history.jsonl"),
                          player_factory=no_device)  # type: ignore[arg-type]
    assistant.start()
    try:
        assert assistant.ready.wait(30)
        assert "SmolLM2-135M" in assistant.backend_description
        assert wait_for(lambda: any(isinstance(e, Notice) and "llm.model_path" in e.message
                                    for e in events.seen), 5)
        notices = [e.message for e in events.seen if isinstance(e, Notice)
                   and "llm.model_path" in e.message]
        assert len(notices) == 1, notices  # said once, not once per attempt
    finally:
        assistant.close()


def test_a_model_switched_away_from_gives_its_memory_back(tmp_path: Path) -> None:
    """Each backend counts as a user of its model file; when the last one closes (the menu
    switched to another model), the model is freed rather than kept for the whole day."""
    import asyncio

    from agent.llm import embedded as embedded_module

    other = tmp_path / "Switched-Away.gguf"
    shutil.copyfile(locate_model(), other)
    first = EmbeddedBackend(other)
    second = EmbeddedBackend(other)  # shares the loaded model
    first.load()
    shared = embedded_module._MODELS[other.resolve()]
    assert shared.llama is not None and shared.users == 2
    asyncio.run(first.aclose())
    asyncio.run(first.aclose())  # closing twice counts once
    assert wait_for(lambda: shared.users == 1, 5)
    assert shared.llama is not None  # the other backend still uses it
    asyncio.run(second.aclose())
    assert wait_for(lambda: shared.llama is None and shared.users == 0, 5)
    again = EmbeddedBackend(other)  # chosen again: loaded again
    again.load()
    assert shared.llama is not None
    asyncio.run(again.aclose())
