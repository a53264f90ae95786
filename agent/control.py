"""One running instance per user, and a local control socket that carries commands to it.

The first launch takes an exclusive lock on ``runtime_dir()/agent.lock`` and serves a control
socket. A second launch finds the lock taken and sends its command instead: ``show`` to open
the first one's overlay, or ``talk`` from a desktop shortcut (the way Wayland users get a
global hotkey, since an application may not grab keys there).

Wire format: one UTF-8 JSON object per line; one request and one reply per connection.

    request: {"command": "say", "text": "hello", "token": "..."}    (token: TCP only)
    reply:   {"ok": true, "message": "..."}

Transports: on POSIX a Unix socket, ``control.sock``, mode 0600 inside the 0700 runtime folder,
so the file system decides who may connect; the server also asks the kernel which user connected
(SO_PEERCRED, LOCAL_PEERCRED) and refuses all but its own. CPython on Windows has no AF_UNIX, so
there the server listens on TCP 127.0.0.1 and writes its port and a random token to
``control.port``; any local user can reach a port, so every request must carry the token, which
only this user can read. The token is never logged.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import secrets
import selectors
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from agent.cli.table import AGENT_COMMAND_NAMES, AGENT_COMMANDS_BY_NAME
from agent.paths import runtime_dir

log = logging.getLogger(__name__)

# What the app answers to, from the one table of them (agent.cli.table): the server refuses
# any other command, and a "say" without text, before the handler sees it.
COMMANDS = AGENT_COMMAND_NAMES

LOCK_NAME = "agent.lock"
SOCKET_NAME = "control.sock"
PORT_NAME = "control.port"

MAX_REQUEST_BYTES = 64 * 1024  # one request line, without its newline
MAX_REPLY_BYTES = 1024 * 1024  # a status reply may be long; a bound keeps a garbled one finite
READ_TIMEOUT = 2.0  # how long a connected client may take to send its line
MAX_CONNECTIONS = 32  # clients served at once; a newcomer past this drops the oldest
LISTEN_BACKLOG = 128  # clients the system keeps waiting before the server accepts them

_RECEIVE_SIZE = 65536
_DRAIN_CHUNKS = 16  # at most this many chunks of unasked-for input are read off before close
_SEND_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)  # a gone client: EPIPE, never SIGPIPE

Transport = Literal["unix", "tcp"]
TRANSPORTS: tuple[Transport, ...] = ("unix", "tcp")
DEFAULT_TRANSPORT: Transport = "unix" if hasattr(socket, "AF_UNIX") else "tcp"

# sun_path is 108 bytes on Linux and 104 on the BSDs and macOS, less the terminating NUL.
_MAX_SOCKET_PATH = 107 if sys.platform.startswith("linux") else 103


class ControlError(Exception):
    """The running instance could not be asked, or its answer made no sense."""


class NotRunning(ControlError):
    """No instance is listening: no socket, a refused connection, or a stale socket file."""


class AlreadyRunning(ControlError):
    """Another process holds the instance lock."""


@dataclass(frozen=True)
class ControlRequest:
    command: str
    text: str = ""  # for "say"


@dataclass(frozen=True)
class ControlReply:
    ok: bool
    message: str = ""


# Runs on the server's thread, one request at a time: it must only post work (to the app's
# event loop or a queue) and return quickly, since every other client and stop() wait for it.
# It sees only requests that the table accepts: a known command, with text where it needs some.
ControlHandler = Callable[[ControlRequest], ControlReply]


def unknown_command_reply(command: str) -> ControlReply:
    """The reply to a command that is not in the table."""
    return ControlReply(False, f"unknown command {command!r}; known: {', '.join(COMMANDS)}")


def refusal(request: ControlRequest) -> ControlReply | None:
    """Why the table refuses a request, or None: it goes to the handler."""
    command = AGENT_COMMANDS_BY_NAME.get(request.command)
    if command is None:
        return unknown_command_reply(request.command)
    if command.takes_text and not request.text.strip():
        return ControlReply(False, f"{command.name}: nothing to say")
    return None


# --- the instance lock ----------------------------------------------------------------------

if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:  # one byte at offset 0 (the file was just opened); past the end is allowed
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


class InstanceLock:
    """An exclusive, non-blocking lock on ``runtime_dir()/agent.lock``: one instance per user.

    The operating system drops the lock when the process ends, however it ends (kill -9
    included), so a lock is never stale and nothing needs cleaning up. The file itself stays:
    deleting it would let two processes lock two different files under one name.

    As a context manager it raises AlreadyRunning when another process holds the lock.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else runtime_dir() / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        """Take the lock if it is free; False when another process holds it."""
        if self._fd is not None:
            return True
        # os.open's descriptors are not inherited, so a child the agent starts cannot keep
        # holding the lock after the agent has died.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            locked = _try_lock(fd)
        except BaseException:
            os.close(fd)
            raise
        if not locked:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            _unlock(fd)
        finally:
            os.close(fd)  # closing alone would release it too

    def __enter__(self) -> Self:
        if not self.acquire():
            raise AlreadyRunning(f"voice-agent is already running (it holds {self.path})")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.release()


# --- the server -----------------------------------------------------------------------------


class _Connection:
    """One accepted client, served without blocking by the server's loop: its request line is
    read as it arrives, answered once whole, and the reply written as fast as the client takes
    it. So a client that stalls holds up nobody; it only keeps its slot until its deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline  # by when it must send its line, or take its reply
        self.line = bytearray()  # the request so far, at most MAX_REQUEST_BYTES + one chunk
        self.reading = True  # the request (or the rest of a too long one) is still coming
        self.discarding = False  # too long: reading on to its end, keeping nothing
        self.reply = b""  # what is still to be written
        self.closed = False

    @property
    def events(self) -> int:
        """What to wait for; 0 once it is done."""
        return ((selectors.EVENT_READ if self.reading else 0)
                | (selectors.EVENT_WRITE if self.reply else 0))

    def receive(self) -> bytes | None:
        """What the client sent, b"" at its end of stream, None when nothing is there yet.
        Raises OSError when the connection failed (reset by the client, say)."""
        try:
            return self.sock.recv(_RECEIVE_SIZE)
        except (BlockingIOError, InterruptedError):
            return None

    def flush(self) -> None:
        """Write as much of the reply as the socket takes now. Raises OSError when the client
        has gone."""
        while self.reply:
            try:
                sent = self.sock.send(self.reply, _SEND_FLAGS)
            except (BlockingIOError, InterruptedError):
                return
            self.reply = self.reply[sent:]

    def close(self) -> None:
        """Close, after reading off (a bounded amount of) what the client sent unasked: closing
        with unread data resets the connection, and a reset can discard the reply before the
        client has read it."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(OSError):  # BlockingIOError included: nothing more is there
            for _ in range(_DRAIN_CHUNKS):
                if not self.sock.recv(_RECEIVE_SIZE):
                    break
        self.sock.close()


class ControlServer:
    """Serves control requests on one thread, "control-socket", until stop().

    Clients are served side by side, without blocking: one that connects and stalls, or sends
    half a request, delays no other. At most MAX_CONNECTIONS are open at once (a newcomer past
    that drops the oldest, which has had the longest to finish), each holds at most one request
    line, and each has ``read_timeout`` seconds to send its line and as long to take its reply,
    so memory stays bounded whatever clients do. On the Unix transport the server also checks
    who connected (the peer's user id, from the kernel) and refuses anyone but its own user.

    ``handler`` runs on that thread, one request at a time: it must only post work (to the
    app's event loop or a queue) and return quickly. Its exceptions become error replies. It
    sees only the requests that the table of commands (agent.cli.table) accepts; the server
    answers the others itself.

    start() removes a stale socket file, left behind by an instance that was killed. That is
    safe only because the caller holds the InstanceLock: without it, start() could unlink the
    socket of an instance that is alive. start() and stop() belong to one thread (the app's).
    """

    def __init__(self, handler: ControlHandler, *, transport: Transport = DEFAULT_TRANSPORT,
                 directory: Path | None = None, read_timeout: float = READ_TIMEOUT) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, got {transport!r}")
        self.transport: Transport = transport
        self.address = ""  # where it listens, once started: a socket path or 127.0.0.1:port
        self._handler = handler
        self._directory = directory
        self._read_timeout = read_timeout
        self._token = ""  # TCP only
        self._owner_uid: int | None = None  # Unix only: the one user it serves
        self._published: Path | None = None  # the socket or port file that start() created
        self._published_id: tuple[int, int] | None = None
        self._wake_writer: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._crowded = False  # has said that it is dropping clients; said once per crowd

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the control server is already started")
        directory = self._directory if self._directory is not None else runtime_dir()
        # stop() closes the writer; the reader then reads end-of-stream and every wait ends.
        wake_reader, wake_writer = socket.socketpair()
        try:
            if self.transport == "unix":
                listener = self._listen_unix(directory / SOCKET_NAME)
            else:
                listener = self._listen_tcp(directory / PORT_NAME)
        except BaseException:
            wake_reader.close()
            wake_writer.close()
            raise
        self._wake_writer = wake_writer
        self._owner_uid = os.geteuid() if hasattr(os, "geteuid") else None
        self._thread = threading.Thread(target=self._serve, args=(listener, wake_reader),
                                        name="control-socket", daemon=True)
        self._thread.start()
        log.info("control: listening on %s", self.address)

    def stop(self, timeout: float = 2.0) -> None:
        """End the thread and remove the socket (or port) file. Idempotent.

        The thread ends at once unless the handler is running, which should be brief; if it
        has not ended within ``timeout`` seconds, it is left to finish on its own (daemon)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._wake_writer is not None:
            self._wake_writer.close()
            self._wake_writer = None
        thread.join(timeout)
        if thread.is_alive():
            log.warning("control: the handler has not returned; leaving its thread behind")
        self._unpublish()

    def _listen_unix(self, path: Path) -> socket.socket:
        _check_socket_path(path)
        # Only safe while we hold the instance lock (see the class docstring).
        path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # Born 0600, so there is no moment in which another user could connect. The umask
            # is per process, so for this instant other threads' new files are stricter too.
            previous_umask = os.umask(0o177)
            try:
                listener.bind(str(path))
            finally:
                os.umask(previous_umask)
            os.chmod(path, 0o600)  # in case the platform ignores the umask for sockets
            listener.listen(LISTEN_BACKLOG)
            listener.setblocking(False)  # accept() after select() must not hang on a lost client
        except BaseException:
            listener.close()
            raise
        self._publish(path)
        self.address = str(path)
        return listener

    def _listen_tcp(self, port_file: Path) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            exclusive = getattr(socket, "SO_EXCLUSIVEADDRUSE", None)  # Windows: no port theft
            if exclusive is not None:
                listener.setsockopt(socket.SOL_SOCKET, exclusive, 1)
            listener.bind(("127.0.0.1", 0))
            listener.listen(LISTEN_BACKLOG)
            listener.setblocking(False)
            port = listener.getsockname()[1]
            self._token = secrets.token_urlsafe(32)
            _write_private(port_file, json.dumps({"port": port, "token": self._token}))
        except BaseException:
            listener.close()
            raise
        self._publish(port_file)
        self.address = f"127.0.0.1:{port}"
        return listener

    def _publish(self, path: Path) -> None:
        self._published = path
        self._published_id = _file_id(path)

    def _unpublish(self) -> None:
        path, self._published = self._published, None
        # Remove only the file we created, not one that replaced it since.
        if path is not None and _file_id(path) == self._published_id:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _serve(self, listener: socket.socket, wake: socket.socket) -> None:
        connections: dict[socket.socket, _Connection] = {}  # oldest first
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(wake, selectors.EVENT_READ)
                selector.register(listener, selectors.EVENT_READ)
                accept_again = 0.0  # while accept() fails: when to try it next (0.0: now)
                while True:
                    now = time.monotonic()
                    if accept_again and now >= accept_again:
                        accept_again = 0.0
                        selector.register(listener, selectors.EVENT_READ)
                    wake_ups = [connection.deadline for connection in connections.values()]
                    if accept_again:
                        wake_ups.append(accept_again)
                    # While idle, no timeout: this thread sleeps until a client or stop().
                    timeout = max(min(wake_ups) - now, 0.0) if wake_ups else None
                    ready = selector.select(timeout)
                    if any(key.fileobj is wake for key, _ in ready):
                        return
                    # Clients first, so that a newcomer only ever displaces one that has had
                    # a turn to finish.
                    for key, mask in ready:
                        if isinstance(key.data, _Connection):
                            self._progress(key.data, mask, selector, connections)
                    if any(key.fileobj is listener for key, _ in ready) \
                            and not self._accept(listener, selector, connections):
                        # Out of descriptors, say: the client stays queued, so try again in
                        # a while rather than spin on it.
                        selector.unregister(listener)
                        accept_again = time.monotonic() + 0.5
                    self._expire(selector, connections)
        finally:
            for connection in connections.values():
                with contextlib.suppress(OSError):
                    connection.sock.close()
            listener.close()
            wake.close()

    def _accept(self, listener: socket.socket, selector: selectors.BaseSelector,
                connections: dict[socket.socket, _Connection]) -> bool:
        """Take one waiting client; False when accept() fails for want of resources."""
        try:
            sock, _ = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return True  # the client gave up before we accepted it
        except OSError:
            log.exception("control: accept failed")
            return False
        try:
            sock.setblocking(False)
            refusal = self._refusal(sock)
        except Exception:  # one bad connection must never end the server
            log.exception("control: a connection failed")
            refusal = ControlReply(False, "refused: internal error")
        if refusal is not None:
            connection = _Connection(sock, 0.0)
            connection.reply = _encode(refusal)
            self._finish(connection, selector, connections)
            return True
        if len(connections) >= MAX_CONNECTIONS:
            oldest = next(iter(connections.values()))
            if not self._crowded:
                self._crowded = True
                log.warning("control: %d clients connected at once; dropping the oldest "
                            "unfinished ones to make room", len(connections))
            if oldest.reading and not oldest.reply:
                oldest.reply = _encode(ControlReply(False, "dropped: too many connections to "
                                                           "voice-agent at once"))
            self._finish(oldest, selector, connections)
        elif len(connections) < MAX_CONNECTIONS // 2:
            self._crowded = False
        connection = _Connection(sock, time.monotonic() + self._read_timeout)
        connections[sock] = connection
        selector.register(sock, connection.events, connection)
        return True

    def _refusal(self, sock: socket.socket) -> ControlReply | None:
        """Why a new client may not be served (None: it may). On the Unix transport, only
        the server's own user may be: the 0700 folder already keeps others from the socket,
        and the kernel's word on who connected keeps them out even where it does not."""
        if self.transport != "unix":
            return None  # TCP: every request must carry the token instead
        try:
            peer = _peer_credentials(sock)
        except OSError as error:
            log.warning("control: refused a connection: cannot tell which user made it (%s)",
                        error)
            return ControlReply(False, "refused: cannot tell which user connected")
        if peer is None or peer[0] == self._owner_uid:
            return None
        uid, pid = peer
        log.warning("control: refused a connection from another user (uid %d, pid %s); "
                    "this socket serves only uid %s", uid, pid if pid else "unknown",
                    self._owner_uid)
        return ControlReply(False, "refused: this control socket serves only the user who "
                                   "runs voice-agent")

    def _progress(self, connection: _Connection, mask: int, selector: selectors.BaseSelector,
                  connections: dict[socket.socket, _Connection]) -> None:
        """Read what the client sent, answer a whole request, write what the client takes."""
        if connection.closed:
            return
        try:
            if mask & selectors.EVENT_READ and connection.reading:
                self._read(connection)
            connection.flush()  # at once: the socket usually takes a reply whole
        except OSError:  # the client reset the connection: nobody left to answer
            connection.reply = b""
            self._finish(connection, selector, connections)
            return
        except Exception:  # one bad connection must never end the server
            log.exception("control: a connection failed")
            connection.reading, connection.reply = False, b""
        if connection.events:
            selector.modify(connection.sock, connection.events, connection)
        else:
            self._finish(connection, selector, connections)

    def _read(self, connection: _Connection) -> None:
        chunk = connection.receive()
        if chunk is None:
            return
        newline = chunk.find(b"\n")
        if connection.discarding:  # its error reply is already on its way
            connection.reading = bool(chunk) and newline < 0
            return
        if chunk and newline < 0:
            connection.line += chunk
            if len(connection.line) > MAX_REQUEST_BYTES:
                # Answer now, while reading on to the end of the line: a client that sends a
                # huge request without a newline and then waits still hears why.
                connection.line = bytearray()
                connection.discarding = True
                self._set_reply(connection, _too_large())
            return
        connection.reading = False
        if newline >= 0:
            if len(connection.line) + newline > MAX_REQUEST_BYTES:
                connection.line = bytearray()
                self._set_reply(connection, _too_large())
                return
            connection.line += chunk[:newline]
        elif not connection.line:
            return  # connected and left without a word: nothing to answer
        # A newline, or the client's end of stream, which also ends a non-empty line.
        line, connection.line = bytes(connection.line), bytearray()
        self._set_reply(connection, self._answer(line))

    def _set_reply(self, connection: _Connection, reply: ControlReply) -> None:
        connection.reply = _encode(reply)
        connection.deadline = time.monotonic() + self._read_timeout  # to take the reply

    def _expire(self, selector: selectors.BaseSelector,
                connections: dict[socket.socket, _Connection]) -> None:
        now = time.monotonic()
        for connection in [c for c in connections.values() if c.deadline <= now]:
            if connection.line and not connection.reply:
                # Half a request, then silence: say so (it is never carried out). One that
                # sent nothing at all is simply dropped.
                connection.reply = _encode(ControlReply(
                    False, f"incomplete request: no end of line within {self._read_timeout:g} "
                           "s; nothing was done"))
            self._finish(connection, selector, connections)

    def _finish(self, connection: _Connection, selector: selectors.BaseSelector,
                connections: dict[socket.socket, _Connection]) -> None:
        """Write what the socket takes of a last reply now, and close."""
        with contextlib.suppress(OSError):
            connection.flush()
        if connections.pop(connection.sock, None) is not None:
            selector.unregister(connection.sock)
        connection.close()

    def _answer(self, line: bytes) -> ControlReply:
        try:
            message = json.loads(line.decode("utf-8"), object_pairs_hook=_unique_keys)
        except _DuplicateKey as error:
            return ControlReply(False, f"malformed request: the key {error} appears twice")
        except (ValueError, RecursionError):  # UnicodeDecodeError too; RecursionError: [[[[...
            return ControlReply(False, "malformed request: expected one line of UTF-8 JSON")
        if not isinstance(message, dict):
            return ControlReply(False, "malformed request: expected a JSON object")
        if self.transport == "tcp" and not self._token_matches(message.get("token")):
            log.warning("control: refused a request with a wrong or missing token")
            return ControlReply(False, "refused: wrong or missing token")
        command, text = message.get("command"), message.get("text", "")
        if not isinstance(command, str) or not isinstance(text, str):
            return ControlReply(False, 'malformed request: "command" and "text" must be strings')
        if not _is_unicode(command) or not _is_unicode(text):  # "\ud800": a lone surrogate
            return ControlReply(False, 'malformed request: "command" and "text" must be valid '
                                       "Unicode")
        request = ControlRequest(command, text)
        log.debug("control: %r", command)
        refused = refusal(request)
        if refused is not None:
            return refused
        try:
            reply = self._handler(request)
        except Exception:
            log.exception("control: the handler failed on %r", command)
            return ControlReply(False, f"{command!r} failed inside voice-agent; see its log")
        if not isinstance(reply, ControlReply) or not isinstance(reply.message, str):
            log.error("control: the handler answered %r with %r, not a ControlReply", command,
                      reply)
            return ControlReply(False, f"{command!r} failed inside voice-agent; see its log")
        return reply

    def _token_matches(self, token: object) -> bool:
        return isinstance(token, str) and hmac.compare_digest(token.encode(),
                                                              self._token.encode())


# --- the client -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Endpoint:
    family: socket.AddressFamily
    address: str | tuple[str, int]
    where: str  # for messages
    token: str = ""


def send(request: ControlRequest, timeout: float = 3.0, *,
         transport: Transport = DEFAULT_TRANSPORT, directory: Path | None = None) -> ControlReply:
    """Ask the running instance; its reply, which may be ok=False (an unknown command, say).

    Raises NotRunning when no instance listens, and ControlError when it does not answer
    within ``timeout`` seconds or answers something garbled."""
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {TRANSPORTS}, got {transport!r}")
    directory = directory if directory is not None else runtime_dir()
    endpoint = _unix_endpoint(directory) if transport == "unix" else _tcp_endpoint(directory)
    message = {"command": request.command, "text": request.text}
    if endpoint.token:
        message["token"] = endpoint.token
    data = json.dumps(message).encode() + b"\n"
    if len(data) - 1 > MAX_REQUEST_BYTES:
        raise ControlError(f"request too large ({len(data) - 1} bytes, at most "
                           f"{MAX_REQUEST_BYTES})")
    deadline = time.monotonic() + timeout
    with _connect(endpoint, deadline, timeout) as sock:
        try:
            sock.sendall(data)
        except TimeoutError as error:
            raise ControlError(f"voice-agent did not answer within {timeout:g} s "
                               f"at {endpoint.where}") from error
        except OSError:
            pass  # it may have replied and closed before reading everything: read the reply
        line = _read_reply(sock, deadline, timeout, endpoint.where)
    return _decode_reply(line, endpoint.where)


def _connect(endpoint: _Endpoint, deadline: float, timeout: float) -> socket.socket:
    """A socket connected to the running instance, with ``timeout`` set on it."""
    pause = 0.005
    while True:
        sock = socket.socket(endpoint.family, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(endpoint.address)
            return sock
        except BlockingIOError as error:
            # EAGAIN: a Unix socket whose queue of waiting clients is full. The server is
            # busy, not gone: try again (a fresh socket) until the deadline.
            sock.close()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ControlError(f"voice-agent did not answer within {timeout:g} s "
                                   f"at {endpoint.where}") from error
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, 0.1)
        except (FileNotFoundError, ConnectionRefusedError) as error:  # refused: a stale socket
            sock.close()
            raise NotRunning(_not_running(endpoint.where)) from error
        except TimeoutError as error:
            sock.close()
            raise ControlError(f"voice-agent did not answer within {timeout:g} s "
                               f"at {endpoint.where}") from error
        except OSError as error:
            sock.close()
            raise ControlError(f"cannot reach voice-agent at {endpoint.where}: {error}") from error
        except BaseException:
            sock.close()
            raise


def _not_running(where: str) -> str:
    return f"voice-agent is not running (no control socket at {where})"


def _unix_endpoint(directory: Path) -> _Endpoint:
    path = directory / SOCKET_NAME
    _check_socket_path(path)
    return _Endpoint(socket.AF_UNIX, str(path), str(path))


def _tcp_endpoint(directory: Path) -> _Endpoint:
    port_file = directory / PORT_NAME
    try:
        content = json.loads(port_file.read_text(encoding="utf-8"))
        port, token = content["port"], content["token"]
    except FileNotFoundError as error:
        raise NotRunning(_not_running(f"{port_file}: no port file")) from error
    except (OSError, ValueError, TypeError, KeyError) as error:
        # Not its content in the message: it holds the token.
        raise ControlError(f"unreadable control port file {port_file}") from error
    if not isinstance(port, int) or not isinstance(token, str):
        raise ControlError(f"unreadable control port file {port_file}")
    return _Endpoint(socket.AF_INET, ("127.0.0.1", port), f"127.0.0.1:{port} ({port_file})",
                     token)


def _read_reply(sock: socket.socket, deadline: float, timeout: float, where: str) -> bytes:
    buffer = bytearray()
    while b"\n" not in buffer:
        if len(buffer) > MAX_REPLY_BYTES:
            raise ControlError(f"garbled reply from voice-agent at {where}: too long")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ControlError(f"voice-agent did not answer within {timeout:g} s at {where}")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError as error:
            raise ControlError(f"voice-agent did not answer within {timeout:g} s "
                               f"at {where}") from error
        except OSError as error:
            raise ControlError(f"the connection to voice-agent at {where} failed: "
                               f"{error}") from error
        if not chunk:
            raise ControlError(f"voice-agent at {where} closed the connection without a reply")
        buffer += chunk
    return bytes(buffer[:buffer.index(b"\n")])


def _decode_reply(line: bytes, where: str) -> ControlReply:
    try:
        message = json.loads(line.decode("utf-8"))
    except ValueError as error:
        raise ControlError(f"garbled reply from voice-agent at {where}: {line[:80]!r}") from error
    ok = message.get("ok") if isinstance(message, dict) else None
    text = message.get("message", "") if isinstance(message, dict) else None
    if not isinstance(ok, bool) or not isinstance(text, str):
        raise ControlError(f"garbled reply from voice-agent at {where}: {line[:80]!r}")
    return ControlReply(ok, text)


# --- helpers ----------------------------------------------------------------------------------


def _encode(reply: ControlReply) -> bytes:
    return json.dumps({"ok": reply.ok, "message": reply.message}).encode() + b"\n"


def _too_large() -> ControlReply:
    return ControlReply(False, f"request too large (over {MAX_REQUEST_BYTES} bytes)")


class _DuplicateKey(ValueError):
    """A JSON object names one key twice: which value was meant is anybody's guess."""


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(json.dumps(key))
        result[key] = value
    return result


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _peer_credentials(sock: socket.socket) -> tuple[int, int | None] | None:
    """The user id and (where known) process id of whoever is at the other end of a
    connected Unix socket, as the kernel recorded them when it connected; None where the
    platform cannot tell, and then the 0700 folder alone keeps other users out. Raises
    OSError when the platform can tell but the query failed."""
    if sys.platform.startswith("linux"):  # struct ucred {pid_t pid; uid_t uid; gid_t gid;}
        layout = struct.Struct("=iII")
        pid, uid, _ = layout.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                    layout.size))
        return uid, pid
    local_peercred: int | None = getattr(socket, "LOCAL_PEERCRED", None)
    if local_peercred is not None:
        # macOS and FreeBSD (getpeereid is built on it): level SOL_LOCAL, which is 0, and
        # struct xucred {u_int cr_version; uid_t cr_uid; ...}, version 0.
        data = sock.getsockopt(0, local_peercred, 256)
        version, uid = struct.unpack_from("=II", data)
        if version != 0:
            raise OSError(f"unknown struct xucred version {version}")
        return uid, None
    return None


def _check_socket_path(path: Path) -> None:
    size = len(os.fsencode(path))
    if size > _MAX_SOCKET_PATH:
        raise ControlError(f"the control socket path is too long for a Unix socket ({size} "
                           f"bytes, at most {_MAX_SOCKET_PATH}): {path}; set "
                           "VOICE_AGENT_RUNTIME_DIR to a shorter folder")


def _write_private(path: Path, text: str) -> None:
    """Write a 0600 file whole: a reader sees the old content or the new, never half."""
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)  # a leftover might have a laxer mode; O_EXCL needs it gone
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
    os.replace(partial, path)


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return status.st_dev, status.st_ino


def tell_running_agent(command: str, text: str = "", *,
                       quiet_if_absent: bool = False) -> bool | None:
    """The command line's side: send one command and print the answer (standard output) or
    the problem (standard error). True: done; False: it failed (and said why); None: no agent
    is running (said so, unless `quiet_if_absent`: the caller does the work itself)."""
    try:
        reply = send(ControlRequest(command, text))
    except NotRunning as error:
        if not quiet_if_absent:
            print(error, file=sys.stderr)
        return None
    except ControlError as error:
        print(error, file=sys.stderr)
        return False
    print(reply.message, file=sys.stdout if reply.ok else sys.stderr)
    return reply.ok
