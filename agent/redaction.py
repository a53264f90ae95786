"""Secrets (API keys) never reach a log, a terminal or the overlay: the one place that knows
which values are secret and blanks them out of a text.

- `redact(text)`: each known secret (every value given to `add_secret`, and
  $OPENAI_API_KEY) replaced by "***", and a server's masked quote of a long key too.
- `redact_server_text(text, values)`: for what a server wrote (an error body, a stream line):
  `redact`, plus the client's own key, plus anything shaped like an API key.

The log handlers (agent.logs), `doctor`, config messages and the LLM clients' error texts
all go through here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

REDACTED = "***"
API_KEY_ENV = "OPENAI_API_KEY"
# Shorter values would blank out ordinary words; real keys are far longer.
MIN_SECRET_CHARS = 4
# Servers quote a rejected key masked: its first characters, a mask, its last four
# ("sk-ab****wxyz", "sk-ab...wxyz", "sk-ab…wxyz"); for keys this long, that quoted tail is
# blanked out too. The bare last four characters are left alone: they are as likely to be
# a year or part of a word as a key.
QUOTED_TAIL_MIN_CHARS = 12
QUOTED_TAIL_CHARS = 4
_MASK = r"(?:\*{3,}|\.{3}|…)"
# What a server writes may quote a key this process never knew (one from the server's own
# settings, a proxy's token): anything shaped like one goes, its kind kept for the reader.
_KEY_LIKE = re.compile(r"\b(sk-|key-|Bearer\s+)[A-Za-z0-9_\-*.]{4,}")

_registered: set[str] = set()


def add_secret(value: str) -> None:
    """Never show `value` (an API key) from now on."""
    value = value.strip()
    if len(value) >= MIN_SECRET_CHARS:
        _registered.add(value)


def secrets() -> list[str]:
    """What is kept out of sight now, longest first (a key containing another one is
    replaced whole). The environment is read each time: a key set later is covered too."""
    return _ordered([*_registered, os.environ.get(API_KEY_ENV, "")])


def _ordered(values: Iterable[str]) -> list[str]:
    found = {v.strip() for v in values if len(v.strip()) >= MIN_SECRET_CHARS}
    return sorted(found, key=len, reverse=True)


def redact(text: str, values: Iterable[str] | None = None) -> str:
    """`text` with each secret (the registered ones and $OPENAI_API_KEY, or only `values`)
    replaced by "***", and a server's masked quote of a long key ("***wxyz") too."""
    for secret in secrets() if values is None else _ordered(values):
        if secret in text:
            text = text.replace(secret, REDACTED)
        if len(secret) >= QUOTED_TAIL_MIN_CHARS:
            tail = re.escape(secret[-QUOTED_TAIL_CHARS:])
            text = re.sub(_MASK + tail, REDACTED, text)
    return text


def redact_server_text(text: str, values: Iterable[str] = ()) -> str:
    """What a server wrote, fit to show: every known secret and `values` (the key this
    client sent) blanked out as `redact` does, then anything that looks like an API key
    ("sk-…", "key-…", "Bearer …"), its prefix kept so the reader knows what was there."""
    text = redact(text, [*secrets(), *values])
    return _KEY_LIKE.sub(lambda match: match.group(1) + REDACTED, text)
