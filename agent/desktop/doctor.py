"""The desktop shell's `doctor` probes: the global hotkeys, then the display with the tray and
the overlay.

Doctor runs headless (over ssh, in CI): nothing from the desktop shell is imported at module
level (the hotkey syntax is core, agent.hotkey_syntax), the hotkey backends only when the
check runs, and pystray and Tk only in a child process.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING

from agent.checks import Area, Check, Progress, fail, ok, warn
from agent.hotkey_syntax import SHORTCUT_HINT, parse_hotkey

if TYPE_CHECKING:
    from agent.config import Config

DISPLAY_PROBE_TIMEOUT_S = 20.0
RUN_WITH_LOG_FIX = "run `voice-agent -v run` and read the log"


def check_hotkeys(cfg: Config, progress: Progress | None = None) -> list[Check]:
    """One line: the hotkeys as configured, and the backend that would listen for them (or
    what to bind in the desktop's own shortcut settings when none can)."""
    talk, interrupt = cfg.hotkeys.talk, cfg.hotkeys.interrupt
    try:
        parsed_talk = parse_hotkey(talk, "hotkeys.talk")
        parsed_interrupt = parse_hotkey(interrupt, "hotkeys.interrupt")
    except ValueError as error:
        return [warn("hotkeys", str(error), "correct it in the config file", Area.DESKTOP)]
    if parsed_talk.keyboard_spelling == parsed_interrupt.keyboard_spelling:
        return [warn("hotkeys", f"hotkeys.talk and hotkeys.interrupt are both {talk!r}",
                     "give them different keys", Area.DESKTOP)]
    from agent.desktop.hotkeys import choose_backend, describe

    choice = choose_backend(cfg.hotkeys.backend)
    if choice.backend.name != "none":
        return [ok("hotkeys", f"{_without_prefix(describe(choice))}; talk {talk}, interrupt "
                   f"{interrupt}", Area.DESKTOP)]
    # The fix says what to bind: the reasons need not say it again.
    reasons = tuple(r.removesuffix(f": {SHORTCUT_HINT}") for r in choice.reasons
                    if r != SHORTCUT_HINT)
    detail = _without_prefix(describe(dataclasses.replace(choice, reasons=reasons)))
    return [warn("hotkeys", f"{detail} (no global hotkeys)",
                 f"bind `voice-agent talk` ({talk}) and `voice-agent interrupt` ({interrupt}) "
                 "in the desktop's keyboard shortcut settings (see the README)", Area.DESKTOP)]


def _without_prefix(line: str) -> str:
    return line.removeprefix("hotkeys: ")


# Run in a child process: importing pystray without a usable display raises (or, with a
# broken one, can hang), and Tk must not open a window in the doctor itself.
_DISPLAY_PROBE = """
import json
found = {}
try:
    import pystray
    found["tray"] = pystray.Icon.__module__.rpartition("._")[2]
except Exception as error:
    found["tray_error"] = f"{type(error).__name__}: {error}"
try:
    import tkinter
    root = tkinter.Tk()
    root.withdraw()
    found["tk"] = str(root.tk.call("info", "patchlevel"))
    root.destroy()
except Exception as error:
    found["tk_error"] = f"{type(error).__name__}: {error}"
print(json.dumps(found))
"""


def display_name() -> str:
    """The display this session has, in words ("" for none)."""
    x11, wayland = os.environ.get("DISPLAY", ""), os.environ.get("WAYLAND_DISPLAY", "")
    if wayland:
        return f"Wayland {wayland}" + (f" (XWayland {x11})" if x11 else " (no XWayland)")
    return f"X11 {x11}" if x11 else ""


def check_desktop(cfg: Config, progress: Progress | None = None) -> list[Check]:
    """The display, then which pystray backend loads (the tray) and whether Tk opens (the
    overlay)."""
    needs_display = sys.platform.startswith("linux")
    shown = display_name()
    if needs_display and not shown:
        return [warn("display", "none (DISPLAY and WAYLAND_DISPLAY are not set): the tray "
                     "and the overlay cannot start here",
                     "`voice-agent chat` talks in the terminal; run `voice-agent` in a "
                     "desktop session for the tray", Area.DESKTOP)]
    shown = shown or sys.platform
    unusable = ("run `voice-agent` inside the desktop session (with its DISPLAY and "
                "XAUTHORITY); `voice-agent chat` talks in a terminal meanwhile")
    try:
        done = subprocess.run([sys.executable, "-c", _DISPLAY_PROBE], capture_output=True,
                              text=True, timeout=DISPLAY_PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return [fail("display", f"{shown}: loading pystray and Tk took over "
                     f"{DISPLAY_PROBE_TIMEOUT_S:.0f} s", unusable, Area.DESKTOP)]
    except OSError as error:
        return [fail("display", f"{shown}: the check did not start ({error})",
                     RUN_WITH_LOG_FIX, Area.DESKTOP)]
    try:
        found: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):  # the probe itself crashed (a native library abort)
        return [fail("display", f"{shown}: the check crashed ({done.stderr.strip()[-300:]})",
                     RUN_WITH_LOG_FIX, Area.DESKTOP)]
    errors = f"{found.get('tray_error', '')} {found.get('tk_error', '')}".lower()
    if "tray" not in found and "tk" not in found and "connect to display" in errors:
        return [fail("display", f"{shown} does not answer ({found.get('tk_error')})",
                     unusable, Area.DESKTOP)]
    checks = [ok("display", shown, Area.DESKTOP)]
    if "tray" in found:
        backend = found["tray"]
        desktop = os.environ.get("XDG_CURRENT_DESKTOP", "")
        if "GNOME" in desktop.upper():
            checks.append(warn("tray", f"pystray {backend} backend; GNOME Shell shows tray "
                               "icons only with the AppIndicator extension",
                               "install and enable gnome-shell-extension-appindicator",
                               Area.DESKTOP))
        else:
            checks.append(ok("tray", f"pystray {backend} backend", Area.DESKTOP))
    else:
        checks.append(fail("tray", f"pystray does not load: {found.get('tray_error')}",
                           "pip install --force-reinstall pystray; for the GTK backend "
                           "pip install 'voice-agent[gtk]'", Area.DESKTOP))
    if "tk" in found:
        checks.append(ok("overlay", f"Tk {found['tk']}", Area.DESKTOP))
    else:
        checks.append(fail("overlay", f"Tk does not open: {found.get('tk_error')}",
                           "sudo apt-get install python3-tk (or your Python's Tk)",
                           Area.DESKTOP))
    return checks
