"""A headless desktop for tests: Xvfb, a D-Bus session bus with dunst (notifications), the
trayer tray host, and a FIFO evdev keyboard that the real `keyboard` library reads.

Starters: `start_xvfb`, `start_session_bus`, `start_tray_host`, `evdev_keyboard_fifo` (the
tests' session fixtures in tests/conftest.py wrap them; the benchmarks call them). Plain
helpers: `screenshot`, `shots_dir`, `xdotool`, `find_windows`, `window_geometry`, `click`,
`wait_until`.

Every process is started through `Processes` (logs in the LOGS folder, one file per program)
and stopped by its own pid at the end of the session. A missing program raises HarnessError
with the command that installs it (a test fails with it; nothing is skipped).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from harness.services import HarnessError, Processes, wait_for

__all__ = [
    "SCREEN_HEIGHT",
    "SCREEN_WIDTH",
    "EvdevKeyboard",
    "Geometry",
    "click",
    "evdev_keyboard_fifo",
    "find_windows",
    "require_tools",
    "screenshot",
    "shots_dir",
    "start_session_bus",
    "start_tray_host",
    "start_xvfb",
    "wait_until",
    "window_geometry",
    "xdotool",
]

REPO = Path(__file__).resolve().parents[1]
SCREEN_WIDTH, SCREEN_HEIGHT = 1024, 768
IMPORT = "/usr/bin/import"  # ImageMagick's; /usr/local/bin/convert here is a stand-in
INSTALL_HINT = "install it with scripts/setup --tests"


def require_tools(*names: str) -> None:
    """Fail (never skip) when a program the harness runs is missing."""
    missing = [n for n in names if (shutil.which(n) if "/" not in n else
                                    (n if os.access(n, os.X_OK) else None)) is None]
    if missing:
        raise HarnessError(f"the desktop tests need {', '.join(missing)}: {INSTALL_HINT}")


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, step: float = 0.02) -> bool:
    """Poll `predicate` until it is true (True) or `timeout` passes (False)."""
    return wait_for(predicate, timeout=timeout, step=step)


def _read_line(fd: int, what: str, log: Path, timeout: float = 15.0) -> str:
    """Read from a pipe up to the newline (writers may send the line in two writes)."""
    buf = b""
    end = time.monotonic() + timeout
    os.set_blocking(fd, False)
    while not buf.endswith(b"\n"):
        if time.monotonic() > end:
            raise RuntimeError(f"{what} did not report in {timeout:.0f} s; see {log}")
        try:
            chunk = os.read(fd, 256)
        except BlockingIOError:
            time.sleep(0.01)
            continue
        if not chunk:
            raise RuntimeError(f"{what} exited before it reported; see {log}")
        buf += chunk
    return buf.decode().strip()


# --- X ----------------------------------------------------------------------------------------


def start_xvfb(procs: Processes) -> str:
    """A private Xvfb screen (1024x768x24) for this process; returns its name (":N"), set in
    DISPLAY, with NO_AT_BRIDGE=1 so GTK starts no accessibility bus."""
    require_tools("Xvfb", "xdotool")
    read_end, write_end = os.pipe()
    try:
        # -noreset: by default the server resets when its last client leaves, and drops the
        # connections that arrive meanwhile ("Connection reset by peer").
        procs.start(["Xvfb", "-displayfd", str(write_end), "-screen", "0",
                     f"{SCREEN_WIDTH}x{SCREEN_HEIGHT}x24", "-nolisten", "tcp", "-noreset"],
                    pass_fds=(write_end,))
        os.close(write_end)
        # Xvfb writes the number, then "\n" in a second write: closing the pipe before the
        # newline kills Xvfb ("Cannot write display number to fd N").
        number = _read_line(read_end, "Xvfb", procs.logs / "Xvfb.log")
    finally:
        os.close(read_end)
    display = f":{number}"
    os.environ["DISPLAY"] = display
    os.environ["NO_AT_BRIDGE"] = "1"
    if not wait_until(lambda: subprocess.run(["xdotool", "getmouselocation"],
                                             capture_output=True).returncode == 0, 10):
        raise HarnessError(f"Xvfb {display} does not answer; see {procs.logs / 'Xvfb.log'}")
    return display


def xdotool(*args: str, check: bool = False) -> str:
    """Run xdotool on the current DISPLAY; its stdout, stripped."""
    done = subprocess.run(["xdotool", *args], capture_output=True, text=True, check=check)
    return done.stdout.strip()


class Geometry(NamedTuple):
    x: int
    y: int
    width: int
    height: int


def window_geometry(window: str) -> Geometry:
    out = xdotool("getwindowgeometry", "--shell", window)
    values = {k: int(v) for k, v in re.findall(r"^(\w+)=(-?\d+)$", out, re.MULTILINE)}
    return Geometry(values.get("X", 0), values.get("Y", 0),
                    values.get("WIDTH", 0), values.get("HEIGHT", 0))


def find_windows(pattern: str, visible: bool = False,
                 predicate: Callable[[Geometry], bool] | None = None,
                 timeout: float = 5.0) -> list[str]:
    """Window ids whose name matches `pattern` (a regex, as `xdotool search --name`), and
    whose geometry passes `predicate`; waits up to `timeout` for at least one."""
    found: list[str] = []

    def look() -> bool:
        ids = xdotool("search", *(["--onlyvisible"] if visible else []), "--name",
                      pattern).split()
        found[:] = [w for w in ids if predicate is None or predicate(window_geometry(w))]
        return bool(found)

    wait_until(look, timeout, step=0.05)
    return found


def click(window: str, button: int = 1, fx: float = 0.5, fy: float = 0.5) -> None:
    """Click at the fraction (fx, fy) of a window's width and height."""
    g = window_geometry(window)
    xdotool("mousemove", str(g.x + int(g.width * fx)), str(g.y + int(g.height * fy)),
            "click", str(button), check=True)


_shots_printed = False


def shots_dir() -> Path:
    """Where screenshots go: $SHOTS, else <repo>/shots; created, and said once."""
    global _shots_printed
    path = Path(os.environ.get("SHOTS") or REPO / "shots")
    path.mkdir(parents=True, exist_ok=True)
    if not _shots_printed:
        print(f"screenshots in {path}")
        _shots_printed = True
    return path


def screenshot(path: Path | str) -> Path:
    """The whole screen as a PNG (ImageMagick's `import`, the real one)."""
    require_tools(IMPORT)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([IMPORT, "-window", "root", str(target)], check=True,
                   capture_output=True)
    return target


# --- D-Bus, notifications, tray -------------------------------------------------------------


def start_session_bus(procs: Processes) -> str:
    """A private D-Bus session bus and dunst on it (pystray's gtk backend notifies on stop);
    returns the bus address, set in DBUS_SESSION_BUS_ADDRESS."""
    require_tools("dbus-daemon", "dunst")
    read_end, write_end = os.pipe()
    try:
        procs.start(["dbus-daemon", "--session", "--nofork", "--nopidfile",
                     f"--print-address={write_end}"], pass_fds=(write_end,))
        os.close(write_end)
        address = _read_line(read_end, "dbus-daemon", procs.logs / "dbus-daemon.log")
    finally:
        os.close(read_end)
    os.environ["DBUS_SESSION_BUS_ADDRESS"] = address
    procs.start(["dunst"])
    if shutil.which("dbus-send"):
        def dunst_on_bus() -> bool:
            out = subprocess.run(
                ["dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus",
                 "/org/freedesktop/DBus", "org.freedesktop.DBus.NameHasOwner",
                 "string:org.freedesktop.Notifications"], capture_output=True, text=True).stdout
            return "boolean true" in out

        if not wait_until(dunst_on_bus, 10, step=0.05):
            raise HarnessError("dunst did not take the notifications name; "
                               f"see {procs.logs}/dunst.log")
    return address


def start_tray_host(procs: Processes) -> str:
    """trayer, a system tray at the bottom right of the screen; returns its "panel" window."""
    require_tools("trayer")
    procs.start(["trayer", "--edge", "bottom", "--align", "right", "--widthtype", "request",
                 "--height", "32", "--SetDockType", "true", "--transparent", "false"])
    panels = find_windows("^panel$", timeout=10)
    if not panels:
        raise HarnessError(f"trayer showed no panel window; see {procs.logs / 'trayer.log'}")
    if not wait_until(_tray_selection_owned, 10, step=0.05):
        raise HarnessError(f"trayer did not take the system tray selection; see {procs.logs}")
    return panels[0]


def _tray_selection_owned() -> bool:
    """Whether a tray host owns _NET_SYSTEM_TRAY_S0 (icons can dock from then on)."""
    from Xlib import X
    from Xlib import display as xdisplay

    conn = xdisplay.Display()
    try:
        atom = conn.intern_atom("_NET_SYSTEM_TRAY_S0")
        return bool(conn.get_selection_owner(atom) != X.NONE)
    finally:
        conn.close()


# --- a keyboard for `keyboard` ---------------------------------------------------------------

_EVENT = "llHHI"  # struct input_event: seconds, microseconds, type, code, value
EV_SYN, EV_KEY = 0, 1


class EvdevKeyboard:
    """Writes real `struct input_event` records into the FIFO that `keyboard` reads as a
    keyboard. Events are paced `gap` seconds apart: keyboard's hotkey matcher races on
    bursts. Key codes are Linux's (input-event-codes.h)."""

    KEY_ESC = 1
    KEY_1, KEY_2 = 2, 3
    KEY_Q, KEY_W, KEY_E, KEY_R, KEY_T = 16, 17, 18, 19, 20
    KEY_P = 25
    KEY_ENTER = 28
    KEY_LEFTCTRL = 29
    KEY_A, KEY_S, KEY_D, KEY_F = 30, 31, 32, 33
    KEY_LEFTSHIFT = 42
    KEY_Z, KEY_X, KEY_C, KEY_V, KEY_B, KEY_N = 44, 45, 46, 47, 48, 49
    KEY_LEFTALT = 56
    KEY_SPACE = 57
    KEY_F9, KEY_F10 = 67, 68
    KEY_RIGHTCTRL, KEY_RIGHTALT = 97, 100
    KEY_LEFTMETA = 125

    def __init__(self, path: Path, fd: int, gap: float = 0.03) -> None:
        self.path = path
        self._fd = fd
        self.gap = gap
        self._last = 0.0

    def _write(self, code: int, value: int) -> None:
        pause = self._last + self.gap - time.monotonic()
        if pause > 0:
            time.sleep(pause)  # pacing between events, not a wait for a result
        now = time.time()
        sec, usec = int(now), int((now % 1) * 1e6)
        os.write(self._fd, struct.pack(_EVENT, sec, usec, EV_KEY, code, value)
                 + struct.pack(_EVENT, sec, usec, EV_SYN, 0, 0))
        self._last = time.monotonic()

    def press(self, code: int) -> None:
        self._write(code, 1)

    def release(self, code: int) -> None:
        self._write(code, 0)

    def tap(self, *codes: int) -> None:
        """Press the keys in order, then release them in reverse: one chord."""
        for code in codes:
            self.press(code)
        for code in reversed(codes):
            self.release(code)


@contextlib.contextmanager
def evdev_keyboard_fifo(tag: str = "") -> Iterator[EvdevKeyboard]:
    """A FIFO at /dev/input/by-id/voice-agent-test-<pid><tag>-event-kbd, which `keyboard`
    (boppreh) finds and reads as a keyboard (this kernel has neither /dev/input nor uinput).
    Request it before anything starts `keyboard`'s listener: the library looks for devices
    once. The pid keeps test runs apart; but `keyboard` in any process that starts meanwhile
    reads every *-event-kbd, so two runs at once on one machine may steal each other's keys.
    A `tag`ged FIFO made later is read only by the processes started after it: a test's own
    agent, not a listener left running in the test process by an earlier test."""
    if os.geteuid() != 0:
        raise HarnessError("the keyboard tests need root (keyboard reads /dev/input only as "
                           "root): run them as root, as scripts/test and CI do")
    require_tools("dumpkeys")  # keyboard builds its key tables from it (Debian kbd)
    folder = Path("/dev/input/by-id")
    created = [p for p in (folder.parent, folder) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"voice-agent-test-{os.getpid()}{tag}-event-kbd"
    if path.exists() and not stat.S_ISFIFO(path.stat().st_mode):
        raise HarnessError(f"{path} exists and is not a FIFO")
    if not path.exists():
        os.mkfifo(path)
    # O_RDWR: opening never blocks, and keyboard's reader never sees end-of-file. The fd stays
    # open until the process exits: closing it would end keyboard's reader thread with EOF.
    fd = os.open(path, os.O_RDWR)
    yield EvdevKeyboard(path, fd)
    path.unlink(missing_ok=True)
    for made in reversed(created):
        with contextlib.suppress(OSError):  # not empty: someone else uses it too
            made.rmdir()
