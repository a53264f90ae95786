"""`voice-agent` as a user runs it: separate processes, the real model, the real stream."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agent import entry, logs
from agent.audio.sinks import read_wav
from agent.cli.parser import build_parser
from agent.cli.running import cmd_control
from agent.cli.table import AGENT_COMMANDS, CommandLine
from agent.control import ControlReply, ControlRequest, ControlServer
from agent.text import split_for_speech
from harness.services import no_audio_env, read_tap, wait_for

SR = 24_000


def voice_agent(*args: str, env: dict[str, str] | None = None, input: str | None = None,
                timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True,
                          text=True, env=env or dict(os.environ), input=input,
                          timeout=timeout)



# --- the table of the running agent's commands, as the command line reads it ----------------


def test_the_parser_takes_its_agent_subcommands_from_the_table() -> None:
    parser = build_parser()
    usage = parser.format_help()
    for command in AGENT_COMMANDS:
        if command.command_line is CommandLine.NONE:
            with pytest.raises(SystemExit):  # "show" is for a second launch to send
                parser.parse_args([command.name])
            continue
        args = parser.parse_args([command.name, *(["some text"] if command.takes_text else [])])
        assert args.command == command.name
        if command.command_line is CommandLine.SEND:
            assert args.func is cmd_control
            assert command.help in " ".join(usage.split()), command.name
        else:  # it has the options of the work it does here when no agent runs
            assert args.func is not cmd_control
    sent = ", ".join(c.name for c in AGENT_COMMANDS if c.command_line is not CommandLine.NONE)
    assert sent in " ".join(usage.split())


class RecordingAgent:
    """A stand-in for the running agent behind a real control socket."""

    def __init__(self) -> None:
        self.requests: list[ControlRequest] = []

    def __call__(self, request: ControlRequest) -> ControlReply:
        self.requests.append(request)
        return ControlReply(True, f"{request.command}: sent to the running agent")


@pytest.fixture
def running_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingAgent]:
    monkeypatch.setenv("VOICE_AGENT_RUNTIME_DIR", str(tmp_path / "run"))
    agent = RecordingAgent()
    server = ControlServer(agent)
    server.start()
    try:
        yield agent
    finally:
        server.stop()


def test_each_agent_command_reaches_the_running_agent(
        running_agent: RecordingAgent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("VOICE_AGENT_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setattr(logs, "setup_logging", lambda *_args, **_options: None)  # the tests'
    full_command_line: list[list[str]] = []

    def spy(argv: list[str]) -> int:
        full_command_line.append(argv)
        from agent.cli.parser import main

        return main(argv)

    monkeypatch.setattr("agent.cli.main", spy)
    for command in AGENT_COMMANDS:
        if command.command_line is not CommandLine.NONE:
            argv = [command.name, *(["Hello", "there."] if command.takes_text else [])]
            assert entry.main(argv) == 0, capsys.readouterr().err
    expected = [ControlRequest(c.name, "Hello there." if c.takes_text else "")
                for c in AGENT_COMMANDS if c.command_line is not CommandLine.NONE]
    assert running_agent.requests == expected
    # Only what needs options (say's text) loaded the full command line.
    assert full_command_line == [["say", "Hello", "there."]]
    assert "talk: sent to the running agent" in capsys.readouterr().out


def test_the_quick_path_loads_nothing_heavy(tmp_path: Path) -> None:
    env = dict(os.environ, VOICE_AGENT_RUNTIME_DIR=str(tmp_path / "run"))
    probe = ("import sys; from agent.entry import main; status = main(['interrupt']); "
             "print(status, sorted(m for m in ('numpy', 'agent.cli.parser', 'agent.speech') "
             "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.stdout.split("\n")[0] == "1 []", result.stderr
    assert "voice-agent is not running" in result.stderr


def test_listen_without_an_agent_falls_back_to_the_full_command_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("VOICE_AGENT_RUNTIME_DIR", str(tmp_path / "run"))
    handed_on: list[list[str]] = []

    def full_main(argv: list[str]) -> int:
        handed_on.append(argv)
        return 7

    monkeypatch.setattr("agent.cli.main", full_main)
    assert entry.main(["listen"]) == 7
    assert handed_on == [["listen"]]
    assert capsys.readouterr().err == "", "the missing agent is no news: listen records here"
    assert entry.main(["talk"]) == 1 and handed_on == [["listen"]]
    assert "voice-agent is not running" in capsys.readouterr().err


@pytest.mark.slow
def test_say_writes_a_wav_without_any_audio_device(tmp_path: Path) -> None:
    out = tmp_path / "hello.wav"
    result = voice_agent("say", "--out", str(out), "Hello, this goes to a file.",
                         env=no_audio_env(tmp_path))
    assert result.returncode == 0, result.stderr
    samples, rate = read_wav(out)
    assert rate == SR and 0.8 * SR < samples.size < 5 * SR
    assert np.abs(samples).max() > 0.05


def likeness(heard: np.ndarray, reference: np.ndarray) -> float:
    """Peak normalised cross-correlation of `heard` with `reference` somewhere inside it."""
    a = (heard - heard.mean()) / (heard.std() + 1e-9)
    b = (reference - reference.mean()) / (reference.std() + 1e-9)
    return float(np.abs(np.correlate(a, b, mode="valid")).max() / b.size)


def test_a_fresh_users_say_speaks_with_af_bella_and_no_notice(  # type: ignore[no-untyped-def]
        tmp_path: Path, engine) -> None:
    """No settings file at all: the default voice is the original design's af_bella, and with
    the voices fetched (as scripts/setup does) there is nothing to apologise for."""
    env = no_audio_env(tmp_path)
    env["VOICE_AGENT_CONFIG_DIR"] = str(tmp_path / "fresh-config")
    out = tmp_path / "fresh.wav"
    text = "Good morning, how can I help?"
    result = voice_agent("say", "--out", str(out), text, env=env)
    assert result.returncode == 0, result.stderr
    assert "is not on this machine" not in result.stderr and "WARNING" not in result.stderr
    heard, _rate = read_wav(out)
    first_clause = split_for_speech(text)[0]  # synthesised alone, as `say` does
    bella, kumo = (likeness(heard, engine.synthesize(first_clause, v))
                   for v in ("af_bella", "jm_kumo"))
    assert bella > 0.8 and bella > kumo + 0.2, (bella, kumo)


@pytest.mark.slow
def test_say_reads_standard_input(tmp_path: Path) -> None:
    out = tmp_path / "stdin.wav"
    result = voice_agent("say", "--out", str(out), "-", input="Read from a pipe.\n",
                         env=no_audio_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert read_wav(out)[0].size > SR // 2


def test_say_without_a_device_says_what_to_do(tmp_path: Path) -> None:
    result = voice_agent("say", "Hello.", env=no_audio_env(tmp_path))
    assert result.returncode == 2
    assert "No audio output device was found" in result.stderr
    assert "--out" in result.stderr
    assert "Traceback" not in result.stderr


def test_devices_without_a_device_says_so(tmp_path: Path) -> None:
    result = voice_agent("devices", env=no_audio_env(tmp_path))
    assert result.returncode == 1
    assert "No audio output device was found" in result.stdout + result.stderr


@pytest.mark.audio
def test_devices_lists_the_sound_server(pulse: Path) -> None:
    result = voice_agent("devices")
    assert result.returncode == 0, result.stderr
    assert "default" in result.stdout and "out" in result.stdout


def voice_lines(stdout: str) -> dict[str, tuple[str, str]]:
    """`voice-agent voices` as voice -> (its language heading, its line)."""
    lines, heading = {}, ""
    for line in stdout.splitlines()[1:]:
        if line.startswith("  "):
            lines[line.split()[0]] = (heading, line)
        elif line and not line[0].isdigit() and not line.startswith("For the others"):
            heading = line
    return lines


def test_voices_lists_each_voice_by_language_with_gender_and_origin() -> None:
    result = voice_agent("voices")
    assert result.returncode == 0, result.stderr
    lines = voice_lines(result.stdout)
    assert len(lines) == 54
    heading, line = lines["af_bella"]
    assert heading == "American English" and "female" in line and "from npm" in line
    assert "<- [tts] voice" in line  # the default voice
    assert lines["bm_george"][0] == "British English" and "male" in lines["bm_george"][1]
    assert "from packaged" in lines["jm_kumo"][1]  # the wheel's pack comes first
    assert lines["zf_xiaobei"][0].startswith("Mandarin Chinese")
    assert "54 of 54 available now" in result.stdout


@pytest.mark.audio
def test_voices_sample_speaks_the_languages_line_in_that_voice(  # type: ignore[no-untyped-def]
        audio_tap: Path, engine) -> None:
    from agent.tts.voices import sample_line

    result = voice_agent("voices", "sample", "ef_dora")
    assert result.returncode == 0, result.stderr
    heard = read_tap(audio_tap)
    line = sample_line("ef_dora")
    assert line.startswith("¡Hola!")
    first_clause = split_for_speech(line)[0]
    dora, bella = (likeness(heard, engine.synthesize(first_clause, v))
                   for v in ("ef_dora", "af_bella"))
    assert dora > 0.8 and dora > bella + 0.2, (dora, bella)


def test_voices_without_the_npm_voices_says_how_to_get_them(tmp_path: Path) -> None:
    env = dict(os.environ, VOICE_AGENT_CACHE_DIR=str(tmp_path / "cache"))
    result = voice_agent("voices", env=env)
    assert result.returncode == 0, result.stderr
    lines = voice_lines(result.stdout)
    assert "from packaged" in lines["jm_kumo"][1] and "not here" in lines["af_bella"][1]
    assert "5 of 54 available now" in result.stdout
    assert "voice-agent voices fetch" in result.stdout
    assert "voice-agent models download" in result.stdout


@pytest.mark.slow
def test_dialogue_gives_each_speaker_a_voice(tmp_path: Path) -> None:
    script = tmp_path / "script.txt"
    script.write_text("# a comment\nAlice: Hello Bob.\n\nBob: Hello Alice, nice to meet you.\n")
    out = tmp_path / "dialogue.wav"
    result = voice_agent("-v", "dialogue", "--voice-for", "Alice=jf_alpha", "--voice-for",
                         "Bob=jm_kumo", "--out", str(out), str(script),
                         env=no_audio_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert read_wav(out)[0].size > SR


@pytest.mark.slow
def test_config_mistakes_are_reported_not_fatal(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[tts]\nvoice = "jm_kumo"\nsped = 1.2\nspeed = "fast"\n')
    out = tmp_path / "c.wav"
    result = voice_agent("--config", str(config), "say", "--out", str(out), "Still works.",
                         env=no_audio_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert f"{config}:3: unknown key tts.sped" in result.stderr
    assert f"{config}:4: tts.speed should be a float, got 'fast'" in result.stderr


@pytest.mark.slow
@pytest.mark.audio
def test_ctrl_c_fades_out_at_once_and_exits_130(audio_tap: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "agent", "say", "--voice", "jm_kumo",
         "This sentence is long, and it will be interrupted by Control C while it is being "
         "spoken. The rest must never be heard."],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: np.count_nonzero(read_tap(audio_tap)) > SR // 2, 120), \
            process.stderr.read() if process.poll() is not None else "no sound"
        interrupted = time.monotonic()
        process.send_signal(signal.SIGINT)
        assert process.wait(10) == 130
        exit_time = time.monotonic() - interrupted
    finally:
        process.kill()
    captured = read_tap(audio_tap)
    last_sound = int(np.flatnonzero(captured)[-1])
    sound_after_signal = captured[:last_sound + 1]
    # The voice stopped promptly: the tap ends in silence, well before the sentence's end.
    assert captured.size - last_sound > 0
    assert np.count_nonzero(sound_after_signal) < 8 * SR
    assert exit_time < 3.0
    # The last sounds before silence are a fade, not a jump from full level to zero.
    assert np.abs(captured[last_sound - 3:last_sound + 1]).max() < 0.1
