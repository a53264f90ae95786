"""From [llm] settings to a backend, with the embedded model as an optional fallback."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Collection, Sequence

from agent.config import LLMConfig
from agent.llm.base import ChatBackend, Delta, LLMError, LLMUnreachable, Message, closing_stream

log = logging.getLogger(__name__)

BACKENDS = ("embedded", "openai", "ollama")


class FallbackBackend:
    """The configured server; when it cannot be reached before the reply starts, the
    embedded model answers instead, after a notice that says so."""

    def __init__(self, primary: ChatBackend, make_fallback: Callable[[], ChatBackend]) -> None:
        self.primary = primary
        self.name = primary.name
        self.description = f"{primary.description}; the embedded model if it is unreachable"
        self._make_fallback = make_fallback
        self._fallback: ChatBackend | None = None

    @property
    def label(self) -> str:
        return self.primary.label

    @property
    def measuring(self) -> ChatBackend:
        """Whose context the budget is measured on (agent.llm.budget): the server's."""
        return self.primary

    def fallback(self) -> ChatBackend:
        if self._fallback is None:
            self._fallback = self._make_fallback()
        return self._fallback

    async def stream(self, messages: Sequence[Message]) -> AsyncIterator[Delta]:
        started = False
        try:
            async with closing_stream(self.primary.stream(messages)) as deltas:
                async for delta in deltas:
                    started = True
                    yield delta
            return
        except LLMUnreachable as error:
            if started:
                raise
            unreachable = error
        try:
            fallback = self.fallback()
        except LLMError as error:
            raise LLMUnreachable(f"{unreachable} The embedded fallback is unavailable too: "
                                 f"{error}", server=unreachable.server,
                                 reason=unreachable.reason) from None
        server = unreachable.server or self.primary.description
        reason = f" ({unreachable.reason})" if unreachable.reason else ""
        yield Delta(notice=f"{server[:1].upper()}{server[1:]} is unreachable{reason}; "
                           f"answered by the embedded model.")
        async with closing_stream(fallback.stream(messages)) as deltas:
            async for delta in deltas:
                yield delta

    async def aclose(self) -> None:
        await self.primary.aclose()
        if self._fallback is not None:
            await self._fallback.aclose()


def make_backend(cfg: LLMConfig, user_set: Collection[str] = (), *,
                 env_key: bool = True) -> ChatBackend:
    """The backend `cfg` describes; an LLMError says which setting to fix. `user_set`: the
    dotted settings the user wrote in the file (Config.from_file): the embedded model keeps
    its own tuned sampling and prompt for the others. `env_key`: false for a server found
    running rather than set up by the user (OPENAI_API_KEY is not sent to it)."""
    from agent.llm.embedded import EmbeddedBackend, model_file, packaged_profile
    from agent.llm.profiles import with_user_settings

    def embedded() -> ChatBackend:
        try:
            path = model_file(cfg.model_path)
        except LLMError as error:
            if not cfg.model_path or kind == "embedded":
                raise
            # Standing in for a server: the packaged model rather than no answer at all.
            log.warning("%s The packaged model stands in for the server.", error)
            path = model_file("")
        profile = with_user_settings(packaged_profile(path), cfg, user_set)
        return EmbeddedBackend(path, profile=profile)

    kind = cfg.backend.strip().lower()
    primary: ChatBackend
    if kind == "embedded":
        return embedded()
    if kind == "openai":
        if not cfg.base_url.strip():
            raise LLMError(
                "llm.base_url is empty: set it to the server's OpenAI-compatible URL, e.g. "
                "http://127.0.0.1:8080/v1 (llama.cpp), http://127.0.0.1:11434/v1 (Ollama), "
                "http://127.0.0.1:1234/v1 (LM Studio) or https://api.openai.com/v1; "
                "or set llm.backend = \"embedded\".")
        from agent.llm.openai_compat import OpenAICompatBackend

        primary = OpenAICompatBackend(cfg.base_url, cfg.model, cfg.api_key, cfg.temperature,
                                      cfg.max_tokens, cfg.timeout_s, env_key=env_key)
    elif kind == "ollama":
        from agent.llm.ollama import OllamaBackend

        primary = OllamaBackend(cfg.base_url, cfg.model, cfg.api_key, cfg.temperature,
                                cfg.max_tokens, cfg.timeout_s)
    else:
        raise LLMError(f"llm.backend = {cfg.backend!r} is not known; use one of "
                       f"{', '.join(repr(b) for b in BACKENDS)}.")
    fallback = cfg.fallback.strip().lower()
    if fallback in ("", "none"):
        return primary
    if fallback == "embedded":
        return FallbackBackend(primary, embedded)
    raise LLMError(f"llm.fallback = {cfg.fallback!r} is not known; use \"embedded\" or leave "
                   f"it empty.")
