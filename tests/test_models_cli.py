"""`voice-agent models llm` and `voice-agent models download llm NAME` as a user runs them,
against a loopback stand-in for the Hugging Face hub (HF_ENDPOINT) that serves the real
packaged SmolLM2 GGUF in the place of a recommended model: the download is verified, written
whole, and used (the settings file says so, comments kept); a cut download resumes on the next
run; without a network the message is clear and the model in use stays."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.llm import catalog
from agent.llm.embedded import locate_model
from harness.fake_hub import FakeHub
from harness.services import no_audio_env

MODEL = catalog.find("qwen2.5-0.5b")  # served here with SmolLM2's bytes (the hub's sha256 wins)


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub() as fake:
        fake.add(MODEL.repo_id, MODEL.filename, locate_model())
        yield fake


@pytest.fixture
def env(tmp_path: Path, hub: FakeHub) -> dict[str, str]:
    env = no_audio_env(tmp_path)
    env.update(VOICE_AGENT_DATA_DIR=str(tmp_path / "data"),
               VOICE_AGENT_CONFIG_DIR=str(tmp_path / "config"),
               HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", NO_PROXY="127.0.0.1")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.toml").write_text("# mine\n[tts]\nspeed = 1.1\n")
    return env


def models_dir(env: dict[str, str]) -> Path:
    return Path(env["VOICE_AGENT_DATA_DIR"]) / "models" / "llm"


def settings(env: dict[str, str]) -> str:
    return (Path(env["VOICE_AGENT_CONFIG_DIR"]) / "config.toml").read_text()


def test_models_llm_lists_the_recommended_models() -> None:
    listing = run("models", "llm", env=dict(os.environ))
    assert listing.returncode == 0, listing.stderr
    for model in catalog.RECOMMENDED:
        assert model.key in listing.stdout and model.size_text in listing.stdout
    assert "voice-agent models download llm NAME" in listing.stdout


@pytest.mark.slow  # the downloaded model answers in a `voice-agent ask` child
def test_a_download_is_verified_written_whole_and_answers(env: dict[str, str]) -> None:
    result = run("models", "download", "llm", "qwen2.5-0.5b", env=env)
    assert result.returncode == 0, result.stderr
    path = models_dir(env) / MODEL.filename
    assert path.read_bytes() == locate_model().read_bytes()
    assert not list(models_dir(env).glob("*.part"))
    text = settings(env)
    assert "# mine" in text and f'model_path = "{path}"' in text and 'backend = "embedded"' in text
    asked = subprocess.run([sys.executable, "-m", "agent", "chat", "--no-audio"], input="Hi\n",
                           capture_output=True, text=True, env=env, timeout=300)
    assert asked.returncode == 0, asked.stderr
    assert "Talking to embedded model qwen2.5-0.5b-instruct-q4_k_m" in asked.stderr
    assert "tiny offline model" not in asked.stderr  # no hint once a better model is in use
    listed = run("models", "llm", env=env)
    assert "<- in use" in listed.stdout


@pytest.mark.slow  # the retries pause 1 + 3 + 10 s before the run gives up
def test_a_cut_download_resumes_on_the_next_run(env: dict[str, str], hub: FakeHub) -> None:
    size = locate_model().stat().st_size
    hub.cut_after(size // 10, times=4)  # the first GET and its three retries: 40% arrives
    first = run("models", "download", "llm", "qwen2.5-0.5b", env=env)
    assert first.returncode == 1
    assert "resume" in first.stderr, first.stderr
    assert "model_path" not in settings(env)  # nothing is used before it is whole
    assert not (models_dir(env) / MODEL.filename).exists()
    second = run("models", "download", "llm", "qwen2.5-0.5b", env=env)
    assert second.returncode == 0, second.stderr
    assert hub.bytes_served() < 2 * size  # it carried on from the part it had, not anew
    assert hub.downloads()[-1].range not in (None, "bytes=0-")
    assert (models_dir(env) / MODEL.filename).read_bytes() == locate_model().read_bytes()


def test_without_a_network_the_message_is_clear_and_nothing_changes(
        env: dict[str, str]) -> None:
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"
    result = run("models", "download", "llm", "qwen2.5-0.5b", env=env)
    assert result.returncode == 1
    assert "could not reach 127.0.0.1:9" in result.stderr
    assert "the current model stays in use" in result.stderr
    assert "Traceback" not in result.stderr
    assert settings(env) == "# mine\n[tts]\nspeed = 1.1\n"
