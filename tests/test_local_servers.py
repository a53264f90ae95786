"""A local LLM server found by itself: the real llama.cpp server (`python -m llama_cpp.server`
with the packaged SmolLM2) on its usual port, 8080, on loopback. With nothing in [llm] the
agent answers with it and says so; `voice-agent llm scan|list|use` and `doctor` show it, and
`llm use` writes the choice with the file's comments kept. Without any server, the first run
and `doctor` say how to get better answers than the 135M model gives."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.llm.embedded import locate_model
from harness.desktop import find_windows, wait_until, xdotool
from harness.llm_servers import LlamaServer, start_llama_server
from harness.services import LOGS, no_audio_env
from harness.tray_agent import TrayAgent

pytestmark = pytest.mark.slow  # a real model in a server and in `voice-agent` children

LLAMA_CPP_PORT = 8080  # llama.cpp's own default, where the scan looks for it


def run(*args: str, env: dict[str, str], stdin: str | None = None,
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True,
                          text=True, env=env, input=stdin, timeout=300)


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture(scope="module")
def running_server() -> Iterator[LlamaServer]:
    assert port_is_free(LLAMA_CPP_PORT), (
        f"port {LLAMA_CPP_PORT} is taken on this machine: these tests stand a llama.cpp server "
        "there, where users run theirs")
    server = start_llama_server(locate_model(), LOGS / "llama-8080", alias="smollm2",
                                port=LLAMA_CPP_PORT)
    yield server
    server.stop()


def home(tmp_path: Path, settings: str = "") -> tuple[dict[str, str], Path]:
    env = no_audio_env(tmp_path)
    env["VOICE_AGENT_DATA_DIR"] = str(tmp_path / "data")
    env["VOICE_AGENT_CONFIG_DIR"] = str(tmp_path / "config")
    config = tmp_path / "config" / "config.toml"
    if settings:
        config.parent.mkdir(parents=True)
        config.write_text(settings, encoding="utf-8")
    return env, config


def served_chats(server: LlamaServer) -> int:
    return server.log.read_text(errors="replace").count("POST /v1/chat/completions")


def test_without_a_server_the_first_run_and_doctor_say_how_to_answer_better(
        tmp_path: Path) -> None:
    env, _config = home(tmp_path)
    env["VOICE_AGENT_CACHE_DIR"] = os.environ["VOICE_AGENT_CACHE_DIR"]
    assert port_is_free(LLAMA_CPP_PORT)  # first in the file: the module's server is not up yet
    first = run("chat", "--no-audio", env=env, stdin="Hi\n")
    assert first.returncode == 0, first.stderr
    assert "Answers come from SmolLM2-135M, a tiny offline model" in first.stderr
    assert "Talking to embedded model SmolLM2-135M" in first.stderr  # which model answers
    again = run("chat", "--no-audio", env=env, stdin="Hi\n")
    assert again.returncode == 0, again.stderr
    assert "tiny offline model" not in again.stderr  # once, not on every start
    doctor = run("doctor", env=env)
    assert re.search(r"warn Answer quality: answers come from SmolLM2-135M.*Fix: start a local "
                     r"LLM server.*voice-agent models llm", doctor.stdout), doctor.stdout


def test_with_nothing_in_the_settings_the_running_server_answers_and_it_is_said(
        running_server: LlamaServer, tmp_path: Path) -> None:
    env, _config = home(tmp_path)
    before = served_chats(running_server)
    result = run("ask", "--no-audio", "What", "is", "two", "plus", "two?", env=env)
    assert result.returncode == 0, result.stderr
    assert re.search(r"Answering with smollm2 from llama\.cpp server on port 8080, found "
                     r"running", result.stderr), result.stderr
    assert result.stdout.strip()
    assert served_chats(running_server) == before + 1  # the server answered, not the embedded


def test_a_backend_written_in_the_settings_is_kept(running_server: LlamaServer,
                                                   tmp_path: Path) -> None:
    env, _config = home(tmp_path, '[llm]\nbackend = "embedded"\n')
    before = served_chats(running_server)
    result = run("ask", "--no-audio", "Say", "hello.", env=env)
    assert result.returncode == 0, result.stderr
    assert "found running" not in result.stderr
    assert served_chats(running_server) == before


def test_scan_list_and_doctor_show_the_server_and_its_model(running_server: LlamaServer,
                                                            tmp_path: Path) -> None:
    env, _config = home(tmp_path)
    scan = run("llm", "scan", env=env)
    assert scan.returncode == 0, scan.stderr
    assert re.search(r"llama\.cpp server on port 8080: http://127\.0\.0\.1:8080/v1", scan.stdout)
    assert re.search(r"^\s+smollm2$", scan.stdout, re.MULTILINE), scan.stdout
    listing = run("llm", "list", env=env)
    assert "In use: smollm2 from llama.cpp server on port 8080" in listing.stdout, listing.stdout
    doctor = run("doctor", env=env)
    assert re.search(r"ok\s+Local LLM servers: llama\.cpp server on port 8080 \(smollm2\)",
                     doctor.stdout), doctor.stdout
    assert "Answer quality" not in doctor.stdout  # a better model than the 135M one answers


def test_llm_use_writes_the_choice_and_keeps_the_comments(running_server: LlamaServer,
                                                         tmp_path: Path) -> None:
    env, config = home(tmp_path, "# my settings\n[llm]\n# which model\nbackend = \"embedded\"\n")
    chosen = run("llm", "use", "8080", env=env)
    assert chosen.returncode == 0, chosen.stderr
    text = config.read_text(encoding="utf-8")
    assert "# my settings" in text and "# which model" in text
    assert 'backend = "openai"' in text
    assert 'base_url = "http://127.0.0.1:8080/v1"' in text and 'model = "smollm2"' in text
    before = served_chats(running_server)
    asked = run("ask", "--no-audio", "Say", "hello.", env=env)
    assert asked.returncode == 0, asked.stderr
    assert served_chats(running_server) == before + 1
    # The server stays in the file, with the embedded model chosen over it (as the tray does).
    back = run("llm", "use", "embedded", env=env)
    assert back.returncode == 0, back.stderr
    assert "use_embedded = true" in config.read_text(encoding="utf-8")
    before = served_chats(running_server)
    asked = run("ask", "--no-audio", "Say", "hello.", env=env)
    assert asked.returncode == 0, asked.stderr
    assert served_chats(running_server) == before
    wrong = run("llm", "use", "lm studio", env=env)
    assert wrong.returncode == 2
    assert "llama.cpp server on port 8080" in wrong.stderr  # what is running instead


def test_the_tray_agent_uses_the_running_server_and_names_it(
        running_server: LlamaServer, xdisplay: str, session_bus: str, tray_host: str,
        pulse: Path, engine: object, tmp_path: Path) -> None:
    """The desktop agent as a new user starts it, with a llama.cpp server already running:
    it answers with it, says so in the overlay, and its LLM menu lists it checked."""
    agent = TrayAgent(tmp_path / "home", dict(os.environ), first_run=False)
    try:
        agent.wait_for(r"Answering with smollm2 from llama\.cpp server on port 8080, found "
                       r"running", timeout=120)
        agent.wait_for(r"models ready: voice \S+, OpenAI-compatible server at "
                       r"http://127\.0\.0\.1:8080/v1 \(model smollm2\)", timeout=120)
        before = served_chats(running_server)
        start = agent.mark()
        assert agent.cli("talk").returncode == 0
        assert wait_until(lambda: bool(find_windows("^voice-agent$", visible=True, timeout=0.1)),
                          timeout=5), "the overlay did not open"
        time.sleep(0.3)  # the overlay asks X for the focus 30-80 ms after it maps
        xdotool("type", "--delay", "20", "What is two plus two?")
        xdotool("key", "Return")
        agent.wait_for(r"tray: thinking", start)
        assert wait_until(lambda: served_chats(running_server) == before + 1, timeout=60), \
            "the server was not asked"
        assert agent.quit().returncode == 0, agent.output
    finally:
        agent.stop()
