"""Any OpenAI-compatible chat server (llama.cpp, Ollama's /v1, LM Studio, vLLM, OpenAI):
POST {base_url}/chat/completions with stream=true, read as server-sent events.

The HTTP plumbing shared with the Ollama backend lives here too (`HttpStream`): httpx's
AsyncClient, because cancelling a task blocked in one of its reads returns at once and closes
the connection, so the server sees the disconnect and stops generating.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import re
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from agent import redaction
from agent.llm.base import (
    Delta,
    LLMError,
    LLMResponseError,
    LLMStalled,
    LLMUnreachable,
    Message,
    closing_stream,
)

# Reaching a server is quick or hopeless; the configured timeout is for silences in a reply.
MAX_CONNECT_TIMEOUT_S = 5.0
# An error body is short; a proxy's HTML page is not worth more than this.
MAX_ERROR_BODY_BYTES = 64 * 1024
MAX_QUOTED_CHARS = 300


def public_url(url: str) -> str:
    """The URL without user:password, query or fragment: safe to show and log."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "(invalid URL)"
    host = parsed.host
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{host}{port}{parsed.path}".rstrip("/")


def normalise_base_url(url: str, setting: str = "llm.base_url") -> str:
    """Validated base URL without a trailing slash; an LLMError says what is wrong."""
    url = url.strip().rstrip("/")
    if not re.match(r"^https?://[^/]+", url, re.IGNORECASE):
        raise LLMError(f"{setting} = {public_url(url)!r} is not an http:// or https:// URL, "
                       f"e.g. http://127.0.0.1:8080/v1")
    return url


def is_loopback(url: str) -> bool:
    host = httpx.URL(url).host
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def error_message_from_body(body: bytes) -> str:
    """The human part of an error body: error.message, error, detail or message, else the
    text itself (shortened)."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data: Any = json.loads(text)
    except ValueError:
        data = None
    message = _message_in(data) if data is not None else None
    if message is None:
        if text.lstrip().startswith("<"):
            return "an HTML page, not a JSON error"
        message = text
    message = " ".join(message.split())
    return message[:MAX_QUOTED_CHARS] + ("…" if len(message) > MAX_QUOTED_CHARS else "")


def _message_in(data: Any) -> str | None:
    if isinstance(data, str):
        return data or None
    if isinstance(data, list):
        parts = [m for m in (_message_in(item) for item in data) if m]
        return "; ".join(parts) or None
    if isinstance(data, dict):
        for key in ("error", "detail", "message", "msg"):
            if key in data:
                found = _message_in(data[key])
                if found:
                    return found
    return None


@dataclass
class HttpStream:
    """One server: its client (made on the running loop), its timeouts, and the mapping of
    every transport failure onto a user-facing LLMError that names the server."""

    base_url: str
    label: str  # e.g. "the LLM server at http://127.0.0.1:8080/v1"
    timeout_s: float
    api_key: str = ""
    setting_hint: str = "llm.base_url"
    key_hint: str = "the OPENAI_API_KEY environment variable or llm.api_key"

    def __post_init__(self) -> None:
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def client(self) -> httpx.AsyncClient:
        # Pooled connections belong to the loop that opened them: a new loop needs a new client.
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop or self._client.is_closed:
            headers = {"Accept": "text/event-stream, application/x-ndjson, application/json"}
            if self.api_key:
                headers["Authorization"] = f"Bearer {self.api_key}"
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout_s,
                                      connect=min(self.timeout_s, MAX_CONNECT_TIMEOUT_S)),
                headers=headers,
                # A proxy from the environment must not capture a server on this machine.
                trust_env=not is_loopback(self.base_url),
            )
            self._client_loop = loop
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._client_loop is asyncio.get_running_loop():
            await client.aclose()

    def stream_payload(self, raw: str) -> dict[str, Any]:
        """One JSON object of a streamed reply (an SSE `data:` value or an NDJSON line);
        a malformed line or an error object becomes an LLMResponseError naming the server."""
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            raise LLMResponseError(
                f"{_capitalised(self.label)} sent a malformed stream line: "
                f"{self._redact(raw[:120])!r}")
        if payload.get("error"):
            raise LLMResponseError(
                f"{_capitalised(self.label)} reported an error during the reply: "
                f"{self._redact(error_message_from_body(raw.encode()))}")
        return payload

    def _redact(self, text: str) -> str:
        """Servers quote (parts of) the key they rejected: never pass that on."""
        return redaction.redact_server_text(text, [self.api_key])

    def unreachable(self, error: Exception) -> LLMUnreachable:
        reason = self._redact(_root_cause(error))
        if isinstance(error, httpx.ConnectTimeout):
            connect_s = min(self.timeout_s, MAX_CONNECT_TIMEOUT_S)
            reason = f"no answer to the connection within {connect_s:g} s"
        return LLMUnreachable(
            f"Cannot reach {self.label} ({reason}). Is the server running? "
            f"Check {self.setting_hint}.", server=self.label, reason=reason)

    def stalled(self, answering: bool) -> LLMStalled:
        if answering:
            return LLMStalled(
                f"{_capitalised(self.label)} stopped sending in the middle of the reply "
                f"(nothing for {self.timeout_s:g} s). Check the server, or raise llm.timeout_s.")
        return LLMStalled(
            f"{_capitalised(self.label)} accepted the request but sent nothing for "
            f"{self.timeout_s:g} s (it may still be loading the model or reading a long "
            f"prompt). Check the server, or raise llm.timeout_s.")

    def broken(self, error: Exception, answering: bool) -> LLMResponseError:
        reason = self._redact(_root_cause(error))
        if answering:
            return LLMResponseError(
                f"The connection to {self.label} broke in the middle of the reply ({reason}).")
        return LLMResponseError(
            f"{_capitalised(self.label)} closed the connection without answering ({reason}).")

    def http_error(self, status: int, path: str, body: bytes,
                   hint_404: str) -> LLMResponseError:
        detail = self._redact(error_message_from_body(body)) or "no details"
        head = f"{_capitalised(self.label)} answered HTTP {status} ({detail})"
        if status in (401, 403):
            if self.api_key:
                advice = f"the API key was rejected: set a valid key in {self.key_hint}"
            else:
                advice = f"it needs an API key: set one in {self.key_hint}"
            return LLMResponseError(f"{head}: {advice}.")
        if status == 404:
            return LLMResponseError(f"{head} for {path}: {hint_404}")
        if status == 429:
            return LLMResponseError(f"{head}: too many requests or out of quota; try later.")
        if status >= 500:
            return LLMResponseError(f"{head}: the server failed; see its log.")
        return LLMResponseError(f"{head}.")

    async def get_json(self, path: str, hint_404: str) -> Any:
        url = self.base_url + path
        try:
            response = await self.client().get(url)
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            raise self.unreachable(error) from None
        except httpx.TimeoutException:
            raise self.stalled(answering=False) from None
        except httpx.HTTPError as error:
            raise self.broken(error, answering=False) from None
        if response.status_code >= 400:
            raise self.http_error(response.status_code, path, response.content, hint_404)
        try:
            return response.json()
        except ValueError:
            raise LLMResponseError(
                f"{_capitalised(self.label)} sent something other than JSON for {path}: "
                f"{self._redact(error_message_from_body(response.content))}") from None

    async def post_lines(self, path: str, body: dict[str, Any],
                         hint_404: str) -> AsyncIterator[str]:
        """The response's lines as they arrive (split network chunks are joined). A body that
        is one JSON document (a server that ignored stream=true) comes as one line."""
        answering = False
        try:
            async with self.client().stream("POST", self.base_url + path, json=body) as response:
                answering = True
                if response.status_code >= 400:
                    error_body = b""
                    async for piece in response.aiter_bytes():
                        error_body += piece
                        if len(error_body) > MAX_ERROR_BODY_BYTES:
                            break
                    raise self.http_error(response.status_code, path, error_body, hint_404)
                if response.headers.get("content-type", "").startswith("application/json"):
                    # Raw line breaks in JSON are only ever whitespace between tokens.
                    whole = (await response.aread()).decode("utf-8", "replace")
                    yield whole.replace("\r", " ").replace("\n", " ")
                    return
                async for line in stream_lines(response.aiter_text()):
                    yield line
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            raise self.unreachable(error) from None
        except httpx.TimeoutException:
            raise self.stalled(answering) from None
        except httpx.HTTPError as error:
            raise self.broken(error, answering) from None


async def stream_lines(pieces: AsyncIterator[str]) -> AsyncIterator[str]:
    """Lines split at CR, LF or CRLF only, as SSE and NDJSON define them. (httpx's
    aiter_lines splits like str.splitlines, also at U+2028, U+2029 and U+0085, which JSON
    allows unescaped inside a string: llama.cpp sends them raw.)"""
    pending = ""
    async for piece in pieces:
        pending += piece
        held = ""
        if pending.endswith("\r"):  # maybe the first half of a CRLF split across pieces
            pending, held = pending[:-1], "\r"
        *lines, pending = _LINE_BREAK.split(pending)
        for line in lines:
            yield line
        pending += held
    if pending:
        yield pending.removesuffix("\r")


def _root_cause(error: BaseException) -> str:
    """The OS-level reason under httpx's wrappers ("All connection attempts failed")."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, ConnectionResetError):
            return "connection reset by the server"
        if isinstance(cause, socket.gaierror):
            return f"unknown host name: {cause.strerror}"
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        cause = cause.__cause__ or cause.__context__
    return str(error) or type(error).__name__.lower()


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def api_key_from(configured: str) -> str:
    return configured.strip() or os.environ.get(redaction.API_KEY_ENV, "").strip()


def wire_messages(messages: Sequence[Message]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


def length_notice(max_tokens: int) -> Delta:
    return Delta(notice=f"The reply was cut off at llm.max_tokens = {max_tokens}.")


class OpenAICompatBackend:
    name = "openai"

    def __init__(self, base_url: str, model: str = "", api_key: str = "",
                 temperature: float = 0.7, max_tokens: int = 256,
                 timeout_s: float = 30.0, env_key: bool = True) -> None:
        """`env_key`: an empty api_key takes OPENAI_API_KEY (not for a server found running
        on a local port: the key is for the service the user set up)."""
        self.base_url = normalise_base_url(base_url)
        # Someone pasting the full endpoint gets what they meant.
        self.base_url = re.sub(r"/chat/completions$", "", self.base_url)
        self.model = model.strip()
        self.temperature = temperature
        self.max_tokens = max_tokens
        shown = public_url(self.base_url)
        self.description = (f"OpenAI-compatible server at {shown} "
                            f"(model {self.model or 'first listed by the server'})")
        self.http = HttpStream(self.base_url, f"the LLM server at {shown}", timeout_s,
                               api_key_from(api_key) if env_key else api_key.strip())
        self._hint_404 = ("check llm.model, and that llm.base_url is the server's "
                          "OpenAI-compatible root (it usually ends in /v1).")

    @property
    def label(self) -> str:
        return f"{self.model or 'server'} at {public_url(self.base_url)}"

    async def _model_name(self) -> str:
        if self.model:
            return self.model
        listing = await self.http.get_json("/models", self._hint_404)
        models = listing.get("data") if isinstance(listing, dict) else None
        ids = [m["id"] for m in models or [] if isinstance(m, dict)
               and isinstance(m.get("id"), str)]
        if not ids:
            raise LLMError(f"{_capitalised(self.http.label)} lists no models; "
                           f"set llm.model to the model to use.")
        self.model = ids[0]
        self.description = f"OpenAI-compatible server at {public_url(self.base_url)} " \
                           f"(model {self.model})"
        return self.model

    # -- the context budget (agent.llm.budget): llama.cpp's server says both -------------------

    def _root(self) -> str:
        return re.sub(r"/v1$", "", self.base_url)

    async def context_window(self) -> int | None:
        """llama.cpp's /props (n_ctx), else a context length in /models; None if neither."""
        client = self.http.client()
        with contextlib.suppress(httpx.HTTPError, ValueError):
            reply = await client.get(f"{self._root()}/props", timeout=5.0)
            if reply.status_code == 200:
                props = reply.json()
                settings = props.get("default_generation_settings", {})
                window = settings.get("n_ctx") or props.get("n_ctx")
                if isinstance(window, int) and window > 0:
                    return window
        with contextlib.suppress(httpx.HTTPError, ValueError, LLMError):
            listing = await self.http.get_json("/models", self._hint_404)
            for model in listing.get("data") or [] if isinstance(listing, dict) else []:
                if not isinstance(model, dict):
                    continue
                meta = model.get("meta")
                extra: dict[str, Any] = meta if isinstance(meta, dict) else {}
                for key in ("context_length", "max_model_len", "max_context_length"):
                    value = model.get(key) or extra.get(key)
                    if isinstance(value, int) and value > 0:
                        return value
        return None

    async def count_tokens(self, text: str) -> int | None:
        """llama.cpp's /tokenize, or llama-cpp-python's /extras/tokenize/count; None where
        the server has neither."""
        client = self.http.client()
        with contextlib.suppress(httpx.HTTPError, ValueError):
            reply = await client.post(f"{self._root()}/tokenize", json={"content": text},
                                      timeout=10.0)
            tokens = reply.json().get("tokens") if reply.status_code == 200 else None
            if isinstance(tokens, list):
                return len(tokens)
        with contextlib.suppress(httpx.HTTPError, ValueError):
            reply = await client.post(f"{self._root()}/extras/tokenize/count",
                                      json={"input": text}, timeout=10.0)
            count = reply.json().get("count") if reply.status_code == 200 else None
            if isinstance(count, int):
                return count
        return None

    async def stream(self, messages: Sequence[Message]) -> AsyncIterator[Delta]:
        body: dict[str, Any] = {
            "model": await self._model_name(),
            "messages": wire_messages(messages),
            "stream": True,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        finished = False
        lines = self.http.post_lines("/chat/completions", body, self._hint_404)
        async with closing_stream(lines):
            async for line in lines:
                if not line or line.startswith(":"):  # blank separators, keep-alive comments
                    continue
                field, _, value = line.partition(":")
                if field.startswith("{"):  # a whole JSON reply (the server ignored stream)
                    field, value = "data", line
                if field != "data":  # event:, id:, retry:
                    continue
                value = value.strip()
                if value == "[DONE]":
                    finished = True
                    break
                deltas, ends_reply = self._parse_event(value)
                finished = finished or ends_reply
                for delta in deltas:
                    yield delta
        if not finished:
            raise LLMResponseError(
                f"{_capitalised(self.http.label)} closed the stream before the reply was "
                f"complete.")

    def _parse_event(self, value: str) -> tuple[list[Delta], bool]:
        """The deltas in one `data:` payload, and whether it ends the reply."""
        payload = self.http.stream_payload(value)
        deltas: list[Delta] = []
        finished = False
        for choice in payload.get("choices") or []:  # a usage chunk has none
            if not isinstance(choice, dict):
                continue
            part = choice.get("delta") or choice.get("message") or {}
            text = _string(part.get("content"))
            reasoning = _string(part.get("reasoning_content")) or _string(part.get("reasoning"))
            if text or reasoning:
                deltas.append(Delta(text=text, reasoning=reasoning))
            reason = choice.get("finish_reason")
            if reason:
                if reason == "length":
                    deltas.append(length_notice(self.max_tokens))
                finished = True
        return deltas, finished

    async def aclose(self) -> None:
        await self.http.aclose()


def _string(value: Any) -> str:
    return value if isinstance(value, str) else ""
