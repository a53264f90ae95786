"""Start at login: an XDG autostart entry (or a systemd user unit) on Linux, a LaunchAgent on
macOS, a Run key value on Windows. Each starts this same Python with `-m agent`, so a venv or
pipx install works as is.

The files are rendered from the templates in packaging/ (one source for each): in a checkout
they sit beside the package, an installed wheel carries a copy under
<prefix>/share/voice-agent/packaging. The `voice-agent autostart on|off|status` command is
added to the CLI by `add_autostart_parser`. Nothing here needs a display.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import plistlib
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

LABEL = "dev.voice-agent"
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
UNIT = "voice-agent.service"
DESKTOP_FILE = "voice-agent.desktop"
COMMAND_PLACEHOLDER = "@COMMAND@"
WANTED_BY = "graphical-session.target"

Method = Literal["xdg", "systemd"]
METHODS: tuple[Method, ...] = ("xdg", "systemd")

SOURCE_TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "packaging"
# A file only this project ships: a stray "packaging" folder elsewhere is not mistaken for ours.
TEMPLATE_MARKER = Path("linux") / UNIT


def launch_command() -> list[str]:
    """How the login session starts the agent: this interpreter (pythonw on Windows, so no
    console window opens) with `-m agent`; a frozen (PyInstaller) build is its own program."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    python = Path(sys.executable)
    if sys.platform == "win32" and python.with_name("pythonw.exe").exists():
        python = python.with_name("pythonw.exe")
    return [str(python), "-m", "agent"]


def installed_templates_dir() -> Path:
    return Path(sys.prefix) / "share" / "voice-agent" / "packaging"


def templates_dir() -> Path:
    """packaging/ in a checkout, else the copy an install carries (a PyInstaller bundle puts
    it in the same place: there sys.prefix is the bundle's folder)."""
    candidates = [SOURCE_TEMPLATES_DIR, installed_templates_dir()]
    for candidate in candidates:
        if (candidate / TEMPLATE_MARKER).is_file():
            return candidate
    raise FileNotFoundError(
        f"voice-agent's start-at-login templates are missing: looked for {TEMPLATE_MARKER} in "
        + ", ".join(str(candidate) for candidate in candidates)
        + ". Reinstall the package, or run it from a checkout.")


def template(name: str) -> str:
    """A template's text, e.g. template("linux/voice-agent.service")."""
    return (templates_dir() / name).read_text(encoding="utf-8")


# The Exec key of a desktop entry: an argument holding a reserved character goes in double
# quotes, with ", `, $ and \ escaped; % is doubled; then the string escape doubles each \.
_DESKTOP_RESERVED = re.compile(r"""[\s"'\\><~|&;$*?#()`%=]""")


def desktop_exec(command: list[str]) -> str:
    """`command` as the Exec value of a desktop entry (freedesktop Desktop Entry spec)."""
    parts = []
    for arg in command:
        if arg and not _DESKTOP_RESERVED.search(arg):
            parts.append(arg)
            continue
        quoted = re.sub(r'(["`$\\])', r"\\\1", arg).replace("%", "%%")
        parts.append(f'"{quoted}"')
    value = " ".join(parts).replace("\\", "\\\\")
    return value.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


_SYSTEMD_PLAIN = re.compile(r"[\w/.,+=:@-]+")
# systemd refuses an executable whose name holds these, however it is quoted.
_SYSTEMD_UNSAFE_PROGRAM = re.compile(r"""['"\\\x00-\x1f\x7f]""")


def systemd_exec(command: list[str]) -> str:
    """`command` for ExecStart=: an argument that is not plain goes in double quotes with C
    escapes; `%` (unit specifiers) is doubled, and `$` (environment variables) too except in
    the program's own name, where systemd takes it literally. Raises ValueError for a program
    path systemd cannot run (one holding a quote, a backslash or a control character)."""
    program, *arguments = command
    if _SYSTEMD_UNSAFE_PROGRAM.search(program):
        raise ValueError(f"systemd cannot start a program whose path holds quotes, backslashes "
                         f"or control characters: {program!r}; use --method xdg instead")
    parts = [program.replace("%", "%%")]
    if not _SYSTEMD_PLAIN.fullmatch(program):
        parts = [f'"{parts[0]}"']
    for arg in arguments:
        if _SYSTEMD_PLAIN.fullmatch(arg):
            parts.append(arg)
            continue
        escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        parts.append('"' + escaped.replace("%", "%%").replace("$", "$$") + '"')
    return " ".join(parts)


def windows_command(command: list[str]) -> str:
    """`command` as one Windows command line (the Run key value)."""
    return subprocess.list2cmdline(command)


def app_icon() -> str:
    """The desktop entry's Icon: the app icon's absolute path, else its name."""
    try:
        from agent.desktop.icons import APP_ICON_NAME, icons_dir  # Pillow, no display

        icon = icons_dir() / f"{APP_ICON_NAME}.png"
    except (ImportError, FileNotFoundError):
        return "voice-agent"
    return str(icon) if icon.is_file() else "voice-agent"


def render_desktop_entry(command: list[str] | None = None) -> str:
    text = template(f"linux/{DESKTOP_FILE}")
    # Icon first: the rendered Exec may itself hold "@ICON@" (a path is anything).
    text = text.replace("@ICON@", app_icon())
    return text.replace("@EXEC@", desktop_exec(command or launch_command()))


def render_systemd_unit(command: list[str] | None = None) -> str:
    placeholder = f"\nExecStart={COMMAND_PLACEHOLDER}"
    return template(f"linux/{UNIT}").replace(
        placeholder, f"\nExecStart={systemd_exec(command or launch_command())}")


def render_launch_agent(command: list[str] | None = None) -> bytes:
    plist = plistlib.loads(template(f"macos/{LABEL}.plist").encode())
    command = command or launch_command()
    arguments: list[str] = []
    for item in plist["ProgramArguments"]:
        arguments.extend(command if item == COMMAND_PLACEHOLDER else [item])
    plist["ProgramArguments"] = arguments
    return plistlib.dumps(plist)


def _config_home(home: Path) -> Path:
    configured = os.environ.get("XDG_CONFIG_HOME")
    # The XDG spec: a relative XDG_CONFIG_HOME is invalid and ignored.
    return Path(configured) if configured and os.path.isabs(configured) else home / ".config"


@dataclass(frozen=True)
class Systemctl:
    """What `systemctl --user` can do here: absent, present without a user manager (a
    container, a session without systemd), or present with one."""

    path: str | None
    manager: bool

    @classmethod
    def probe(cls) -> Systemctl:
        path = shutil.which("systemctl")
        if path is None:
            return cls(None, False)
        result = _run([path, "--user", "is-system-running"])
        state = result.stdout.strip() if result is not None else ""
        # "degraded" exits 1 but the manager is there; "offline": no manager to talk to.
        return cls(path, state not in ("", "offline", "unknown"))

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str] | None:
        return _run([self.path, "--user", *args]) if self.path else None


def _run(argv: list[str]) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None


def _why(result: subprocess.CompletedProcess[str] | None) -> str:
    if result is None:
        return "it did not run"
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {result.returncode}"


@dataclass(frozen=True)
class Autostart:
    """Start at login for this user. `method` picks the Linux mechanism; None (the tray's
    choice) keeps whichever is installed, else uses the XDG autostart entry."""

    platform: str = sys.platform
    home: Path = field(default_factory=Path.home)
    method: Method | None = None

    @property
    def linux(self) -> bool:
        return self.platform not in ("darwin", "win32")

    def path(self, method: Method) -> Path:
        """Where `method` keeps its file on Linux."""
        if method == "systemd":
            return _config_home(self.home) / "systemd" / "user" / UNIT
        return _config_home(self.home) / "autostart" / DESKTOP_FILE

    @property
    def wants_link(self) -> Path:
        """The link `systemctl --user enable` makes."""
        return self.path("systemd").parent / f"{WANTED_BY}.wants" / UNIT

    @property
    def entry(self) -> Path:
        """The file that makes it start (not used on Windows, which keeps a registry value)."""
        if self.platform == "darwin":
            return self.home / "Library" / "LaunchAgents" / f"{LABEL}.plist"
        return self.path(self._chosen_method())

    def installed(self) -> list[Method]:
        """The Linux methods whose file is there."""
        return [method for method in METHODS if self.linux and self.path(method).exists()]

    def _chosen_method(self) -> Method:
        if self.method is not None:
            return self.method
        installed = self.installed()
        return installed[0] if installed else "xdg"

    def is_enabled(self) -> bool:
        if self.platform == "win32":
            return self._windows_value() is not None
        if self.platform == "darwin":
            return self.entry.exists()
        # A systemd unit counts once enabled (linked into the session target), as it starts
        # only then; an XDG entry once written.
        return self.path("xdg").exists() or (self.path("systemd").exists()
                                             and self.wants_link.is_symlink())

    def set(self, enabled: bool) -> str:
        """Turn it on or off; returns a sentence saying what was done. On Linux, on with one
        method removes the other (two would start it twice); off removes both."""
        if self.platform == "win32":
            self._windows_set(enabled)
            return f"start at login {'on' if enabled else 'off'} (HKEY_CURRENT_USER\\{RUN_KEY})"
        if self.platform == "darwin":
            if enabled:
                self._write(self.entry, render_launch_agent())
            else:
                self.entry.unlink(missing_ok=True)
            return f"start at login {'on' if enabled else 'off'} ({self.entry})"
        return self._set_linux(enabled)

    def _set_linux(self, enabled: bool) -> str:
        method = self._chosen_method()
        notes = []
        for other in METHODS:
            if (not enabled or other != method) and self._present(other):
                notes.append(self._remove(other))
                if enabled:  # switching: say so
                    notes.append(f"Removed the {other} entry ({self.path(other)}).")
        if enabled and method == "xdg":
            self._write(self.path("xdg"), render_desktop_entry().encode())
        elif enabled:
            notes.append(self._enable_systemd())
        where = self.path(method) if enabled else ", ".join(str(self.path(m)) for m in METHODS)
        said = "".join(f" {note}" for note in notes if note)
        return f"start at login {'on' if enabled else 'off'} ({where}){said}"

    def _present(self, method: Method) -> bool:
        return self.path(method).exists() or (method == "systemd" and self.wants_link.is_symlink())

    def status(self) -> list[str]:
        """What is installed where, a line each (and a note when an entry was written for
        another install, or a unit is written but not enabled)."""
        if self.platform == "win32":
            value = self._windows_value()
            lines = [f"Run key value:       {'on ' if value else 'off'}  "
                     f"HKEY_CURRENT_USER\\{RUN_KEY}\\voice-agent"]
            if value and value != windows_command(launch_command()):
                lines.append(f"  it runs {value}, not this install: `voice-agent autostart on` "
                             "rewrites it")
            return lines
        if self.platform == "darwin":
            return self._file_status("LaunchAgent", self.entry, render_launch_agent())
        lines = self._file_status("XDG autostart entry", self.path("xdg"),
                                  render_desktop_entry().encode())
        unit = self.path("systemd")
        if not unit.exists():
            return [*lines, f"systemd user unit:   off  {unit}"]
        systemctl = Systemctl.probe()
        if systemctl.manager:
            result = systemctl("is-enabled", UNIT)
            state = (result.stdout.strip() if result is not None else "") or _why(result)
        else:
            state = "enabled" if self.wants_link.is_symlink() else "disabled"
        on = "on " if state == "enabled" else "off"
        lines += self._file_status("systemd user unit", unit, render_systemd_unit().encode(),
                                   on=on)
        asked = f"systemctl --user is-enabled: {state}" if systemctl.manager else (
            f"{'linked' if on == 'on ' else 'not linked'} in {self.wants_link.parent.name}; "
            "no user manager to ask")
        if on == "on ":
            lines.append(f"  enabled ({asked})")
        else:
            lines.append(f"  written but not enabled ({asked}): "
                         f"systemctl --user daemon-reload && systemctl --user enable {UNIT}")
        return lines

    @staticmethod
    def _file_status(what: str, path: Path, current: bytes, on: str = "on ") -> list[str]:
        if not path.exists():
            return [f"{what + ':':<20} off  {path}"]
        lines = [f"{what + ':':<20} {on}  {path}"]
        if path.read_bytes() != current:
            lines.append("  written by another install or version: `voice-agent autostart on` "
                         "rewrites it")
        return lines

    @staticmethod
    def _write(path: Path, contents: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_bytes(contents)
        partial.replace(path)

    def _remove(self, method: Method) -> str:
        """Remove `method`'s file; returns a note, or "" when there is nothing to say."""
        path = self.path(method)
        if method == "xdg":
            path.unlink(missing_ok=True)
            return ""
        systemctl = Systemctl.probe()
        note = ""
        if systemctl.manager:
            result = systemctl("disable", UNIT)
            if result is None or result.returncode != 0:
                note = f"(systemctl --user disable: {_why(result)})"
        self.wants_link.unlink(missing_ok=True)  # what disable removes, also without systemctl
        path.unlink(missing_ok=True)
        if systemctl.manager:
            systemctl("daemon-reload")
        return note

    def _enable_systemd(self) -> str:
        """Write the unit and enable it; returns what happened and, if it could not be
        enabled, how to do it."""
        self._write(self.path("systemd"), render_systemd_unit().encode())
        how = (f"Enable it in your desktop session with: systemctl --user daemon-reload && "
               f"systemctl --user enable {UNIT}")
        systemctl = Systemctl.probe()
        if systemctl.path is None:
            return f"No systemctl here, so it is not enabled. {how}"
        if not systemctl.manager:
            return f"No systemd user manager runs here, so it is not enabled yet. {how}"
        systemctl("daemon-reload")
        result = systemctl("enable", UNIT)
        if result is None or result.returncode != 0:
            return f"systemctl --user enable failed ({_why(result)}). {how}"
        return (f"Enabled: it starts with your next graphical session (now: systemctl --user "
                f"start {UNIT}; its log: journalctl --user -u {UNIT}).")

    def _windows_value(self) -> str | None:
        return _read_run_value()

    def _windows_set(self, enabled: bool) -> None:
        _write_run_value(windows_command(launch_command()) if enabled else None)


def add_autostart_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `autostart on|off|status [--method xdg|systemd]` to the CLI's subcommands."""
    parser = sub.add_parser(
        "autostart", help="start the tray agent at login: on, off or status",
        description="Start the tray agent at login. Linux: an XDG autostart entry (default) "
                    "or a systemd user unit tied to the graphical session; macOS: a "
                    "LaunchAgent; Windows: a Run key value. `off` removes every entry.")
    parser.add_argument("action", nargs="?", choices=["on", "off", "status"], default="status")
    parser.add_argument("--method", choices=METHODS,
                        help="Linux only: xdg (~/.config/autostart, the default) or systemd "
                             "(~/.config/systemd/user, enabled with systemctl --user)")
    parser.set_defaults(func=cmd_autostart)


def cmd_autostart(args: argparse.Namespace) -> int:
    method: Method | None = args.method
    autostart = Autostart(platform=sys.platform, method=method)
    if method is not None and not autostart.linux:
        print(f"--method {method} is for Linux; here start at login is "
              f"{'a LaunchAgent' if autostart.platform == 'darwin' else 'a Run key value'}.",
              file=sys.stderr)
        return 2
    try:
        if args.action == "status":
            print("\n".join(autostart.status()))
            print(f"starts: {' '.join(launch_command())}")
        else:
            print(autostart.set(args.action == "on"))
    except (OSError, ValueError) as error:
        print(f"voice-agent autostart {args.action}: {error}", file=sys.stderr)
        return 1
    return 0


if sys.platform == "win32":
    import winreg

    def _read_run_value() -> str | None:
        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:
                value, _kind = winreg.QueryValueEx(key, "voice-agent")
                return str(value)
        except OSError:
            return None

    def _write_run_value(command: str | None) -> None:
        with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY, 0, winreg.KEY_SET_VALUE) as key:
            if command is not None:
                winreg.SetValueEx(key, "voice-agent", 0, winreg.REG_SZ, command)
            else:
                with contextlib.suppress(FileNotFoundError):
                    winreg.DeleteValue(key, "voice-agent")
else:
    def _read_run_value() -> str | None:
        return None

    def _write_run_value(command: str | None) -> None:
        raise OSError("the Windows registry exists only on Windows")
