"""A loopback OpenAI-compatible server whose replies burst: an opening sentence, then, on a
signal, a flood of tokens written as fast as it can (every token its own `data:` event, no
pauses) until `--tokens` are out or the client leaves. A test peer for the front end while
reply tokens stream at full speed, at a moment the test chooses (when speech is playing, say).

It runs in its own process, so its work does not share the agent's GIL; it prints its base
URL ("http://127.0.0.1:PORT/v1") on stdout once it listens, and stops when its stdin closes.
It answers GET /v1/models, POST /v1/chat/completions (streaming) and GET /go, which lets the
reply that is waiting (or the next one) flood; set llm.model (any name) to skip /models.

    flood = start_token_flood(tokens=8000)   # base_url for [llm] base_url
    ... a reply starts; its opening is spoken ...
    flood.go()                                # the flood starts now (or go(base_url))
    flood.stop()

    python -m harness.token_flood [--tokens 8000] [--go-timeout 60]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from harness.llm_servers import read_request

OPENING = ("Once upon a time there was a long and lazy river that wound its way through the "
           "hills, past farms and forests and quiet villages, and everyone who lived along its "
           "banks had a story to tell about it, so let me tell you a few of them now. ")
PASSAGE = (
    "The river runs past the old mill, and the wheel turns slowly in the brown water. "
    "Children walk along the bank on their way to school, counting the boats that drift "
    "downstream. In the afternoon the light falls low across the fields, and the farmers "
    "bring the cattle home before the evening rain. Nobody remembers who built the mill, "
    "but everybody knows the sound it makes at night.\n\n")


def tokens_of(text: str) -> list[str]:
    """Word-sized tokens with their leading space, as an LLM sends them."""
    words = text.split(" ")
    return [words[0], *(" " + word for word in words[1:] if word)]


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _event(payload: object) -> bytes:
    """One `data:` event as one HTTP chunk."""
    return _chunk(f"data: {json.dumps(payload)}\n\n".encode())


def _token_event(text: str, finish: str | None = None) -> bytes:
    delta = {"content": text} if text else {}
    return _event({"object": "chat.completion.chunk", "model": "flood",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


class FloodServer:
    def __init__(self, tokens: int, go_timeout: float) -> None:
        self.tokens = tokens
        self.go_timeout = go_timeout
        self.go = asyncio.Event()
        self.opening = [_token_event(t) for t in tokens_of(OPENING)]
        self.events = [_token_event(t) for t in tokens_of(PASSAGE)]
        self.finish = (_token_event("", "stop") + _chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # keep-alive: one request after another
                method, path, _headers, _body = await read_request(reader)
                path = path.rstrip("/")
                if method == "GET" and path.endswith("/models"):
                    await self.respond(writer, {"object": "list", "data": [{"id": "flood"}]})
                elif method == "GET" and path.endswith("/go"):
                    self.go.set()
                    await self.respond(writer, {"go": True})
                elif method == "POST" and path.endswith("/chat/completions"):
                    await self.stream(reader, writer)
                else:
                    writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def respond(writer: asyncio.StreamWriter, payload: object) -> None:
        body = json.dumps(payload).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()

    async def stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n\r\n")
        for event in self.opening:
            writer.write(event)
        await writer.drain()
        # Until the signal, or the client leaves (an interrupt before the flood).
        go = asyncio.ensure_future(self.go.wait())
        left = asyncio.ensure_future(reader.read(1))
        await asyncio.wait({go, left}, timeout=self.go_timeout,
                           return_when=asyncio.FIRST_COMPLETED)
        for waiter in (go, left):
            waiter.cancel()
        await asyncio.gather(go, left, return_exceptions=True)  # the reader is free again
        self.go.clear()
        if not left.cancelled():
            raise ConnectionResetError("the client left before the flood")
        events = self.events
        for i in range(self.tokens):
            writer.write(events[i % len(events)])
            await writer.drain()  # waits only when the client's socket buffer is full
        writer.write(self.finish)
        await writer.drain()


async def _serve(tokens: int, go_timeout: float) -> None:
    flood = FloodServer(tokens, go_timeout)
    server = await asyncio.start_server(flood.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"http://127.0.0.1:{port}/v1", flush=True)
    stdin_closed = asyncio.Event()
    loop = asyncio.get_running_loop()

    def wait_for_stdin() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(stdin_closed.set)

    threading.Thread(target=wait_for_stdin, daemon=True).start()
    async with server:
        await stdin_closed.wait()


def go(base_url: str) -> None:
    """Let the reply waiting at the server at `base_url` (or its next one) flood."""
    where = urlsplit(base_url)
    connection = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port,
                                            timeout=5)
    try:
        connection.request("GET", f"{where.path}/go")
        connection.getresponse().read()
    finally:
        connection.close()


@dataclass
class TokenFlood:
    process: subprocess.Popen[str]
    base_url: str

    def go(self) -> None:
        """Let the waiting reply (or the next one) flood."""
        go(self.base_url)

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                assert self.process.stdin is not None
                self.process.stdin.close()
            try:
                self.process.wait(3)
            except subprocess.TimeoutExpired:
                self.process.terminate()
                self.process.wait(3)


def start_token_flood(tokens: int = 8000, go_timeout: float = 60.0) -> TokenFlood:
    """The server in a child process, listening; stop() ends it (so does our exit: its stdin
    is our pipe)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "harness.token_flood", "--tokens", str(tokens),
         "--go-timeout", str(go_timeout)],
        cwd=Path(__file__).resolve().parents[1], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith("http://"):
        process.kill()
        process.wait()
        raise RuntimeError(f"the token flood server did not start (it said {line!r})")
    return TokenFlood(process, line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=8000)
    parser.add_argument("--go-timeout", type=float, default=60.0,
                        help="seconds a reply waits for /go before it floods anyway")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.tokens, args.go_timeout))


if __name__ == "__main__":
    main()
