"""The hotkey chord syntax: what "ctrl+alt+space" means, whether it is valid, and how each
backend spells it. Pure text: no keyboard library, no display, so the settings checks,
`doctor` and the first-run text can use it anywhere; the desktop's hotkey backends
(`agent.desktop.hotkeys`) hook the chords it parses.

Combos use the `keyboard` library's spelling ("ctrl+alt+space"): modifiers (ctrl, alt, shift,
windows, alt gr) then exactly one key (a-z, 0-9, f1-f24 or a named key such as space, enter,
esc, page up). Case, spaces and underscores do not matter ("Alt+Ctrl+Page_Up").
`parse_hotkey()` checks one and names the setting in its error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["SETTING", "SHORTCUT_HINT", "Hotkey", "parse_hotkey", "same_chord"]

SETTING = "[hotkeys] talk / interrupt"  # what an error names when no single setting is known
# Where global hooks cannot run, the desktop's own shortcuts reach the running agent.
SHORTCUT_HINT = ("bind `voice-agent talk` and `voice-agent interrupt` in the desktop's "
                 "keyboard shortcut settings instead")

# Modifiers: accepted spelling -> (keyboard's name, pynput's name), in the order they print.
_MODIFIERS: dict[str, tuple[str, str]] = {
    "ctrl": ("ctrl", "ctrl"), "control": ("ctrl", "ctrl"),
    "alt": ("alt", "alt"),
    "alt gr": ("alt gr", "alt_gr"), "altgr": ("alt gr", "alt_gr"),
    "shift": ("shift", "shift"),
    "windows": ("windows", "cmd"), "win": ("windows", "cmd"), "super": ("windows", "cmd"),
    "cmd": ("windows", "cmd"), "command": ("windows", "cmd"), "meta": ("windows", "cmd"),
}
_MODIFIER_ORDER = ("ctrl", "alt", "alt gr", "shift", "windows")

# Named keys: accepted spelling -> (keyboard's name, pynput's `Key` member).
_NAMED: dict[str, tuple[str, str]] = {
    "space": ("space", "space"), "spacebar": ("space", "space"),
    "enter": ("enter", "enter"), "return": ("enter", "enter"),
    "tab": ("tab", "tab"),
    "esc": ("esc", "esc"), "escape": ("esc", "esc"),
    "backspace": ("backspace", "backspace"),
    "delete": ("delete", "delete"), "del": ("delete", "delete"),
    "insert": ("insert", "insert"), "ins": ("insert", "insert"),
    "home": ("home", "home"), "end": ("end", "end"),
    "page up": ("page up", "page_up"), "pageup": ("page up", "page_up"),
    "pgup": ("page up", "page_up"),
    "page down": ("page down", "page_down"), "pagedown": ("page down", "page_down"),
    "pgdn": ("page down", "page_down"),
    "up": ("up", "up"), "down": ("down", "down"), "left": ("left", "left"),
    "right": ("right", "right"),
    "caps lock": ("caps lock", "caps_lock"), "num lock": ("num lock", "num_lock"),
    "scroll lock": ("scroll lock", "scroll_lock"),
    "print screen": ("print screen", "print_screen"),
    "pause": ("pause", "pause"), "menu": ("menu", "menu"),
}
_FKEY = re.compile(r"f([1-9]|1[0-9]|2[0-4])")
_EXAMPLES = ("modifiers ctrl, alt, shift, windows, alt gr, then one key: a-z, 0-9, f1-f24, "
             "space, enter, tab, esc, backspace, delete, insert, home, end, page up, page down, "
             "up, down, left, right, pause, menu (e.g. ctrl+alt+space)")


@dataclass(frozen=True)
class Hotkey:
    """A chord: modifiers (keyboard's names) held, then `key` pressed. Two spellings of one
    chord ("ctrl+alt+x", "Alt+Control+X") parse to equal values."""

    modifiers: tuple[str, ...]  # in _MODIFIER_ORDER, no repeats
    key: str  # keyboard's name: "space", "a", "7", "f9", "page up"

    @property
    def keyboard_spelling(self) -> str:
        return "+".join((*self.modifiers, self.key))

    @property
    def pynput_spelling(self) -> str:
        mods = [f"<{_MODIFIERS[m][1]}>" for m in self.modifiers]
        if len(self.key) == 1:
            key = self.key
        elif _FKEY.fullmatch(self.key):
            key = f"<{self.key}>"
        else:
            key = f"<{_NAMED[self.key][1]}>"
        return "+".join((*mods, key))


def _normalise(name: str) -> str:
    return " ".join(name.replace("_", " ").split()).lower()


def parse_hotkey(combo: str, setting: str = SETTING) -> Hotkey:
    """Check a combo in `keyboard`'s spelling; `ValueError` names `setting` and the fault."""

    def bad(why: str) -> ValueError:
        return ValueError(f"{setting} = {combo!r} is not a valid hotkey: {why}. "
                          f"Use {_EXAMPLES}.")

    if not isinstance(combo, str) or not combo.strip():
        raise bad("it is empty")
    if "," in combo:
        raise bad("key sequences (a comma) are not supported, only one chord")
    parts = [_normalise(p) for p in combo.split("+")]
    if any(not p for p in parts):
        raise bad("a key name is missing around a '+'")
    modifiers: list[str] = []
    keys: list[str] = []
    for part in parts:
        if part in _MODIFIERS:
            name = _MODIFIERS[part][0]
            if name in modifiers:
                raise bad(f"{part!r} is there twice")
            modifiers.append(name)
        elif (len(part) == 1 and part in "abcdefghijklmnopqrstuvwxyz0123456789") \
                or _FKEY.fullmatch(part):
            keys.append(part)
        elif part in _NAMED:
            keys.append(_NAMED[part][0])
        else:
            raise bad(f"{part!r} is not a key name")
    if not keys:
        raise bad("it has modifiers but no key")
    if len(keys) > 1:
        raise bad(f"it has {len(keys)} keys ({', '.join(keys)}); a chord has exactly one")
    if parts[-1] in _MODIFIERS:
        raise bad("the key must come after the modifiers")
    ordered = tuple(m for m in _MODIFIER_ORDER if m in modifiers)
    return Hotkey(ordered, keys[0])


def same_chord(first: str, second: str) -> bool:
    """Whether two hotkey settings are the same chord ("ctrl+alt+x" and "Alt+Ctrl+X" are);
    an invalid one is no chord, so it clashes with nothing."""
    try:
        return parse_hotkey(first) == parse_hotkey(second)
    except ValueError:
        return False


def shown_combo(combo: str) -> str:
    """"ctrl+alt+space" as people write it: "Ctrl+Alt+Space"."""
    return "+".join(part.strip().title() for part in combo.split("+"))
