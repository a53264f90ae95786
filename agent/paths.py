"""Where the agent keeps its files (platformdirs), overridable for tests and portable installs."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "voice-agent"


def _dir(env_var: str, default: str) -> Path:
    return Path(os.environ.get(env_var) or default)


def config_dir() -> Path:
    return _dir("VOICE_AGENT_CONFIG_DIR", platformdirs.user_config_dir(APP_NAME, appauthor=False))


def config_file() -> Path:
    return config_dir() / "config.toml"


def cache_dir() -> Path:
    return _dir("VOICE_AGENT_CACHE_DIR", platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def data_dir() -> Path:
    return _dir("VOICE_AGENT_DATA_DIR", platformdirs.user_data_dir(APP_NAME, appauthor=False))
