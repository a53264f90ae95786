"""One running instance per user, and a local control socket that carries commands to it.

The first launch takes an exclusive lock on ``runtime_dir()/agent.lock`` and serves a control
socket. A second launch finds the lock taken and sends its command instead: ``show`` to open
the first one's overlay, or ``talk`` from a desktop shortcut (the way Wayland users get a
global hotkey, since an application may not grab keys there).

Wire format: one UTF-8 JSON object per line; one request and one reply per connection.

    request: {"command": "say", "text": "hello", "token": "..."}    (token: TCP only)
    reply:   {"ok": true, "message": "..."}

Transports: on POSIX a Unix socket, ``control.sock``, mode 0600 inside the 0700 runtime folder,
so the file system decides who may connect. CPython on Windows has no AF_UNIX, so there the
server listens on TCP 127.0.0.1 and writes its port and a random token to ``control.port``;
any local user can reach a port, so every request must carry the token, which only this user
can read. The token is never logged.
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
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from agent.paths import runtime_dir

log = logging.getLogger(__name__)

# What the app answers to; the server passes any command through and the handler decides.
COMMANDS = ("show", "talk", "listen", "interrupt", "say", "quit", "status")

LOCK_NAME = "agent.lock"
SOCKET_NAME = "control.sock"
PORT_NAME = "control.port"

MAX_REQUEST_BYTES = 64 * 1024  # one request line, without its newline
MAX_REPLY_BYTES = 1024 * 1024  # a status reply may be long; a bound keeps a garbled one finite
READ_TIMEOUT = 2.0  # how long a connected client may take to send its line

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
ControlHandler = Callable[[ControlRequest], ControlReply]


def unknown_command_reply(command: str) -> ControlReply:
    """The reply a handler gives to a command it does not know."""
    return ControlReply(False, f"unknown command {command!r}; known: {', '.join(COMMANDS)}")


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


class _Abandoned(Exception):
    """The connection ends without an answer: stop() was called, or the client left or stalled."""


class _TooLarge(Exception):
    pass


class _Connection:
    """One accepted client. Every wait also watches the server's wake-up socket, so stop()
    interrupts a client that connected and then went quiet."""

    def __init__(self, sock: socket.socket, wake: socket.socket, timeout: float) -> None:
        self._sock = sock
        self._wake = wake
        self._deadline = time.monotonic() + timeout
        self._timeout = timeout

    def read_line(self, limit: int) -> bytes:
        """The request line without its newline; end of stream also ends a non-empty line."""
        buffer = bytearray()
        while True:
            chunk = self._receive()
            newline = chunk.find(b"\n")
            buffer += chunk if newline < 0 else chunk[:newline]
            if len(buffer) > limit:
                raise _TooLarge
            if newline >= 0 or (not chunk and buffer):
                return bytes(buffer)
            if not chunk:
                raise _Abandoned  # connected and left without a word

    def discard_line(self) -> None:
        """Read the rest of an oversized line, so that closing does not reset the connection
        (and lose the error reply) while the client is still sending."""
        while True:
            chunk = self._receive()
            if not chunk or b"\n" in chunk:
                return

    def send_line(self, data: bytes) -> None:
        self._sock.settimeout(self._timeout)  # a reply is small: this only bounds a stuck client
        with contextlib.suppress(OSError):  # the client may have gone; nothing to tell it then
            self._sock.sendall(data)

    def _receive(self) -> bytes:
        with selectors.DefaultSelector() as selector:
            selector.register(self._sock, selectors.EVENT_READ)
            selector.register(self._wake, selectors.EVENT_READ)
            remaining = self._deadline - time.monotonic()
            ready = [key.fileobj for key, _ in selector.select(max(remaining, 0.0))]
        if not ready or self._wake in ready:
            raise _Abandoned
        try:
            return self._sock.recv(65536)
        except OSError as error:
            raise _Abandoned from error


class ControlServer:
    """Serves control requests on one thread, "control-socket", until stop().

    ``handler`` runs on that thread, one request at a time: it must only post work (to the
    app's event loop or a queue) and return quickly. Its exceptions become error replies.

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
        self._published: Path | None = None  # the socket or port file that start() created
        self._published_id: tuple[int, int] | None = None
        self._wake_writer: socket.socket | None = None
        self._thread: threading.Thread | None = None

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
            listener.listen(8)
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
            listener.listen(8)
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
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(listener, selectors.EVENT_READ)
                selector.register(wake, selectors.EVENT_READ)
                while True:
                    # No timeout: while idle this thread sleeps until a client or stop().
                    ready = [key.fileobj for key, _ in selector.select()]
                    if wake in ready:
                        return
                    try:
                        sock, _ = listener.accept()
                    except BlockingIOError:
                        continue  # the client gave up before we accepted it
                    except OSError:
                        log.exception("control: accept failed")
                        # Out of descriptors, say: the client stays queued, so wait a little
                        # (for stop() only) instead of spinning on it.
                        if _readable(wake, 0.5):
                            return
                        continue
                    with sock:
                        sock.setblocking(True)
                        self._serve_connection(sock, wake)
        finally:
            listener.close()
            wake.close()

    def _serve_connection(self, sock: socket.socket, wake: socket.socket) -> None:
        connection = _Connection(sock, wake, self._read_timeout)
        try:
            try:
                reply = self._answer(connection.read_line(MAX_REQUEST_BYTES))
            except _TooLarge:
                reply = ControlReply(False, f"request too large (over {MAX_REQUEST_BYTES} bytes)")
                with contextlib.suppress(_Abandoned):
                    connection.discard_line()
            connection.send_line(_encode(reply))
        except _Abandoned:
            pass
        except Exception:  # one bad connection must never end the server
            log.exception("control: a connection failed")

    def _answer(self, line: bytes) -> ControlReply:
        try:
            message = json.loads(line.decode("utf-8"))
        except ValueError:  # also UnicodeDecodeError
            return ControlReply(False, "malformed request: expected one line of UTF-8 JSON")
        if not isinstance(message, dict):
            return ControlReply(False, "malformed request: expected a JSON object")
        if self.transport == "tcp" and not self._token_matches(message.get("token")):
            log.warning("control: refused a request with a wrong or missing token")
            return ControlReply(False, "refused: wrong or missing token")
        command, text = message.get("command"), message.get("text", "")
        if not isinstance(command, str) or not isinstance(text, str):
            return ControlReply(False, 'malformed request: "command" and "text" must be strings')
        request = ControlRequest(command, text)
        log.debug("control: %r", command)
        try:
            return self._handler(request)
        except Exception:
            log.exception("control: the handler failed on %r", command)
            return ControlReply(False, f"{command!r} failed inside voice-agent; see its log")

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
    with socket.socket(endpoint.family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(endpoint.address)
        except (FileNotFoundError, ConnectionRefusedError) as error:  # refused: a stale socket
            raise NotRunning(_not_running(endpoint.where)) from error
        except TimeoutError as error:
            raise ControlError(f"voice-agent did not answer within {timeout:g} s "
                               f"at {endpoint.where}") from error
        except OSError as error:
            raise ControlError(f"cannot reach voice-agent at {endpoint.where}: {error}") from error
        try:
            sock.sendall(data)
        except TimeoutError as error:
            raise ControlError(f"voice-agent did not answer within {timeout:g} s "
                               f"at {endpoint.where}") from error
        except OSError:
            pass  # it may have replied and closed before reading everything: read the reply
        line = _read_reply(sock, deadline, timeout, endpoint.where)
    return _decode_reply(line, endpoint.where)


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


def _readable(sock: socket.socket, timeout: float) -> bool:
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ)
        return bool(selector.select(timeout))


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
