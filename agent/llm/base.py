"""What every LLM backend speaks: messages in, a stream of deltas out, and errors whose text
can be shown to the user as it is."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar, runtime_checkable

T = TypeVar("T")


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

    def __init__(self, message: str, *, server: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.server = server  # e.g. "the LLM server at http://127.0.0.1:8080/v1"
        self.reason = reason  # e.g. "[Errno 111] Connection refused"


class LLMStalled(LLMError):
    """The server sent nothing for timeout_s, before or in the middle of a reply."""


class LLMResponseError(LLMError):
    """An HTTP error status, an error object in the stream, or a malformed/broken stream."""


@runtime_checkable
class ChatBackend(Protocol):
    name: str  # "embedded" | "openai" | "ollama"
    description: str  # human-readable, no secrets

    @property
    def label(self) -> str:
        """The model that answers, in a few words: the overlay's header."""
        ...

    def stream(self, messages: Sequence[Message]) -> AsyncIterator[Delta]:
        """An async generator of deltas; cancelling the consuming task stops it at once."""
        ...

    async def aclose(self) -> None: ...


class UnavailableBackend:
    """Stands in when no LLM could be made (the server's settings are wrong and the embedded
    model is missing too): every reply is the error saying what to fix, and the rest of the
    agent (say, voices, settings) keeps working."""

    name = "unavailable"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.description = "no LLM (see the error)"
        self.label = "no LLM"

    async def stream(self, messages: Sequence[Message]) -> AsyncIterator[Delta]:
        raise LLMError(self.reason)
        yield Delta()  # an async generator, as the protocol says

    async def aclose(self) -> None:
        pass


@asynccontextmanager
async def closing_stream(stream: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Like contextlib.aclosing for any backend's stream: an inner generator left early (a
    [DONE], an error, a fallback) closes its HTTP response now, not when it is collected."""
    try:
        yield stream
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
