"""The user's settings: TOML in the user config dir, read into typed dataclasses.

A mistake in the file never stops the agent: each bad or unknown key is reported (a `Problem`:
file, line, key, what is wrong and the expected form) and the default is used in its place; a
TOML syntax error sets the whole file aside until it is fixed. `save_setting` changes one key
and keeps the rest of the file as the user wrote it, comments included, and never writes over
a file that does not parse.

Secrets: llm.api_key (better: the OPENAI_API_KEY environment variable) is never quoted in a
message, and a file holding one is kept private (0600).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import logging
import math
import os
import re
import stat
import tempfile
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tomli_w

from agent import paths

log = logging.getLogger(__name__)

API_KEY_ENV = "OPENAI_API_KEY"
PRIVATE_MODE = 0o600
NEW_FILE_MODE = 0o644


@dataclass(frozen=True)
class Problem:
    """One mistake in the settings file."""

    file: Path
    line: int | None  # 1-based; None when the mistake has no line (an unreadable file)
    key: str  # "tts.speed", "[ttss]" for a section, "" for the whole file
    message: str  # what is wrong, the expected form, and what is used instead

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else str(self.file)
        return f"{where}: {self.message}"


class ConfigError(Exception):
    """The settings file cannot be written safely (a TOML syntax error, a layout this module
    does not edit, not UTF-8). The message names the file and line; the file is unchanged."""


class SettingError(ValueError):
    """A value a setting cannot take, or an unknown setting: the message names the setting,
    says what is wrong and gives the expected form (never a secret's value)."""


@dataclass
class TTSConfig:
    voice: str = "af_bella"
    speed: float = 1.0
    # Local files that override both the official and the packaged Kokoro files.
    model_path: str = ""
    voices_path: str = ""
    # "auto": official files when cached, else the packaged int8 ONNX; or force one.
    source: str = "auto"
    # Fetch the official files when they are missing (a network call, so opt-in; failures
    # are remembered for a day so an offline machine does not wait at every start).
    auto_download: bool = False
    # Fetch all 54 voices from npm (kokoro-js, 27 MB, checked by sha256) when a voice that
    # needs them is chosen and npm is installed; a failed try is remembered for a day.
    fetch_voices: bool = True
    # "auto" follows the voice's language (its first letter), else an espeak language code.
    language: str = "auto"
    # Synthesis threads; the look-ahead bounds how many chunks are synthesised ahead, the
    # one playing included. Short chunks (a reply's first ones) synthesise at about real time
    # here: with 2 the synthesiser idled while one chunk ahead, and the audio stalled when a
    # longer chunk came (13.9 s of stalls in 134 s of speech, against 4.7 s with 3).
    workers: int = 1
    lookahead: int = 3


@dataclass
class AudioConfig:
    # Output device by name (substring) or index; "" is the system default.
    device: str = ""
    blocksize: int = 256
    fade_ms: float = 3.0
    interrupt_sound: bool = False
    # Show replies as text only, without speaking them (the tray's Mute).
    mute: bool = False


DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful voice assistant. Your replies are spoken aloud, so answer in one to "
    "three short sentences of plain conversational text: no markdown, no lists, no code, no "
    "emoji, no URLs. If you do not know, say so briefly."
)


@dataclass
class LLMConfig:
    # "embedded" (SmolLM2 in-process, offline), "openai" (any OpenAI-compatible server:
    # Ollama's /v1, llama.cpp, LM Studio, vLLM, OpenAI) or "ollama" (Ollama's /api/chat).
    backend: str = "embedded"
    base_url: str = ""
    model: str = ""
    # Prefer the OPENAI_API_KEY environment variable; a key here makes the file private.
    api_key: str = ""
    temperature: float = 0.7
    max_tokens: int = 256
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    # Connect timeout, and the longest silence in the middle of a reply before it is
    # reported as stalled.
    timeout_s: float = 30.0
    # "embedded": answer with the embedded model (and say so) when the server is unreachable.
    fallback: str = ""
    # The tray's LLM menu: true while the embedded model is chosen over the server set here.
    use_embedded: bool = False


@dataclass
class ConversationConfig:
    # New input interrupts the reply being spoken instead of waiting for it to finish.
    barge_in: bool = False
    # How much history goes to the LLM: the last N turns, and at most this many characters.
    history_turns: int = 10
    history_chars: int = 6000


@dataclass
class HotkeysConfig:
    # Key combinations in the `keyboard` library's spelling ("ctrl+alt+space").
    talk: str = "ctrl+alt+space"
    interrupt: str = "ctrl+alt+x"
    # "auto" (the first that can run here), "keyboard", "pynput" or "none" (use the desktop's
    # own shortcut settings to run `voice-agent talk` / `voice-agent interrupt`).
    backend: str = "auto"


@dataclass
class OverlayConfig:
    # Seconds of quiet before the overlay hides itself; 0 keeps it open.
    hide_after_s: float = 20.0
    # "bottom-right", "bottom-left", "top-right" or "top-left".
    corner: str = "bottom-right"
    # Window opacity where the desktop supports it (a compositor on X11).
    opacity: float = 0.92


@dataclass
class STTConfig:
    # Speech input (push-to-talk). "base" and "tiny.en" ship in packages (offline); any other
    # faster-whisper model name ("small.en", "distil-small.en") is downloaded when possible.
    model: str = "base"
    # "en", another Whisper language code, or "auto" (multilingual models only).
    language: str = "en"
    # "hold": hold the talk hotkey to speak, release to send (a tap opens the overlay).
    # "toggle": press to start, press again (or pause for vad_silence_s) to send.
    mode: str = "hold"
    # A press held longer than this is push-to-talk; shorter is a tap.
    hold_threshold_s: float = 0.3
    # Toggle mode: stop after this much quiet following speech.
    vad_silence_s: float = 1.0
    # Input device by name (any part of it) or index; "" is the system default.
    input_device: str = ""


@dataclass
class DialogueConfig:
    # Speaker name -> voice, for `voice-agent dialogue`.
    voices: dict[str, str] = field(default_factory=dict)


@dataclass
class Config:
    tts: TTSConfig = field(default_factory=TTSConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    conversation: ConversationConfig = field(default_factory=ConversationConfig)
    dialogue: DialogueConfig = field(default_factory=DialogueConfig)
    hotkeys: HotkeysConfig = field(default_factory=HotkeysConfig)
    overlay: OverlayConfig = field(default_factory=OverlayConfig)
    stt: STTConfig = field(default_factory=STTConfig)
    path: Path | None = None
    # The file's mistakes, in file order; each bad key kept its default.
    issues: list[Problem] = field(default_factory=list)
    # What load() did to the file itself (made it private), for the log.
    notices: list[str] = field(default_factory=list)
    # The settings whose value came from the file: "tts.voice", "dialogue.voices.Alice".
    from_file: set[str] = field(default_factory=set)

    @property
    def problems(self) -> tuple[str, ...]:
        """The issues as lines for the log: "FILE:LINE: what is wrong; using DEFAULT"."""
        return tuple(str(issue) for issue in self.issues)


SECTIONS: dict[str, type[Any]] = {
    "tts": TTSConfig, "audio": AudioConfig, "llm": LLMConfig,
    "conversation": ConversationConfig, "dialogue": DialogueConfig,
    "hotkeys": HotkeysConfig, "overlay": OverlayConfig, "stt": STTConfig,
}
# Every section's keys with their defaults.
DEFAULTS: dict[str, dict[str, Any]] = {
    name: {f.name: getattr(kind(), f.name) for f in dataclasses.fields(kind)}
    for name, kind in SECTIONS.items()
}
SPEAKER_VOICES = "dialogue.voices"  # a table of speaker = "voice": its keys are names
SECRET_SETTINGS = frozenset({"llm.api_key"})

RANGES: dict[str, tuple[float, float]] = {
    "tts.speed": (0.5, 2.0),
    "tts.workers": (1, 4),
    "tts.lookahead": (1, 16),
    "audio.blocksize": (32, 8192),
    "audio.fade_ms": (3.0, 10.0),
    "llm.temperature": (0.0, 2.0),
    "llm.max_tokens": (1, 32768),
    "llm.timeout_s": (1.0, 600.0),
    "conversation.history_turns": (0, 1000),
    "conversation.history_chars": (0, 1_000_000),
    "overlay.hide_after_s": (0.0, 86_400.0),
    "overlay.opacity": (0.2, 1.0),
    "stt.hold_threshold_s": (0.1, 2.0),
    "stt.vad_silence_s": (0.3, 10.0),
}

CHOICES: dict[str, tuple[str, ...]] = {
    "tts.source": ("auto", "official", "packaged"),
    "llm.backend": ("embedded", "openai", "ollama"),
    "llm.fallback": ("", "embedded", "none"),
    "hotkeys.backend": ("auto", "keyboard", "pynput", "none"),
    "overlay.corner": ("bottom-right", "bottom-left", "top-right", "top-left"),
    "stt.mode": ("hold", "toggle"),
}

_TYPE_NAMES: dict[type, str] = {bool: "a boolean", int: "an integer", float: "a float",
                                str: "a string", dict: "a table", list: "an array"}
_VOICE_FORM = ('a voice that `voice-agent voices` lists, e.g. "af_bella", or a blend with '
               'weights, e.g. "af_bella:0.7,af_sky:0.3"')
_URL_FORM = ('http(s)://host[:port][/path], e.g. "http://127.0.0.1:11434/v1", or leave it '
             'empty ("") for the embedded model')
_DEVICE_FORM = ('a device name (any part of it) or index as `voice-agent devices` lists them, '
                'or "" for the system default')
_LANGUAGE = re.compile(r"auto|[a-z]{2,3}(-[a-z0-9]{1,8})*", re.IGNORECASE)


# --- checking one value ---------------------------------------------------------------------


def resolve_setting(dotted: str) -> tuple[str, str]:
    """"tts.voice" -> ("tts", "voice"); "dialogue.voices.Alice" -> ("dialogue.voices", "Alice").
    An unknown name is a SettingError with the closest known one."""
    dotted = dotted.strip()
    speaker = dotted.removeprefix(SPEAKER_VOICES + ".")
    if speaker != dotted and speaker:
        return SPEAKER_VOICES, speaker
    if dotted == SPEAKER_VOICES:
        raise SettingError(f"{SPEAKER_VOICES} is a table: set one speaker's voice with "
                           f"{SPEAKER_VOICES}.NAME, e.g. {SPEAKER_VOICES}.Alice af_bella")
    section, _, key = dotted.partition(".")
    if key in DEFAULTS.get(section, {}):
        return section, key
    known = [f"{s}.{k}" for s, keys in DEFAULTS.items() for k in keys if f"{s}.{k}" !=
             SPEAKER_VOICES]
    guess = _closest(dotted, known)
    hint = f"did you mean {guess}?" if guess else "settings are written section.key, e.g. tts.voice"
    raise SettingError(f"unknown setting {dotted!r}; {hint}")


def check_setting(section: str, key: str, value: Any, *, custom_voices: bool = False) -> Any:
    """`value` as the setting `section.key` takes it (an integer where a float goes becomes a
    float), or a SettingError. `custom_voices`: tts.voices_path names the voice files, so any
    voice name may be in them."""
    dotted = f"{section}.{key}"
    if section == SPEAKER_VOICES:
        if not isinstance(value, str):
            raise SettingError(f"{dotted} should be a string, got {_shown(dotted, value)}; "
                               f"write {_VOICE_FORM}")
        return _check_voice(dotted, value, custom_voices)
    value = _coerce(dotted, key, value, DEFAULTS[section][key])
    bounds = RANGES.get(dotted)
    if bounds and not bounds[0] <= value <= bounds[1]:  # NaN is outside every range too
        raise SettingError(f"{dotted} = {value!r} is outside {bounds[0]}..{bounds[1]}")
    choices = CHOICES.get(dotted)
    if choices and value not in choices:
        guess = _closest(value.strip().lower(), [c for c in choices if c])
        hint = f" (did you mean {guess!r}?)" if guess else ""
        listed = ", ".join(choice or '""' for choice in choices)
        raise SettingError(f"{dotted} = {value!r} is not one of {listed}{hint}")
    check = _NAMED_CHECKS.get(dotted)
    return check(dotted, value, custom_voices) if check else value


def same_chord(first: str, second: str) -> bool:
    """Whether two hotkey settings are the same chord ("ctrl+alt+x" and "Alt+Ctrl+X" are)."""
    from agent.desktop.hotkeys import parse_hotkey  # no display, no pynput: only the syntax

    try:
        return parse_hotkey(first) == parse_hotkey(second)
    except ValueError:
        return False


def _coerce(dotted: str, key: str, value: Any, default: Any) -> Any:
    """The value in the default's type, or a SettingError saying what to write."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        form = "true or false, without quotes"
    elif isinstance(default, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        form = f"a number, e.g. {key} = {default}"
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        form = f"a whole number, e.g. {key} = {default}"
    else:
        if isinstance(value, str):
            return value
        if dotted == "audio.device" and isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # a device given by index
        example = default if default and len(default) <= 30 else "..."
        form = f'text in double quotes, e.g. {key} = "{example}"'
    raise SettingError(f"{dotted} should be {_TYPE_NAMES[type(default)]}, "
                       f"got {_shown(dotted, value)}; write {form}")


def _shown(dotted: str, value: Any) -> str:
    """A value for a message: quoted and shortened; a secret only by its kind."""
    if dotted in SECRET_SETTINGS:
        return f"{_TYPE_NAMES.get(type(value), 'a value')} (not shown: it is a secret)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_voice(dotted: str, spec: str, custom_voices: bool) -> str:
    from agent.tts.base import SynthesisError
    from agent.tts.voices import OFFICIAL_VOICES, parse_blend

    try:
        parts = parse_blend(spec)
    except SynthesisError as error:
        # parse_blend's own hint is dropped: the message ends with the expected form.
        reason = str(error).removeprefix(f"voice {spec!r}: ").split(" (")[0]
        raise SettingError(f"{dotted} = {spec!r} is not a valid voice ({reason}); "
                           f"write {_VOICE_FORM}") from None
    unknown = [part.voice for part in parts if part.voice not in OFFICIAL_VOICES]
    if unknown and not custom_voices:
        guess = _closest(unknown[0], OFFICIAL_VOICES)
        hint = f" (did you mean {guess}?)" if guess else ""
        what = "" if len(parts) == 1 else f": {unknown[0]!r}"
        raise SettingError(f"{dotted} = {spec!r}{what} is not a Kokoro voice{hint}; "
                           f"write {_VOICE_FORM}")
    return spec


def _check_language(dotted: str, value: str, _custom_voices: bool) -> str:
    if not _LANGUAGE.fullmatch(value):
        raise SettingError(f'{dotted} = {value!r} is not a language; write "auto" or an '
                           'espeak-ng language code, e.g. "en-us", "en-gb" or "fr-fr"')
    return value


def _check_device(dotted: str, value: str, _custom_voices: bool) -> str:
    """Only the spelling: whether the device exists is known when the stream opens."""
    if value == "":
        return value
    if not value.strip():
        why = "is blank"
    elif any(ord(c) < 32 or ord(c) == 127 for c in value):
        why = "has control characters in it"
    elif re.fullmatch(r"\s*-\d+\s*", value):
        why = "is a negative index"
    else:
        return value
    raise SettingError(f"{dotted} = {value!r} {why}; write {_DEVICE_FORM}")


def _check_url(dotted: str, value: str, _custom_voices: bool) -> str:
    url = value.strip()
    if not url:
        return value
    not_a_url = SettingError(f"{dotted} = {value!r} is not an http(s) URL; write {_URL_FORM}")
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed [IPv6 address
        raise not_a_url from None
    if parts.username is not None or parts.password is not None:  # not echoed: a secret
        raise SettingError(f"{dotted} has a user name or password in it (not shown): keep "
                           f"the key in {API_KEY_ENV} or llm.api_key; write {_URL_FORM}")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0 or (port is None and ":" in parts.netloc.rpartition("]")[2]):
        raise SettingError(f"{dotted} = {value!r} has a port that is not a number from 1 to "
                           f"65535; write {_URL_FORM}")
    if (parts.scheme.lower() not in ("http", "https") or not parts.hostname or parts.query
            or parts.fragment or any(c.isspace() for c in url)):
        raise not_a_url
    return value


def _check_api_key(dotted: str, value: str, _custom_voices: bool) -> str:
    if any(c.isspace() for c in value.strip()):
        raise SettingError(f"{dotted} has spaces or line breaks in it (the value is not shown); "
                           f"write the key alone in double quotes, or better set {API_KEY_ENV}")
    return value


def _check_hotkey(dotted: str, value: str, _custom_voices: bool) -> str:
    from agent.desktop.hotkeys import parse_hotkey  # no display, no pynput: only the syntax

    try:
        parse_hotkey(value, dotted)
    except ValueError as error:
        raise SettingError(str(error).rstrip(".")) from None
    return value


_NAMED_CHECKS: dict[str, Callable[[str, str, bool], str]] = {
    "tts.voice": _check_voice,
    "tts.language": _check_language,
    "audio.device": _check_device,
    "llm.base_url": _check_url,
    "llm.api_key": _check_api_key,
    "hotkeys.talk": _check_hotkey,
    "hotkeys.interrupt": _check_hotkey,
}


def _closest(word: str, candidates: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


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
    """The line after the value that starts at `start` (multi-line strings and arrays)."""
    for end in range(start + 1, min(len(lines), start + _MAX_VALUE_LINES) + 1):
        try:
            tomllib.loads("\n".join(lines[start:end]))
        except tomllib.TOMLDecodeError:
            continue
        return end
    return start + 1


@dataclass
class _Layout:
    """Where each key and [table] of a TOML text is: for messages, and to change one value
    in place."""

    lines: list[str]
    keys: dict[tuple[str, ...], tuple[int, int]]  # key path -> its lines [start, end)
    tables: dict[tuple[str, ...], tuple[int, int]]  # [table] path -> header line, table end

    @classmethod
    def scan(cls, text: str) -> _Layout:
        lines = text.splitlines()
        keys: dict[tuple[str, ...], tuple[int, int]] = {}
        tables: dict[tuple[str, ...], tuple[int, int]] = {}
        current: tuple[str, ...] = ()
        open_table: tuple[tuple[str, ...], int] | None = None
        index = 0
        while index < len(lines):
            line = lines[index]
            header = _TABLE_HEADER.fullmatch(line)
            array_header = None if header else _ARRAY_HEADER.fullmatch(line)
            if header or array_header:
                if open_table:
                    tables.setdefault(open_table[0], (open_table[1], index))
                current = _key_path((header or array_header).group(1))  # type: ignore[union-attr]
                open_table = (current, index) if header else None
                index += 1
                continue
            assignment = _ASSIGNMENT.match(line)
            if assignment:
                end = _value_end(lines, index)
                keys.setdefault((*current, *_key_path(assignment.group(1))), (index, end))
                index = end
                continue
            index += 1
        if open_table:
            tables.setdefault(open_table[0], (open_table[1], len(lines)))
        return cls(lines, keys, tables)

    def line_of(self, key_path: tuple[str, ...]) -> int | None:
        """The 1-based line of the key, else of the nearest table or key holding it."""
        for length in range(len(key_path), 0, -1):
            prefix = key_path[:length]
            for found in (self.keys.get(prefix), self.tables.get(prefix)):
                if found:
                    return found[0] + 1
        return None


@dataclass(frozen=True)
class _SyntaxPosition:
    line: int
    column: int | None
    reason: str

    @classmethod
    def of(cls, error: tomllib.TOMLDecodeError, text: str) -> _SyntaxPosition:
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


# --- loading --------------------------------------------------------------------------------

_WHOLE_FILE_IGNORED = ("the whole file is ignored until it is fixed, so every setting uses "
                       "its default")
_API_KEY_LINE = re.compile(
    r"""^[ \t#]*(?:["']?llm["']?[ \t]*\.[ \t]*)?["']?api_key["']?[ \t]*=[ \t]*"""
    r"""(?!(?:""|'')[ \t]*(?:#.*)?$)\S""", re.MULTILINE)


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
        position = _SyntaxPosition.of(error, text)
        config.issues.append(Problem(path, position.line, "",
                                     f"{position.describe()}; {_WHOLE_FILE_IGNORED}"))
        _keep_private(path, _holds_api_key(None, text), config)
        return config
    _keep_private(path, _holds_api_key(data, text), config)
    _apply(data, config, _Layout.scan(text))
    file_key = _dig(data, "llm", "api_key")
    if isinstance(file_key, str):  # no message quotes it; this makes sure
        config.issues = [dataclasses.replace(issue, message=_redact(issue.message, [file_key]))
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


def _holds_api_key(data: dict[str, Any] | None, text: str) -> bool:
    """Whether the file has an API key in it (commented out counts: it is still there)."""
    value = _dig(data, "llm", "api_key")
    if value is not None and not (isinstance(value, str) and not value.strip()):
        return True
    return bool(_API_KEY_LINE.search(text))


def _keep_private(path: Path, holds_api_key: bool, config: Config) -> None:
    if not holds_api_key or os.name == "nt":  # Windows has no mode bits to speak of
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
            guess = _closest(section, SECTIONS)
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
    guess = _closest(key, [dotted.partition(".")[2] for dotted in known])
    if guess:
        return f"did you mean {next(d for d in known if d.endswith('.' + guess))}?"
    return "settings go under a section, e.g. [tts]"


def _unknown_key_hint(section: str, key: str) -> str:
    homes = [other for other, keys in DEFAULTS.items() if key in keys]
    if homes:  # the exact name elsewhere beats a near one here
        return f"did you mean {homes[0]}.{key}? It belongs under [{homes[0]}]"
    guess = _closest(key, DEFAULTS[section])
    if guess:
        return f"did you mean {section}.{guess}?"
    return f"known keys in [{section}]: {', '.join(DEFAULTS[section])}"


def _apply_speaker_voices(value: Any, config: Config,
                          report: Callable[[tuple[str, ...], str, str], None],
                          custom_voices: bool) -> None:
    if not isinstance(value, dict):
        report(("dialogue", "voices"), SPEAKER_VOICES,
               f"{SPEAKER_VOICES} should be a table, got {_shown(SPEAKER_VOICES, value)}; write "
               f'[{SPEAKER_VOICES}] and under it lines such as Alice = "af_bella" (ignored)')
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


def _separate_chords(config: Config,
                     report: Callable[[tuple[str, ...], str, str], None]) -> None:
    """Talk and interrupt on one chord cannot both work: the one set last gives way."""
    hotkeys, defaults = config.hotkeys, HotkeysConfig()
    if not same_chord(hotkeys.talk, hotkeys.interrupt):
        return
    # The file's interrupt gives way unless its default would clash with talk too.
    blame = ("interrupt" if "hotkeys.interrupt" in config.from_file
             and not same_chord(defaults.interrupt, hotkeys.talk) else "talk")
    other = "talk" if blame == "interrupt" else "interrupt"
    value, default = getattr(hotkeys, blame), getattr(defaults, blame)
    report(("hotkeys", blame), f"hotkeys.{blame}",
           f"hotkeys.{blame} = {value!r} is the same chord as hotkeys.{other}; give each its "
           f"own; using {default!r}")
    setattr(hotkeys, blame, default)
    config.from_file.discard(f"hotkeys.{blame}")


# --- secrets --------------------------------------------------------------------------------


def api_key_source(cfg: Config) -> str | None:
    """Where the LLM's API key comes from: "file" (llm.api_key wins), the environment
    variable's name, or None."""
    if cfg.llm.api_key.strip():
        return "file"
    if os.environ.get(API_KEY_ENV, "").strip():
        return API_KEY_ENV
    return None


def redacted(text: str, cfg: Config) -> str:
    """`text` with every configured API key (llm.api_key, OPENAI_API_KEY) as ***: for logs."""
    return _redact(text, [cfg.llm.api_key, os.environ.get(API_KEY_ENV, "")])


def _redact(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted({s.strip() for s in secrets if s.strip()}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


# --- writing one setting --------------------------------------------------------------------


def save_setting(path: Path, section: str, key: str, value: bool | int | float | str) -> None:
    """Set one key in the user's file and keep everything else as it was, comments included:
    the tray's choices and `voice-agent config set` are saved this way.

    The previous file is kept as FILE.bak and the new one replaces it atomically, so a crash
    never leaves half a file. A file that does not parse is never written: a ConfigError
    names its line (mistakes in other keys do not block a write). A file holding an API key
    is left private (0600). The value is not checked here: callers do (check_setting)."""
    dotted = f"{section}.{key}"
    try:
        if resolve_setting(dotted) != (section, key):
            raise SettingError(f"{dotted} is not one setting")
    except SettingError as error:
        raise ConfigError(f"{path}: cannot save {dotted}: {error}") from None
    target = path.resolve() if path.is_symlink() else path  # write the file a link points to
    old_bytes = target.read_bytes() if target.exists() else b""
    old_text = _decoded_for_writing(target, old_bytes, dotted)
    try:
        old_data = tomllib.loads(old_text)
    except tomllib.TOMLDecodeError as error:
        position = _SyntaxPosition.of(error, old_text)
        raise ConfigError(f"{target}:{position.line}: cannot save {dotted}: "
                          f"{position.describe()}; fix that first (voice-agent config edit); "
                          "the file was not changed") from None
    new_text = _with_setting(old_text, section, key, value)
    new_data = _parsed(new_text)
    if new_data is None or not _same(new_data, _with_value(old_data, section, key, value)):
        # Something else would change (or the result does not parse): do not write it.
        raise ConfigError(f"{target}: cannot save {dotted}: [{section}] is written in a form "
                          "this program does not edit (an inline table or dotted keys); change "
                          "it by hand (voice-agent config edit); the file was not changed")
    exists = target.exists()
    old_mode = stat.S_IMODE(target.stat().st_mode) if exists else NEW_FILE_MODE
    mode = PRIVATE_MODE if _holds_api_key(new_data, new_text) else old_mode
    if exists and new_text == old_text:
        if mode != old_mode:
            os.chmod(target, mode)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if exists:
        backup_mode = PRIVATE_MODE if _holds_api_key(old_data, old_text) else old_mode
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


def toml_value(value: bool | int | float | str) -> str:
    """A value as TOML writes it: "af_bella" quoted, true, 1.0."""
    return tomli_w.dumps({"v": value}).partition(" = ")[2].rstrip("\n")


def toml_key(part: str) -> str:
    """A key as TOML writes it: bare if it can be, else quoted ("Bob Smith")."""
    return tomli_w.dumps({part: 0}).rpartition(" = ")[0]


def _with_setting(text: str, section: str, key: str, value: bool | int | float | str) -> str:
    """`text` with section.key set to `value`: the key's value replaced in place (its line's
    indent, spelling and comment kept), else a line added at the end of its table, else the
    table added at the end of the file."""
    newline = "\r\n" if "\r\n" in text else "\n"
    layout = _Layout.scan(text)
    lines = list(layout.lines)
    table = tuple(section.split("."))
    if (*table, key) in layout.keys:
        start, end = layout.keys[(*table, key)]
        assignment = _ASSIGNMENT.match(lines[start])
        assert assignment is not None  # the scan found the key by this pattern
        lines[start:end] = [assignment.group(0) + toml_value(value)
                            + _trailing_comment(lines[start:end])]
    elif table in layout.tables:
        header, table_end = layout.tables[table]
        while table_end > header + 1 and not lines[table_end - 1].strip():
            table_end -= 1
        lines.insert(table_end, f"{toml_key(key)} = {toml_value(value)}")
    else:
        while lines and not lines[-1].strip():
            lines.pop()
        lines += [""] if lines else []
        lines += [f"[{'.'.join(toml_key(part) for part in table)}]",
                  f"{toml_key(key)} = {toml_value(value)}"]
    return newline.join(lines) + newline


def _trailing_comment(value_lines: list[str]) -> str:
    """The comment after a value (with the spaces before it), or ""."""
    *body, last = value_lines
    for match in re.finditer("#", last):
        code = last[:match.start()]
        try:
            tomllib.loads("\n".join([*body, code]))
        except tomllib.TOMLDecodeError:
            continue  # this # is inside a string
        return last[len(code.rstrip()):]
    return ""


def _with_value(data: dict[str, Any], section: str, key: str, value: Any) -> dict[str, Any]:
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
