"""The instance lock and the control socket, with real sockets and real processes.

Each test points VOICE_AGENT_RUNTIME_DIR at its own folder. Children are separate Python
processes that take the lock and serve the socket; they say "ready" when serving and stop when
their standard input closes, so the tests wait on what the children say, never on a clock.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent.cli.table import AGENT_COMMANDS
from agent.control import (
    COMMANDS,
    MAX_REQUEST_BYTES,
    PORT_NAME,
    SOCKET_NAME,
    TRANSPORTS,
    AlreadyRunning,
    ControlError,
    ControlReply,
    ControlRequest,
    ControlServer,
    InstanceLock,
    NotRunning,
    Transport,
    send,
    unknown_command_reply,
)
from agent.paths import runtime_dir

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and modes")

# Takes the lock, serves the socket, and answers with its pid so the test knows who replied.
CHILD = """
import os, sys
from agent.control import ControlReply, ControlServer, InstanceLock

lock = InstanceLock()
if not lock.acquire():
    print("busy", flush=True)
    sys.exit(3)
server = ControlServer(lambda request: ControlReply(True, f"{os.getpid()} {request.command}"),
                       transport=sys.argv[1])
server.start()
print("ready", os.getpid(), flush=True)
sys.stdin.read()
server.stop()
lock.release()
print("stopped", flush=True)
"""


class Child:
    def __init__(self, runtime: Path, transport: Transport = "unix") -> None:
        python_path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "VOICE_AGENT_RUNTIME_DIR": str(runtime), "PYTHONPATH": python_path}
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD, transport], cwd=ROOT, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.strip())
        self._lines.put(None)

    def next_line(self, timeout: float = 30.0) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"the child said nothing in {timeout} s")
        if line is None:
            self.process.wait(timeout)
            assert self.process.stderr is not None
            pytest.fail(f"the child exited ({self.process.returncode}): "
                        f"{self.process.stderr.read()}")
        return line

    def wait_ready(self) -> int:
        words = self.next_line().split()
        assert words[0] == "ready", words
        return int(words[1])

    def finish(self) -> int:
        """Close its standard input (it stops serving) and wait for it to exit."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        return self.process.wait(30)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def close(self) -> None:
        if self.process.poll() is None:
            self.kill()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "run"
    monkeypatch.setenv("VOICE_AGENT_RUNTIME_DIR", str(path))
    return path


@pytest.fixture
def children(runtime: Path) -> Iterator[Callable[..., Child]]:
    started: list[Child] = []

    def start(transport: Transport = "unix") -> Child:
        child = Child(runtime, transport)
        started.append(child)
        return child

    yield start
    for child in started:
        child.close()


class Recorder:
    """A handler that remembers what it was asked (the server has already refused what the
    table of commands does not accept); the text "boom" makes it fail."""

    def __init__(self) -> None:
        self.requests: list[ControlRequest] = []

    def __call__(self, request: ControlRequest) -> ControlReply:
        self.requests.append(request)
        if request.text == "boom":
            raise RuntimeError("handler bug")
        return ControlReply(True, f"did {request.command}: {request.text}")


@contextmanager
def serving(handler: Callable[[ControlRequest], ControlReply], transport: Transport,
            **options: float) -> Iterator[ControlServer]:
    server = ControlServer(handler, transport=transport, **options)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def published_file(runtime: Path, transport: Transport) -> Path:
    return runtime / (SOCKET_NAME if transport == "unix" else PORT_NAME)


def connect(runtime: Path, transport: Transport) -> socket.socket:
    if transport == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address: str | tuple[str, int] = str(runtime / SOCKET_NAME)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        address = ("127.0.0.1", json.loads((runtime / PORT_NAME).read_text())["port"])
    sock.settimeout(10)
    sock.connect(address)
    return sock


def raw_exchange(runtime: Path, transport: Transport, payload: bytes,
                 end_stream: bool = False) -> dict[str, object]:
    """Send bytes as they are and parse the one-line reply."""
    with connect(runtime, transport) as sock:
        sock.sendall(payload)
        if end_stream:
            sock.shutdown(socket.SHUT_WR)
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(65536)
            assert chunk, f"the server closed without replying; got {reply!r}"
            reply += chunk
    decoded = json.loads(reply)
    assert isinstance(decoded, dict)
    return decoded


def token(runtime: Path, transport: Transport) -> dict[str, str]:
    if transport == "unix":
        return {}
    return {"token": json.loads((runtime / PORT_NAME).read_text())["token"]}


def control_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "control-socket"]


# --- the lock -------------------------------------------------------------------------------


def test_second_process_cannot_take_the_lock_while_the_first_holds_it(
        runtime: Path, children: Callable[..., Child]) -> None:
    first = children()
    first.wait_ready()

    second = children()
    assert second.next_line() == "busy"
    assert second.process.wait(30) == 3
    assert not InstanceLock().acquire()
    with pytest.raises(AlreadyRunning, match="already running"), InstanceLock():
        pass

    assert first.finish() == 0
    with InstanceLock() as lock:  # free again once the holder has let go
        assert lock.held
        assert not InstanceLock().acquire()  # a second open file in this process is refused too
    assert not lock.held
    again = InstanceLock()
    assert again.acquire()
    again.release()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_killed_holder_frees_the_lock_and_its_stale_socket_is_replaced(
        runtime: Path, children: Callable[..., Child], transport: Transport) -> None:
    first = children(transport)
    first_pid = first.wait_ready()
    assert send(ControlRequest("status"), transport=transport).message == f"{first_pid} status"

    first.kill()
    stale = published_file(runtime, transport)
    assert stale.exists(), "kill -9 leaves the socket file behind"
    with pytest.raises(NotRunning, match="voice-agent is not running"):
        send(ControlRequest("status"), transport=transport)

    second = children(transport)
    second_pid = second.wait_ready()
    reply = send(ControlRequest("show"), transport=transport)
    assert reply == ControlReply(True, f"{second_pid} show")
    assert second.finish() == 0
    assert second.next_line() == "stopped"
    assert not stale.exists(), "stop() removes the socket file"


# --- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_command_round_trips(runtime: Path, transport: Transport) -> None:
    handler = Recorder()
    text = "héllo\nworld {\"quoted\"} 日本語"
    with serving(handler, transport):
        replies = [send(ControlRequest(command, text), transport=transport)
                   for command in COMMANDS]
        unknown = send(ControlRequest("dance"), transport=transport)
    assert replies == [ControlReply(True, f"did {command}: {text}") for command in COMMANDS]
    assert handler.requests == [ControlRequest(c, text) for c in COMMANDS], \
        "an unknown command never reaches the handler"
    assert unknown == unknown_command_reply("dance")
    assert unknown.message == ("unknown command 'dance'; known: show, talk, listen, interrupt, "
                               "say, read, pause, resume, next-sentence, previous-sentence, "
                               "explain, quit, status")


def test_the_commands_are_the_tables() -> None:
    assert tuple(command.name for command in AGENT_COMMANDS) == COMMANDS
    assert set(COMMANDS) == {"show", "talk", "listen", "interrupt", "say", "read", "pause",
                             "resume", "next-sentence", "previous-sentence", "explain", "quit",
                             "status"}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_command_that_takes_text_is_refused_without_it(
        runtime: Path, transport: Transport) -> None:
    handler = Recorder()
    with serving(handler, transport):
        replies = [send(ControlRequest("say", text), transport=transport)
                   for text in ("", "  \n\t")]
        spoken = send(ControlRequest("say", "hello"), transport=transport)
        texted = send(ControlRequest("talk", "ignored"), transport=transport)  # as it always was
    assert replies == [ControlReply(False, "say: nothing to say")] * 2
    assert spoken == ControlReply(True, "did say: hello")
    assert texted == ControlReply(True, "did talk: ignored")
    assert handler.requests == [ControlRequest("say", "hello"), ControlRequest("talk", "ignored")]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_handler_failure_is_an_error_reply_and_the_server_goes_on(
        runtime: Path, transport: Transport) -> None:
    with serving(Recorder(), transport):
        failed = send(ControlRequest("say", "boom"), transport=transport)
        after = send(ControlRequest("talk"), transport=transport)
    assert failed == ControlReply(False, "'say' failed inside voice-agent; see its log")
    assert after == ControlReply(True, "did talk: ")


# --- files and modes ------------------------------------------------------------------------


def test_runtime_dir_is_created_and_tightened_to_0700(
        runtime: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    previous = os.umask(0)
    try:
        runtime.mkdir(mode=0o755)
        os.chmod(runtime, 0o755)
        assert runtime_dir() == runtime
        assert stat.S_IMODE(runtime.stat().st_mode) == 0o700

        nested = runtime / "fresh" / "inner"
        monkeypatch.setenv("VOICE_AGENT_RUNTIME_DIR", str(nested))
        assert runtime_dir() == nested
        assert stat.S_IMODE(nested.stat().st_mode) == 0o700
    finally:
        os.umask(previous)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_socket_and_port_files_are_private_whatever_the_umask(
        runtime: Path, transport: Transport) -> None:
    previous = os.umask(0)  # a lax umask must not leak into the socket's mode
    try:
        with serving(Recorder(), transport):
            published = published_file(runtime, transport)
            mode = published.stat().st_mode
            assert stat.S_IMODE(mode) == 0o600
            assert stat.S_ISSOCK(mode) == (transport == "unix")
            assert stat.S_IMODE(runtime.stat().st_mode) == 0o700
            assert os.umask(0) == 0, "start() restores the umask"
            with InstanceLock() as lock:
                assert stat.S_IMODE(lock.path.stat().st_mode) == 0o600
        assert not published.exists()
    finally:
        os.umask(previous)


# --- nothing listening ----------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_not_running_when_there_is_no_socket(runtime: Path, transport: Transport) -> None:
    with pytest.raises(NotRunning) as raised:
        send(ControlRequest("talk"), transport=transport)
    message = str(raised.value)
    assert message.startswith("voice-agent is not running (no control socket at ")
    assert str(published_file(runtime, transport)) in message


def test_not_running_when_the_unix_socket_is_stale(runtime: Path) -> None:
    path = runtime_dir() / SOCKET_NAME
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))  # bound, never listening, closed: a file with nobody behind it
    assert stat.S_ISSOCK(path.stat().st_mode)
    with pytest.raises(NotRunning, match=str(path)):
        send(ControlRequest("talk"), transport="unix")

    handler = Recorder()
    with serving(handler, "unix"):  # start() replaces it
        assert send(ControlRequest("talk"), transport="unix").ok
    assert handler.requests == [ControlRequest("talk")]


def test_not_running_when_the_port_file_is_stale(runtime: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as dead:
        dead.bind(("127.0.0.1", 0))
        port = dead.getsockname()[1]
    (runtime_dir() / PORT_NAME).write_text(json.dumps({"port": port, "token": "x"}))
    with pytest.raises(NotRunning, match="not running"):
        send(ControlRequest("talk"), transport="tcp")


# --- bad requests ---------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_malformed_and_oversized_requests_get_error_replies(
        runtime: Path, transport: Transport) -> None:
    handler = Recorder()
    with serving(handler, transport):
        secret = token(runtime, transport)
        bad = [
            b"this is not json\n",
            b"\xff\xfe not utf-8\n",
            b"[1, 2, 3]\n",
            json.dumps({"command": 5, **secret}).encode() + b"\n",
            json.dumps({"command": "say", "text": ["list"], **secret}).encode() + b"\n",
        ]
        for payload in bad:
            reply = raw_exchange(runtime, transport, payload)
            assert reply["ok"] is False, payload
            assert "malformed" in str(reply["message"]), payload

        # Bigger than the socket buffers too, so the server must read it all before it closes:
        # closing on unread data would reset the connection and lose the reply.
        oversized = json.dumps({"command": "say", "text": "x" * (256 * MAX_REQUEST_BYTES),
                                **secret}).encode() + b"\n"
        reply = raw_exchange(runtime, transport, oversized)
        assert reply["ok"] is False
        assert "too large" in str(reply["message"])

        # A client that connects and leaves without a word is no reason to stop either.
        connect(runtime, transport).close()

        # No newline, but the client ends its stream: that ends the line too.
        unframed = raw_exchange(runtime, transport,
                                json.dumps({"command": "show", **secret}).encode(),
                                end_stream=True)
        assert unframed == {"ok": True, "message": "did show: "}
        assert send(ControlRequest("talk"), transport=transport).ok
    assert handler.requests == [ControlRequest("show"), ControlRequest("talk")]


def test_the_client_refuses_to_send_an_oversized_request(runtime: Path) -> None:
    handler = Recorder()
    with serving(handler, "unix"):
        with pytest.raises(ControlError, match="too large") as raised:
            send(ControlRequest("say", "x" * MAX_REQUEST_BYTES), transport="unix")
        assert not isinstance(raised.value, NotRunning)
    assert handler.requests == []


def test_tcp_rejects_a_wrong_or_missing_token(runtime: Path) -> None:
    handler = Recorder()
    with serving(handler, "tcp"):
        right = token(runtime, "tcp")["token"]
        for payload in ({"command": "quit"},
                        {"command": "quit", "token": "not-the-token"},
                        {"command": "quit", "token": right[:-1] + ("A" if right[-1] != "A"
                                                                   else "B")},
                        {"command": "quit", "token": 12345}):
            reply = raw_exchange(runtime, "tcp", json.dumps(payload).encode() + b"\n")
            assert reply["ok"] is False, payload
            assert "token" in str(reply["message"]), payload
        assert handler.requests == [], "a refused request never reaches the handler"
        accepted = raw_exchange(runtime, "tcp",
                                json.dumps({"command": "quit", "token": right}).encode() + b"\n")
        assert accepted == {"ok": True, "message": "did quit: "}
    assert handler.requests == [ControlRequest("quit")]


def test_the_unix_transport_needs_no_token(runtime: Path) -> None:
    with serving(Recorder(), "unix"):
        reply = raw_exchange(runtime, "unix", b'{"command": "talk"}\n')
    assert reply == {"ok": True, "message": "did talk: "}


# --- the client's errors --------------------------------------------------------------------


def test_a_slow_handler_makes_the_client_time_out(runtime: Path) -> None:
    entered, release = threading.Event(), threading.Event()

    def slow(request: ControlRequest) -> ControlReply:
        entered.set()
        release.wait(30)
        return ControlReply(True)

    with serving(slow, "unix"):
        try:
            started = time.monotonic()
            with pytest.raises(ControlError, match="did not answer within") as raised:
                send(ControlRequest("status"), timeout=0.3, transport="unix")
            assert time.monotonic() - started < 5
            assert not isinstance(raised.value, NotRunning)
            assert entered.is_set()
        finally:
            release.set()


@pytest.mark.parametrize("answer", [b"this is not json\n", b'{"ok": "yes"}\n', b"[true]\n", b""])
def test_a_garbled_reply_is_a_control_error(runtime: Path, answer: bytes) -> None:
    path = runtime_dir() / SOCKET_NAME
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as impostor:
        impostor.bind(str(path))
        impostor.listen(1)

        def answer_once() -> None:
            connection, _ = impostor.accept()
            with connection:
                connection.recv(65536)
                connection.sendall(answer)

        thread = threading.Thread(target=answer_once)
        thread.start()
        with pytest.raises(ControlError) as raised:
            send(ControlRequest("status"), transport="unix")
        thread.join(10)
    assert not isinstance(raised.value, NotRunning)
    assert "garbled" in str(raised.value) or "without a reply" in str(raised.value)


# --- stopping -------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_stop_is_prompt_and_ends_the_thread(runtime: Path, transport: Transport) -> None:
    assert control_threads() == []
    server = ControlServer(Recorder(), transport=transport)
    server.start()
    assert send(ControlRequest("status"), transport=transport).ok  # serving, then idle again
    [thread] = control_threads()
    assert thread.daemon

    started = time.monotonic()
    server.stop()
    elapsed = time.monotonic() - started

    assert elapsed < 1.0, f"stop() took {elapsed:.3f} s"
    assert not thread.is_alive()
    assert control_threads() == []
    assert not server.running
    assert not published_file(runtime, transport).exists()
    with pytest.raises(NotRunning):
        send(ControlRequest("status"), transport=transport)
    server.stop()  # twice is harmless


def test_stop_interrupts_a_client_that_connected_and_said_nothing(runtime: Path) -> None:
    server = ControlServer(Recorder(), transport="unix", read_timeout=60.0)
    server.start()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.connect(str(runtime / SOCKET_NAME))
        # The silent client holds up nobody: the next one is answered at once.
        assert send(ControlRequest("status"), timeout=5, transport="unix").ok
        [thread] = control_threads()

        started = time.monotonic()
        server.stop()
        elapsed = time.monotonic() - started

        assert elapsed < 1.0, f"stop() took {elapsed:.3f} s"
        assert not thread.is_alive()
        silent.settimeout(10)
        assert silent.recv(1) == b"", "the silent client is disconnected without a reply"


def test_a_silent_client_is_dropped_after_the_read_timeout(runtime: Path) -> None:
    with serving(Recorder(), "unix", read_timeout=0.2), \
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.connect(str(runtime / SOCKET_NAME))
        assert send(ControlRequest("talk"), timeout=10, transport="unix").ok
        silent.settimeout(10)
        assert silent.recv(1) == b""
