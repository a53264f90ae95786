"""How much of an attached text (the selection asked about) fits the model's context.

Measured, not guessed: the model's window comes from the model (the embedded model's
n_ctx; a llama.cpp server's /props), and tokens are counted by the model's own tokenizer (the
embedded model's; a llama.cpp server's /tokenize) on the prompt and on a sample of the text.
Only where a server tells neither, the figures below stand in, and the log says so.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from agent.llm.base import ChatBackend, Message

log = logging.getLogger(__name__)

# Stand-ins for a server that says nothing: the smallest window servers start with by
# default (llama-cpp-python's and Ollama's 2048; llama.cpp's is 4096), so a question never
# overflows it, and fewer characters per token than measured on English prose with the
# tokenizers here (SmolLM2: 4.3), so an estimate errs on the short side.
ASSUMED_WINDOW = 2048
ASSUMED_CHARS_PER_TOKEN = 3.5
REPLY_RESERVE = 256  # tokens kept for the answer when the backend does not say its max
MARGIN = 64  # tokens: the chat template's own markers around each message
SAMPLE_CHARS = 4000  # of the attached text, tokenized to measure its characters per token


@runtime_checkable
class Measuring(Protocol):
    """A backend that can tell its context window and count tokens (None: it cannot)."""

    async def context_window(self) -> int | None: ...

    async def count_tokens(self, text: str) -> int | None: ...


@dataclass(frozen=True)
class Budget:
    chars: int  # of the attached text that fit
    window: int  # the model's context, in tokens
    prompt_tokens: int  # the system prompt, the history and the question
    chars_per_token: float  # of the attached text
    measured: bool  # False: the server told neither its window nor its tokens

    def describe(self) -> str:
        how = "measured" if self.measured else "partly estimated (the server does not say all)"
        return (f"{self.chars} characters fit: a {self.window}-token context, "
                f"{self.prompt_tokens} tokens of prompt, {self.chars_per_token:.1f} characters "
                f"a token ({how})")


async def attachment_budget(backend: ChatBackend, messages: Sequence[Message], text: str,
                            reply_tokens: int | None = None) -> Budget:
    """The characters of `text` that fit beside `messages` and the reply."""
    window: int | None = None
    prompt: int | None = None
    sample: int | None = None
    target = getattr(backend, "measuring", backend)  # a fallback wrapper measures its primary
    if isinstance(target, Measuring):
        try:
            window = await target.context_window()
            prompt = await target.count_tokens("\n".join(m.content for m in messages))
            piece = text[:SAMPLE_CHARS]
            sample = await target.count_tokens(piece) if piece else None
        except Exception as error:  # a server without these endpoints: estimate instead
            log.info("the model's context could not be measured (%s): estimating", error)
    measured = window is not None and prompt is not None and sample is not None
    window = window or ASSUMED_WINDOW
    per_token = (min(len(text[:SAMPLE_CHARS]) / sample, 8.0) if sample
                 else ASSUMED_CHARS_PER_TOKEN)
    if prompt is None:
        prompt = int(sum(len(m.content) for m in messages) / ASSUMED_CHARS_PER_TOKEN)
    reserve = reply_tokens or getattr(backend, "max_tokens", None) or REPLY_RESERVE
    room = window - prompt - int(reserve) - MARGIN - 8 * len(messages)
    chars = max(0, int(room * per_token * 0.95))  # 5%: the sample is not the whole text
    return Budget(chars, window, prompt, per_token, measured)


def clip_to_budget(text: str, chars: int) -> str:
    """`text` cut to `chars`, at a sentence end (or a space) near the cut."""
    if len(text) <= chars:
        return text
    head = text[:chars]
    for end in (". ", "? ", "! ", "\n"):
        at = head.rfind(end)
        if at > chars * 0.7:
            return head[:at + 1]
    at = head.rfind(" ")
    return head[:at] if at > chars * 0.7 else head
