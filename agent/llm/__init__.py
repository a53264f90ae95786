"""LLM backends: a reply streamed as text deltas, cancellable at once.

`make_backend(config.llm)` gives the configured backend; `async for delta in
backend.stream(messages)` inside a task, `task.cancel()` to interrupt.
"""

from agent.llm.base import (
    ChatBackend,
    Delta,
    LLMError,
    LLMResponseError,
    LLMStalled,
    LLMUnreachable,
    Message,
)
from agent.llm.factory import FallbackBackend, make_backend

__all__ = [
    "ChatBackend",
    "Delta",
    "FallbackBackend",
    "LLMError",
    "LLMResponseError",
    "LLMStalled",
    "LLMUnreachable",
    "Message",
    "make_backend",
]
