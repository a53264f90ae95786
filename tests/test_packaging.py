"""Start at login as installed files: the templates in packaging/ rendered for this interpreter,
checked by the real validators (systemd-analyze, desktop-file-validate), and the
`voice-agent autostart on|off|status` command with systemctl absent, failing or working."""

from __future__ import annotations

import argparse
import os
import plistlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.desktop import autostart
from agent.desktop.autostart import Autostart, add_autostart_parser

REPO = Path(__file__).resolve().parent.parent
PACKAGING = REPO / "packaging"
APT_HINT = ("run scripts/test as root, or apt-get install --no-install-recommends "
            "systemd desktop-file-utils")


# Looked up once: some tests take systemctl off PATH.
TOOLS = {name: shutil.which(name) for name in ("systemd-analyze", "desktop-file-validate")}


def tool(name: str) -> str:
    path = TOOLS[name]
    if path is None:
        pytest.fail(f"{name} is missing: {APT_HINT}")
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's home with its own config dir, so nothing lands in the real one."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    return home


def systemd_verify(unit: Path, home: Path, *, debug: bool = False,
                   ) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze --user verify`: it needs no running user manager, only a private
    runtime dir to set up its own (as root in a container too)."""
    runtime = home / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_RUNTIME_DIR=str(runtime), SYSTEMD_LOG_LEVEL="debug" if debug else "info")
    return subprocess.run([tool("systemd-analyze"), "--user", "verify", str(unit)],
                          capture_output=True, text=True, env=env, timeout=60)


def assert_unit_is_valid(unit: Path, home: Path) -> list[str]:
    """The unit verifies without a word; returns the command line systemd parsed (from the
    unit dump its debug log holds), as argv."""
    result = systemd_verify(unit, home)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), \
        result.stdout + result.stderr
    dump = systemd_verify(unit, home, debug=True)
    output = dump.stdout + dump.stderr
    parsed = re.search(r"-> ExecStart:\s*\n\s*Command Line: (.*)", output)
    assert parsed, f"no ExecStart in systemd-analyze's dump:\n{output[-3000:]}"
    return split_quoted(parsed.group(1))


def assert_desktop_entry_is_valid(path: Path) -> None:
    result = subprocess.run([tool("desktop-file-validate"), str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), \
        result.stdout + result.stderr


def desktop_key(path: Path, key: str) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith(f"{key}="):
            return line.partition("=")[2]
    raise AssertionError(f"no {key}= in {path}")


def desktop_argv(exec_value: str) -> list[str]:
    """The Exec value as a launcher reads it (Desktop Entry spec): the string escapes first,
    then %% -> %, then double-quoted arguments with backslash escapes (POSIX shell rules)."""
    unescaped = re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r", "s": " "}
                       .get(m.group(1), m.group(1)), exec_value)
    return split_quoted(unescaped.replace("%%", "%"))


def split_quoted(line: str) -> list[str]:
    """Split the way both the Desktop Entry spec and systemd's unit dump quote: words apart at
    blanks, double quotes group, a backslash takes the next character literally."""
    words: list[str] = []
    word: list[str] | None = None
    quoted = escaped = False
    for char in line:
        if escaped:
            word = [*(word or []), char]
            escaped = False
        elif char == "\\":
            escaped, word = True, word or []
        elif char == '"':
            quoted, word = not quoted, word or []
        elif char in " \t" and not quoted:
            if word is not None:
                words.append("".join(word))
            word = None
        else:
            word = [*(word or []), char]
    assert not quoted and not escaped, f"unbalanced quoting: {line}"
    return [*words, "".join(word)] if word is not None else words


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """`voice-agent autostart ...` through the parser function the CLI adds: its exit status
    and what it printed."""
    parser = argparse.ArgumentParser(prog="voice-agent")
    add_autostart_parser(parser.add_subparsers(dest="command"))
    parsed = parser.parse_args(["autostart", *args])
    status: int = parsed.func(parsed)
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def fake_systemctl(bin_dir: Path, *, manager: bool, enable_fails: bool = False) -> Path:
    """A systemctl that logs its calls: with or without a user manager, its enable failing or
    making the link the real one makes."""
    bin_dir.mkdir(exist_ok=True)
    log = bin_dir / "systemctl.log"
    wants = '"$XDG_CONFIG_HOME/systemd/user/graphical-session.target.wants"'
    script = bin_dir / "systemctl"
    script.write_text(f"""#!/bin/sh
echo "$*" >> '{log}'
case "$*" in
  "--user is-system-running")
    {'echo running; exit 0' if manager else
     'echo "Failed to connect to bus: No medium found" >&2; exit 1'} ;;
  "--user enable voice-agent.service")
    {'echo "Failed to enable unit: Access denied" >&2; exit 1' if enable_fails else
     f'mkdir -p {wants} && ln -sf ../voice-agent.service {wants}/; exit 0'} ;;
  "--user disable voice-agent.service") rm -f {wants}/voice-agent.service; exit 0 ;;
  "--user is-enabled voice-agent.service")
    if [ -L {wants}/voice-agent.service ]; then echo enabled; else echo disabled; exit 1; fi ;;
esac
exit 0
""")
    script.chmod(0o755)
    return log


# ---------------------------------------------------------------------------------------------
# The templates, one source for each file


def test_the_templates_carry_a_placeholder_for_the_command() -> None:
    unit = (PACKAGING / "linux/voice-agent.service").read_text()
    for line in ("Type=simple", "ExecStart=@COMMAND@ run", "Restart=on-failure",
                 "PartOf=graphical-session.target", "After=graphical-session.target",
                 "WantedBy=graphical-session.target"):
        assert f"\n{line}\n" in unit
    desktop = (PACKAGING / "linux/voice-agent.desktop").read_text()
    assert "\nExec=@EXEC@\n" in desktop and "\nIcon=@ICON@\n" in desktop
    plist = plistlib.loads((PACKAGING / "macos/dev.voice-agent.plist").read_bytes())
    assert plist["ProgramArguments"] == ["@COMMAND@"]
    assert autostart.templates_dir() == PACKAGING
    rendered = (autostart.render_systemd_unit() + autostart.render_desktop_entry()
                + autostart.render_launch_agent().decode())
    assert not re.search("@(COMMAND|EXEC|ICON)@", rendered)  # every placeholder filled
    assert unit.replace("@COMMAND@", f"{sys.executable} -m agent") \
        == autostart.render_systemd_unit()  # nothing else changed


def test_the_rendered_systemd_unit_passes_systemd_analyze_verify(home: Path) -> None:
    unit = home / ".config/systemd/user/voice-agent.service"
    unit.parent.mkdir(parents=True)
    unit.write_text(autostart.render_systemd_unit())
    assert desktop_key(unit, "ExecStart") == f"{sys.executable} -m agent run"
    assert assert_unit_is_valid(unit, home) == [sys.executable, "-m", "agent", "run"]


def test_systemd_analyze_catches_a_broken_unit(home: Path) -> None:
    """The check above can fail: a missing interpreter and a misspelt key are reported."""
    unit = home / "voice-agent.service"
    unit.write_text(autostart.render_systemd_unit(["/nonexistent/python", "-m", "agent"])
                    .replace("Restart=", "Restat="))
    result = systemd_verify(unit, home)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "/nonexistent/python is not executable" in output
    assert "Unknown key 'Restat'" in output


def test_an_odd_interpreter_path_survives_systemd_and_desktop_quoting(home: Path) -> None:
    """A venv under a folder named with a space, %, $, ; and quotes: both files still start
    exactly that interpreter, with the arguments intact."""
    folder = home / "my venv %h $HOME;x" / "bin"
    folder.mkdir(parents=True)
    python = folder / "python"
    python.symlink_to(sys.executable)
    odd_argument = "a$b %c \"d\" \\e 'f'"
    command = [str(python), "-m", "agent", odd_argument]

    unit = home / ".config/systemd/user/voice-agent.service"
    unit.parent.mkdir(parents=True)
    unit.write_text(autostart.render_systemd_unit(command))
    parsed = assert_unit_is_valid(unit, home)
    # systemd expands $VARS when it starts the program; the dump shows the $$ still doubled.
    assert [parsed[0], *(arg.replace("$$", "$") for arg in parsed[1:])] == [*command, "run"]

    entry = home / "voice-agent.desktop"
    entry.write_text(autostart.render_desktop_entry(command))
    assert_desktop_entry_is_valid(entry)
    assert desktop_argv(desktop_key(entry, "Exec")) == command


def test_systemd_refuses_a_program_path_with_quotes_so_we_say_so() -> None:
    with pytest.raises(ValueError, match="use --method xdg"):
        autostart.systemd_exec(["/home/o'brien/venv/bin/python", "-m", "agent"])


def test_the_rendered_desktop_entry_passes_desktop_file_validate(home: Path) -> None:
    entry = home / ".config/autostart/voice-agent.desktop"
    assert "on" in Autostart(platform="linux", home=home, method="xdg").set(True)
    assert_desktop_entry_is_valid(entry)
    assert desktop_argv(desktop_key(entry, "Exec")) == [sys.executable, "-m", "agent"]
    icon = Path(desktop_key(entry, "Icon"))
    assert icon.is_absolute() and icon.name == "voice-agent.png" and icon.is_file()


def test_desktop_file_validate_catches_a_broken_entry(home: Path) -> None:
    entry = home / "voice-agent.desktop"
    entry.write_text(autostart.render_desktop_entry().replace("Type=Application\n", "")
                     .replace("Exec=", "Exec=$HOME/"))
    result = subprocess.run([tool("desktop-file-validate"), str(entry)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0 and '"Type"' in result.stdout, result.stdout
    assert "reserved character" in result.stdout, result.stdout


def test_the_launch_agent_is_a_valid_plist_with_the_keys_launchd_needs(home: Path) -> None:
    agent = Autostart(platform="darwin", home=home)
    assert not agent.is_enabled()
    assert "on" in agent.set(True)
    raw = (home / "Library/LaunchAgents/dev.voice-agent.plist").read_bytes()
    plist = plistlib.loads(raw)
    assert plistlib.loads(plistlib.dumps(plist)) == plist  # round trip
    assert raw.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist')
    assert plist["Label"] == "dev.voice-agent"
    assert plist["ProgramArguments"] == [sys.executable, "-m", "agent"]
    assert plist["RunAtLoad"] is True and plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["LimitLoadToSessionType"] == "Aqua"
    assert agent.is_enabled()
    assert agent.status()[0].startswith("LaunchAgent:         on ")
    agent.set(False)
    assert not agent.is_enabled()


def test_the_windows_run_value_quotes_a_path_with_spaces() -> None:
    command = [r"C:\Users\Ann Lee\pipx\venvs\voice-agent\Scripts\pythonw.exe", "-m", "agent"]
    assert autostart.windows_command(command) == (
        r'"C:\Users\Ann Lee\pipx\venvs\voice-agent\Scripts\pythonw.exe" -m agent')


# ---------------------------------------------------------------------------------------------
# voice-agent autostart on|off|status


def test_autostart_xdg_on_status_off(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    entry = home / ".config/autostart/voice-agent.desktop"
    status, out = run_cli(capsys, "status")
    assert status == 0 and f"XDG autostart entry: off  {entry}" in out
    assert f"starts: {sys.executable} -m agent" in out

    status, out = run_cli(capsys, "on")
    assert status == 0 and f"start at login on ({entry})" in out
    assert_desktop_entry_is_valid(entry)
    assert Autostart(platform="linux").is_enabled()

    status, out = run_cli(capsys, "status")
    assert f"XDG autostart entry: on   {entry}" in out and "another install" not in out
    entry.write_text(entry.read_text().replace(sys.executable, "/old/venv/bin/python"))
    assert "written by another install" in run_cli(capsys, "status")[1]

    status, out = run_cli(capsys, "off")
    assert status == 0 and "start at login off" in out and not entry.exists()
    assert not Autostart(platform="linux").is_enabled()


def test_autostart_systemd_without_systemctl_writes_the_unit_and_says_how_to_enable(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    unit = home / ".config/systemd/user/voice-agent.service"
    status, out = run_cli(capsys, "on", "--method", "systemd")
    assert status == 0 and f"start at login on ({unit})" in out
    assert "No systemctl here" in out and "systemctl --user enable voice-agent.service" in out
    assert_unit_is_valid(unit, home)
    assert not Autostart(platform="linux").is_enabled()  # written, not enabled: not yet on
    status, out = run_cli(capsys, "status")
    assert f"systemd user unit:   off  {unit}" in out and "written but not enabled" in out

    status, out = run_cli(capsys, "off")
    assert status == 0 and not unit.exists()


def test_autostart_systemd_without_a_user_manager(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    log = fake_systemctl(tmp_path / "bin", manager=False)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    status, out = run_cli(capsys, "on", "--method", "systemd")
    assert status == 0 and "No systemd user manager runs here" in out
    assert "systemctl --user daemon-reload && systemctl --user enable voice-agent.service" in out
    assert (home / ".config/systemd/user/voice-agent.service").is_file()
    assert "enable" not in log.read_text()  # only asked whether a manager runs


def test_autostart_systemd_when_enable_fails(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake_systemctl(tmp_path / "bin", manager=True, enable_fails=True)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    status, out = run_cli(capsys, "on", "--method", "systemd")
    assert status == 0
    assert "systemctl --user enable failed (Failed to enable unit: Access denied)" in out
    assert "Enable it in your desktop session with" in out
    assert (home / ".config/systemd/user/voice-agent.service").is_file()


def test_autostart_systemd_enables_with_a_user_manager_and_replaces_the_xdg_entry(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    log = fake_systemctl(tmp_path / "bin", manager=True)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    entry = home / ".config/autostart/voice-agent.desktop"
    unit = home / ".config/systemd/user/voice-agent.service"
    run_cli(capsys, "on")
    assert entry.exists()

    status, out = run_cli(capsys, "on", "--method", "systemd")
    assert status == 0 and "Enabled: it starts with your next graphical session" in out
    assert f"Removed the xdg entry ({entry})" in out and not entry.exists()  # not both
    calls = log.read_text().splitlines()
    assert calls.index("--user daemon-reload") < calls.index("--user enable voice-agent.service")
    assert_unit_is_valid(unit, home)
    # The tray's plain Autostart() sees it, and keeps the method the user chose.
    tray = Autostart(platform="linux")
    assert tray.is_enabled() and tray.entry == unit
    status, out = run_cli(capsys, "status")
    assert f"systemd user unit:   on   {unit}" in out
    assert "enabled (systemctl --user is-enabled: enabled)" in out

    log.write_text("")
    assert "start at login off" in tray.set(False)
    assert "--user disable voice-agent.service" in log.read_text().splitlines()
    assert not unit.exists() and not tray.wants_link.is_symlink() and not tray.is_enabled()


def test_method_is_for_linux_only(monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    status, out = run_cli(capsys, "on", "--method", "systemd")
    assert status == 2 and "--method systemd is for Linux" in out


def test_the_module_needs_no_display() -> None:
    """The CLI imports it for every command: no GUI toolkit may come with it."""
    code = ("import sys, agent.desktop.autostart; "
            "bad = {'tkinter', 'pystray', 'gi', 'PIL', 'pynput'} & set(sys.modules); "
            "print(sorted(bad)); raise SystemExit(bool(bad))")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
