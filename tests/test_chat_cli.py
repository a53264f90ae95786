"""`voice-agent ask` and `voice-agent chat` as separate processes, with the embedded model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.services import no_audio_env, read_tap


def run(*args: str, env: dict[str, str], stdin: str | None = None,
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True,
                          text=True, env=env, input=stdin, timeout=300)


def private_env(tmp_path: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(base or os.environ)
    env["VOICE_AGENT_DATA_DIR"] = str(tmp_path / "data")
    return env


@pytest.mark.slow
def test_ask_without_audio_prints_the_answer_and_records_it(tmp_path: Path) -> None:
    env = private_env(tmp_path, no_audio_env(tmp_path))
    result = run("ask", "--no-audio", "What", "is", "two", "plus", "two?", env=env)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip()) > 0
    shown = run("history", env=env)
    assert "you: What is two plus two?" in shown.stdout
    assert "assistant:" in shown.stdout


@pytest.mark.slow
def test_chat_over_a_pipe_answers_each_line_and_quits_at_end_of_input(tmp_path: Path) -> None:
    env = private_env(tmp_path, no_audio_env(tmp_path))
    result = run("chat", "--no-audio", env=env, stdin="Hello!\nWhat colour is the sky?\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("you> ") == 3  # two questions, then the prompt that saw EOF
    history = Path(env["VOICE_AGENT_DATA_DIR"]) / "history.jsonl"
    assert len(history.read_text().splitlines()) == 4


@pytest.mark.slow
def test_chat_with_no_audio_device_says_so_once_and_goes_on_as_text(tmp_path: Path) -> None:
    env = private_env(tmp_path, no_audio_env(tmp_path))
    result = run("chat", env=env, stdin="Hello!\nWhat colour is the sky?\n")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("No audio output device was found") == 1
    assert "shown as text only" in result.stderr
    assert result.stdout.count("you> ") == 3  # both questions answered, as text
    history = Path(env["VOICE_AGENT_DATA_DIR"]) / "history.jsonl"
    assert len(history.read_text().splitlines()) == 4


def test_ask_with_an_unreachable_server_fails_clearly(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[llm]\nbackend = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
                      'model = "m"\napi_key = "sk-secret-never-shown"\n')
    env = private_env(tmp_path, no_audio_env(tmp_path))
    result = run("--config", str(config), "ask", "--no-audio", "Hello?", env=env)
    assert result.returncode == 1
    assert "127.0.0.1:9" in result.stderr and "Traceback" not in result.stderr
    assert "sk-secret-never-shown" not in result.stderr + result.stdout


@pytest.mark.slow
def test_ask_falls_back_to_the_embedded_model_and_says_so(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[llm]\nbackend = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
                      'model = "m"\nfallback = "embedded"\n')
    env = private_env(tmp_path, no_audio_env(tmp_path))
    result = run("--config", str(config), "ask", "--no-audio", "Say hello.", env=env)
    assert result.returncode == 0, result.stderr
    assert "embedded model" in result.stderr and result.stdout.strip()


@pytest.mark.slow
@pytest.mark.audio
def test_ask_speaks_the_answer(audio_tap: Path, tmp_path: Path) -> None:
    result = run("ask", "--voice", "jm_kumo", "What is the capital of Italy?",
                 env=private_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert np.count_nonzero(read_tap(audio_tap)) > 24_000 // 2


@pytest.mark.slow
@pytest.mark.audio
def test_ctrl_c_in_chat_interrupts_the_reply_and_the_chat_goes_on(audio_tap: Path,
                                                                  tmp_path: Path) -> None:
    import signal
    import time

    from harness.services import wait_for

    config = tmp_path / "config.toml"
    config.write_text('[tts]\nvoice = "jm_kumo"\n[llm]\nmax_tokens = 400\n'
                      'system_prompt = "You are a storyteller. Tell long stories."\n')
    process = subprocess.Popen(
        [sys.executable, "-m", "agent", "--config", str(config), "chat"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=private_env(tmp_path))
    assert process.stdin is not None
    try:
        process.stdin.write("Tell me a long story about a lighthouse keeper.\n")
        process.stdin.flush()
        assert wait_for(lambda: np.count_nonzero(read_tap(audio_tap)) > 24_000, 120)
        process.send_signal(signal.SIGINT)  # mid-reply: interrupts, does not quit
        silenced_from = read_tap(audio_tap).size
        time.sleep(0.5)  # the reply would still be speaking now, had it not been cut
        tail = read_tap(audio_tap)[silenced_from:]
        sound_after_ms = 1000 * (int(np.flatnonzero(tail)[-1]) + 1 if tail.any() else 0) / 24_000
        print(f"sound after SIGINT: {sound_after_ms:.0f} ms")
        # Signal delivery and the main thread waking add to the audio path's ~30 ms.
        assert sound_after_ms < 150
        assert process.poll() is None, "Ctrl-C during a reply must not end the chat"
        process.stdin.close()  # Ctrl-D at the prompt: quit
        assert process.wait(30) == 0
        output = process.stdout.read() if process.stdout else ""
    finally:
        process.kill()
    assert "[interrupted]" in output
    history = (Path(private_env(tmp_path)["VOICE_AGENT_DATA_DIR"]) / "history.jsonl").read_text()
    assert '"interrupted": true' in history
