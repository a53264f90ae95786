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


def log_dir() -> Path:
    return _dir("VOICE_AGENT_LOG_DIR", platformdirs.user_log_dir(APP_NAME, appauthor=False))


def runtime_dir() -> Path:
    """The per-user folder for the instance lock and the control socket, private (0700).

    Created if missing; an existing folder is tightened to 0700 only if it is ours, since
    chmod on someone else's folder would fail (and is not ours to change)."""
    override = os.environ.get("VOICE_AGENT_RUNTIME_DIR")
    # Asked only without the override: platformdirs warns when XDG_RUNTIME_DIR is unset.
    path = Path(override or platformdirs.user_runtime_dir(APP_NAME, appauthor=False))
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if hasattr(os, "getuid") and path.stat().st_uid == os.getuid():  # POSIX only: no owners
        path.chmod(0o700)  # mkdir's mode went through the umask; an older folder may be open
    return path
