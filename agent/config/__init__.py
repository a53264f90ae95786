"""The user's settings: TOML in the user config dir, read into typed dataclasses.

    schema   the dataclasses, one a section; beside each field its range, choices or check
    values   the checks a range or a list of choices cannot express (voices, URLs, hotkeys)
    loader   load(): the file over the defaults, each mistake a Problem with file and line
    writer   save_setting() (tomlkit: comments and layout kept, .bak, atomic), write_starter()
    privacy  the API key: where it comes from, the file kept private (0600), redacted()

A mistake in the file never stops the agent: each bad or unknown key is reported and the
default is used in its place; a TOML syntax error sets the whole file aside until it is fixed.
`save_setting` changes one key, keeps the rest of the file as the user wrote it, and never
writes over a file that does not parse.

Secrets: llm.api_key (better: the OPENAI_API_KEY environment variable) is never quoted in a
message, and a file holding one is kept private (0600).
"""

from agent.config.loader import load
from agent.config.privacy import PRIVATE_MODE, api_key_source, redacted
from agent.config.schema import (
    DEFAULT_SYSTEM_PROMPT,
    DEFAULTS,
    SECRET_SETTINGS,
    SECTIONS,
    SPEAKER_VOICES,
    AudioConfig,
    Config,
    ConversationConfig,
    DialogueConfig,
    HotkeysConfig,
    ListenConfig,
    LLMConfig,
    OverlayConfig,
    Problem,
    Rule,
    STTConfig,
    TTSConfig,
    check_setting,
    resolve_setting,
    rule_of,
)
from agent.config.values import SettingError
from agent.config.writer import (
    NEW_FILE_MODE,
    STARTER,
    ConfigError,
    save_setting,
    save_settings,
    toml_key,
    toml_value,
    write_starter,
)
from agent.hotkey_syntax import same_chord
from agent.redaction import API_KEY_ENV

__all__ = [
    "API_KEY_ENV",
    "DEFAULTS",
    "DEFAULT_SYSTEM_PROMPT",
    "NEW_FILE_MODE",
    "PRIVATE_MODE",
    "SECRET_SETTINGS",
    "SECTIONS",
    "SPEAKER_VOICES",
    "STARTER",
    "AudioConfig",
    "Config",
    "ConfigError",
    "ConversationConfig",
    "DialogueConfig",
    "HotkeysConfig",
    "LLMConfig",
    "ListenConfig",
    "OverlayConfig",
    "Problem",
    "Rule",
    "STTConfig",
    "SettingError",
    "TTSConfig",
    "api_key_source",
    "check_setting",
    "load",
    "redacted",
    "resolve_setting",
    "rule_of",
    "same_chord",
    "save_setting",
    "save_settings",
    "toml_key",
    "toml_value",
    "write_starter",
]
