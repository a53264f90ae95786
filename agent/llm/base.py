"""What every LLM backend speaks: messages in, a stream of deltas out, and errors whose text
can be shown to the user as it is."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class Delta:
    text: str = ""  # reply text: shown and spoken
    reasoning: str = ""  # reasoning/"thinking" fields: may be shown dimmed, never spoken
    notice: str = ""  # a message for the user, e.g. "server unreachable; answered by ..."


class LLMError(RuntimeError):
    """str(error) is a clear, actionable, user-facing message; it never contains an API key."""


class LLMUnreachable(LLMError):
    """Could not connect to the server (refused, unknown host, connect timeout)."""


class LLMStalled(LLMError):
    """The server sent nothing for timeout_s, before or in the middle of a reply."""


class LLMResponseError(LLMError):
    """An HTTP error status, an error object in the stream, or a malformed/broken stream."""


@runtime_checkable
class ChatBackend(Protocol):
    name: str  # "embedded" | "openai" | "ollama"
    description: str  # human-readable, no secrets

    def stream(self, messages: Sequence[Message]) -> AsyncIterator[Delta]:
        """An async generator of deltas; cancelling the consuming task stops it at once."""
        ...

    async def aclose(self) -> None: ...
