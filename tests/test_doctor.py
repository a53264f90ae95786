"""`voice-agent doctor`, the log (secrets kept out, per-turn timings) and the first run.

The doctor runs as a separate process on a machine with no sound server and no display, as a
user would run it; the agent's folders point into tmp_path (the Kokoro cache stays the test
session's, so the packaged model is assembled once).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import config as config_module
from agent import doctor, first_run, logs, redaction
from agent.audio.events import PlaybackEvent, PlaybackKind
from agent.checks import Status
from agent.config import Config
from agent.desktop.hotkeys import SHORTCUT_HINT, HotkeyChoice, NoHotkeys, PynputHotkeys
from agent.events import AgentState, EventBus, ReplyDelta, StateChanged, UserSaid
from agent.llm import doctor as llm_doctor

API_KEY = "sk-test-Zq8xW3vN5mK1pL7rT9yB2cD4fG6hJ0aS"
ENV_KEY = "sk-env-Hh4Jk8Lm2Nb6Vc1Xz5Qw9Er3Ty7Ui0OpAs"


def agent_env(tmp_path: Path) -> dict[str, str]:
    """No sound server, no sound card, no display; the agent's folders in tmp_path."""
    env = dict(os.environ)
    for name in ("ALSA_CONFIG_PATH", "DISPLAY", "WAYLAND_DISPLAY", "OPENAI_API_KEY"):
        env.pop(name, None)
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env.update(XDG_RUNTIME_DIR=str(runtime), PULSE_SERVER="unix:/nonexistent",
               VOICE_AGENT_CONFIG_DIR=str(tmp_path / "config"),
               VOICE_AGENT_DATA_DIR=str(tmp_path / "data"),
               VOICE_AGENT_LOG_DIR=str(tmp_path / "log"),
               VOICE_AGENT_RUNTIME_DIR=str(tmp_path / "run"))
    return env


def run_doctor(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # `python -m agent doctor` once the CLI has the subcommand; the same function either way.
    result = subprocess.run([sys.executable, "-m", "agent", "doctor"], capture_output=True,
                            text=True, env=env, timeout=180)
    assert result.stdout, result.stderr  # a crash before the first check
    return result


def line_of(output: str, start: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith(start)]
    assert lines, f"no line starting with {start!r} in:\n{output}"
    return lines[0]


def test_doctor_without_a_sound_server_says_there_is_no_audio_output(tmp_path: Path) -> None:
    result = run_doctor(agent_env(tmp_path))
    audio = line_of(result.stdout, "FAIL audio output:")
    assert "no audio output device" in audio
    assert "Fix:" in audio and "PulseAudio" in audio and "--out speech.wav" in audio
    assert "works as text" in audio
    # The rule: no speech is a FAIL for speech, but the agent still answers (as text): 0.
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("voice-agent works, as text only")
    assert line_of(result.stdout, "ok   LLM:")
    assert "packaged model" in line_of(result.stdout, "ok   Kokoro:")
    assert "not set" in line_of(result.stdout, "warn display:")
    assert str(tmp_path / "log" / "voice-agent.log") in line_of(result.stdout, "ok   log:")
    microphone = line_of(result.stdout, "warn microphone:")
    assert "Fix:" in microphone and "typing in the overlay works" in microphone
    assert "Whisper base" in line_of(result.stdout, "ok   speech recognition:")
    # Each subsystem probes itself; the runner keeps the order the user knows.
    names = [line[5:].partition(":")[0] for line in result.stdout.splitlines()[:-1]]
    assert names == ["config", "audio output", "Kokoro", "voice", "Local LLM servers", "LLM",
                     "Answer quality", "hotkeys", "microphone", "speech recognition",
                     "hands-free", "display", "log"]


def test_the_probes_load_only_when_they_run() -> None:
    """The CLI imports the runner for its parser, and doctor runs headless: importing the
    runner loads no probe, and the desktop's probe module loads nothing of the desktop."""
    script = ("import sys, agent.doctor; before = set(sys.modules); "
              "import agent.desktop.doctor; after = set(sys.modules); "
              "print(sorted(m for m in before if m.endswith('.doctor'))); "
              "print(sorted(m for m in after if m.startswith(('agent.desktop.', 'pystray', "
              "'tkinter', 'pynput'))))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, check=True)
    probes_at_import, desktop_at_import = result.stdout.splitlines()
    assert probes_at_import == "['agent.doctor']"
    assert desktop_at_import == "['agent.desktop.doctor']"


def closed_port() -> socket.socket:
    """A port on 127.0.0.1 that refuses connections: bound (so nobody takes it), not listening."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def test_doctor_reports_an_unreachable_server_without_the_key(tmp_path: Path) -> None:
    with closed_port() as sock:
        port = sock.getsockname()[1]
        env = agent_env(tmp_path)
        env["OPENAI_API_KEY"] = ENV_KEY
        config = tmp_path / "config" / "config.toml"
        config.parent.mkdir(parents=True)
        config.write_text(f'[llm]\nbackend = "openai"\nbase_url = "http://127.0.0.1:{port}/v1"\n'
                          f'model = "gpt-test"\napi_key = "{API_KEY}"\n', encoding="utf-8")
        result = run_doctor(env)
    output = result.stdout + result.stderr
    server = line_of(result.stdout, "FAIL LLM server (openai):")
    assert f"127.0.0.1:{port}/v1" in server and "connection refused" in server
    assert "Fix: start the server" in server
    assert result.returncode == 1, output
    assert "cannot answer" in result.stdout.strip().splitlines()[-1]
    assert API_KEY not in output and ENV_KEY not in output
    assert API_KEY[-4:] not in output


def test_a_fallback_makes_an_unreachable_server_a_warning(monkeypatch: pytest.MonkeyPatch,
                                                          ) -> None:
    with closed_port() as sock:
        cfg = Config()
        cfg.llm.backend, cfg.llm.fallback = "openai", "embedded"
        cfg.llm.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        cfg.llm.find_servers = False  # no "Local LLM servers" line
        checks = llm_doctor.check_llm(cfg)
    assert [c.status for c in checks] == [Status.WARN, Status.OK]
    assert "embedded model answers meanwhile" in checks[0].line()
    assert doctor.verdict(checks)[0] == 0


# -- the log ---------------------------------------------------------------------------------------


@pytest.fixture
def clean_logging(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """setup_logging on a root logger that is put back as it was afterwards."""
    monkeypatch.setenv("VOICE_AGENT_LOG_DIR", str(tmp_path / "log"))
    monkeypatch.setattr(redaction, "_registered", set())
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield tmp_path / "log" / "voice-agent.log"
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
        handler.removeFilter(logs.SECRET_FILTER)
    root.setLevel(level)


def test_secrets_never_reach_the_log_file(clean_logging: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", ENV_KEY)
    path = logs.setup_logging(verbose=False, to_file=True)
    assert path == clean_logging
    redaction.add_secret(API_KEY)
    log = logging.getLogger("agent.test")
    log.info("sending with key %s and %s", API_KEY, ENV_KEY)
    log.warning(f"the server said: Incorrect API key provided: sk-tes{'*' * 20}{API_KEY[-4:]}")
    try:
        raise RuntimeError(f"401 for Bearer {API_KEY}")
    except RuntimeError:
        log.exception("request failed (%s)", ENV_KEY)
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = path.read_text(encoding="utf-8")
    assert "sending with key *** and ***" in text
    assert "Traceback" in text and "RuntimeError: 401 for Bearer ***" in text
    assert API_KEY not in text and ENV_KEY not in text and API_KEY[-4:] not in text
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_redaction_blanks_masked_quotes_of_a_key_but_not_its_bare_tail(
        clean_logging: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", ENV_KEY)
    redaction.add_secret(API_KEY)
    tail = API_KEY[-4:]
    for quoted in (f"sk-tes{'*' * 20}{tail}", f"sk-tes...{tail}", f"sk-tes…{tail}"):
        assert tail not in redaction.redact(f"Incorrect API key provided: {quoted}.")
    # Four characters alone are as likely a year or part of a word as a key.
    assert redaction.redact(f"model {tail}") == f"model {tail}"
    assert redaction.redact(f"{API_KEY} and {ENV_KEY}") == "*** and ***"
    assert redaction.redact(API_KEY, values=[]) == API_KEY  # `values` replaces the known ones


def test_server_text_loses_anything_shaped_like_a_key(clean_logging: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    sent = "sk-sent-Qm7Rt2Yp9Lk4Wx6Zb1Nc8Vd3"
    text = (f"key {sent} rejected; the proxy holds sk-other-1234abcd, key-5f3a9c and "
            f"Bearer tok.en-99; see sk-")
    assert redaction.redact_server_text(text, [sent]) == (
        "key *** rejected; the proxy holds sk-***, key-*** and Bearer ***; see sk-")


def test_setting_up_twice_adds_one_file_handler(clean_logging: Path) -> None:
    logs.setup_logging(verbose=True, to_file=True)
    logs.setup_logging(verbose=True, to_file=True)
    files = [h for h in logging.getLogger().handlers
             if isinstance(h, logging.FileHandler) and Path(h.baseFilename) == clean_logging]
    assert len(files) == 1
    assert all(logs.SECRET_FILTER in h.filters for h in logging.getLogger().handlers)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_turn_timer_logs_first_token_and_first_audio(caplog: pytest.LogCaptureFixture) -> None:
    clock, bus = FakeClock(), EventBus()
    timer = logs.TurnTimer(clock=clock)
    timer.attach(bus)
    caplog.set_level(logging.DEBUG, logger="agent.timing")
    bus.publish(UserSaid("hi", 3))
    bus.publish(StateChanged(AgentState.THINKING, 3))
    clock.now += 0.15
    bus.publish(ReplyDelta(3, "Hello"))
    timer.on_playback(PlaybackEvent(PlaybackKind.STARTED, 1, 0, at=clock.now + 1.27))
    timer.on_playback(PlaybackEvent(PlaybackKind.FINISHED, 1, 0, at=clock.now + 2.0))
    timer.on_playback(PlaybackEvent(PlaybackKind.DRAINED, at=clock.now + 2.0))
    clock.now += 2.5
    bus.publish(StateChanged(AgentState.IDLE, 3))
    assert caplog.messages == ["turn 3: first token 0.15 s, first audio 1.42 s, done 2.65 s"]


def test_turn_timer_logs_interrupt_to_silence(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    timer = logs.TurnTimer(clock=clock)
    caplog.set_level(logging.DEBUG, logger="agent.timing")
    timer.on_agent_event(UserSaid("tell me a story", 4))
    clock.now += 0.1
    timer.on_agent_event(ReplyDelta(4, "Once"))
    timer.on_playback(PlaybackEvent(PlaybackKind.STARTED, 2, 0, at=clock.now + 0.8))
    clock.now += 2.0
    timer.mark_interrupt()
    clock.now += 0.001
    timer.on_agent_event(StateChanged(AgentState.INTERRUPTED, 4))
    timer.on_agent_event(StateChanged(AgentState.IDLE, 4))
    assert caplog.messages == []  # the line waits for the end of the fade
    timer.on_playback(PlaybackEvent(PlaybackKind.CUT, 2, 0, at=clock.now + 0.029))
    assert caplog.messages == [
        "turn 4: first token 0.10 s, first audio 0.90 s, interrupt -> silence 0.03 s"]


def test_turn_timer_on_a_real_conversation(tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    from agent.audio.sinks import MemorySink
    from agent.config import ConversationConfig
    from agent.conversation import Conversation
    from agent.history import History
    from agent.speech import SpeechPipeline
    from harness.fakes import ScriptedBackend, ToneSynth

    caplog.set_level(logging.DEBUG, logger="agent.timing")
    speech = SpeechPipeline(ToneSynth(), MemorySink(), voice="v").start()
    conversation = Conversation(ScriptedBackend([["Hello there, ", "nice to meet you."],
                                                 ["Fine."]]),
                                speech, History(tmp_path / "history.jsonl"),
                                ConversationConfig(), "Be brief.")
    logs.TurnTimer().attach(conversation.bus, speech)
    with conversation:
        conversation.submit("Hi!")
        conversation.submit("How are you?")
        assert conversation.wait_idle(10)
    speech.close()
    assert [m.split(":")[0] for m in caplog.messages] == ["turn 1", "turn 2"]
    assert all(re.fullmatch(r"turn \d: first token \d\.\d\d s, first audio \d\.\d\d s, "
                            r"done \d\.\d\d s", m) for m in caplog.messages), caplog.messages


# -- the first run ---------------------------------------------------------------------------------


@pytest.fixture
def agent_dirs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("CONFIG", "DATA", "LOG"):
        monkeypatch.setenv(f"VOICE_AGENT_{name}_DIR", str(tmp_path / name.lower()))
    return tmp_path


def test_first_run_prepares_the_model_and_welcomes(agent_dirs: Path) -> None:
    assert first_run.first_run_needed()
    cfg = config_module.load()
    cfg.hotkeys.talk = "ctrl+shift+t"
    progress: list[tuple[str, int, int]] = []
    text = first_run.run_first_time(cfg, lambda *report: progress.append(report),
                                    hotkeys=HotkeyChoice(PynputHotkeys(), ()))
    assert "Talk: Ctrl+Shift+T" in text and "Interrupt: Ctrl+Alt+X" in text
    assert "using pynput" in text
    assert str(agent_dirs / "config" / "config.toml") in text
    assert str(agent_dirs / "log" / "voice-agent.log") in text
    assert "voice-agent doctor" in text
    assert not first_run.first_run_needed()
    assert first_run.marker_path().parent == agent_dirs / "data"
    assert all(done <= total for _, done, total in progress)


def test_first_run_without_global_hotkeys_gives_the_shortcut_commands(agent_dirs: Path) -> None:
    choice = HotkeyChoice(NoHotkeys(), ("pynput needs an X display (DISPLAY is not set)",
                                        SHORTCUT_HINT))
    text = first_run.run_first_time(Config(), None, hotkeys=choice)
    command = first_run.agent_command()
    assert f"`{command} talk` on Ctrl+Alt+Space" in text
    assert f"`{command} interrupt` on Ctrl+Alt+X" in text
    assert "DISPLAY is not set" in text and "GNOME" in text


def test_a_missing_model_keeps_the_first_run_pending(agent_dirs: Path) -> None:
    cfg = Config()
    cfg.tts.model_path = str(agent_dirs / "missing.onnx")
    cfg.tts.voices_path = str(agent_dirs / "missing.npz")
    text = first_run.run_first_time(cfg, None, hotkeys=HotkeyChoice(NoHotkeys(), ()))
    assert "Speech is off" in text and "missing.onnx" in text
    assert first_run.first_run_needed()


class ModelsServer:
    """A stand-in OpenAI-compatible server: GET /v1/models lists `models`, or answers 401
    quoting the key's tail as OpenAI does when `reject` is set."""

    def __init__(self, models: list[str], reject: bool = False) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if reject:
                    status, body = 401, {"error": {"message": "Incorrect API key provided: "
                                                   f"sk-tes{'*' * 24}{API_KEY[-4:]}."}}
                else:
                    status, body = 200, {"data": [{"id": m} for m in models]}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self) -> ModelsServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def server_settings(url: str, model: str) -> Config:
    cfg = Config()
    cfg.llm.backend, cfg.llm.base_url, cfg.llm.model, cfg.llm.api_key = (
        "openai", url, model, API_KEY)
    return cfg


def test_the_server_check_looks_for_the_model() -> None:
    with ModelsServer(["llama3.2", "qwen3"]) as server:
        listed = llm_doctor.check_server(server_settings(server.url, "qwen3").llm)
        unlisted = llm_doctor.check_server(server_settings(server.url, "gpt-test").llm)
    assert listed.status is Status.OK and "model qwen3 is listed" in listed.line()
    assert "with an API key" in listed.line()
    assert unlisted.status is Status.WARN
    assert "gpt-test is not listed (it lists llama3.2, qwen3)" in unlisted.line()


def test_a_rejected_key_is_reported_without_the_key() -> None:
    with ModelsServer([], reject=True) as server:
        check = llm_doctor.check_server(server_settings(server.url, "gpt-test").llm)
    assert check.status is Status.FAIL
    assert "HTTP 401" in check.line() and "API key was rejected" in check.line()
    assert API_KEY[-4:] not in check.line()
