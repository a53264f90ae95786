"""The user's settings: TOML in the user config dir, read into typed dataclasses.

A mistake in the file never stops the agent: each bad or unknown key is reported with the
file, line and key, and the default is used in its place.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


@dataclass
class ConversationConfig:
    # New input interrupts the reply being spoken instead of waiting for it to finish.
    barge_in: bool = False
    # How much history goes to the LLM: the last N turns, and at most this many characters.
    history_turns: int = 10
    history_chars: int = 6000


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
        "conversation": config.conversation, "dialogue": config.dialogue}
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
            setattr(section, key, value)
    return config
