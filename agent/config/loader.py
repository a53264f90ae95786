"""Reading the settings file: TOML over the defaults, every mistake a `Problem` with its line.

A mistake never stops the agent: each bad or unknown key is reported (file, line, key, what is
wrong and the expected form) and its default is used; a TOML syntax error sets the whole file
aside until it is fixed. tomllib gives no positions, so `_Layout` finds each key's line in the
text. A file holding an API key that others may read is made private (a notice says so).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import stat
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent import paths
from agent.config.privacy import PRIVATE_MODE, holds_api_key
from agent.config.schema import (
    DEFAULTS,
    SECRET_SETTINGS,
    SECTIONS,
    SPEAKER_VOICES,
    Config,
    Problem,
    check_setting,
    rule_of,
    shown,
)
from agent.config.values import SettingError, closest
from agent.redaction import redact

log = logging.getLogger(__name__)

_WHOLE_FILE_IGNORED = ("the whole file is ignored until it is fixed, so every setting uses "
                       "its default")

# Reports one mistake: (key path for its line, the setting's name, the message).
_Report = Callable[[tuple[str, ...], str, str], None]


def load(path: Path | None = None) -> Config:
    """The settings in `path` (the user's file by default) over the defaults. The file's
    content never makes this raise: each mistake is an issue and that key keeps its default.
    A file holding an API key that others may read is made private (a notice says so)."""
    path = path or paths.config_file()
    config = Config(path=path)
    text = _read_settings(path, config)
    if text is None:
        return config
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        position = SyntaxPosition.of(error, text)
        config.issues.append(Problem(path, position.line, "",
                                     f"{position.describe()}; {_WHOLE_FILE_IGNORED}"))
        _keep_private(path, holds_api_key(None, text), config)
        return config
    _keep_private(path, holds_api_key(data, text), config)
    _apply(data, config, _Layout.scan(text))
    file_key = _dig(data, "llm", "api_key")
    if isinstance(file_key, str):  # no message quotes it; this makes sure
        config.issues = [dataclasses.replace(issue, message=redact(issue.message, [file_key]))
                         for issue in config.issues]
    config.issues.sort(key=lambda issue: issue.line or 0)
    return config


def _read_settings(path: Path, config: Config) -> str | None:
    if not path.exists():
        return None
    try:
        raw = path.read_bytes()
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[:error.start].count(b"\n") + 1
        config.issues.append(Problem(path, line, "", f"is not UTF-8 text (a bad byte at "
                                     f"offset {error.start}); {_WHOLE_FILE_IGNORED}"))
    except OSError as error:
        config.issues.append(Problem(path, None, "", f"cannot be read ({error.strerror or error})"
                                     "; every setting uses its default"))
    return None


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _keep_private(path: Path, api_key_inside: bool, config: Config) -> None:
    if not api_key_inside or os.name == "nt":  # Windows has no mode bits to speak of
        return
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if not mode & 0o077:
            return
        os.chmod(path, PRIVATE_MODE)
        note = (f"{path} holds llm.api_key and was readable by other users (mode {mode:04o}); "
                f"made it private ({PRIVATE_MODE:04o})")
    except OSError as error:
        note = (f"{path} holds llm.api_key and is readable by other users, and could not be "
                f"made private ({error.strerror or error}): run chmod 600 on it")
    config.notices.append(note)
    log.warning("config: %s", note)


# --- applying the file's keys ---------------------------------------------------------------


def _apply(data: dict[str, Any], config: Config, layout: _Layout) -> None:
    """Set each valid key of `data` on `config`; report the others."""
    custom_voices = bool(_dig(data, "tts", "voices_path"))

    def report(key_path: tuple[str, ...], key: str, message: str) -> None:
        assert config.path is not None
        config.issues.append(Problem(config.path, layout.line_of(key_path), key, message))

    for section, values in data.items():
        if not isinstance(values, dict):
            report((section,), section, f"{section} is not in any section (ignored); "
                   f"{_misplaced_hint(section)}")
            continue
        if section not in SECTIONS:
            guess = closest(section, SECTIONS)
            hint = (f"did you mean [{guess}]?" if guess else
                    "known sections: " + ", ".join(f"[{name}]" for name in SECTIONS))
            report((section,), f"[{section}]", f"unknown section [{section}] (ignored); {hint}")
            continue
        for key, value in values.items():
            dotted = f"{section}.{key}"
            if key not in DEFAULTS[section]:
                report((section, key), dotted,
                       f"unknown key {dotted} (ignored); {_unknown_key_hint(section, key)}")
            elif dotted == SPEAKER_VOICES:
                _apply_speaker_voices(value, config, report, custom_voices)
            else:
                try:
                    checked = check_setting(section, key, value, custom_voices=custom_voices)
                except SettingError as error:
                    default = DEFAULTS[section][key]
                    report((section, key), dotted, f"{error}; {_fallback(dotted, default)}")
                    continue
                setattr(getattr(config, section), key, checked)
                config.from_file.add(dotted)
    _separate_chords(config, report)


def _fallback(dotted: str, default: Any) -> str:
    if dotted in SECRET_SETTINGS:
        return "the file's key is not used"
    if isinstance(default, str) and len(default) > 30:
        return "using the default"
    return f"using {default!r}"


def _misplaced_hint(key: str) -> str:
    homes = [section for section, keys in DEFAULTS.items() if key in keys]
    if homes:
        return f"did you mean {homes[0]}.{key}? Put it under [{homes[0]}]"
    known = [f"{s}.{k}" for s, keys in DEFAULTS.items() for k in keys]
    guess = closest(key, [dotted.partition(".")[2] for dotted in known])
    if guess:
        return f"did you mean {next(d for d in known if d.endswith('.' + guess))}?"
    return "settings go under a section, e.g. [tts]"


def _unknown_key_hint(section: str, key: str) -> str:
    homes = [other for other, keys in DEFAULTS.items() if key in keys]
    if homes:  # the exact name elsewhere beats a near one here
        return f"did you mean {homes[0]}.{key}? It belongs under [{homes[0]}]"
    guess = closest(key, DEFAULTS[section])
    if guess:
        return f"did you mean {section}.{guess}?"
    return f"known keys in [{section}]: {', '.join(DEFAULTS[section])}"


def _apply_speaker_voices(value: Any, config: Config, report: _Report,
                          custom_voices: bool) -> None:
    if not isinstance(value, dict):
        got = shown(value, rule_of("dialogue", "voices"))
        report(("dialogue", "voices"), SPEAKER_VOICES,
               f"{SPEAKER_VOICES} should be a table, got {got}; write [{SPEAKER_VOICES}] and "
               'under it lines such as Alice = "af_bella" (ignored)')
        return
    for speaker, voice in value.items():
        dotted = f"{SPEAKER_VOICES}.{speaker}"
        try:
            checked = check_setting(SPEAKER_VOICES, speaker, voice, custom_voices=custom_voices)
        except SettingError as error:
            report(("dialogue", "voices", speaker), dotted,
                   f"{error}; {speaker} speaks with the default voice")
            continue
        config.dialogue.voices[speaker] = checked
        config.from_file.add(dotted)


def _separate_chords(config: Config, report: _Report) -> None:
    """Talk and interrupt on one chord cannot both work: HotkeysConfig says which gives way,
    and it keeps its default."""
    hotkeys = config.hotkeys
    blame = hotkeys.giving_way(config.from_file)
    if blame is None:
        return
    other = "talk" if blame == "interrupt" else "interrupt"
    value, default = getattr(hotkeys, blame), DEFAULTS["hotkeys"][blame]
    report(("hotkeys", blame), f"hotkeys.{blame}",
           f"hotkeys.{blame} = {value!r} is the same chord as hotkeys.{other}; give each its "
           f"own; using {default!r}")
    setattr(hotkeys, blame, default)
    config.from_file.discard(f"hotkeys.{blame}")


# --- where things are in the text (tomllib gives no positions) ------------------------------

_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\\n]|\\.)*"|'[^'\n]*')"""
_KEY_PATH = rf"{_KEY_PART}(?:[ \t]*\.[ \t]*{_KEY_PART})*"
_TABLE_HEADER = re.compile(rf"[ \t]*\[[ \t]*({_KEY_PATH})[ \t]*\][ \t]*(?:#.*)?")
_ARRAY_HEADER = re.compile(rf"[ \t]*\[\[[ \t]*({_KEY_PATH})[ \t]*\]\][ \t]*(?:#.*)?")
_ASSIGNMENT = re.compile(rf"[ \t]*({_KEY_PATH})[ \t]*=[ \t]*")
_MAX_VALUE_LINES = 200  # a multi-line string or array longer than this is not followed


def _key_path(text: str) -> tuple[str, ...]:
    parts: list[str] = []
    for match in re.finditer(_KEY_PART, text):
        part = match.group(0)
        if part.startswith('"'):
            part = str(tomllib.loads(f"k = {part}")["k"])  # escapes as TOML reads them
        elif part.startswith("'"):
            part = part[1:-1]
        parts.append(part)
    return tuple(parts)


def _value_end(lines: list[str], start: int) -> int:
    """The line after the value that starts at `start` (multi-line strings and arrays), so
    that their lines are not taken for keys."""
    for end in range(start + 1, min(len(lines), start + _MAX_VALUE_LINES) + 1):
        try:
            tomllib.loads("\n".join(lines[start:end]))
        except tomllib.TOMLDecodeError:
            continue
        return end
    return start + 1


@dataclass
class _Layout:
    """The line (0-based) of each key and [table] header of a TOML text, for messages."""

    keys: dict[tuple[str, ...], int]  # key path -> the line its value starts on
    tables: dict[tuple[str, ...], int]  # [table] path -> its header's line

    @classmethod
    def scan(cls, text: str) -> _Layout:
        lines = text.splitlines()
        keys: dict[tuple[str, ...], int] = {}
        tables: dict[tuple[str, ...], int] = {}
        current: tuple[str, ...] = ()
        index = 0
        while index < len(lines):
            line = lines[index]
            header = _TABLE_HEADER.fullmatch(line) or _ARRAY_HEADER.fullmatch(line)
            if header:
                current = _key_path(header.group(1))
                tables.setdefault(current, index)
                index += 1
                continue
            assignment = _ASSIGNMENT.match(line)
            if assignment:
                keys.setdefault((*current, *_key_path(assignment.group(1))), index)
                index = _value_end(lines, index)
                continue
            index += 1
        return cls(keys, tables)

    def line_of(self, key_path: tuple[str, ...]) -> int | None:
        """The 1-based line of the key, else of the nearest table or key holding it."""
        for length in range(len(key_path), 0, -1):
            prefix = key_path[:length]
            for found in (self.keys.get(prefix), self.tables.get(prefix)):
                if found is not None:
                    return found + 1
        return None


@dataclass(frozen=True)
class SyntaxPosition:
    """Where tomllib found a syntax error, and why, as a message says it."""

    line: int
    column: int | None
    reason: str

    @classmethod
    def of(cls, error: tomllib.TOMLDecodeError, text: str) -> SyntaxPosition:
        message = str(error)  # "Invalid value (at line 3, column 9)"
        found = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
        if found:
            return cls(int(found.group(1)), int(found.group(2)), message[:found.start()])
        reason = message.replace(" (at end of document)", "")
        return cls(max(len(text.splitlines()), 1), None, reason)

    def describe(self) -> str:
        at = (f"line {self.line}, column {self.column}" if self.column
              else f"the end of the file (line {self.line})")
        return f"TOML syntax error at {at}: {self.reason}"
