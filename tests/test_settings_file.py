"""Settings written back by the tray (keeping the user's file as it was) and start at login."""

from __future__ import annotations

import plistlib
import sys
import tomllib
from pathlib import Path

import pytest

from agent import config
from agent.desktop.autostart import Autostart


def test_a_menu_choice_replaces_one_line_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("# my settings\n[tts]\nvoice = \"af_bella\"  # the usual\nspeed = 1.0\n\n"
                    "[llm]\nbackend = \"openai\"\n", encoding="utf-8")
    path.chmod(0o600)
    config.save_setting(path, "tts", "voice", "jm_kumo")
    config.save_setting(path, "llm", "use_embedded", True)
    config.save_setting(path, "audio", "mute", True)
    text = path.read_text(encoding="utf-8")
    # The replaced line keeps its comment.
    assert text.startswith("# my settings\n[tts]\nvoice = \"jm_kumo\"  # the usual\n"
                           "speed = 1.0\n")
    assert "backend = \"openai\"\nuse_embedded = true\n" in text
    assert tomllib.loads(text) == {"tts": {"voice": "jm_kumo", "speed": 1.0},
                                   "llm": {"backend": "openai", "use_embedded": True},
                                   "audio": {"mute": True}}
    assert path.stat().st_mode & 0o777 == 0o600  # a private file stays private
    loaded = config.load(path)
    assert not loaded.problems
    assert (loaded.tts.voice, loaded.llm.use_embedded, loaded.audio.mute) == ("jm_kumo", True,
                                                                              True)


def test_saving_creates_the_file_when_there_is_none(tmp_path: Path) -> None:
    path = tmp_path / "new" / "config.toml"
    config.save_setting(path, "tts", "speed", 1.25)
    assert tomllib.loads(path.read_text()) == {"tts": {"speed": 1.25}}


def test_a_bad_choice_in_the_file_names_line_and_choices(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[hotkeys]\nbackend = \"xlib\"\n[overlay]\ncorner = \"middle\"\n")
    loaded = config.load(path)
    assert f"{path}:2: hotkeys.backend = 'xlib' is not one of auto, keyboard, pynput, none" \
        in loaded.problems[0]
    assert f"{path}:4: overlay.corner" in loaded.problems[1]
    assert (loaded.hotkeys.backend, loaded.overlay.corner) == ("auto", "bottom-right")


def test_start_at_login_on_linux_is_an_xdg_autostart_entry(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    autostart = Autostart(platform="linux", home=tmp_path)
    assert not autostart.is_enabled()
    assert "on" in autostart.set(True)
    entry = (tmp_path / "xdg" / "autostart" / "voice-agent.desktop").read_text()
    assert f"Exec={sys.executable} -m agent" in entry and "Type=Application" in entry
    assert autostart.is_enabled()
    autostart.set(False)
    assert not autostart.is_enabled()


def test_start_at_login_on_macos_is_a_launch_agent(tmp_path: Path) -> None:
    autostart = Autostart(platform="darwin", home=tmp_path)
    autostart.set(True)
    plist = plistlib.loads((tmp_path / "Library/LaunchAgents/dev.voice-agent.plist")
                           .read_bytes())
    assert plist["ProgramArguments"] == [sys.executable, "-m", "agent"]
    assert plist["RunAtLoad"] is True
