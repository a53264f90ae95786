"""Writing the settings file: one key at a time, the rest of the file as the user wrote it.

`save_setting` edits the file with tomlkit, which keeps comments, blank lines, key spelling,
quoting and indentation, and works on inline tables and dotted keys too. Safety around it:
tomllib (the reader `load` uses) must parse the file first, so a file with a syntax error is
never written and the message names its line; the result must read back as the old content
plus exactly the one value, else nothing is written; the previous file is kept as FILE.bak
and the new one replaces it atomically; a file holding an API key stays private (0600).
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import stat
import tempfile
import tomllib
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

import tomlkit

from agent.config.loader import SyntaxPosition
from agent.config.privacy import PRIVATE_MODE, holds_api_key
from agent.config.schema import resolve_setting
from agent.config.values import SettingError

NEW_FILE_MODE = 0o644

Value = bool | int | float | str


class ConfigError(Exception):
    """The settings file cannot be written safely (a TOML syntax error, a layout this module
    does not edit, not UTF-8). The message names the file and line; the file is unchanged."""


def save_setting(path: Path, section: str, key: str, value: Value) -> None:
    """Set one key in the user's file and keep everything else as it was, comments included:
    the tray's choices and `voice-agent config set` are saved this way.

    The previous file is kept as FILE.bak and the new one replaces it atomically, so a crash
    never leaves half a file. A file that does not parse is never written: a ConfigError
    names its line (mistakes in other keys do not block a write). A file holding an API key
    is left private (0600). The value is not checked here: callers do (check_setting)."""
    save_settings(path, section, {key: value})


def save_settings(path: Path, section: str, values: Mapping[str, Value]) -> None:
    """`save_setting` for several keys of one section in one write: a choice that takes
    more than one key (a server: backend, base_url, model) is never seen half made."""
    dotted = ", ".join(f"{section}.{key}" for key in values)
    try:
        for key in values:
            if resolve_setting(f"{section}.{key}") != (section, key):
                raise SettingError(f"{section}.{key} is not one setting")
    except SettingError as error:
        raise ConfigError(f"{path}: cannot save {dotted}: {error}") from None
    target = path.resolve() if path.is_symlink() else path  # write the file a link points to
    old_bytes = target.read_bytes() if target.exists() else b""
    old_text = _decoded_for_writing(target, old_bytes, dotted)
    try:
        old_data = tomllib.loads(old_text)
    except tomllib.TOMLDecodeError as error:
        position = SyntaxPosition.of(error, old_text)
        raise ConfigError(f"{target}:{position.line}: cannot save {dotted}: "
                          f"{position.describe()}; fix that first (voice-agent config edit); "
                          "the file was not changed") from None
    new_text: str | None = old_text
    expected = old_data
    for key, value in values.items():
        new_text = _with_setting(new_text, section, key, value) if new_text is not None else None
        expected = _with_value(expected, section, key, value)
    new_data = _parsed(new_text) if new_text is not None else None
    if new_data is None or not _same(new_data, expected):
        # tomlkit could not place the value, or something else would change: do not write.
        raise ConfigError(f"{target}: cannot save {dotted}: [{section}] is written in a form "
                          "this program does not edit (not a table of keys); change it by "
                          "hand (voice-agent config edit); the file was not changed")
    assert new_text is not None
    exists = target.exists()
    old_mode = stat.S_IMODE(target.stat().st_mode) if exists else NEW_FILE_MODE
    mode = PRIVATE_MODE if holds_api_key(new_data, new_text) else old_mode
    if exists and new_text == old_text:
        if mode != old_mode:
            os.chmod(target, mode)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if exists:
        backup_mode = PRIVATE_MODE if holds_api_key(old_data, old_text) else old_mode
        _write_atomically(target.with_name(target.name + ".bak"), old_bytes, backup_mode)
    _write_atomically(target, new_text.encode("utf-8"), mode)


def _decoded_for_writing(path: Path, raw: bytes, dotted: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[:error.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: cannot save {dotted}: the file is not UTF-8 text; "
                          "fix that first (voice-agent config edit); the file was not "
                          "changed") from None


def _with_setting(text: str, section: str, key: str, value: Value) -> str | None:
    """`text` with section.key set to `value` (None where tomlkit cannot place it): a key's
    value replaced in place (its indent, spelling and comment kept), else a line added at
    the end of its table, else the table added. The file's line endings are kept."""
    newline = "\r\n" if "\r\n" in text else "\n"
    # tomlkit writes new lines with "\n": edit in "\n", turn them all back at the end. A
    # last line without its line break would run into a table added after it.
    text = text.replace("\r\n", "\n")
    if text and not text.endswith("\n"):
        text += "\n"
    try:
        document = tomlkit.parse(text)
        table: Any = document
        for part in section.split("."):
            if part not in table:
                table[part] = tomlkit.table()
            table = table[part]
            if not isinstance(table, MutableMapping):  # e.g. `tts = 3` or [[tts]]
                return None
        table[key] = value
        edited = document.as_string()
    except Exception:  # whatever tomlkit cannot read or do here, the file is left as it is
        return None
    return edited.replace("\n", newline) if newline != "\n" else edited


def toml_value(value: Value) -> str:
    """A value as TOML writes it: "af_bella" quoted, true, 1.0."""
    return tomlkit.item(value).as_string()


def toml_key(part: str) -> str:
    """A key as TOML writes it: bare if it can be, else quoted ("Bob Smith")."""
    return tomlkit.key(part).as_string()


def _with_value(data: dict[str, Any], section: str, key: str, value: Any) -> dict[str, Any]:
    """A copy of `data` with section.key = value, as the file should read after the write."""
    expected = copy.deepcopy(data)
    table: Any = expected
    for part in section.split("."):
        table = table.setdefault(part, {}) if isinstance(table, dict) else None
    if isinstance(table, dict):
        table[key] = value
    return expected


def _parsed(text: str) -> dict[str, Any] | None:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None


def _same(first: Any, second: Any) -> bool:
    """Equal as TOML data: the same types (1 is not 1.0, nor true), NaN equal to NaN."""
    if isinstance(first, dict) and isinstance(second, dict):
        return first.keys() == second.keys() and all(_same(first[k], second[k]) for k in first)
    if isinstance(first, list) and isinstance(second, list):
        return len(first) == len(second) and all(map(_same, first, second))
    if isinstance(first, float) and isinstance(second, float):
        return first == second or (math.isnan(first) and math.isnan(second))
    return type(first) is type(second) and bool(first == second)


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write a temporary file beside `path` (created private, so a key is never readable by
    others, not even for a moment), then rename it over `path`."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                             suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


STARTER = """\
# voice-agent settings. Every key is optional; a mistake is reported with its line and the
# default is used instead (`voice-agent config validate` checks this file). All keys, with
# what they do and their defaults: config.example.toml in the project.

[tts]
# voice = "af_bella"
# speed = 1.0

[llm]
# backend = "embedded"   # or "openai" (Ollama /v1, llama.cpp, LM Studio, vLLM, OpenAI), "ollama"
# base_url = "http://127.0.0.1:11434/v1"
# model = ""

[hotkeys]
# talk = "ctrl+alt+space"
# interrupt = "ctrl+alt+x"
# backend = "auto"
"""


def write_starter(path: Path) -> None:
    """A first settings file with the common keys commented out, to edit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(STARTER, encoding="utf-8")
