"""Find the local LLM servers that are running: one short GET on each well-known product's
default port, on loopback only, all at once, so a full scan takes about as long as the slowest
probe (a refused connection on loopback is instant; a port held by something that never
answers costs the probe timeout, 0.3 s, and no more).

What a probe reads:
- Ollama (11434): GET /api/tags, its native list of installed models;
- LM Studio (1234), llama.cpp's server (8080; llama-cpp-python's 8000), LocalAI (8080), vLLM
  (8000), Jan (1337): GET /v1/models, the OpenAI list ({"data": [{"id": ...}]}).
Products that share a port are told apart by what they say of themselves: llama.cpp's list
says "owned_by": "llamacpp" (llama-cpp-python's says "me"), vLLM's says "vllm", and LocalAI
answers GET /version with a JSON object (asked at the same time as the list). When nothing
tells, the label names both ("llama.cpp server or LocalAI").

A server that answers its list is found, even with no model in it (the menu then says to load
or pull one); an error status (401 from a server that wants a key, as Jan does), HTML, a
redirect or JSON of another shape is not. Models that cannot chat (embedding models,
rerankers, speech models), recognised by name or by Ollama's model family, are left out; the
rest keep the server's order.

Nothing here raises for network reasons, and nothing probes another address than loopback:
`host` must be a loopback IP literal (ValueError otherwise), the environment's proxy settings
are ignored (an HTTP_PROXY must not carry a loopback probe elsewhere), and redirects are not
followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)
T = TypeVar("T")

Backend = Literal["ollama", "openai"]

LOOPBACK = "127.0.0.1"
PROBE_TIMEOUT_S = 0.3
MAX_BODY_BYTES = 1024 * 1024  # a models list is a few kB; anything larger is not one

MODELS_PATH: dict[Backend, str] = {"ollama": "/api/tags", "openai": "/v1/models"}
API_ROOT: dict[Backend, str] = {"ollama": "", "openai": "/v1"}  # what [llm] base_url says


@dataclass(frozen=True)
class Candidate:
    """One known product on its default port, and how to recognise it there."""

    product: str  # "Ollama", "LM Studio", ...
    port: int
    backend: Backend
    # Values of "owned_by" in its models list that name this product.
    owned_by: tuple[str, ...] = ()
    # A path only this product answers with a JSON object (asked only where products share a
    # port, at the same time as the models list).
    identify_path: str = ""


KNOWN_SERVERS: tuple[Candidate, ...] = (
    Candidate("Ollama", 11434, "ollama"),
    Candidate("LM Studio", 1234, "openai"),
    # llama-server's default port; llama-cpp-python's `python -m llama_cpp.server` takes 8000.
    Candidate("llama.cpp server", 8080, "openai", owned_by=("llamacpp", "me")),
    Candidate("LocalAI", 8080, "openai", identify_path="/version"),
    Candidate("vLLM", 8000, "openai", owned_by=("vllm",)),
    Candidate("llama.cpp server", 8000, "openai", owned_by=("me", "llamacpp")),
    Candidate("Jan", 1337, "openai"),
)


@dataclass(frozen=True)
class FoundServer:
    product: str
    backend: Backend
    base_url: str  # what [llm] base_url should say
    models: tuple[str, ...]  # chat models only, in the server's order

    @property
    def port(self) -> int:
        return urlsplit(self.base_url).port or 0

    @property
    def label(self) -> str:
        """E.g. "Ollama on port 11434"."""
        return f"{self.product} on port {self.port}"


@dataclass(frozen=True)
class ScanResult:
    servers: tuple[FoundServer, ...]
    elapsed_s: float

    def with_chat_models(self) -> tuple[FoundServer, ...]:
        return tuple(server for server in self.servers if server.models)


# --- which models can chat -------------------------------------------------------------------

# Embedding models (nomic-embed-text, text-embedding-*, mxbai-embed-large, bge-*, all-minilm),
# rerankers, speech-to-text, text-to-speech and image models, by name.
_NOT_CHAT_NAME = re.compile(
    r"embed|rerank|whisper|minilm|stable-?diffusion|dall-e|(?:^|[^a-z0-9])(?:tts|bge|sdxl)"
    r"(?:$|[^a-z0-9])", re.IGNORECASE)
# Ollama's families of embedding models: bert, nomic-bert, jina-bert-v2, xlm-roberta.
_NOT_CHAT_FAMILY = re.compile(r"bert", re.IGNORECASE)


def can_chat(name: str, families: Iterable[str] = ()) -> bool:
    """False for models recognisably not for chat (by name, or by Ollama's model family)."""
    if _NOT_CHAT_NAME.search(name):
        return False
    return not any(_NOT_CHAT_FAMILY.search(family) for family in families)


# --- reading the answers ---------------------------------------------------------------------

@dataclass(frozen=True)
class _Listing:
    """A models list in the expected shape."""

    backend: Backend
    models: tuple[str, ...]  # chat models
    owners: frozenset[str]  # the "owned_by" values of all its entries


def _unique(items: Iterable[T]) -> tuple[T, ...]:
    """The items without repeats, in their first order."""
    return tuple(dict.fromkeys(items))


def _ollama_families(entry: dict[str, Any]) -> list[str]:
    details = entry.get("details")
    if not isinstance(details, dict):
        return []
    family = details.get("family")
    families = details.get("families")
    found = [family] if isinstance(family, str) else []
    if isinstance(families, list):
        found += [f for f in families if isinstance(f, str)]
    return found


def _read_ollama(payload: Any) -> _Listing | None:
    """{"models": [{"name": .., "model": .., "details": {"family": .., "families": [..]}}]}"""
    if not isinstance(payload, dict) or "models" not in payload:
        return None
    entries = payload["models"] if payload["models"] is not None else []
    if not isinstance(entries, list):
        return None
    names = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        name = entry.get("model") or entry.get("name")
        if isinstance(name, str) and name.strip() and can_chat(name, _ollama_families(entry)):
            names.append(name)
    return _Listing("ollama", _unique(names), frozenset())


def _read_openai(payload: Any) -> _Listing | None:
    """{"object": "list", "data": [{"id": .., "object": "model", "owned_by": ..}]}"""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        return None
    entries = [entry for entry in payload["data"] if isinstance(entry, dict)]
    names = [entry["id"] for entry in entries
             if isinstance(entry.get("id"), str) and entry["id"].strip() and can_chat(entry["id"])]
    owners = frozenset(entry["owned_by"] for entry in entries
                       if isinstance(entry.get("owned_by"), str))
    return _Listing("openai", _unique(names), owners)


_READERS: dict[Backend, Callable[[Any], _Listing | None]] = {
    "ollama": _read_ollama, "openai": _read_openai}


# --- probing ---------------------------------------------------------------------------------

def check_loopback(host: str) -> None:
    """ValueError unless `host` is a loopback IP literal (127.0.0.0/8, ::1). Names, even
    "localhost", are refused: what they resolve to is not ours to promise."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"the LLM scan probes loopback only: {host!r} is not a loopback IP "
                         f"address (use {LOOPBACK})") from None
    if not address.is_loopback:
        raise ValueError(f"the LLM scan probes loopback only: {host!r} is not a loopback "
                         f"address (use {LOOPBACK})")


def _origin(host: str, port: int) -> str:
    shown = f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    return f"http://{shown}:{port}"


async def _get_json(client: httpx.AsyncClient, url: str, timeout_s: float) -> Any | None:
    """The JSON of a 200 answer, or None (refused, silent, too slow, too big, another status,
    not JSON). The deadline bounds the whole exchange, so a server that trickles bytes cannot
    stretch it."""
    import httpx

    try:
        async with asyncio.timeout(timeout_s), client.stream("GET", url) as response:
            if response.status_code != 200:
                log.debug("LLM scan: %s answered %d", url, response.status_code)
                return None
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    log.debug("LLM scan: %s answered over %d bytes", url, MAX_BODY_BYTES)
                    return None
        return json.loads(body)
    except TimeoutError:
        log.debug("LLM scan: %s did not answer within %.2f s", url, timeout_s)
    except (httpx.HTTPError, OSError) as error:
        log.debug("LLM scan: %s: %s", url, str(error) or type(error).__name__)
    except (ValueError, RecursionError):  # not JSON, not text, or nested beyond reason
        log.debug("LLM scan: %s did not answer JSON", url)
    return None


def _product(group: Sequence[Candidate], listing: _Listing, identified: set[str]) -> str:
    """Which of the products on this port answered."""
    matching = [c for c in group if c.backend == listing.backend]
    products = _unique(c.product for c in matching)
    by_owner = _unique(c.product for c in matching if listing.owners & set(c.owned_by))
    by_path = _unique(c.product for c in matching if c.identify_path in identified)
    for told in (products, by_owner, by_path):
        if len(told) == 1:
            return told[0]
    return " or ".join(products)


async def _probe_port(client: httpx.AsyncClient, host: str, group: Sequence[Candidate],
                      timeout_s: float) -> FoundServer | None:
    port = group[0].port
    origin = _origin(host, port)
    backends = _unique(c.backend for c in group)
    # Only where products share a port is one asked who it is.
    paths = _unique(c.identify_path for c in group if c.identify_path) if len(group) > 1 else ()
    answers = await asyncio.gather(
        *(_get_json(client, origin + MODELS_PATH[b], timeout_s) for b in backends),
        *(_get_json(client, origin + path, timeout_s) for path in paths))
    lists, identities = answers[:len(backends)], answers[len(backends):]
    listings = [_READERS[b](payload) for b, payload in zip(backends, lists, strict=True)]
    listing = next((found for found in listings if found is not None), None)
    if listing is None:
        if any(payload is not None for payload in lists):
            log.debug("LLM scan: port %d answered JSON that is not a models list", port)
        return None
    identified = {path for path, payload in zip(paths, identities, strict=True)
                  if isinstance(payload, dict)}
    return FoundServer(_product(group, listing, identified), listing.backend,
                       origin + API_ROOT[listing.backend], listing.models)


def _by_port(candidates: Iterable[Candidate]) -> list[tuple[Candidate, ...]]:
    groups: dict[int, list[Candidate]] = {}
    for candidate in candidates:
        groups.setdefault(candidate.port, []).append(candidate)
    return [tuple(group) for group in groups.values()]


async def scan_async(candidates: Iterable[Candidate] = KNOWN_SERVERS, host: str = LOOPBACK,
                     timeout_s: float = PROBE_TIMEOUT_S) -> ScanResult:
    """Probe every candidate's port on `host` (loopback only) at once; one result per port
    that answers a models list, in the candidates' order."""
    import httpx  # here: the agent's start (which imports this module) does not wait for it

    check_loopback(host)
    began = time.monotonic()
    # Plain HTTP only, so no certificates to load (that alone costs 15-30 ms); no retries. A
    # transport of our own also keeps httpx from mounting the environment's proxies, as
    # trust_env=False does (and it leaves ~/.netrc unread).
    transport = httpx.AsyncHTTPTransport(verify=False, retries=0)
    async with httpx.AsyncClient(transport=transport, trust_env=False, follow_redirects=False,
                                 timeout=httpx.Timeout(timeout_s),
                                 headers={"Accept": "application/json"}) as client:
        found = await asyncio.gather(*(_probe_port(client, host, group, timeout_s)
                                       for group in _by_port(candidates)))
    servers = tuple(server for server in found if server is not None)
    elapsed = time.monotonic() - began
    log.debug("LLM scan: %d server(s) on %s in %.0f ms", len(servers), host, elapsed * 1000)
    return ScanResult(servers, elapsed)


def scan(candidates: Iterable[Candidate] = KNOWN_SERVERS, host: str = LOOPBACK,
         timeout_s: float = PROBE_TIMEOUT_S) -> ScanResult:
    """scan_async() from synchronous code, on an event loop of its own: from any thread. On a
    thread whose event loop is running (inside a coroutine), the scan runs on a helper thread
    and this blocks until it ends (at most about timeout_s): there, prefer `await
    scan_async()`."""
    check_loopback(host)
    probes = tuple(candidates)
    try:
        return _scan_here(probes, host, timeout_s)
    except Exception:  # never in the way of a start, doctor or a menu: nothing found
        log.exception("the scan for local LLM servers failed")
        return ScanResult((), 0.0)


def _scan_here(probes: tuple[Candidate, ...], host: str, timeout_s: float) -> ScanResult:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(scan_async(probes, host, timeout_s))
    outcome: list[ScanResult | BaseException] = []

    def run() -> None:
        try:
            outcome.append(asyncio.run(scan_async(probes, host, timeout_s)))
        except BaseException as error:  # handed to the caller's thread
            outcome.append(error)

    helper = threading.Thread(target=run, name="llm-scan", daemon=True)
    helper.start()
    helper.join()
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]
