"""The user's settings: TOML in the user config dir, read into typed dataclasses.

A mistake in the file never stops the agent: each bad or unknown key is reported with the
file, line and key, and the default is used in its place.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from agent import paths


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
    # "auto" follows the voice (b* voices: British English), else an espeak language code.
    language: str = "auto"
    # Synthesis threads; the look-ahead bounds how many chunks wait ready before playback.
    workers: int = 1
    lookahead: int = 2


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
    path: Path | None = None
    problems: list[str] = field(default_factory=list)


_RANGES: dict[tuple[str, str], tuple[float, float]] = {
    ("tts", "speed"): (0.5, 2.0),
    ("tts", "workers"): (1, 4),
    ("tts", "lookahead"): (1, 16),
    ("audio", "blocksize"): (32, 8192),
    ("audio", "fade_ms"): (3.0, 10.0),
    ("llm", "temperature"): (0.0, 2.0),
    ("llm", "max_tokens"): (1, 32768),
    ("llm", "timeout_s"): (1.0, 600.0),
    ("conversation", "history_turns"): (0, 1000),
    ("conversation", "history_chars"): (0, 1_000_000),
    ("overlay", "hide_after_s"): (0.0, 86_400.0),
    ("overlay", "opacity"): (0.2, 1.0),
}

_CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("hotkeys", "backend"): ("auto", "keyboard", "pynput", "none"),
    ("overlay", "corner"): ("bottom-right", "bottom-left", "top-right", "top-left"),
}


def _line_of(text: str, section: str, key: str) -> int | None:
    """Line number of `key` inside `[section]`, for messages (tomllib gives no positions)."""
    current = ""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        header = re.fullmatch(r"\[\s*([^\]]+?)\s*\]", stripped)
        if header:
            current = header.group(1)
        elif current == section and re.match(rf"{re.escape(key)}\s*=", stripped):
            return number
    return None


def _where(path: Path, text: str, section: str, key: str) -> str:
    line = _line_of(text, section, key)
    return f"{path}:{line}" if line else str(path)


def _coerce(value: Any, default: Any) -> Any:
    """The value in the default's type, or raise TypeError."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # a device given by index
    elif isinstance(default, dict) and isinstance(value, dict) and all(
            isinstance(v, str) for v in value.values()):
        return dict(value)
    raise TypeError(type(default).__name__)


def load(path: Path | None = None) -> Config:
    path = path or paths.config_file()
    config = Config(path=path)
    if not path.exists():
        return config
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        config.problems.append(f"{path}: {error}; using the defaults for every key")
        return config
    sections: dict[str, Any] = {
        "tts": config.tts, "audio": config.audio, "llm": config.llm,
        "conversation": config.conversation, "dialogue": config.dialogue,
        "hotkeys": config.hotkeys, "overlay": config.overlay}
    for section_name, values in data.items():
        section = sections.get(section_name)
        if section is None or not isinstance(values, dict):
            config.problems.append(f"{path}: unknown section [{section_name}] (ignored)")
            continue
        known = {f.name: f for f in dataclasses.fields(section)}
        for key, value in values.items():
            where = _where(path, text, section_name, key)
            if key not in known:
                config.problems.append(
                    f"{where}: unknown key {section_name}.{key} (ignored); known keys: "
                    + ", ".join(sorted(known)))
                continue
            default = getattr(section, key)
            try:
                value = _coerce(value, default)
            except TypeError:
                config.problems.append(
                    f"{where}: {section_name}.{key} should be a {type(default).__name__}, "
                    f"got {value!r}; using {default!r}")
                continue
            bounds = _RANGES.get((section_name, key))
            if bounds and not bounds[0] <= value <= bounds[1]:
                config.problems.append(
                    f"{where}: {section_name}.{key} = {value!r} is outside "
                    f"{bounds[0]}..{bounds[1]}; using {default!r}")
                continue
            choices = _CHOICES.get((section_name, key))
            if choices and value not in choices:
                config.problems.append(
                    f"{where}: {section_name}.{key} = {value!r} is not one of "
                    f"{', '.join(choices)}; using {default!r}")
                continue
            setattr(section, key, value)
    return config


def save_setting(path: Path, section: str, key: str, value: bool | int | float | str) -> None:
    """Set one key in the user's file, keeping every other line (comments included) as it
    is: the tray's choices are saved this way. The file is replaced atomically, so a crash
    never leaves half a file."""
    rendered = tomli_w.dumps({key: value}).strip()
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    current, section_end, replaced = "", None, False
    for index, line in enumerate(lines):
        stripped = line.strip()
        header = re.fullmatch(r"\[\s*([^\]]+?)\s*\]", stripped)
        if header:
            if current == section and section_end is None:
                section_end = index
            current = header.group(1)
        elif current == section and re.match(rf"{re.escape(key)}\s*=", stripped):
            lines[index] = rendered
            replaced = True
            break
    if not replaced:
        if current == section and section_end is None:
            section_end = len(lines)
        if section_end is None:
            lines += ["", f"[{section}]", rendered] if lines else [f"[{section}]", rendered]
        else:
            # After the section's last non-blank line.
            while section_end > 0 and not lines[section_end - 1].strip():
                section_end -= 1
            lines.insert(section_end, rendered)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if path.exists():
        os.chmod(temporary, path.stat().st_mode & 0o777)
    os.replace(temporary, path)


STARTER = """\
# voice-agent settings. Every key is optional; a mistake is reported with its line and the
# default is used instead. All keys, with what they do: config.example.toml in the project.

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
