"""Choosing the model that answers: the first start's pick of a local server found running
(only while the settings name no backend, and only when exactly one server offers a chat
model), the keys a choice writes, and the hint that says how to get a better model."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import config
from agent.config import LLMConfig
from agent.llm import FallbackBackend, make_backend
from agent.llm.choice import (
    BETTER_MODEL_HINT,
    answers_from_tiny_model,
    auto_pick,
    found_server_in_use,
    how_to_answer_better,
    llm_settings,
    model_file_choice,
    server_choice,
)
from agent.llm.openai_compat import OpenAICompatBackend
from agent.llm.scan import FoundServer, ScanResult

OLLAMA = FoundServer("Ollama", "ollama", "http://127.0.0.1:11434", ("llama3.2", "qwen2.5"))
LLAMA_CPP = FoundServer("llama.cpp server", "openai", "http://127.0.0.1:8080/v1", ("smollm2",))
EMPTY_LM_STUDIO = FoundServer("LM Studio", "openai", "http://127.0.0.1:1234/v1", ())


def found(*servers: FoundServer) -> ScanResult:
    return ScanResult(servers, 0.01)


def settings(text: str, tmp_path: Path) -> config.Config:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    loaded = config.load(path)
    assert not loaded.problems, loaded.problems
    return loaded


def test_one_server_with_a_chat_model_is_used_when_the_settings_name_no_backend(
        tmp_path: Path) -> None:
    cfg = settings("[tts]\nspeed = 1.1\n", tmp_path)
    picked = auto_pick(cfg, found(OLLAMA, EMPTY_LM_STUDIO))  # the empty one does not count
    assert picked is not None
    used = llm_settings(cfg, True, picked)
    assert (used.backend, used.base_url, used.model) == (
        "ollama", "http://127.0.0.1:11434", "llama3.2")
    assert used.fallback == "embedded"  # if it goes away, the embedded model answers
    assert "llama3.2" in picked.notice and "Ollama" in picked.notice
    assert how_to_answer_better(cfg, found(OLLAMA)) == ""  # the load's notice says it


def test_no_pick_when_the_file_names_a_backend_or_the_tray_chose_embedded(
        tmp_path: Path) -> None:
    assert auto_pick(settings('[llm]\nbackend = "embedded"\n', tmp_path), found(OLLAMA)) is None
    assert auto_pick(settings("[llm]\nuse_embedded = true\n", tmp_path), found(OLLAMA)) is None
    written_fallback = settings('[llm]\nfallback = "none"\n', tmp_path)
    picked = auto_pick(written_fallback, found(LLAMA_CPP))
    assert picked is not None and picked.settings(written_fallback.llm).fallback == "none"
    # The example file's fallback = "" is no choice: the embedded model stands in.
    example_fallback = settings('[llm]\nfallback = ""\n', tmp_path)
    picked = auto_pick(example_fallback, found(LLAMA_CPP))
    assert picked is not None and picked.settings(example_fallback.llm).fallback == "embedded"


def test_settings_edited_later_apply_to_the_picked_server(tmp_path: Path) -> None:
    cfg = settings('[llm]\nmodel = "qwen2.5"\ntemperature = 0.2\n', tmp_path)
    picked = auto_pick(cfg, found(OLLAMA))
    assert picked is not None and picked.model == "qwen2.5"  # the written model, if it has it
    cfg.llm.temperature = 0.9  # an edit while running
    assert llm_settings(cfg, True, picked).temperature == 0.9
    assert llm_settings(cfg, False, picked).backend == "embedded"  # the tray's choice


def test_the_users_api_key_is_not_sent_to_a_server_found_running(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-for-the-users-own-service")
    cfg = settings("", tmp_path)
    picked = auto_pick(cfg, found(LLAMA_CPP))
    assert found_server_in_use(cfg, picked)
    backend = make_backend(llm_settings(cfg, True, picked), cfg.from_file, env_key=False)
    assert isinstance(backend, FallbackBackend)
    assert isinstance(backend.primary, OpenAICompatBackend)
    assert backend.primary.http.api_key == ""
    configured = make_backend(LLMConfig(backend="openai", base_url="http://127.0.0.1:9/v1"))
    assert isinstance(configured, OpenAICompatBackend)
    assert configured.http.api_key == "sk-test-for-the-users-own-service"  # set up by the user


def test_two_servers_or_none_with_a_model_leave_the_embedded_model_and_say_what_was_found(
        tmp_path: Path) -> None:
    cfg = settings("", tmp_path)
    assert auto_pick(cfg, found(OLLAMA, LLAMA_CPP)) is None
    assert auto_pick(cfg, found(EMPTY_LM_STUDIO)) is None
    assert auto_pick(cfg, found()) is None
    several = how_to_answer_better(cfg, found(OLLAMA, LLAMA_CPP))
    assert "Ollama" in several and "llama.cpp" in several and "LLM menu" in several
    assert how_to_answer_better(cfg, found()) == BETTER_MODEL_HINT


def test_a_server_choice_writes_backend_url_and_model(tmp_path: Path) -> None:
    assert server_choice(LLAMA_CPP, "smollm2") == {
        "backend": "openai", "base_url": "http://127.0.0.1:8080/v1", "model": "smollm2",
        "use_embedded": False}


def test_a_model_file_choice_keeps_a_server_the_user_set_up(tmp_path: Path) -> None:
    gguf = tmp_path / "qwen.gguf"
    with_server = settings('[llm]\nbackend = "openai"\nbase_url = "http://10.0.0.2:8080/v1"\n',
                           tmp_path)
    assert model_file_choice(with_server, gguf) == {"model_path": str(gguf),
                                                    "use_embedded": True}
    plain = settings("", tmp_path)
    assert model_file_choice(plain, gguf) == {"model_path": str(gguf), "backend": "embedded",
                                              "use_embedded": False}
    assert model_file_choice(plain, None)["model_path"] == ""


def test_the_hint_is_for_the_tiny_model_only(tmp_path: Path) -> None:
    assert answers_from_tiny_model(settings("", tmp_path))
    assert not answers_from_tiny_model(settings('[llm]\nmodel_path = "/m/q.gguf"\n', tmp_path))
    assert not answers_from_tiny_model(settings('[llm]\nbackend = "ollama"\n', tmp_path))
    assert answers_from_tiny_model(settings('[llm]\nbackend = "ollama"\nuse_embedded = true\n',
                                            tmp_path))
    assert how_to_answer_better(settings('[llm]\nmodel_path = "/m/q.gguf"\n', tmp_path),
                                found()) == ""
