"""The settings' shape: one dataclass a section, and beside each field what it accepts.

A field is declared with `setting(default, within=..., choices=..., check=...)`: its type is
the default's, and its `Rule` (kept in the field's metadata) says the rest, so a setting's
range, choices and check are read where the setting is. `check_setting` applies them, and
`loader` and `voice-agent config set` both go through it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

from agent.config.values import (
    VOICE_FORM,
    CheckContext,
    SettingError,
    ValueCheck,
    closest,
    valid_api_key,
    valid_device,
    valid_hotkey,
    valid_hotkey_or_off,
    valid_language,
    valid_url,
    valid_voice,
    valid_wake_word,
)
from agent.hotkey_syntax import same_chord

_T = TypeVar("_T")
_RULE: Final = "voice_agent.rule"  # the metadata key of a field's Rule


@dataclass(frozen=True)
class Rule:
    """What one setting accepts beyond its type (the default's type)."""

    within: tuple[float, float] | None = None  # inclusive bounds of a number
    choices: tuple[str, ...] = ()  # the only values a text may take
    check: ValueCheck | None = None  # for what a range or a list cannot say
    secret: bool = False  # never quoted in a message
    index_allowed: bool = False  # a whole number is taken as its text (a device's index)

    def enforce(self, dotted: str, value: Any, context: CheckContext) -> Any:
        """`value` (already of the setting's type) if the rule allows it, else a
        SettingError."""
        if self.within and not self.within[0] <= value <= self.within[1]:  # NaN: outside
            raise SettingError(f"{dotted} = {value!r} is outside "
                               f"{self.within[0]}..{self.within[1]}")
        if self.choices and value not in self.choices:
            guess = closest(value.strip().lower(), [c for c in self.choices if c])
            hint = f" (did you mean {guess!r}?)" if guess else ""
            listed = ", ".join(choice or '""' for choice in self.choices)
            raise SettingError(f"{dotted} = {value!r} is not one of {listed}{hint}")
        return self.check(dotted, value, context) if self.check else value


def setting(default: _T, *, within: tuple[float, float] | None = None,
            choices: tuple[str, ...] = (), check: ValueCheck | None = None,
            secret: bool = False, index_allowed: bool = False) -> _T:
    """A settings field with its default and its rule."""
    rule = Rule(within, choices, check, secret, index_allowed)
    return field(default=default, metadata={_RULE: rule})


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


# --- the sections ---------------------------------------------------------------------------


@dataclass
class TTSConfig:
    voice: str = setting("af_bella", check=valid_voice)
    speed: float = setting(1.0, within=(0.5, 2.0))
    # Local files that override both the official and the packaged Kokoro files.
    model_path: str = setting("")
    voices_path: str = setting("")
    # "auto": official files when cached, else the packaged int8 ONNX; or force one.
    source: str = setting("auto", choices=("auto", "official", "packaged"))
    # Fetch the official files when they are missing (a network call, so opt-in; failures
    # are remembered for a day so an offline machine does not wait at every start).
    auto_download: bool = setting(False)
    # Fetch all 54 voices from npm (kokoro-js, 27 MB, checked by sha256) when a voice that
    # needs them is chosen and npm is installed; a failed try is remembered for a day.
    fetch_voices: bool = setting(True)
    # "auto" follows the voice's language (its first letter), else an espeak language code.
    language: str = setting("auto", check=valid_language)
    # Synthesis threads; the look-ahead bounds how many chunks are synthesised ahead, the
    # one playing included. Short chunks (a reply's first ones) synthesise at about real time
    # here: with 2 the synthesiser idled while one chunk ahead, and the audio stalled when a
    # longer chunk came (13.9 s of stalls in 134 s of speech, against 4.7 s with 3).
    workers: int = setting(1, within=(1, 4))
    lookahead: int = setting(3, within=(1, 16))


@dataclass
class AudioConfig:
    # Output device by name (substring) or index; "" is the system default.
    device: str = setting("", check=valid_device, index_allowed=True)
    blocksize: int = setting(256, within=(32, 8192))
    fade_ms: float = setting(3.0, within=(3.0, 10.0))
    interrupt_sound: bool = setting(False)
    # Show replies as text only, without speaking them (the tray's Mute).
    mute: bool = setting(False)


DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful voice assistant. Your replies are spoken aloud, so answer in one to "
    "three short sentences of plain conversational text: no markdown, no lists, no code, no "
    "emoji, no URLs. If you do not know, say so briefly."
)


@dataclass
class LLMConfig:
    # "embedded" (SmolLM2 in-process, offline), "openai" (any OpenAI-compatible server:
    # Ollama's /v1, llama.cpp, LM Studio, vLLM, OpenAI) or "ollama" (Ollama's /api/chat).
    backend: str = setting("embedded", choices=("embedded", "openai", "ollama"))
    base_url: str = setting("", check=valid_url)
    model: str = setting("")
    # Prefer the OPENAI_API_KEY environment variable; a key here makes the file private.
    api_key: str = setting("", check=valid_api_key, secret=True)
    # Unset, the embedded SmolLM2 uses its own tuned values (bench.answers), every other
    # model these; set in the file, they apply to every model.
    temperature: float = setting(0.7, within=(0.0, 2.0))
    max_tokens: int = setting(256, within=(1, 32768))
    system_prompt: str = setting(DEFAULT_SYSTEM_PROMPT)
    # The embedded backend's GGUF (any instruct model, run with its own chat template);
    # empty: the packaged SmolLM2-135M. `voice-agent models download llm NAME` sets it.
    model_path: str = setting("")
    # Look for local LLM servers (Ollama, LM Studio, llama.cpp, vLLM, Jan, LocalAI) on their
    # usual ports, on this machine only (127.0.0.1), at the start: the LLM menu offers them.
    find_servers: bool = setting(True)
    # Connect timeout, and the longest silence in the middle of a reply before it is
    # reported as stalled.
    timeout_s: float = setting(30.0, within=(1.0, 600.0))
    # "embedded": answer with the embedded model (and say so) when the server is unreachable.
    fallback: str = setting("", choices=("", "embedded", "none"))
    # The tray's LLM menu: true while the embedded model is chosen over the server set here.
    use_embedded: bool = setting(False)


@dataclass
class ConversationConfig:
    # New input interrupts the reply being spoken instead of waiting for it to finish.
    barge_in: bool = setting(False)
    # How much history goes to the LLM: the last N turns, and at most this many characters.
    history_turns: int = setting(10, within=(0, 1000))
    history_chars: int = setting(6000, within=(0, 1_000_000))


@dataclass
class HotkeysConfig:
    # Key combinations in the `keyboard` library's spelling ("ctrl+alt+space").
    talk: str = setting("ctrl+alt+space", check=valid_hotkey)
    interrupt: str = setting("ctrl+alt+x", check=valid_hotkey)
    # Reading aloud: read the selection; pause it or go on; ask about the selection (it goes
    # with the next question: typed, spoken, or Enter for "Explain this"). "" turns one off.
    read: str = setting("ctrl+alt+r", check=valid_hotkey_or_off)
    pause: str = setting("ctrl+alt+p", check=valid_hotkey_or_off)
    ask: str = setting("ctrl+alt+e", check=valid_hotkey_or_off)
    # While reading: skip to the next sentence, or go back one.
    next_sentence: str = setting("ctrl+alt+n", check=valid_hotkey_or_off)
    previous_sentence: str = setting("ctrl+alt+b", check=valid_hotkey_or_off)
    # "auto" (the first that can run here), "keyboard", "pynput" or "none" (use the desktop's
    # own shortcut settings to run `voice-agent talk` / `voice-agent interrupt`).
    backend: str = setting("auto", choices=("auto", "keyboard", "pynput", "none"))

    def giving_way(self, from_file: Collection[str]) -> str | None:
        """Talk and interrupt on one chord cannot both work: the one that gives way ("talk"
        or "interrupt"), or None when they differ. The file's interrupt gives way, unless
        its default would clash with talk too. `from_file`: the dotted settings the file
        set."""
        if not same_chord(self.talk, self.interrupt):
            return None
        default_interrupt = HotkeysConfig().interrupt
        if "hotkeys.interrupt" in from_file and not same_chord(default_interrupt, self.talk):
            return "interrupt"
        return "talk"


@dataclass
class OverlayConfig:
    # Seconds of quiet before the overlay hides itself; 0 keeps it open.
    hide_after_s: float = setting(20.0, within=(0.0, 86_400.0))
    corner: str = setting("bottom-right",
                          choices=("bottom-right", "bottom-left", "top-right", "top-left"))
    # Window opacity where the desktop supports it (a compositor on X11).
    opacity: float = setting(0.92, within=(0.2, 1.0))


@dataclass
class STTConfig:
    # Speech input (push-to-talk). "base" and "tiny.en" ship in packages (offline); any other
    # faster-whisper model name ("small.en", "distil-small.en") is downloaded when possible.
    model: str = setting("base")
    # "en", another Whisper language code, or "auto" (multilingual models only).
    language: str = setting("en")
    # "hold": hold the talk hotkey to speak, release to send (a tap opens the overlay).
    # "toggle": press to start, press again (or pause for vad_silence_s) to send.
    mode: str = setting("hold", choices=("hold", "toggle"))
    # A press held longer than this is push-to-talk; shorter is a tap.
    hold_threshold_s: float = setting(0.3, within=(0.1, 2.0))
    # Toggle mode: stop after this much quiet following speech.
    vad_silence_s: float = setting(1.0, within=(0.3, 10.0))
    # Input device by name (any part of it) or index; "" is the system default.
    input_device: str = setting("")


@dataclass
class ListenConfig:
    # Hands-free listening (docs/hands-free.md). The microphone opens only for what is on.
    # Take the agent's own voice out of the microphone, so it never hears itself through
    # speakers: on by default whenever the microphone is open while it speaks.
    echo_cancellation: bool = setting(True)
    # Talk over a reply to stop it: the microphone stays open while the agent speaks; your
    # voice pauses the reply at once and what you say is the next question. A short word is
    # heard first: "stop" ends the reply, "mm-hmm" lets it go on.
    talk_over: bool = setting(False)
    # After this much of your voice (seconds) the reply is cut without hearing what it was.
    talk_over_min_s: float = setting(0.8, within=(0.2, 3.0))
    # A wake word starts a turn like holding the talk key: "" (off) or a model name
    # (voice-agent wake-words lists them, with their licences).
    wake_word: str = setting("", check=valid_wake_word)
    # A short rising chime when the wake word is heard: the agent listens now. The echo
    # canceller takes it out of what is heard.
    wake_chime: bool = setting(True)


@dataclass
class DialogueConfig:
    # Speaker name -> voice, for `voice-agent dialogue`; each voice is checked as tts.voice.
    voices: dict[str, str] = field(default_factory=dict,
                                   metadata={_RULE: Rule(check=valid_voice)})


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
    listen: ListenConfig = field(default_factory=ListenConfig)
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


# --- indexes read off the dataclasses above -------------------------------------------------

_DEFAULT_CONFIG = Config()
# Section name -> its dataclass, in the order of Config's fields.
SECTIONS: dict[str, type[Any]] = {
    f.name: type(getattr(_DEFAULT_CONFIG, f.name)) for f in dataclasses.fields(Config)
    if dataclasses.is_dataclass(getattr(_DEFAULT_CONFIG, f.name))
}
# Every section's keys with their defaults.
DEFAULTS: dict[str, dict[str, Any]] = {
    name: {f.name: getattr(getattr(_DEFAULT_CONFIG, name), f.name)
           for f in dataclasses.fields(kind)}
    for name, kind in SECTIONS.items()
}
_RULES: dict[str, dict[str, Rule]] = {
    name: {f.name: f.metadata.get(_RULE, Rule()) for f in dataclasses.fields(kind)}
    for name, kind in SECTIONS.items()
}
SPEAKER_VOICES = "dialogue.voices"  # a table of speaker = "voice": its keys are names
SECRET_SETTINGS = frozenset(f"{section}.{key}" for section, rules in _RULES.items()
                            for key, rule in rules.items() if rule.secret)


def rule_of(section: str, key: str) -> Rule:
    """The rule of setting `section.key` ("dialogue.voices", NAME: the speakers' rule)."""
    if section == SPEAKER_VOICES:
        return _RULES["dialogue"]["voices"]
    return _RULES[section][key]


# --- checking one value ---------------------------------------------------------------------

_TYPE_NAMES: dict[type, str] = {bool: "a boolean", int: "an integer", float: "a float",
                                str: "a string", dict: "a table", list: "an array"}


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
    guess = closest(dotted, known)
    hint = f"did you mean {guess}?" if guess else "settings are written section.key, e.g. tts.voice"
    raise SettingError(f"unknown setting {dotted!r}; {hint}")


def check_setting(section: str, key: str, value: Any, *, custom_voices: bool = False) -> Any:
    """`value` as the setting `section.key` takes it (an integer where a float goes becomes a
    float), or a SettingError. `custom_voices`: tts.voices_path names the voice files, so any
    voice name may be in them."""
    dotted = f"{section}.{key}"
    rule = rule_of(section, key)
    context = CheckContext(custom_voices=custom_voices)
    if section == SPEAKER_VOICES:  # one speaker's voice: always text
        if not isinstance(value, str):
            raise SettingError(f"{dotted} should be a string, got {shown(value, rule)}; "
                               f"write {VOICE_FORM}")
        return rule.enforce(dotted, value, context)
    value = _coerce(dotted, key, value, DEFAULTS[section][key], rule)
    return rule.enforce(dotted, value, context)


def _coerce(dotted: str, key: str, value: Any, default: Any, rule: Rule) -> Any:
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
        if rule.index_allowed and isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        example = default if default and len(default) <= 30 else "..."
        form = f'text in double quotes, e.g. {key} = "{example}"'
    raise SettingError(f"{dotted} should be {_TYPE_NAMES[type(default)]}, "
                       f"got {shown(value, rule)}; write {form}")


def shown(value: Any, rule: Rule) -> str:
    """A value for a message: quoted and shortened; a secret only by its kind."""
    if rule.secret:
        return f"{_TYPE_NAMES.get(type(value), 'a value')} (not shown: it is a secret)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
