"""The API key and the settings file: where the key comes from, whether the file holds one
(then it is kept private, 0600), and blanking the key out of a text. Which values are secret
is decided in one place, `agent.redaction`; this module only adds the file's own key."""

from __future__ import annotations

import os
import re
from typing import Any

from agent.config.schema import Config
from agent.redaction import API_KEY_ENV, redact, secrets

PRIVATE_MODE = 0o600
# A key line, commented out or not, whose value is not empty: a commented-out key is still
# in the file for anyone who can read it.
_API_KEY_LINE = re.compile(
    r"""^[ \t#]*(?:["']?llm["']?[ \t]*\.[ \t]*)?["']?api_key["']?[ \t]*=[ \t]*"""
    r"""(?!(?:""|'')[ \t]*(?:#.*)?$)\S""", re.MULTILINE)


def holds_api_key(data: dict[str, Any] | None, text: str) -> bool:
    """Whether the file (its parsed `data`, None if it does not parse, and its `text`) has an
    API key in it; commented out counts."""
    llm = data.get("llm") if data else None
    value = llm.get("api_key") if isinstance(llm, dict) else None
    if value is not None and not (isinstance(value, str) and not value.strip()):
        return True
    return bool(_API_KEY_LINE.search(text))


def api_key_source(cfg: Config) -> str | None:
    """Where the LLM's API key comes from: "file" (llm.api_key wins), the environment
    variable's name, or None."""
    if cfg.llm.api_key.strip():
        return "file"
    if os.environ.get(API_KEY_ENV, "").strip():
        return API_KEY_ENV
    return None


def redacted(text: str, cfg: Config) -> str:
    """`text` with every API key known (llm.api_key, OPENAI_API_KEY, the registered ones) as
    ***: for logs."""
    return redact(text, [cfg.llm.api_key, *secrets()])
