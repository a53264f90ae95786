"""Global hotkeys: a chord pressed anywhere on the desktop runs a callback.

Backends, each behind `HotkeyBackend`:
- `KeyboardHotkeys`: boppreh's `keyboard`. Windows; on Linux it reads /dev/input itself and
  refuses to start unless it runs as root (read access to the devices is not enough); it
  ignores X.
- `PynputHotkeys`: pynput's X11 (XRecord) or macOS listener. On Wayland it sees only keys
  typed into X11 (XWayland) windows.
- `NoHotkeys`: nothing; the desktop's own shortcut settings run `voice-agent talk` /
  `voice-agent interrupt`, which reach the running agent through its control socket.

`choose_backend()` picks one and says why the others cannot run; `describe()` makes that a
line for the log.

Combos use the `keyboard` library's spelling ("ctrl+alt+space"); the syntax lives in
`agent.hotkey_syntax` (`parse_hotkey()`, no display needed). Every backend's `start()` checks
all of its bindings before it hooks anything.

Threads: a callback runs on the backend's listener thread. It must only post a command (put it
on a queue, set an event) and return: while it runs, no other key is seen. An exception in a
callback is logged and swallowed, so it cannot stop the listener.

Privacy: the hooks only match their chords. No key is logged, stored or passed on.

Push-to-talk: a binding may be a `Binding` with a second callback for the release of its
chord (`keyboard`'s `trigger_on_release`; for pynput, the release of any of the chord's keys
after it fired). Autorepeat may repeat the press while a key is held: callers ignore a press
that comes before the release.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import logging
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

# The chord syntax is core (no display): re-exported here for the backends' callers.
from agent.hotkey_syntax import SETTING, SHORTCUT_HINT, Hotkey, parse_hotkey

log = logging.getLogger(__name__)

__all__ = [
    "SHORTCUT_HINT",
    "Hotkey",
    "HotkeyBackend",
    "HotkeyChoice",
    "KeyboardHotkeys",
    "NoHotkeys",
    "PynputHotkeys",
    "choose_backend",
    "describe",
    "parse_hotkey",
]

# `keyboard` reads /dev/input itself and refuses to start unless it runs as root (read access
# to the devices alone is not enough: its init calls ensure_root()).
KEYBOARD_LINUX = "keyboard needs root on Linux (it reads /dev/input itself)"


@dataclass(frozen=True)
class Binding:
    """What a chord does when pressed and, for push-to-talk, when released."""

    on_press: Callable[[], None]
    on_release: Callable[[], None] | None = None


Bindings = Mapping[str, "Callable[[], None] | Binding"]


def _parse_all(bindings: Bindings) -> dict[Hotkey, Binding]:
    parsed: dict[Hotkey, Binding] = {}
    for combo, action in bindings.items():
        hotkey = parse_hotkey(combo)
        if hotkey in parsed:
            raise ValueError(f"{SETTING}: {combo!r} is the same chord as another hotkey "
                             f"({hotkey.keyboard_spelling}); give each its own")
        binding = action if isinstance(action, Binding) else Binding(action)
        parsed[hotkey] = Binding(
            _guarded(hotkey, binding.on_press),
            _guarded(hotkey, binding.on_release) if binding.on_release else None)
    return parsed


def _guarded(hotkey: Hotkey, callback: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        try:
            callback()
        except Exception:
            log.exception("the callback of hotkey %s failed", hotkey.keyboard_spelling)

    return run


# --- backends -------------------------------------------------------------------------------


class HotkeyBackend(Protocol):
    """Global hotkeys. `start()` hooks the chords (and checks them all first, raising
    `ValueError`); callbacks run on the backend's listener thread and must only post a
    command. `stop()` unhooks them and returns promptly; it is safe to call twice."""

    name: str

    def start(self, bindings: Bindings) -> None: ...

    def stop(self) -> None: ...


class NoHotkeys:
    """No global hooks (the desktop's own shortcuts call `voice-agent talk` / `interrupt`)."""

    name: str = "none"

    def start(self, bindings: Bindings) -> None:
        _parse_all(bindings)  # a bad setting is still reported

    def stop(self) -> None:
        pass


class KeyboardHotkeys:
    """boppreh's `keyboard`: `add_hotkey` per chord; `stop()` removes exactly those."""

    name: str = "keyboard"

    def __init__(self) -> None:
        self._removers: list[Callable[[], None]] = []
        self._held: set[Hotkey] = set()  # chords pressed and not yet released

    def start(self, bindings: Bindings) -> None:
        if self._removers:
            raise RuntimeError("these hotkeys are already started; stop() them first")
        parsed = _parse_all(bindings)
        import keyboard

        for hotkey in parsed:  # the key tables may lack a name: check all before hooking any
            try:
                keyboard.parse_hotkey(hotkey.keyboard_spelling)
            except ValueError as error:
                raise ValueError(f"{SETTING} = {hotkey.keyboard_spelling!r}: this keyboard "
                                 f"layout has no such key ({error})") from None
        try:
            for hotkey, binding in parsed.items():
                # add_hotkey returns a remover for exactly this hook (our callbacks are new
                # functions, so no one else's hook shares them); stop() calls those only.
                press = (binding.on_press if binding.on_release is None
                         else self._remember_press(hotkey, binding))
                self._removers.append(keyboard.add_hotkey(hotkey.keyboard_spelling, press))
                if binding.on_release is not None:
                    self._hook_release(keyboard, hotkey, binding)
        except BaseException:
            self.stop()
            raise

    def _remember_press(self, hotkey: Hotkey, binding: Binding) -> Callable[[], None]:
        def pressed() -> None:
            self._held.add(hotkey)
            binding.on_press()

        return pressed

    def _hook_release(self, keyboard: Any, hotkey: Hotkey, binding: Binding) -> None:
        """The chord's release: the first of its keys let go after it fired (keyboard's own
        trigger_on_release does not fire beside a press hook on the same chord). Only these
        keys are hooked, and only whether the chord is held is kept."""
        assert binding.on_release is not None
        on_release = binding.on_release

        def released(_event: Any) -> None:
            if hotkey in self._held:
                self._held.discard(hotkey)
                on_release()

        for name in (*hotkey.modifiers, hotkey.key):
            self._removers.append(keyboard.on_release_key(name, released))

    def stop(self) -> None:
        self._held.clear()
        removers, self._removers = self._removers, []
        for remove in removers:
            # KeyError: removed already, e.g. by keyboard.unhook_all_hotkeys()
            with contextlib.suppress(KeyError, ValueError):
                remove()


class _PynputChord:
    """A pynput HotKey that also reports the release of the chord it fired for."""

    def __init__(self, hotkey_class: Any, keys: list[Any], binding: Binding) -> None:
        self.keys = set(keys)
        self.binding = binding
        self.active = False
        self.hotkey = hotkey_class(keys, self._activated)

    def _activated(self) -> None:
        self.active = True
        self.binding.on_press()

    def released(self, key: Any) -> None:
        if self.active and key in self.keys:
            self.active = False
            if self.binding.on_release is not None:
                self.binding.on_release()


class PynputHotkeys:
    """pynput's listener (X11 via XRecord, or macOS) matching `HotKey`s.

    On X11 the listener thread blocks in XRecord and notices `stop()` only when the next key
    event arrives, so `stop()` sends one itself: a press and release, through XTest, of a
    keycode that has no key symbol (nothing acts on it). `start()` returns once the listener
    has seen such an event, so chords pressed after it are caught.
    """

    name: str = "pynput"
    STOP_TIMEOUT = 1.0  # stop() never waits longer; the thread is a daemon either way
    READY_TIMEOUT = 2.0

    def __init__(self) -> None:
        self._listener: Any = None
        self._thread: threading.Thread | None = None
        self._seen = threading.Event()

    @property
    def alive(self) -> bool:
        """Whether the (last) listener thread still runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self, bindings: Bindings) -> None:
        if self._listener is not None:
            raise RuntimeError("these hotkeys are already started; stop() them first")
        parsed = _parse_all(bindings)
        from pynput import keyboard as pk

        chords = []
        for hotkey, binding in parsed.items():
            try:
                keys = pk.HotKey.parse(hotkey.pynput_spelling)
            except ValueError:
                raise ValueError(f"{SETTING} = {hotkey.keyboard_spelling!r}: pynput has no "
                                 f"such key on this system") from None
            chords.append(_PynputChord(pk.HotKey, keys, binding))
        seen = self._seen
        seen.clear()

        # pynput passes `injected` (1.8+) or not (older): accept both.
        def on_press(key: Any, injected: bool = False) -> None:
            seen.set()
            canonical = listener.canonical(key)
            for chord in chords:
                chord.hotkey.press(canonical)

        def on_release(key: Any, injected: bool = False) -> None:
            canonical = listener.canonical(key)
            for chord in chords:
                chord.hotkey.release(canonical)
                chord.released(canonical)

        listener = pk.Listener(on_press=on_press, on_release=on_release)
        listener.start()
        self._listener, self._thread = listener, listener
        if _uses_x11():
            self._wait_until_listening(listener)
        else:
            listener.wait()

    def _wait_until_listening(self, listener: threading.Thread) -> None:
        # pynput's wait() returns just before the listener asks the X server to record, and
        # never returns if the listener failed first: nudge until it has seen a key event.
        end = time.monotonic() + self.READY_TIMEOUT
        while not self._seen.is_set() and listener.is_alive() and time.monotonic() < end:
            if not _nudge_x():
                break
            self._seen.wait(0.05)
        if not listener.is_alive():
            self._listener = None
            raise RuntimeError("the pynput hotkey listener stopped at once: it could not "
                               f"listen to the X display {os.environ.get('DISPLAY', '')!r}")
        if not self._seen.is_set():
            log.warning("pynput hotkeys: no key event seen yet; the first chord may be missed")

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        listener.stop()
        if threading.current_thread() is listener:  # stop() from a hotkey callback
            return
        # Thread.join, not pynput's: that one re-raises callback errors (ours are caught) and
        # can wait twice as long as asked.
        join = threading.Thread.join
        end = time.monotonic() + self.STOP_TIMEOUT
        join(listener, 0.01)
        while listener.is_alive() and _uses_x11() and time.monotonic() < end:
            if not _nudge_x():
                break
            join(listener, min(0.1, max(0.0, end - time.monotonic())))
        if listener.is_alive():
            join(listener, max(0.0, end - time.monotonic()))
        if listener.is_alive():
            log.warning("pynput hotkeys: the listener thread is still waiting for an event "
                        "(a daemon thread; it ends with the next key press)")


def _uses_x11() -> bool:
    return sys.platform not in ("win32", "darwin")


_unused_keycode: dict[str, int] = {}


def _nudge_x() -> bool:
    """Press and release, through XTest, a keycode that no key symbol is bound to."""
    try:
        from Xlib import X
        from Xlib import display as xdisplay
        from Xlib.ext import xtest

        conn = xdisplay.Display()
    except Exception as error:
        log.debug("cannot open the X display to wake the hotkey listener: %s", error)
        return False
    try:
        name = os.environ.get("DISPLAY", "")
        keycode = _unused_keycode.get(name)
        if keycode is None:
            keycode = _find_unused_keycode(conn)
            _unused_keycode[name] = keycode
        xtest.fake_input(conn, X.KeyPress, keycode)
        xtest.fake_input(conn, X.KeyRelease, keycode)
        conn.sync()
        return True
    except Exception as error:
        log.debug("cannot wake the hotkey listener: %s", error)
        return False
    finally:
        conn.close()


def _find_unused_keycode(conn: Any) -> int:
    first = int(conn.display.info.min_keycode)
    last = int(conn.display.info.max_keycode)
    mapping = conn.get_keyboard_mapping(first, last - first + 1)
    for offset in range(len(mapping) - 1, -1, -1):
        if not any(mapping[offset]):
            return first + offset
    return last  # every keycode mapped (unusual): the highest is the least likely to matter


# --- choosing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class HotkeyChoice:
    backend: HotkeyBackend
    reasons: tuple[str, ...]  # one line per backend that cannot run here, and why


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _linux_keyboard_devices() -> list[str]:
    """Keyboards as `keyboard` finds them: the event devices that /proc/bus/input/devices
    gives a kbd handler, else /dev/input/by-id/*-event-kbd, else by-path."""
    paths: list[str] = []
    try:
        with open("/proc/bus/input/devices") as devices:
            text = devices.read()
    except OSError:
        text = ""
    for handlers in re.findall(r"^H: Handlers=(.*)$", text, re.MULTILINE):
        event = re.search(r"event(\d+)", handlers)
        if "kbd" in handlers and event:
            paths.append(f"/dev/input/event{event.group(1)}")
    return paths or sorted(glob.glob("/dev/input/by-id/*-event-kbd")) \
        or sorted(glob.glob("/dev/input/by-path/*-event-kbd"))


def _keyboard_problem() -> str | None:
    if not _installed("keyboard"):
        return "keyboard is not installed (pip install keyboard)"
    if sys.platform == "win32":
        return None
    if sys.platform == "darwin":
        return None if os.geteuid() == 0 else "keyboard needs root on macOS"
    if not sys.platform.startswith("linux"):
        return f"keyboard does not run on {sys.platform}"
    readable = [p for p in _linux_keyboard_devices() if os.access(p, os.R_OK)]
    if os.geteuid() != 0:
        # keyboard itself refuses to start unless it runs as root, even with read access
        return KEYBOARD_LINUX
    if not readable:
        return "keyboard found no keyboard device under /dev/input"
    if shutil.which("dumpkeys") is None:
        return "keyboard needs dumpkeys on Linux (Debian package kbd)"
    return None


def _wayland() -> bool:
    return bool(os.environ.get("WAYLAND_DISPLAY")) \
        or os.environ.get("XDG_SESSION_TYPE", "").lower() == "wayland"


def _pynput_problem() -> str | None:
    if not _installed("pynput"):
        return "pynput is not installed (pip install pynput)"
    if sys.platform in ("win32", "darwin"):
        return None
    display = os.environ.get("DISPLAY", "")
    if not display:
        if _wayland():
            return ("pynput needs X11, and this Wayland session has no XWayland "
                    "(DISPLAY is not set)")
        return "pynput needs an X display (DISPLAY is not set)"
    try:
        from Xlib import display as xdisplay

        xdisplay.Display(display).close()
    except Exception as error:
        return f"pynput cannot open the X display {display} ({error})"
    return None


_BACKENDS: dict[str, tuple[Callable[[], str | None], Callable[[], HotkeyBackend]]] = {
    "keyboard": (_keyboard_problem, KeyboardHotkeys),
    "pynput": (_pynput_problem, PynputHotkeys),
}


def _auto_order() -> tuple[str, ...]:
    if sys.platform == "darwin":
        return ("pynput", "keyboard")
    return ("keyboard", "pynput")


def choose_backend(preference: str = "auto") -> HotkeyChoice:
    """The backend to use here: "auto" (the first that can run), "keyboard", "pynput" or
    "none". One that cannot run gives `NoHotkeys` with the reasons; this never raises."""
    wanted = (preference or "auto").strip().lower()
    reasons: list[str] = []
    if wanted == "none":
        return HotkeyChoice(NoHotkeys(), (f"hotkeys.backend is \"none\": {SHORTCUT_HINT}",))
    if wanted == "auto":
        order = _auto_order()
    elif wanted in _BACKENDS:
        order = (wanted,)
    else:
        return HotkeyChoice(NoHotkeys(), (
            f"hotkeys.backend = {preference!r} is not one of auto, keyboard, pynput, none",
            SHORTCUT_HINT))
    for name in order:
        problem_of, make = _BACKENDS[name]
        try:
            problem = problem_of()
        except Exception as error:  # a probe must never take the agent down
            problem = f"{name} cannot be checked here ({error})"
        if problem is None:
            if name == "pynput" and _uses_x11() and _wayland():
                reasons.append("pynput only sees keys typed into X11 (XWayland) windows on "
                               f"Wayland; for every window, {SHORTCUT_HINT}")
            return HotkeyChoice(make(), tuple(reasons))
        reasons.append(problem)
    reasons.append(SHORTCUT_HINT)
    return HotkeyChoice(NoHotkeys(), tuple(reasons))


def describe(choice: HotkeyChoice) -> str:
    """One line for the log, e.g. "hotkeys: using pynput (X11); keyboard needs root ..."."""
    name = choice.backend.name
    if name == "none":
        head = "hotkeys: none"
    else:
        where = {"win32": "Windows", "darwin": "macOS"}.get(sys.platform)
        if where is None:
            where = "X11" if name == "pynput" else "/dev/input"
        head = f"hotkeys: using {name} ({where})"
    return "; ".join((head, *choice.reasons))
