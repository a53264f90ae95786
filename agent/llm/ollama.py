"""Ollama's native API: POST {base_url}/api/chat with stream=true, newline-delimited JSON.
(Ollama's OpenAI-compatible /v1 works with the `openai` backend too.)"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

from agent.llm.base import Delta, LLMError, LLMResponseError, Message, closing_stream
from agent.llm.openai_compat import (
    HttpStream,
    length_notice,
    normalise_base_url,
    public_url,
    wire_messages,
)

DEFAULT_OLLAMA_URL = "http://127.0.0.1:11434"


class OllamaBackend:
    name = "ollama"

    def __init__(self, base_url: str = "", model: str = "", api_key: str = "",
                 temperature: float = 0.7, max_tokens: int = 256,
                 timeout_s: float = 30.0) -> None:
        url = normalise_base_url(base_url or DEFAULT_OLLAMA_URL)
        # The root is what we need; /api or /v1 pasted from other docs would double up.
        self.base_url = re.sub(r"/(api|v1)$", "", url)
        self.model = model.strip()
        self.temperature = temperature
        self.max_tokens = max_tokens
        shown = public_url(self.base_url)
        self.description = f"Ollama at {shown} (model {self.model or 'first installed'})"
        # Ollama itself takes no key; a reverse proxy in front of it may.
        self.http = HttpStream(self.base_url, f"Ollama at {shown}", timeout_s, api_key.strip(),
                               key_hint="llm.api_key")

    @property
    def label(self) -> str:
        return f"{self.model or 'first model'} on Ollama"

    def _hint_404(self) -> str:
        return (f"is the model pulled (`ollama pull {self.model}`) and is llm.base_url "
                f"Ollama's root URL (e.g. {DEFAULT_OLLAMA_URL})?")

    async def _model_name(self) -> str:
        if self.model:
            return self.model
        tags = await self.http.get_json("/api/tags", self._hint_404())
        models = tags.get("models") if isinstance(tags, dict) else None
        names = [name for m in models or [] if isinstance(m, dict)
                 for name in [m.get("model") or m.get("name")] if isinstance(name, str) and name]
        if not names:
            raise LLMError(f"Ollama at {public_url(self.base_url)} has no models: pull one "
                           f"(`ollama pull llama3.2`) and set llm.model.")
        self.model = names[0]
        self.description = f"Ollama at {public_url(self.base_url)} (model {self.model})"
        return self.model

    async def stream(self, messages: Sequence[Message]) -> AsyncIterator[Delta]:
        body: dict[str, Any] = {
            "model": await self._model_name(),
            "messages": wire_messages(messages),
            "stream": True,
            "options": {"temperature": self.temperature, "num_predict": self.max_tokens},
        }
        finished = False
        lines = self.http.post_lines("/api/chat", body, self._hint_404())
        async with closing_stream(lines):
            async for line in lines:
                if not line.strip():
                    continue
                payload = self.http.stream_payload(line)
                message = payload.get("message")
                if isinstance(message, dict):
                    text = message.get("content")
                    thinking = message.get("thinking")
                    text = text if isinstance(text, str) else ""
                    thinking = thinking if isinstance(thinking, str) else ""
                    if text or thinking:
                        yield Delta(text=text, reasoning=thinking)
                if payload.get("done"):
                    if payload.get("done_reason") == "length":
                        yield length_notice(self.max_tokens)
                    finished = True
                    break
        if not finished:
            raise LLMResponseError(
                f"Ollama at {public_url(self.base_url)} closed the stream before the reply "
                f"was complete.")

    async def aclose(self) -> None:
        await self.http.aclose()
