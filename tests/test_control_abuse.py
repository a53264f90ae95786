"""The control socket under abuse: garbage, oversized and half-written requests, clients that
stall or flood it, and clients of another user.

What must hold whatever a client does: the server keeps answering, a stalled client holds up
no other, memory stays bounded, a bad request gets an error reply wherever one can be
delivered, and nothing is carried out from a partial or garbled request. (The ordinary round
trips and the plain bad-request cases are in test_control.py.)

Every server here runs in this process, on its own folder, so the tests can see exactly what
reached the handler. The waits are on replies, events and deadlines, never on a clock.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import select
import shutil
import socket
import stat
import sys
import tempfile
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.control import (
    COMMANDS,
    MAX_CONNECTIONS,
    MAX_REQUEST_BYTES,
    PORT_NAME,
    SOCKET_NAME,
    TRANSPORTS,
    ControlReply,
    ControlRequest,
    ControlServer,
    Transport,
    send,
    unknown_command_reply,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX sockets and users")

NOBODY = 65534  # the conventional uid and gid of "nobody"


class Recorder:
    """A handler that remembers what reached it; thread-safe, since the server calls it on
    its own thread while the test reads it on another."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[ControlRequest] = []

    def __call__(self, request: ControlRequest) -> ControlReply:
        with self._lock:
            self._requests.append(request)
        return ControlReply(True, f"ran {request.command!r}")

    @property
    def requests(self) -> list[ControlRequest]:
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()


@dataclass
class Served:
    """A running server, and the ways a test reaches it."""

    server: ControlServer
    handler: Recorder
    directory: Path
    transport: Transport
    sockets: list[socket.socket] = field(default_factory=list)

    @property
    def token(self) -> str | None:
        if self.transport == "unix":
            return None
        token = json.loads((self.directory / PORT_NAME).read_text())["token"]
        assert isinstance(token, str)
        return token

    def connect(self, timeout: float = 10.0) -> socket.socket:
        """A raw connection, closed at the end of the test if the test has not closed it."""
        if self.transport == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: str | tuple[str, int] = str(self.directory / SOCKET_NAME)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            port = json.loads((self.directory / PORT_NAME).read_text())["port"]
            address = ("127.0.0.1", port)
        self.sockets.append(sock)
        sock.settimeout(timeout)
        sock.connect(address)
        return sock

    def request(self, command: str, text: str | None = None) -> bytes:
        """A well-formed request line (with the token on TCP)."""
        message: dict[str, str] = {"command": command}
        if text is not None:
            message["text"] = text
        if self.token is not None:
            message["token"] = self.token
        return json.dumps(message).encode() + b"\n"

    def exchange(self, payload: bytes, *, end_stream: bool = True) -> dict[str, object] | None:
        """Send bytes as they are; the reply, or None when the server closed without one."""
        with self.connect() as sock:
            # A refusal may come, and the connection close, before the request is all sent.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(payload)
                if end_stream:
                    sock.shutdown(socket.SHUT_WR)
            data = read_to_end(sock)
        if not data:
            return None
        assert data.endswith(b"\n") and data.count(b"\n") == 1, data[:200]
        reply = json.loads(data)
        assert isinstance(reply, dict)
        assert isinstance(reply.get("ok"), bool) and isinstance(reply.get("message"), str)
        return reply

    def send(self, command: str, text: str = "", timeout: float = 5.0) -> ControlReply:
        return send(ControlRequest(command, text), timeout, transport=self.transport,
                    directory=self.directory)


def read_to_end(sock: socket.socket) -> bytes:
    """All the server sends until it closes (a reset after its reply counts as the end)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        assert chunk, f"closed without a whole reply; got {data!r}"
        data += chunk
    return data


def still_waiting(sock: socket.socket) -> bool:
    """Whether the server has neither answered nor closed this connection (yet)."""
    sock.setblocking(False)
    try:
        sock.recv(1)
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(10)
    return False


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Start servers; at the end, check that each is still running (none crashed)."""
    started: list[Served] = []

    def start(transport: Transport = "unix", read_timeout: float = 2.0,
              directory: Path | None = None) -> Served:
        folder = directory if directory is not None else tmp_path / f"run{len(started)}"
        folder.mkdir(mode=0o700, exist_ok=True)
        handler = Recorder()
        server = ControlServer(handler, transport=transport, directory=folder,
                               read_timeout=read_timeout)
        server.start()
        served = Served(server, handler, folder, transport)
        started.append(served)
        return served

    yield start
    crashed = [served.transport for served in started if not served.server.running]
    for served in started:
        served.server.stop()
        for sock in served.sockets:
            sock.close()
    assert not crashed, f"a server stopped serving on its own ({crashed})"


# --- garbage --------------------------------------------------------------------------------


def _expected_request(line: bytes, token: str | None) -> ControlRequest | None:
    """The request a line stands for under the wire format's rules, or None: refused."""

    def unique(pairs: list[tuple[str, object]]) -> dict[str, object]:
        keys = [key for key, _ in pairs]
        if len(set(keys)) != len(keys):
            raise ValueError("a key appears twice")
        return dict(pairs)

    try:
        message = json.loads(line.decode("utf-8"), object_pairs_hook=unique)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict):
        return None
    if token is not None and message.get("token") != token:
        return None
    command, text = message.get("command"), message.get("text", "")
    if not isinstance(command, str) or not isinstance(text, str):
        return None
    try:
        command.encode("utf-8")
        text.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return ControlRequest(command, text)


_scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20))
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)
# Commands and near misses: NUL, surrogates, case, whitespace, line and paragraph separators.
_commands = st.sampled_from([*COMMANDS, "", " show", "show ", "SHOW", "show\x00", "\x00quit",
                             "quit\n", "talk\u2028", "say\ud800", "\udfff", "status\r"])
_requests = st.fixed_dictionaries(
    {"command": _commands | st.text(max_size=12) | _json},
    optional={"text": st.text(max_size=30) | _json, "extra": _json})


@st.composite
def _payloads(draw: st.DrawFn, token: str | None) -> bytes:
    """Bytes a confused or hostile client might send as its request."""
    kind = draw(st.sampled_from(["raw", "document", "spliced"]))
    if kind == "raw":
        return draw(st.binary(max_size=300))
    document = draw(_json | _requests)
    if isinstance(document, dict) and token is not None and draw(st.booleans()):
        document = {**document, "token": token}
    text = json.dumps(document, ensure_ascii=draw(st.booleans()))
    # surrogatepass: a lone surrogate becomes bytes that are not UTF-8, garbage of its own.
    data = text.encode("utf-8", "surrogatepass")
    if kind == "spliced":
        at = draw(st.integers(0, len(data)))
        cut = draw(st.integers(0, 3))
        data = data[:at] + draw(st.binary(max_size=4)) + data[at + cut:]
    return data


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_fuzzed_requests_get_a_reply_and_only_well_formed_ones_reach_the_handler(
        serve: Callable[..., Served], transport: Transport) -> None:
    served = serve(transport)
    token = served.token

    @settings(max_examples=150, deadline=None)
    @given(payload=_payloads(token), newline=st.booleans())
    def check(payload: bytes, newline: bool) -> None:
        served.handler.clear()
        data = payload + b"\n" if newline else payload  # without one, end of stream ends it
        reply = served.exchange(data)
        if not data:
            assert reply is None, "a client that said nothing gets nothing"
            assert served.handler.requests == []
            return
        expected = _expected_request(data.split(b"\n", 1)[0], token)
        assert reply is not None, f"no reply to {data!r}"
        if expected is None:
            assert served.handler.requests == [], data
            assert reply["ok"] is False, data
            assert str(reply["message"]).startswith(("malformed request", "refused")), reply
        elif expected.command not in COMMANDS:  # well formed, but not in the table
            assert served.handler.requests == [], data
            assert reply == {"ok": False,
                             "message": unknown_command_reply(expected.command).message}
        elif expected.command == "say" and not expected.text.strip():
            assert served.handler.requests == [], data
            assert reply == {"ok": False, "message": "say: nothing to say"}
        else:
            assert served.handler.requests == [expected], data
            assert reply == {"ok": True, "message": f"ran {expected.command!r}"}

    check()
    assert served.send("status").ok, "still answering after the fuzz"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_proper_prefix_of_a_request_is_never_carried_out(
        serve: Callable[..., Served], transport: Transport) -> None:
    """A client that ends its stream (or dies) halfway through a request: whatever the cut, no
    command runs, and one that can still read hears that its request was malformed."""
    served = serve(transport)

    @settings(max_examples=80, deadline=None)
    @given(command=st.sampled_from(COMMANDS), text=st.text(max_size=40), data=st.data())
    def check(command: str, text: str, data: st.DataObject) -> None:
        served.handler.clear()
        line = served.request(command, text)
        cut = data.draw(st.integers(1, len(line) - 2), label="cut")  # keeps neither "}" nor \n
        reply = served.exchange(line[:cut])
        assert served.handler.requests == []
        assert reply is not None
        assert reply["ok"] is False
        assert str(reply["message"]).startswith("malformed request"), reply

    check()

    # And one that closes outright mid-request, with no way to read a reply.
    line = served.request("quit")
    for cut in range(1, len(line) - 1):
        with served.connect() as sock:
            sock.sendall(line[:cut])
    assert served.send("status").ok
    assert served.handler.requests == [ControlRequest("status")]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_nul_bytes_lookalikes_and_odd_json_never_run_a_known_command(
        serve: Callable[..., Served], transport: Transport) -> None:
    served = serve(transport)
    token = {"token": served.token} if served.token else {}
    show = json.dumps({"command": "show", **token}).encode()
    malformed = [
        b"\x00",
        b"\x00\n",
        b"\x00" + show,  # a NUL before a good request
        show.replace(b'"show"', b'"show\x00"'),  # a raw NUL inside a JSON string
        show.replace(b'"show"', b'"sh\xc0\x80ow"'),  # an overlong (invalid) UTF-8 NUL
        show.replace(b'"show"', b'"\\ud800"'),  # a lone surrogate, escaped
        show.replace(b"{", b'{"command": "quit", ', 1),  # two commands: which one was meant?
        json.dumps({"command": "say", "text": None, **token}).encode(),
        json.dumps({"command": ["show"], **token}).encode(),
        json.dumps({"command": {"command": "show"}, **token}).encode(),
        b'{"command": ' + b"9" * 5000 + b"}",  # past Python's limit on integer digits
        b"[" * 60_000,  # nested far past the recursion limit (and under the size limit)
        b'{"a":' * 12_000,
        b"\xef\xbb\xbf" + show,  # a byte order mark
        b"\xff" * 1000,
    ]
    for payload in malformed:
        reply = served.exchange(payload + b"\n")
        assert reply is not None, payload[:80]
        assert reply["ok"] is False, payload[:80]
        assert str(reply["message"]).startswith("malformed request"), (payload[:80], reply)
    duplicate = served.exchange(show.replace(b"{", b'{"command": "quit", ', 1) + b"\n")
    assert duplicate is not None and "appears twice" in str(duplicate["message"])

    # Escaped NULs are legal JSON, but no command of the table: refused before the handler.
    for lookalike in ["show\x00", "\x00show", "show\x00quit"]:
        reply = served.exchange(json.dumps({"command": lookalike, **token}).encode() + b"\n")
        assert reply == {"ok": False, "message": unknown_command_reply(lookalike).message}

    # A whole request followed by garbage on the same connection: the first line is the
    # request (one per connection); the rest is ignored, and does not cost it its reply.
    reply = served.exchange(show + b"\n\x00\xff garbage {\n" + b"x" * 100_000)
    assert reply == {"ok": True, "message": "ran 'show'"}
    assert [r.command for r in served.handler.requests] == ["show"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_handler_that_answers_garbage_gets_an_error_reply(
        tmp_path: Path, transport: Transport) -> None:
    answers: list[object] = [None, "yes", ControlReply(True, None)]  # type: ignore[arg-type]

    def sloppy(request: ControlRequest) -> ControlReply:
        return answers.pop(0)  # type: ignore[return-value]

    server = ControlServer(sloppy, transport=transport, directory=tmp_path)
    server.start()
    try:
        for _ in range(3):
            reply = send(ControlRequest("status"), 5.0, transport=transport, directory=tmp_path)
            assert reply == ControlReply(False, "'status' failed inside voice-agent; see its log")
        assert server.running
    finally:
        server.stop()


# --- too large ------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_huge_request_without_a_newline_is_answered_at_once_in_bounded_memory(
        serve: Callable[..., Served], transport: Transport) -> None:
    """32 MiB and no newline, from a client that then waits: it hears "too large" long before
    any deadline, while the server keeps no more than about one request's worth of it."""
    served = serve(transport, read_timeout=60.0)
    chunk = b"x" * (1 << 20)
    with served.connect() as sock:
        tracemalloc.start()
        try:
            baseline = tracemalloc.get_traced_memory()[0]
            for _ in range(32):
                sock.sendall(chunk)
            reply = json.loads(read_line(sock))  # socket timeout 10 s; read_timeout is 60 s
            peak = tracemalloc.get_traced_memory()[1] - baseline
        finally:
            tracemalloc.stop()
    assert reply == {"ok": False, "message": f"request too large (over {MAX_REQUEST_BYTES} bytes)"}
    assert peak < 2 * 1024 * 1024, f"the server held {peak} bytes of a 32 MiB request"
    assert served.send("status").ok
    assert served.handler.requests == [ControlRequest("status")]


def test_a_client_that_never_stops_sending_is_cut_off(serve: Callable[..., Served]) -> None:
    served = serve("unix", read_timeout=0.5)
    chunk = b"y" * 65536
    failure: list[OSError] = []
    with served.connect() as sock:

        def flood() -> None:
            try:
                while True:
                    sock.sendall(chunk)
            except OSError as error:
                failure.append(error)

        flooder = threading.Thread(target=flood, daemon=True)
        flooder.start()
        # While it floods, others are served.
        assert served.send("status").ok
        flooder.join(30)
        assert not flooder.is_alive(), "the server never cut the flood off"
        assert failure and failure[0].errno in (errno.EPIPE, errno.ECONNRESET), failure
        # The "too large" reply went out as soon as the line passed the limit; it is still
        # there to read (a Unix socket keeps what arrived before the reset).
        reply = json.loads(read_line(sock))
    assert reply["ok"] is False and "too large" in reply["message"]
    assert served.handler.requests == [ControlRequest("status")]


# --- stalled and half-written ---------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_stalled_clients_hold_up_nobody(
        serve: Callable[..., Served], transport: Transport) -> None:
    served = serve(transport, read_timeout=60.0)
    half = served.request("quit")[:-5]  # half a request, and then nothing for a minute
    stalled = served.connect()
    stalled.sendall(half)
    silent = served.connect()  # connected, said nothing
    sent_one_byte = served.connect()
    sent_one_byte.sendall(b"{")

    for command in ("status", "show", "talk"):  # each within send's own 5 s bound
        assert served.send(command).ok
    assert all(still_waiting(sock) for sock in (stalled, silent, sent_one_byte))
    assert served.handler.requests == [ControlRequest(c) for c in ("status", "show", "talk")]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_half_a_request_then_silence_times_out_with_an_error_and_runs_nothing(
        serve: Callable[..., Served], transport: Transport) -> None:
    served = serve(transport, read_timeout=0.3)
    with served.connect() as stalled, served.connect() as silent:
        stalled.sendall(served.request("quit")[:-2])  # all but the closing brace and newline
        reply = json.loads(read_line(stalled))
        assert reply == {"ok": False, "message": "incomplete request: no end of line within "
                                                 "0.3 s; nothing was done"}
        assert read_to_end(stalled) == b""
        assert read_to_end(silent) == b"", "one that said nothing is dropped without a word"
    assert served.handler.requests == []
    assert served.send("status").ok


def test_a_client_that_drips_its_request_is_cut_off_at_its_deadline(
        serve: Callable[..., Served]) -> None:
    """One byte at a time, each in time for the last: the deadline is for the whole line."""
    served = serve("unix", read_timeout=0.5)
    line = served.request("say", "a" * 2000)
    done = threading.Event()
    with served.connect() as sock:

        def drip() -> None:
            with contextlib.suppress(OSError):
                for byte in line[:-1]:
                    sock.sendall(bytes([byte]))
                    if done.wait(0.01):
                        return

        dripper = threading.Thread(target=drip, daemon=True)
        dripper.start()
        try:
            assert served.send("status").ok
            reply = json.loads(read_line(sock))
        finally:
            done.set()
            dripper.join(30)
    assert reply["ok"] is False and reply["message"].startswith("incomplete request")
    assert served.handler.requests == [ControlRequest("status")]


# --- many at once ---------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_many_clients_at_once_all_get_their_answers(
        serve: Callable[..., Served], transport: Transport) -> None:
    """More clients at once than the listen queue holds: each is answered, none is told the
    agent is unreachable."""
    served = serve(transport)
    count = 150
    start = threading.Barrier(count)
    replies: list[ControlReply | Exception] = []
    lock = threading.Lock()

    def client(number: int) -> None:
        start.wait(30)
        try:
            reply: ControlReply | Exception = served.send("say", str(number), timeout=30.0)
        except Exception as error:
            reply = error
        with lock:
            replies.append(reply)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    failures = [reply for reply in replies if not isinstance(reply, ControlReply)]
    assert not failures, failures[:3]
    assert len(replies) == count
    assert sorted(int(r.text) for r in served.handler.requests) == list(range(count))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_more_stalled_clients_than_slots_still_leave_room_and_bounded_memory(
        serve: Callable[..., Served], transport: Transport,
        caplog: pytest.LogCaptureFixture) -> None:
    """Twice as many stalled clients as the server serves at once, each holding a request
    just under the limit: the oldest are dropped (and told), memory stays at about
    MAX_CONNECTIONS requests, and a real client is still answered at once."""
    caplog.set_level(logging.WARNING, logger="agent.control")
    served = serve(transport, read_timeout=60.0)
    almost = b"z" * (MAX_REQUEST_BYTES - 1)  # no newline: each waits for the rest
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        stalled = []
        for _ in range(2 * MAX_CONNECTIONS):
            sock = served.connect()
            sock.sendall(almost)
            stalled.append(sock)
        assert served.send("status").ok
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    # About one request per slot; had all of them been kept, it would be twice that.
    assert peak < 1.5 * MAX_CONNECTIONS * MAX_REQUEST_BYTES, peak

    oldest = json.loads(read_line(stalled[0]))
    assert oldest == {"ok": False, "message": "dropped: too many connections to voice-agent "
                                              "at once"}
    assert still_waiting(stalled[-1])
    crowded = [r for r in caplog.records if "clients connected at once" in r.getMessage()]
    assert len(crowded) == 1, "said once, not once per dropped client"
    assert served.handler.requests == [ControlRequest("status")]


# --- another user ---------------------------------------------------------------------------


def _world_reachable_folder() -> Path:
    """A fresh 0755 folder that every user can reach (pytest's own tmp_path is 0700)."""
    base = Path("/tmp") if Path("/tmp").is_dir() else Path(tempfile.gettempdir())
    folder = Path(tempfile.mkdtemp(prefix="va-ctl-", dir=base))
    folder.chmod(0o755)
    for parent in folder.parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            pytest.skip(f"{parent} is not reachable by other users")
    return folder


class ForeignClient:
    """A forked child that becomes "nobody" at once, before the test starts any thread of its
    own, waits for the word, then connects to a Unix socket, sends a request, and reports
    what became of it: {"error": errno name} or {"reply": what it read}."""

    def __init__(self, path: Path, payload: bytes) -> None:
        go_read, self._go = os.pipe()
        self._result, result_write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: never returns
            code = 1
            try:
                os.close(self._go)
                os.close(self._result)
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                if os.read(go_read, 1) == b"g":
                    outcome = self._attempt(str(path), payload)
                    os.write(result_write, json.dumps(outcome).encode())
                    code = 0
            finally:
                os._exit(code)
        os.close(go_read)
        os.close(result_write)

    @staticmethod
    def _attempt(path: str, payload: bytes) -> dict[str, str]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            try:
                sock.connect(path)
            except OSError as error:
                return {"error": errno.errorcode.get(error.errno or 0, str(error))}
            with contextlib.suppress(OSError):  # it may be refused before it has sent
                sock.sendall(payload)
            return {"reply": read_to_end(sock).decode("utf-8", "replace")}

    def run(self) -> dict[str, str]:
        os.write(self._go, b"g")
        os.close(self._go)
        ready, _, _ = select.select([self._result], [], [], 30)
        assert ready, "the other user's client said nothing in 30 s"
        data = os.read(self._result, 65536)
        os.close(self._result)
        _, status = os.waitpid(self.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, data
        outcome = json.loads(data)
        assert isinstance(outcome, dict)
        return outcome


needs_root = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                                reason="becoming another user needs root")


@needs_root
def test_another_user_cannot_reach_the_socket_in_the_private_folder(
        serve: Callable[..., Served]) -> None:
    base = _world_reachable_folder()
    try:
        runtime = base / "run"  # everything up to here is open; the runtime folder is 0700
        client = ForeignClient(runtime / SOCKET_NAME, b'{"command": "quit"}\n')
        served = serve("unix", directory=runtime)
        assert stat.S_IMODE(runtime.stat().st_mode) == 0o700
        assert client.run() == {"error": "EACCES"}
        assert served.handler.requests == []
        assert served.send("status").ok
    finally:
        shutil.rmtree(base, ignore_errors=True)


@needs_root
def test_the_server_refuses_another_user_where_the_file_system_lets_it_in(
        serve: Callable[..., Served], caplog: pytest.LogCaptureFixture) -> None:
    """A test-only setup the real one never has: a 0755 folder and a 0666 socket, so the
    file system lets "nobody" connect. The server's own check of the peer's uid must refuse
    it, say why in the log, and run nothing."""
    caplog.set_level(logging.WARNING, logger="agent.control")
    folder = _world_reachable_folder()
    try:
        client = ForeignClient(folder / SOCKET_NAME, b'{"command": "quit"}\n')
        served = serve("unix", directory=folder)
        (folder / SOCKET_NAME).chmod(0o666)
        outcome = client.run()
        assert served.handler.requests == [], "nothing from another user is carried out"
        reply = json.loads(outcome["reply"])
        assert reply == {"ok": False, "message": "refused: this control socket serves only "
                                                 "the user who runs voice-agent"}
        refusals = [r.getMessage() for r in caplog.records
                    if "refused a connection from another user" in r.getMessage()]
        assert len(refusals) == 1
        assert f"uid {NOBODY}" in refusals[0] and "serves only uid 0" in refusals[0]
        assert served.send("status").ok, "its own user is still served"
        assert served.handler.requests == [ControlRequest("status")]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(not sys.platform.startswith("linux")
                    and not hasattr(socket, "LOCAL_PEERCRED"),
                    reason="no peer credentials on this platform")
def test_the_peer_check_refuses_a_uid_other_than_the_servers(
        serve: Callable[..., Served], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The same check without root: a server that believes it runs as someone else refuses
    this test's own connections."""
    caplog.set_level(logging.WARNING, logger="agent.control")
    own = os.geteuid()
    monkeypatch.setattr(os, "geteuid", lambda: own + 1)
    served = serve("unix")
    reply = served.exchange(b'{"command": "quit"}\n')
    assert reply == {"ok": False, "message": "refused: this control socket serves only the "
                                             "user who runs voice-agent"}
    assert served.handler.requests == []
    assert any(f"another user (uid {own}," in r.getMessage() for r in caplog.records)
