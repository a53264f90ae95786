"""Finding local LLM servers: real sockets on loopback, each fake server on a free port passed
to the scan as a Candidate (the real default ports are left alone), and one real llama.cpp
server (llama-cpp-python with the packaged SmolLM2)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agent.llm.scan import (
    KNOWN_SERVERS,
    Candidate,
    FoundServer,
    ScanResult,
    can_chat,
    scan,
    scan_async,
)
from harness.llm_servers import LoopThread, free_port

Behaviour = Callable[[socket.socket, threading.Event], None]  # a raw listener's conduct
SANITY_S = 2.0  # a scan that returns at all returns well inside this; speed is bench/llm_scan


# --- loopback peers -------------------------------------------------------------------------

@dataclass(frozen=True)
class Route:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


def as_json(payload: Any, status: int = 200) -> Route:
    return Route(status, json.dumps(payload).encode())


class FakeServer:
    """An HTTP/1.1 server on 127.0.0.1 answering fixed routes at its root (a real LLM server's
    paths); anything else is a 404. `paths` records every request."""

    def __init__(self, routes: dict[str, Route]) -> None:
        self.routes = routes
        self.paths: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                fake.paths.append(self.path)
                route = fake.routes.get(self.path, as_json({"detail": "Not Found"}, 404))
                self.send_response(route.status)
                self.send_header("Content-Type", route.content_type)
                self.send_header("Content-Length", str(len(route.body)))
                for name, value in route.headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(route.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       name="fake-llm", daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


class RawListener:
    """A TCP listener on 127.0.0.1 that accepts one connection and hands it to `behave`, then
    records when the client hung up: a port held by something that is not an LLM server."""

    def __init__(self, behave: Behaviour) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.accepted = threading.Event()
        self.left = threading.Event()  # the client closed its end
        self.stopping = threading.Event()
        self.behave = behave
        self.thread = threading.Thread(target=self._serve, name="raw-listener", daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.getsockname()[1])

    def _serve(self) -> None:
        self.server.settimeout(10)
        try:
            connection, _ = self.server.accept()
        except OSError:
            return
        with connection:
            self.accepted.set()
            connection.settimeout(10)
            try:
                self.behave(connection, self.stopping)
                while connection.recv(4096):  # until the client hangs up
                    pass
                self.left.set()
            except ConnectionError:
                self.left.set()
            except OSError:  # our own 10 s bound: the client never left
                pass

    def stop(self) -> None:
        self.stopping.set()
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)  # wakes an accept() still waiting
        self.server.close()
        self.thread.join(15)


def say_nothing(connection: socket.socket, stopping: threading.Event) -> None:
    pass


def trickle(connection: socket.socket, stopping: threading.Event) -> None:
    """A 200 whose JSON body never ends: one byte every 20 ms, while the client listens."""
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"da \r\n")
    connection.setblocking(False)
    while not stopping.wait(0.02):  # the pace of the fault, not a wait in the test
        try:
            if connection.recv(4096) == b"":
                return
        except BlockingIOError:
            pass
        try:
            connection.sendall(b"1\r\n \r\n")
        except OSError:
            return


Serve = Callable[[dict[str, Route]], FakeServer]
Listen = Callable[[Behaviour], RawListener]


@pytest.fixture
def serve() -> Iterator[Serve]:
    started: list[FakeServer] = []

    def start(routes: dict[str, Route]) -> FakeServer:
        started.append(FakeServer(routes))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def listen() -> Iterator[Listen]:
    started: list[RawListener] = []

    def start(behave: Behaviour) -> RawListener:
        started.append(RawListener(behave))
        return started[-1]

    yield start
    for listener in started:
        listener.stop()


# --- what the servers list ------------------------------------------------------------------

OLLAMA_TAGS = {"models": [
    {"name": "qwen2.5:0.5b", "model": "qwen2.5:0.5b",
     "details": {"family": "qwen2", "families": ["qwen2"]}},
    {"name": "nomic-embed-text:latest", "model": "nomic-embed-text:latest",
     "details": {"family": "nomic-bert", "families": ["nomic-bert"]}},
    # an embedding model whose name does not say so: its family does
    {"name": "granite-small:latest", "model": "granite-small:latest",
     "details": {"family": "bert", "families": ["bert"]}},
    # a vision chat model: "clip" among its families does not make it an embedding model
    {"name": "llava:7b", "model": "llava:7b",
     "details": {"family": "llama", "families": ["llama", "clip"]}},
    {"name": "llama3.2:latest", "model": "llama3.2:latest",
     "details": {"family": "llama", "families": None}},
]}


def openai_models(*ids: str, owned_by: str | None = None) -> dict[str, Any]:
    entries = [{"id": i, "object": "model"} | ({"owned_by": owned_by} if owned_by else {})
               for i in ids]
    return {"object": "list", "data": entries}


def run_scan(*candidates: Candidate, **options: Any) -> ScanResult:
    began = time.monotonic()
    result = scan(candidates, **options)
    assert time.monotonic() - began < SANITY_S
    assert result.elapsed_s < SANITY_S
    return result


# --- found -----------------------------------------------------------------------------------

def test_ollama_lists_its_chat_models_in_order_without_embedding_models(serve: Serve) -> None:
    ollama = serve({"/api/tags": as_json(OLLAMA_TAGS)})
    result = run_scan(Candidate("Ollama", ollama.port, "ollama"))
    assert result.servers == (
        FoundServer("Ollama", "ollama", f"http://127.0.0.1:{ollama.port}",
                    ("qwen2.5:0.5b", "llava:7b", "llama3.2:latest")),)
    assert result.servers[0].label == f"Ollama on port {ollama.port}"
    assert result.with_chat_models() == result.servers
    assert ollama.paths == ["/api/tags"]  # its native API; nothing else was asked


def test_openai_server_lists_chat_models_without_embedding_speech_or_rerank_models(
        serve: Serve) -> None:
    server = serve({"/v1/models": as_json(openai_models(
        "meta-llama-3.1-8b-instruct", "text-embedding-nomic-embed-text-v1.5", "whisper-1",
        "tts-1", "bge-reranker-v2-m3", "qwen2.5-7b-instruct", "all-MiniLM-L6-v2",
        owned_by="organization_owner"))})
    result = run_scan(Candidate("LM Studio", server.port, "openai"))
    assert result.servers == (
        FoundServer("LM Studio", "openai", f"http://127.0.0.1:{server.port}/v1",
                    ("meta-llama-3.1-8b-instruct", "qwen2.5-7b-instruct")),)
    assert result.servers[0].label == f"LM Studio on port {server.port}"


@pytest.mark.parametrize(("name", "chat"), [
    ("llama3.2:latest", True), ("gpt-4o-mini", True), ("Qwen2.5-7B-Instruct-GGUF", True),
    ("mxbai-embed-large", False), ("text-embedding-3-small", False), ("bge-m3", False),
    ("jina-reranker-v1-tiny-en", False), ("whisper-large-v3", False), ("tts-1-hd", False),
    ("kokoro-tts", False), ("stablediffusion", False), ("all-minilm:l6-v2", False),
])
def test_chat_models_are_told_by_name(name: str, chat: bool) -> None:
    assert can_chat(name) is chat


@pytest.mark.parametrize("listing", [
    {"object": "list", "data": []},
    {"object": "list", "data": [{"id": "nomic-embed-text", "object": "model"}]},
], ids=["nothing-loaded", "only-an-embedding-model"])
def test_a_server_with_no_chat_model_is_found_with_none(serve: Serve,
                                                        listing: dict[str, Any]) -> None:
    server = serve({"/v1/models": as_json(listing)})
    result = run_scan(Candidate("Jan", server.port, "openai"))
    assert result.servers == (
        FoundServer("Jan", "openai", f"http://127.0.0.1:{server.port}/v1", ()),)
    assert result.with_chat_models() == ()


def test_an_ollama_with_no_model_pulled_is_found_with_none(serve: Serve) -> None:
    ollama = serve({"/api/tags": as_json({"models": []})})
    result = run_scan(Candidate("Ollama", ollama.port, "ollama"))
    assert [(s.product, s.models) for s in result.servers] == [("Ollama", ())]


def test_servers_come_in_the_candidates_order(serve: Serve) -> None:
    first = serve({"/v1/models": as_json(openai_models("a-model"))})
    second = serve({"/api/tags": as_json({"models": [{"name": "b-model"}]})})
    result = run_scan(Candidate("LM Studio", first.port, "openai"),
                      Candidate("Nothing", free_port(), "openai"),
                      Candidate("Ollama", second.port, "ollama"))
    assert [(s.product, s.models) for s in result.servers] == [
        ("LM Studio", ("a-model",)), ("Ollama", ("b-model",))]


# --- not found -------------------------------------------------------------------------------

def test_silent_html_error_and_foreign_answers_are_not_servers(serve: Serve,
                                                               listen: Listen) -> None:
    silent = listen(say_nothing)
    trickling = listen(trickle)
    html = serve({"/v1/models": Route(404, b"<html><body>Not Found</body></html>",
                                      "text/html")})
    web_page = serve({"/v1/models": Route(200, b"<!doctype html><title>hi</title>",
                                          "text/html")})
    unauthorised = serve({"/v1/models": as_json({"error": "missing api key"}, 401)})
    broken = serve({"/v1/models": as_json({"error": "internal"}, 500)})
    other_json = serve({"/v1/models": as_json({"status": "ok"}),
                        "/api/tags": as_json({"models": "none"})})
    target = serve({"/v1/models": as_json(openai_models("elsewhere"))})
    redirect = serve({"/v1/models": Route(
        302, b"", headers=(("Location", f"http://127.0.0.1:{target.port}/v1/models"),))})
    huge = serve({"/v1/models": as_json(openai_models(*(f"model-{i:07d}" for i in range(
        60_000))))})
    assert len(huge.routes["/v1/models"].body) > 1024 * 1024
    deep = serve({"/v1/models": Route(200, b"[" * 200_000 + b"]" * 200_000)})  # JSON, too deep

    result = run_scan(Candidate("Silent", silent.port, "openai"),
                      Candidate("Trickle", trickling.port, "openai"),
                      Candidate("HTML 404", html.port, "openai"),
                      Candidate("Web page", web_page.port, "openai"),
                      Candidate("Wants a key", unauthorised.port, "openai"),
                      Candidate("Broken", broken.port, "openai"),
                      Candidate("Other JSON", other_json.port, "openai"),
                      Candidate("Other JSON (Ollama)", other_json.port, "ollama"),
                      Candidate("Redirect", redirect.port, "openai"),
                      Candidate("Huge", huge.port, "openai"),
                      Candidate("Deep", deep.port, "openai"))

    assert result.servers == ()
    # The silent and the trickling probes were abandoned (the connection closed), not left
    # hanging; the redirect was not followed.
    assert silent.accepted.is_set() and silent.left.wait(5)
    assert trickling.accepted.is_set() and trickling.left.wait(5)
    assert target.paths == []
    for server in (html, web_page, unauthorised, broken, redirect, huge, deep):
        assert server.paths == ["/v1/models"]


def test_nothing_listening_is_nothing_found() -> None:
    result = run_scan(*(Candidate(f"Nobody {i}", free_port(), "openai") for i in range(3)),
                      Candidate("Nobody", free_port(), "ollama"))
    assert result == ScanResult((), result.elapsed_s)


# --- loopback only ---------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["192.168.1.10", "10.0.0.1", "0.0.0.0", "::", "8.8.8.8",
                                  "localhost", "example.com", "::ffff:127.0.0.1", ""])
def test_only_loopback_is_probed(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        scan(host=host)
    with pytest.raises(ValueError, match="loopback"):
        asyncio.run(scan_async(host=host))


def test_other_loopback_addresses_are_allowed(serve: Serve) -> None:
    server = serve({"/v1/models": as_json(openai_models("m"))})
    # 127.0.0.2 is loopback too, but nothing listens there (the fake is on 127.0.0.1 only).
    assert run_scan(Candidate("X", server.port, "openai"), host="127.0.0.2").servers == ()
    # IPv6 loopback: nothing listens there either (or IPv6 is off): no error either way.
    assert run_scan(Candidate("X", server.port, "openai"), host="::1").servers == ()


def test_known_servers_are_the_six_products_on_their_default_ports() -> None:
    ports: dict[str, set[int]] = {}
    for candidate in KNOWN_SERVERS:
        ports.setdefault(candidate.product, set()).add(candidate.port)
    assert ports == {"Ollama": {11434}, "LM Studio": {1234},
                     # llama-server's default; llama-cpp-python's server defaults to 8000
                     "llama.cpp server": {8080, 8000}, "LocalAI": {8080}, "vLLM": {8000},
                     "Jan": {1337}}
    backends = {c.product: c.backend for c in KNOWN_SERVERS}
    assert backends["Ollama"] == "ollama"
    assert {b for p, b in backends.items() if p != "Ollama"} == {"openai"}


def test_the_default_scan_probes_loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever runs on this machine's default ports, every probe goes to 127.0.0.1."""
    import httpx

    seen: list[str] = []
    real_send = httpx.AsyncClient.send

    async def recording_send(self: httpx.AsyncClient, request: httpx.Request,
                             **kwargs: Any) -> httpx.Response:
        seen.append(f"{request.url.host}:{request.url.port}")
        return await real_send(self, request, **kwargs)

    monkeypatch.setattr(httpx.AsyncClient, "send", recording_send)
    result = scan()
    assert result.elapsed_s < SANITY_S
    assert seen and {address.split(":")[0] for address in seen} == {"127.0.0.1"}
    assert {int(address.split(":")[1]) for address in seen} == {
        c.port for c in KNOWN_SERVERS}
    for server in result.servers:  # if something does run here, it is described rightly
        assert server.base_url.startswith("http://127.0.0.1:")


# --- shared ports ----------------------------------------------------------------------------

PORT_8080 = [c for c in KNOWN_SERVERS if c.port == 8080]


def on_port(port: int, candidates: list[Candidate]) -> list[Candidate]:
    return [Candidate(c.product, port, c.backend, c.owned_by, c.identify_path)
            for c in candidates]


@pytest.mark.parametrize(("routes", "product"), [
    ({"/v1/models": as_json(openai_models("smollm2", owned_by="llamacpp"))},
     "llama.cpp server"),
    ({"/v1/models": as_json(openai_models("smollm2", owned_by="me"))}, "llama.cpp server"),
    ({"/v1/models": as_json(openai_models("gpt-4")), "/version": as_json(
        {"version": "v2.29.0"})}, "LocalAI"),
    ({"/v1/models": as_json(openai_models("gpt-4"))}, "llama.cpp server or LocalAI"),
], ids=["llama-server", "llama-cpp-python", "localai", "untold"])
def test_products_sharing_a_port_give_one_result_told_apart_where_possible(
        serve: Serve, routes: dict[str, Route], product: str) -> None:
    server = serve(routes)
    candidates = on_port(server.port, PORT_8080)
    assert len(candidates) == 2
    result = run_scan(*candidates)
    assert len(result.servers) == 1
    found = result.servers[0]
    assert found.product == product and found.backend == "openai"
    assert found.base_url == f"http://127.0.0.1:{server.port}/v1"
    assert found.label == f"{product} on port {server.port}"
    assert server.paths.count("/v1/models") == 1  # one probe of the list, not one a product


def test_vllm_and_llama_cpp_python_share_port_8000(serve: Serve) -> None:
    port_8000 = [c for c in KNOWN_SERVERS if c.port == 8000]
    vllm = serve({"/v1/models": as_json(openai_models("Qwen/Qwen2.5-7B", owned_by="vllm"))})
    assert [s.product for s in run_scan(*on_port(vllm.port, port_8000)).servers] == ["vLLM"]
    python = serve({"/v1/models": as_json(openai_models("smollm2", owned_by="me"))})
    assert [s.product for s in run_scan(*on_port(python.port, port_8000)).servers] == [
        "llama.cpp server"]


# --- the environment and the caller's threads ------------------------------------------------

def test_a_proxy_in_the_environment_is_not_used(serve: Serve,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    dead_proxy = f"http://127.0.0.1:{free_port()}"  # through it, every probe would fail
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY",
                 "all_proxy"):
        monkeypatch.setenv(name, dead_proxy)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    server = serve({"/v1/models": as_json(openai_models("m"))})
    result = run_scan(Candidate("LM Studio", server.port, "openai"))
    assert [s.models for s in result.servers] == [("m",)]
    assert server.paths == ["/v1/models"]


def test_scan_runs_from_a_plain_thread_and_from_inside_a_running_loop(serve: Serve) -> None:
    server = serve({"/v1/models": as_json(openai_models("m"))})
    candidates = (Candidate("LM Studio", server.port, "openai"),)
    results: list[ScanResult] = []
    thread = threading.Thread(target=lambda: results.append(scan(candidates)))
    thread.start()
    thread.join(10)
    loop = LoopThread()
    try:
        async def inside() -> ScanResult:
            return scan(candidates)  # blocking, on the loop's own thread

        results.append(loop.run(inside(), timeout=10))
        results.append(loop.run(scan_async(candidates), timeout=10))
    finally:
        loop.stop()
    assert [[s.models for s in r.servers] for r in results] == [[("m",)]] * 3


# --- a real llama.cpp server -----------------------------------------------------------------

def test_a_real_llama_cpp_server_is_found_with_its_model_alias(tmp_path: Path) -> None:
    from agent.llm.embedded import locate_model
    from harness.llm_servers import start_llama_server

    server = start_llama_server(locate_model(), tmp_path, alias="smollm2-scan")
    try:
        # Standing where llama-server and LocalAI share a port: told apart by what it says.
        candidates = on_port(server.port, PORT_8080)
        # A generous timeout: a busy 2-core machine may answer slowly; speed is the bench's.
        result = run_scan(*candidates, timeout_s=1.5)
    finally:
        server.stop()
    assert result.servers == (
        FoundServer("llama.cpp server", "openai", server.base_url, ("smollm2-scan",)),)
    assert result.servers[0].label == f"llama.cpp server on port {server.port}"


def test_a_scan_that_fails_inside_finds_nothing_rather_than_raising(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The start, doctor and the LLM menu scan: an unexpected failure there (no event loop
    can be made, a bug) must not stop any of them."""
    from agent.llm import scan as scan_module

    def broken(*_args: object) -> ScanResult:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(scan_module, "_scan_here", broken)
    assert scan_module.scan().servers == ()
