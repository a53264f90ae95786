"""Start at login: an XDG autostart entry on Linux, a LaunchAgent on macOS, a Run key on
Windows. Each starts this same Python with `-m agent`, so a venv install works as is."""

from __future__ import annotations

import contextlib
import os
import plistlib
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

LABEL = "dev.voice-agent"
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"


def launch_command() -> list[str]:
    """How the login session starts the agent: this interpreter (pythonw on Windows, so no
    console window opens) with `-m agent`."""
    python = Path(sys.executable)
    if sys.platform == "win32" and python.with_name("pythonw.exe").exists():
        python = python.with_name("pythonw.exe")
    return [str(python), "-m", "agent"]


@dataclass(frozen=True)
class Autostart:
    platform: str = sys.platform
    home: Path = field(default_factory=Path.home)

    @property
    def entry(self) -> Path:
        """The file that makes it start (not used on Windows, which keeps a registry value)."""
        if self.platform == "darwin":
            return self.home / "Library" / "LaunchAgents" / f"{LABEL}.plist"
        config = os.environ.get("XDG_CONFIG_HOME") or str(self.home / ".config")
        return Path(config) / "autostart" / "voice-agent.desktop"

    def is_enabled(self) -> bool:
        if self.platform == "win32":
            return self._windows_value() is not None
        return self.entry.exists()

    def set(self, enabled: bool) -> str:
        """Turn it on or off; returns a sentence saying what was done."""
        if self.platform == "win32":
            self._windows_set(enabled)
            where = rf"HKEY_CURRENT_USER\{RUN_KEY}"
        elif enabled:
            self.entry.parent.mkdir(parents=True, exist_ok=True)
            self.entry.write_bytes(self._entry_contents())
            where = str(self.entry)
        else:
            self.entry.unlink(missing_ok=True)
            where = str(self.entry)
        return f"start at login {'on' if enabled else 'off'} ({where})"

    def _entry_contents(self) -> bytes:
        command = launch_command()
        if self.platform == "darwin":
            return plistlib.dumps({"Label": LABEL, "ProgramArguments": command,
                                   "RunAtLoad": True, "ProcessType": "Interactive"})
        return ("[Desktop Entry]\n"
                "Type=Application\n"
                "Name=voice-agent\n"
                "Comment=Always-on voice assistant in the tray\n"
                f"Exec={shlex.join(command)}\n"
                "Terminal=false\n"
                "X-GNOME-Autostart-enabled=true\n").encode()

    def _windows_value(self) -> str | None:
        return _read_run_value()

    def _windows_set(self, enabled: bool) -> None:
        command = " ".join(f'"{part}"' if " " in part else part for part in launch_command())
        _write_run_value(command if enabled else None)


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
