"""LLM test peers: the real llama.cpp server (OpenAI-compatible) as a subprocess, a loopback
fault server that misbehaves on purpose, and one long-lived event loop thread like the app's.

Every process is started here and stopped by its own pid; every socket is on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from harness.services import end_process, wait_for

T = TypeVar("T")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads, from /proc (no psutil here)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # the name may contain spaces
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    """Cancel and await what is still running on `loop`, then stop and close it: tasks left
    to the garbage collector would run their cleanup on a closed loop."""
    async def finish_tasks() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await loop.shutdown_asyncgens()

    asyncio.run_coroutine_threadsafe(finish_tasks(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    if not thread.is_alive():
        loop.close()


class LoopThread:
    """One event loop on its own thread for the whole session, as the app runs it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-loop",
                                       daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        stop_loop(self.loop, self.thread)


@dataclass
class LlamaServer:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        end_process(self.process)



async def read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes]:
    """One HTTP/1.1 request off a keep-alive connection: method, path, headers (lower-case
    names), body. Raises asyncio.IncompleteReadError when the client has gone."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(":") for line in lines[1:] if line)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return method, path, headers, body

def _answers_models(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        connection.request("GET", "/v1/models")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def start_llama_server(model: Path, logs: Path, alias: str = "smollm2",
                       deadline_s: float = 60.0, port: int | None = None) -> LlamaServer:
    """`python -m llama_cpp.server` on a loopback port (a free one unless given), ready to
    answer."""
    port = port or free_port()
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / "llama-server.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(model),
             "--model_alias", alias, "--host", "127.0.0.1", "--port", str(port),
             "--n_ctx", "2048"],
            stdout=out, stderr=subprocess.STDOUT)
    server = LlamaServer(process, port, log)
    if not wait_for(lambda: process.poll() is not None or _answers_models(port),
                    timeout=deadline_s, step=0.1) or process.poll() is not None:
        server.stop()
        raise RuntimeError(f"llama_cpp.server did not start; see {log}")
    return server


# --- the fault server -----------------------------------------------------------------------

Script = Callable[["FaultRequest"], Awaitable[None]]


@dataclass
class FaultRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def json(self) -> Any:
        return json.loads(self.body)

    async def respond(self, status: int, body: bytes,
                      content_type: str = "application/json") -> None:
        reason = http.client.responses.get(status, "Status")
        self.writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
                          f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await self.writer.drain()

    async def respond_json(self, status: int, payload: Any) -> None:
        await self.respond(status, json.dumps(payload).encode())

    async def start_stream(self, content_type: str = "text/event-stream") -> None:
        self.writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n"
                          f"Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n\r\n"
                          .encode())
        await self.writer.drain()

    async def chunk(self, data: str | bytes) -> None:
        """One HTTP chunk (it may hold half a line: the client must join them)."""
        raw = data.encode() if isinstance(data, str) else data
        self.writer.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
        await self.writer.drain()

    async def event(self, payload: Any) -> None:
        await self.chunk(f"data: {json.dumps(payload)}\n\n")

    async def end_stream(self) -> None:
        self.writer.write(b"0\r\n\r\n")
        await self.writer.drain()

    async def until_client_leaves(self) -> None:
        """Send nothing more; return when the client closes the connection."""
        while await self.reader.read(4096):
            pass

    def reset(self) -> None:
        """Abort the connection with a TCP RST (SO_LINGER 0), like a crashed server."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


@dataclass
class Visit:
    """What the fault server saw of one request, for the tests to wait on."""

    request: FaultRequest
    received: threading.Event = field(default_factory=threading.Event)
    left: threading.Event = field(default_factory=threading.Event)  # the client disconnected
    left_at: float = 0.0


class FaultServer:
    """An HTTP/1.1 server on 127.0.0.1 whose every path prefix `/<name>/` runs the script
    registered under that name, so each test gets its own base URL."""

    def __init__(self) -> None:
        self.scripts: dict[str, Script] = {}
        self.visits: dict[str, list[Visit]] = {}
        self.visit_arrived = threading.Condition()
        self.loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(ready,), name="fault-server",
                                       daemon=True)
        self.thread.start()
        if not ready.wait(5):
            raise RuntimeError("the fault server did not start")

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self._server = self.loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0))
        ready.set()
        self.loop.run_forever()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def url(self, name: str, script: Script, suffix: str = "/v1") -> str:
        self.scripts[name] = script
        return f"http://127.0.0.1:{self.port}/{name}{suffix}"

    def wait_visit(self, name: str, number: int = 1, timeout: float = 5.0) -> Visit:
        with self.visit_arrived:
            if not self.visit_arrived.wait_for(
                    lambda: len(self.visits.get(name, [])) >= number, timeout):
                raise AssertionError(f"no request #{number} for {name!r} within {timeout} s")
            return self.visits[name][number - 1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # keep-alive: several requests per connection
                method, path, headers, body = await read_request(reader)
                request = FaultRequest(method, path, headers, body, reader, writer)
                name = path.strip("/").split("/", 1)[0]
                visit = Visit(request)
                with self.visit_arrived:
                    self.visits.setdefault(name, []).append(visit)
                    self.visit_arrived.notify_all()
                visit.received.set()
                script = self.scripts.get(name)
                try:
                    if script is None:
                        await request.respond_json(404, {"error": f"no script {name!r}"})
                    else:
                        await script(request)
                finally:
                    if writer.is_closing() or reader.at_eof():
                        visit.left_at = time.monotonic()
                        visit.left.set()
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:  # stop(): end quietly (asyncio logs a cancelled handler)
            pass
        finally:
            for visits in self.visits.values():
                for visit in visits:
                    if visit.request.writer is writer and not visit.left.is_set():
                        visit.left_at = time.monotonic()
                        visit.left.set()
            writer.close()

    def stop(self) -> None:
        if self._server is not None:
            self.loop.call_soon_threadsafe(self._server.close)
        stop_loop(self.loop, self.thread)
