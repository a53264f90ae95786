"""Quitting the real tray agent at any moment: `python -m agent` under Xvfb with trayer, the
tapped PulseAudio, the virtual microphone and the real models, told `voice-agent quit` from
another process while its models load, mid-speech, while it listens, and while a first run's
voice fetch hangs on a registry that never answers. Each time the process is gone with status
0, says nothing of pending tasks, fatal errors, C++ terminate or tracebacks, and leaves no
process behind (npm). How fast: bench/quit.py (the target there is 1 s); here the limit is
generous, so a loaded machine does not fail the test.

A process that ends in the middle of a fetch any other way (killed, crashed) leaves no npm
running either: the last test, with a stand-in npm, needs no desktop.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import paths
from agent.tts import npm_voices as fetcher
from harness.desktop import wait_until
from harness.microphone import VirtualMicrophone
from harness.services import wait_for
from harness.tray_agent import (
    QuitResult,
    StallingRegistry,
    TrayAgent,
    descendants,
    kill_left_behind,
    link_assembled_model,
    sounding_since,
    tap_samples,
    tray_icon_shown,
)

QUIT_TIMEOUT_S = 10.0  # the speed target (1 s) lives in bench/quit.py
LONG_TEXT = ("This is a long announcement so that there is time to quit in the middle of it. "
             "It goes on for a while about nothing in particular, and then some more.")


@pytest.fixture(scope="module")
def agent_env(xdisplay: str, session_bus: str, tray_host: str, pulse: Path,
              engine: object) -> dict[str, str]:
    """The environment of every agent here: screen, bus, tray, sound server and tap; the
    `engine` fixture has assembled the packaged model into the session's cache already."""
    return dict(os.environ)


@pytest.fixture
def agents() -> Iterator[list[TrayAgent]]:
    """The agents a test starts, each stopped (with anything it left running) at the end."""
    started: list[TrayAgent] = []
    yield started
    for agent in started:
        agent.stop()


def quits_cleanly(agent: TrayAgent) -> QuitResult:
    """`voice-agent quit`: the agent ends with status 0 in time, says nothing it should not,
    and leaves nothing running."""
    result = agent.quit(QUIT_TIMEOUT_S)
    kill_left_behind(result)
    assert result.returncode is not None, (
        f"still running {QUIT_TIMEOUT_S:.0f} s after `voice-agent quit` (its threads, "
        f"dumped):\n{agent.output}")
    assert result.command_rc == 0, agent.output
    assert result.returncode == 0, f"exit status {result.returncode}:\n{agent.output}"
    assert not result.bad_lines, "\n".join(result.bad_lines) + "\n---\n" + agent.output
    assert not result.left_behind, f"left running: {result.left_behind}"
    return result


def ready_agent(agents: list[TrayAgent], home: Path, env: dict[str, str],
                settings: str = "") -> TrayAgent:
    agent = TrayAgent(home, env, first_run=False, settings=settings)
    agents.append(agent)
    agent.wait_for(r"models ready", timeout=120)
    return agent


@pytest.mark.slow
def test_quit_while_the_models_load(agent_env: dict[str, str], agents: list[TrayAgent],
                                    tmp_path: Path) -> None:
    """A first start (a fresh data dir), quit as soon as its icon is in the tray."""
    agent = TrayAgent(tmp_path / "home", agent_env)
    agents.append(agent)
    assert wait_until(tray_icon_shown, timeout=60), f"no tray icon:\n{agent.output}"
    quits_cleanly(agent)


@pytest.mark.slow
def test_quit_mid_speech(agent_env: dict[str, str], agents: list[TrayAgent],
                         pulse: Path, tmp_path: Path) -> None:
    agent = ready_agent(agents, tmp_path / "home", agent_env)
    start = tap_samples(pulse)
    said = agent.cli("say", LONG_TEXT)
    assert said.returncode == 0, said.stderr
    assert wait_until(lambda: sounding_since(pulse, start), timeout=60, step=0.05), \
        f"nothing was heard:\n{agent.output}"
    quits_cleanly(agent)


@pytest.mark.slow
def test_quit_while_listening(agent_env: dict[str, str], agents: list[TrayAgent],
                              virtual_mic: VirtualMicrophone, tmp_path: Path) -> None:
    agent = ready_agent(agents, tmp_path / "home", agent_env,
                        f'[stt]\ninput_device = "{virtual_mic.device}"\n')
    since = agent.mark()
    listen = agent.cli("listen")
    assert listen.returncode == 0, listen.stderr
    agent.wait_for(r"tray: listening", since, timeout=10)
    quits_cleanly(agent)


@pytest.fixture
def stalling_registry() -> Iterator[StallingRegistry]:
    registry = StallingRegistry()
    yield registry
    registry.close()


@pytest.mark.slow
def test_quit_during_a_first_run_voice_fetch_that_hangs(
        agent_env: dict[str, str], agents: list[TrayAgent],
        stalling_registry: StallingRegistry, tmp_path: Path) -> None:
    """A new user (fresh config, data and cache) whose default voice needs the npm voices:
    npm waits on a registry that never answers, and the user quits. npm goes too, and so do
    the download and staging folders."""
    cache = tmp_path / "cache"
    link_assembled_model(paths.cache_dir(), cache)  # straight to the fetch
    env = {**agent_env, **stalling_registry.env(tmp_path / "npm-cache")}
    agent = TrayAgent(tmp_path / "home", env, voice=None, cache=cache)
    agents.append(agent)
    agent.wait_for(r"Fetching the Kokoro voices", timeout=60)
    assert stalling_registry.wait_for_request(30), f"npm never asked:\n{agent.output}"
    assert any(" pack " in line for line in descendants(agent.proc.pid).values()), \
        "npm is not running"
    quits_cleanly(agent)
    staging = cache / "kokoro"
    assert wait_until(lambda: not list(staging.glob(f".{fetcher.FOLDER}.*")), timeout=5), \
        "the staging folder was left behind"


ABANDONS_A_FETCH = textwrap.dedent("""
    import os, sys, threading
    from pathlib import Path
    from agent.tts import npm_voices
    threading.Thread(target=npm_voices.fetch, kwargs={"npm": sys.argv[1]}, daemon=True).start()
    started = Path(sys.argv[2])
    while not started.exists():
        threading.Event().wait(0.01)
    os._exit(0)  # as the tray agent quits: no cleanup of any kind
""")


def test_a_process_that_ends_mid_fetch_leaves_no_npm_running(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fetching process ends abruptly (os._exit, as the tray agent quits) while npm runs:
    npm is killed and the download and staging folders are removed."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("VOICE_AGENT_CACHE_DIR", str(cache))
    started, pid_file = tmp_path / "npm-started", tmp_path / "npm-pid"
    npm = tmp_path / "bin" / "npm"
    npm.parent.mkdir()
    # A stand-in npm that downloads forever (until killed), in the folder it was given.
    npm.write_text(f'#!/bin/sh\necho $$ > "{pid_file}"\npwd > "{tmp_path / "npm-cwd"}"\n'
                   f'touch "{started}"\nexec sleep 300\n')
    npm.chmod(0o755)
    done = subprocess.run([sys.executable, "-c", ABANDONS_A_FETCH, str(npm), str(started)],
                          env=dict(os.environ), timeout=60, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    npm_pid = int(pid_file.read_text())

    def npm_gone() -> bool:
        try:
            state = Path(f"/proc/{npm_pid}/stat").read_text()
        except OSError:
            return True
        return state[state.rindex(")") + 2:].split()[0] == "Z"

    try:
        assert wait_for(npm_gone, timeout=5), "npm is still running for a process that ended"
    finally:
        if not npm_gone():
            os.kill(npm_pid, 9)
    download = Path((tmp_path / "npm-cwd").read_text().strip())
    assert wait_for(lambda: not download.exists(), timeout=5), "the download was left behind"
    kokoro = cache / "kokoro"
    assert wait_for(lambda: not list(kokoro.glob(f".{fetcher.FOLDER}.*")), timeout=5), \
        "the staging folder was left behind"
