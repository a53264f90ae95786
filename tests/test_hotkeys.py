"""Global hotkeys through the real libraries: `keyboard` reading a FIFO evdev keyboard, and
pynput listening to Xvfb while xdotool types. Nothing waits on a guess: a callback sets a
condition the test waits on, and "did not fire" is checked after a later chord that did
fire has been handled by the same listener thread (events are handled in order)."""

from __future__ import annotations

import logging
import os
import statistics
import threading
import time
from collections.abc import Iterator

import pytest

from agent.desktop import hotkeys
from agent.desktop.hotkeys import (
    HotkeyChoice,
    KeyboardHotkeys,
    NoHotkeys,
    PynputHotkeys,
    choose_backend,
    describe,
)
from agent.hotkey_syntax import parse_hotkey, same_chord
from harness.desktop import EvdevKeyboard, xdotool

K = EvdevKeyboard
pytestmark = [  # keyboard, when its listener first starts on a machine without uinput
    pytest.mark.filterwarnings("ignore:Failed to create a device file using `uinput`"),
    pytest.mark.filterwarnings(r"ignore:setDaemon\(\) is deprecated:DeprecationWarning"),
]
TALK, INTERRUPT = "ctrl+alt+space", "ctrl+alt+x"
# Accepted spellings -> (keyboard's, pynput's).
SPELLINGS = {
    "ctrl+alt+space": ("ctrl+alt+space", "<ctrl>+<alt>+<space>"),
    "Control + Shift + F9": ("ctrl+shift+f9", "<ctrl>+<shift>+<f9>"),
    "alt+ctrl+x": ("ctrl+alt+x", "<ctrl>+<alt>+x"),
    "win+page_up": ("windows+page up", "<cmd>+<page_up>"),
    "ctrl+alt+7": ("ctrl+alt+7", "<ctrl>+<alt>+7"),
    "shift+escape": ("shift+esc", "<shift>+<esc>"),
    "f12": ("f12", "<f12>"),
}


class Counter:
    """A hotkey callback that counts its calls and the threads it ran on."""

    def __init__(self) -> None:
        self.count = 0
        self.threads: set[threading.Thread] = set()
        self._changed = threading.Condition()

    def __call__(self) -> None:
        with self._changed:
            self.count += 1
            self.threads.add(threading.current_thread())
            self._changed.notify_all()

    def reaches(self, n: int, timeout: float = 3.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.count >= n, timeout)


@pytest.fixture
def started() -> Iterator[list[hotkeys.HotkeyBackend]]:
    """Backends a test starts; all stopped afterwards, whatever happened."""
    backends: list[hotkeys.HotkeyBackend] = []
    yield backends
    for backend in backends:
        backend.stop()


# --- keyboard (boppreh) through the FIFO keyboard -----------------------------------------


def test_keyboard_fires_once_per_chord_and_not_for_others(
        evdev_keyboard: EvdevKeyboard, started: list[hotkeys.HotkeyBackend],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="agent.desktop.hotkeys")
    talk, interrupt = Counter(), Counter()
    backend = KeyboardHotkeys()
    started.append(backend)
    backend.start({TALK: talk, INTERRUPT: interrupt})
    kb = evdev_keyboard

    kb.tap(K.KEY_LEFTCTRL, K.KEY_LEFTALT, K.KEY_SPACE)
    assert talk.reaches(1)
    # other chords, and parts of this one: none of them is talk or interrupt
    kb.tap(K.KEY_LEFTCTRL, K.KEY_A)
    kb.tap(K.KEY_LEFTCTRL, K.KEY_SPACE)
    kb.tap(K.KEY_LEFTALT, K.KEY_SPACE)
    kb.tap(K.KEY_SPACE)
    kb.tap(K.KEY_LEFTCTRL, K.KEY_LEFTALT, K.KEY_LEFTSHIFT, K.KEY_Z)
    kb.tap(K.KEY_LEFTCTRL, K.KEY_LEFTALT, K.KEY_X)  # handled after all of the above
    assert interrupt.reaches(1)
    assert (talk.count, interrupt.count) == (1, 1)

    kb.tap(K.KEY_RIGHTCTRL, K.KEY_LEFTALT, K.KEY_SPACE)  # either ctrl
    assert talk.reaches(2)
    kb.tap(K.KEY_LEFTCTRL, K.KEY_LEFTALT, K.KEY_X)
    assert interrupt.reaches(2)
    assert (talk.count, interrupt.count) == (2, 2)
    # callbacks run on keyboard's listener thread, never the caller's
    assert threading.main_thread() not in talk.threads | interrupt.threads
    assert not caplog.records  # the hook logs no keys


def test_keyboard_reports_the_release_of_a_held_chord(
        evdev_keyboard: EvdevKeyboard, started: list[hotkeys.HotkeyBackend]) -> None:
    pressed, released = Counter(), Counter()
    backend = KeyboardHotkeys()
    started.append(backend)
    backend.start({TALK: hotkeys.Binding(pressed, released)})
    kb = evdev_keyboard
    for key in (K.KEY_LEFTCTRL, K.KEY_LEFTALT, K.KEY_SPACE):
        kb.press(key)
    assert pressed.reaches(1)
    assert not released.reaches(1, timeout=0.3)  # held: no release yet
    for key in (K.KEY_SPACE, K.KEY_LEFTALT, K.KEY_LEFTCTRL):
        kb.release(key)
    assert released.reaches(1)
    assert (pressed.count, released.count) == (1, 1)


def test_keyboard_stop_removes_exactly_its_own_hotkeys(
        evdev_keyboard: EvdevKeyboard, started: list[hotkeys.HotkeyBackend]) -> None:
    talk, other = Counter(), Counter()
    ours, theirs = KeyboardHotkeys(), KeyboardHotkeys()
    started.extend([ours, theirs])
    ours.start({TALK: talk})
    theirs.start({"ctrl+shift+f9": other})
    kb = evdev_keyboard
    kb.tap(K.KEY_LEFTCTRL, K.KEY_LEFTALT, K.KEY_SPACE)
    assert talk.reaches(1)

    ours.stop()
    ours.stop()  # twice is fine
    kb.tap(K.KEY_LEFTCTRL, K.KEY_LEFTALT, K.KEY_SPACE)
    kb.tap(K.KEY_LEFTCTRL, K.KEY_LEFTSHIFT, K.KEY_F9)  # the other hotkey still works...
    assert other.reaches(1)
    assert talk.count == 1  # ...and ours no longer fires

    ours.start({TALK: talk})  # and it can be started again
    kb.tap(K.KEY_LEFTCTRL, K.KEY_LEFTALT, K.KEY_SPACE)
    assert talk.reaches(2)


def test_keyboard_callback_error_is_logged_and_the_listener_goes_on(
        evdev_keyboard: EvdevKeyboard, started: list[hotkeys.HotkeyBackend],
        caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> None:
        raise RuntimeError("boom")

    interrupt = Counter()
    backend = KeyboardHotkeys()
    started.append(backend)
    backend.start({TALK: broken, INTERRUPT: interrupt})
    evdev_keyboard.tap(K.KEY_LEFTCTRL, K.KEY_LEFTALT, K.KEY_SPACE)
    evdev_keyboard.tap(K.KEY_LEFTCTRL, K.KEY_LEFTALT, K.KEY_X)
    assert interrupt.reaches(1)
    assert any("ctrl+alt+space" in r.getMessage() and r.exc_info for r in caplog.records)


def test_invalid_combo_hooks_nothing(
        evdev_keyboard: EvdevKeyboard, started: list[hotkeys.HotkeyBackend]) -> None:
    talk, sentinel = Counter(), Counter()
    backend, witness = KeyboardHotkeys(), KeyboardHotkeys()
    started.extend([backend, witness])
    with pytest.raises(ValueError, match=r"\[hotkeys\].*'hyper\+q'.*'hyper' is not a key name"):
        backend.start({TALK: talk, "hyper+q": talk})
    witness.start({"ctrl+shift+f10": sentinel})
    evdev_keyboard.tap(K.KEY_LEFTCTRL, K.KEY_LEFTALT, K.KEY_SPACE)
    evdev_keyboard.tap(K.KEY_LEFTCTRL, K.KEY_LEFTSHIFT, K.KEY_F10)
    assert sentinel.reaches(1)
    assert talk.count == 0


# --- pynput under Xvfb -----------------------------------------------------------------------


def test_pynput_fires_under_xvfb_and_stops_fast(
        xdisplay: str, started: list[hotkeys.HotkeyBackend]) -> None:
    talk, interrupt = Counter(), Counter()
    backend = PynputHotkeys()
    started.append(backend)
    backend.start({TALK: talk, INTERRUPT: interrupt})
    assert backend.alive

    xdotool("key", "ctrl+alt+space", check=True)
    assert talk.reaches(1)
    xdotool("key", "ctrl+a", check=True)
    xdotool("key", "alt+space", check=True)
    xdotool("key", "ctrl+alt+x", check=True)
    assert interrupt.reaches(1)
    assert (talk.count, interrupt.count) == (1, 1)
    assert threading.main_thread() not in talk.threads

    began = time.perf_counter()
    backend.stop()
    took = time.perf_counter() - began
    print(f"pynput stop() after use: {took * 1e3:.1f} ms")
    assert not backend.alive, "the listener thread should have ended"
    assert took < 0.5
    xdotool("key", "ctrl+alt+space", check=True)  # unhooked: nothing to fire
    assert talk.count == 1


def test_pynput_reports_the_release_of_a_held_chord(
        xdisplay: str, started: list[hotkeys.HotkeyBackend]) -> None:
    pressed, released = Counter(), Counter()
    backend = PynputHotkeys()
    started.append(backend)
    backend.start({TALK: hotkeys.Binding(pressed, released)})
    xdotool("keydown", "ctrl+alt+space", check=True)
    assert pressed.reaches(1)
    assert not released.reaches(1, timeout=0.3)
    xdotool("keyup", "space", check=True)
    assert released.reaches(1)
    xdotool("keyup", "ctrl+alt", check=True)
    assert (pressed.count, released.count) == (1, 1)


def test_pynput_start_stop_cycles(xdisplay: str) -> None:
    """Start and stop again and again: each start catches a chord, each stop ends its thread
    promptly (the stop() time is measured and printed)."""
    times = []
    for cycle in range(5):
        talk = Counter()
        backend = PynputHotkeys()
        backend.start({TALK: talk})
        try:
            xdotool("key", "ctrl+alt+space", check=True)
            assert talk.reaches(1), f"cycle {cycle}: the chord was not caught"
        finally:
            began = time.perf_counter()
            backend.stop()
            times.append(time.perf_counter() - began)
        assert not backend.alive
    print("pynput stop() ms: " + ", ".join(f"{t * 1e3:.1f}" for t in times)
          + f" (median {statistics.median(times) * 1e3:.1f})")
    assert max(times) < 0.5


def test_pynput_accepts_the_spellings_it_is_given(xdisplay: str) -> None:
    from pynput import keyboard as pk

    for combo, (_, pynput_spelling) in SPELLINGS.items():
        assert parse_hotkey(combo).pynput_spelling == pynput_spelling
        assert pk.HotKey.parse(pynput_spelling), combo  # pynput accepts it


def test_pynput_invalid_combo_starts_no_thread(xdisplay: str) -> None:
    backend = PynputHotkeys()
    with pytest.raises(ValueError, match=r"'ctrl\+alt\+'"):
        backend.start({TALK: Counter(), "ctrl+alt+": Counter()})
    assert not backend.alive
    backend.stop()


# --- choosing a backend ------------------------------------------------------------------------


def test_auto_picks_keyboard_as_root_with_a_keyboard(evdev_keyboard: EvdevKeyboard) -> None:
    choice = choose_backend("auto")
    assert isinstance(choice.backend, KeyboardHotkeys), choice
    assert choice.reasons == ()
    assert describe(choice) == "hotkeys: using keyboard (/dev/input)"
    assert isinstance(choose_backend("keyboard").backend, KeyboardHotkeys)


def test_explicit_pynput_with_a_display(xdisplay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("XDG_SESSION_TYPE", "x11")
    choice = choose_backend("pynput")
    assert isinstance(choice.backend, PynputHotkeys), choice
    assert describe(choice) == "hotkeys: using pynput (X11)"


def test_none_and_unknown_preferences() -> None:
    choice = choose_backend("none")
    assert isinstance(choice.backend, NoHotkeys)
    assert "voice-agent talk" in describe(choice)
    bogus = choose_backend("hyperkeys")
    assert isinstance(bogus.backend, NoHotkeys)
    assert "'hyperkeys' is not one of auto, keyboard, pynput, none" in bogus.reasons[0]


def test_not_root_on_x11_uses_pynput_and_says_why(
        xdisplay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("XDG_SESSION_TYPE", "x11")
    choice = choose_backend("auto")
    assert isinstance(choice.backend, PynputHotkeys), choice
    assert describe(choice) == ("hotkeys: using pynput (X11); "
                                "keyboard needs root on Linux (it reads /dev/input itself)")
    explicit = choose_backend("keyboard")  # cannot run: none, with the reason, no exception
    assert isinstance(explicit.backend, NoHotkeys)
    assert explicit.reasons[0] == hotkeys.KEYBOARD_LINUX


def test_root_without_a_keyboard_device(xdisplay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hotkeys, "_linux_keyboard_devices", lambda: [])
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("XDG_SESSION_TYPE", "x11")
    choice = choose_backend("auto")
    assert isinstance(choice.backend, PynputHotkeys)
    assert choice.reasons == ("keyboard found no keyboard device under /dev/input",)


def test_wayland_with_xwayland_warns_pynput_sees_only_x11(
        xdisplay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_SESSION_TYPE", "wayland")
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    choice = choose_backend("auto")
    assert isinstance(choice.backend, PynputHotkeys)
    line = describe(choice)
    assert line.startswith("hotkeys: using pynput (X11); keyboard needs root")
    assert "only sees keys typed into X11 (XWayland) windows" in line
    assert "`voice-agent talk`" in line and "shortcut settings" in line


def test_wayland_without_xwayland_has_no_hotkeys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_SESSION_TYPE", "wayland")
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    monkeypatch.delenv("DISPLAY", raising=False)
    choice = choose_backend("auto")
    assert isinstance(choice.backend, NoHotkeys)
    assert choice.reasons == (
        hotkeys.KEYBOARD_LINUX,
        "pynput needs X11, and this Wayland session has no XWayland (DISPLAY is not set)",
        hotkeys.SHORTCUT_HINT)
    assert describe(choice).startswith("hotkeys: none; keyboard needs root")
    pynput = choose_backend("pynput")
    assert isinstance(pynput.backend, NoHotkeys) and "Wayland" in pynput.reasons[0]


def test_unreachable_display(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("DISPLAY", ":987")
    choice = choose_backend("pynput")
    assert isinstance(choice.backend, NoHotkeys)
    assert choice.reasons[0].startswith("pynput cannot open the X display :987")


def test_choice_is_frozen() -> None:
    choice = HotkeyChoice(NoHotkeys(), ("x",))
    with pytest.raises(AttributeError):
        choice.reasons = ()  # type: ignore[misc]


# --- combos ------------------------------------------------------------------------------------

def test_each_backend_gets_its_own_spelling_of_a_chord() -> None:
    for combo, spellings in SPELLINGS.items():
        hotkey = parse_hotkey(combo)
        assert (hotkey.keyboard_spelling, hotkey.pynput_spelling) == spellings, combo


def test_one_chord_in_two_spellings_is_the_same_chord() -> None:
    assert same_chord("ctrl+alt+x", "Alt + Control + X")
    assert not same_chord("ctrl+alt+x", "ctrl+alt+space")
    assert not same_chord("ctrl+alt+", "ctrl+alt+")  # an invalid chord clashes with nothing
    # The desktop shell uses the same syntax, not a copy of it.
    assert hotkeys.parse_hotkey is parse_hotkey


@pytest.mark.parametrize("combo, why", [
    ("ctrl+alt+", "a key name is missing"),
    ("hyper+q", "'hyper' is not a key name"),
    ("", "it is empty"),
    ("ctrl+alt", "modifiers but no key"),
    ("ctrl+a+b", "exactly one"),
    ("ctrl+a, b", "key sequences"),
    ("ctrl+control+a", "twice"),
    ("ctrl+f25", "'f25' is not a key name"),
    ("a+ctrl", "after the modifiers"),
])
def test_invalid_combos_name_the_setting(combo: str, why: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_hotkey(combo, setting="hotkeys.talk")
    message = str(error.value)
    assert message.startswith(f"hotkeys.talk = {combo!r} is not a valid hotkey")
    assert why in message
    with pytest.raises(ValueError, match=r"\[hotkeys\] talk / interrupt"):
        NoHotkeys().start({combo: Counter()})


def test_two_settings_with_one_chord_are_refused() -> None:
    with pytest.raises(ValueError, match="same chord"):
        NoHotkeys().start({"ctrl+alt+space": Counter(), "Control+Alt+Space": Counter()})
