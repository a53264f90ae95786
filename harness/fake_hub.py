"""A loopback stand-in for the Hugging Face hub, for download tests (HF_ENDPOINT=hub.url).

It answers `/{owner}/{name}/resolve/{revision}/{path}` the way huggingface.co does:
- an LFS file (every model file, `lfs=True`): 302 to a storage URL on another origin (its own
  port here, as the real storage is another host), with X-Repo-Commit, X-Linked-Etag (the
  sha256, quoted) and X-Linked-Size; the storage serves the bytes, honouring Range with 206;
- a plain git file (`lfs=False`, like config.json): 200 with the bytes, ETag (the git blob
  sha1) and X-Repo-Commit;
- errors as the hub sends them: 401 with X-Error-Code RepoNotFound for an unknown repository
  (the hub does not tell private from missing), 404 EntryNotFound for a missing file,
  RevisionNotFound for an unknown revision, GatedRepo for a repository `deny()`-ed.

Both huggingface_hub's hf_hub_download and agent.llm.hub.download_gguf work against it.
Switches for tests: `cut_after(n)` (the next GET that serves bytes stops after n of them and
drops the connection), `wrong_sha256(...)` (the hub names a digest the bytes do not have),
`deny(repo)` (401, gated), `rename(old, new)` (a relative 307 to the new name, as for a renamed
repository), `ignore_range` (the storage answers every GET with the whole file). Every request
is recorded (`requests`), with the body bytes actually sent.
"""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

REVISION = "0123456789abcdef0123456789abcdef01234567"
_BLOCK = 256 * 1024
_DIGESTS: dict[tuple[str, int, int], tuple[str, str]] = {}  # a file's digests, once a session


def _digests(source: Path | bytes) -> tuple[str, str]:
    """(sha256, git blob sha1) of the file's bytes."""
    if isinstance(source, bytes):
        return (hashlib.sha256(source).hexdigest(),
                hashlib.sha1(b"blob %d\0" % len(source) + source).hexdigest())
    stat = source.stat()
    key = (str(source.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        sha256 = hashlib.sha256()
        sha1 = hashlib.sha1(b"blob %d\0" % stat.st_size)
        with source.open("rb") as handle:
            while block := handle.read(4 * _BLOCK):
                sha256.update(block)
                sha1.update(block)
        _DIGESTS[key] = (sha256.hexdigest(), sha1.hexdigest())
    return _DIGESTS[key]


@dataclass
class HubFile:
    source: Path | bytes
    size: int
    sha256: str
    git_sha1: str
    lfs: bool
    advertised_sha256: str = ""  # what the hub says; differs from sha256 after wrong_sha256()

    def blocks(self, start: int, end: int) -> Iterator[bytes]:
        """Bytes start..end (exclusive), a block at a time."""
        if isinstance(self.source, bytes):
            for offset in range(start, end, _BLOCK):
                yield self.source[offset:min(offset + _BLOCK, end)]
            return
        with self.source.open("rb") as handle:
            handle.seek(start)
            left = end - start
            while left > 0:
                block = handle.read(min(_BLOCK, left))
                if not block:
                    return
                left -= len(block)
                yield block


@dataclass
class Request:
    server: str  # "hub" or "storage"
    method: str
    path: str
    headers: dict[str, str]
    status: int = 0
    sent: int = 0  # body bytes written before the response ended (or was cut)

    @property
    def range(self) -> str | None:
        return self.headers.get("range")

    def __str__(self) -> str:  # "GET /owner/name/resolve/main/file"
        return f"{self.method} {self.path}"


@dataclass
class _Cut:
    after: int
    times: int


@dataclass
class _State:
    revision: str
    repos: dict[str, dict[str, HubFile]] = field(default_factory=dict)
    storage: dict[str, HubFile] = field(default_factory=dict)  # by sha256
    denied: dict[str, tuple[int, str]] = field(default_factory=dict)
    moved: dict[str, str] = field(default_factory=dict)  # old repo id -> new
    requests: list[Request] = field(default_factory=list)
    cut: _Cut | None = None
    ignore_range: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    storage_url: str = ""

    def take_cut(self) -> int | None:
        with self.lock:
            if self.cut is None:
                return None
            after = self.cut.after
            self.cut.times -= 1
            if self.cut.times <= 0:
                self.cut = None
            return after


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: _State  # set on the subclass made for each server
    server_name_: str

    def log_message(self, *_: object) -> None:
        pass

    def _record(self) -> Request:
        request = Request(self.server_name_, self.command, self.path,
                          {k.lower(): v for k, v in self.headers.items()})
        with self.state.lock:
            self.state.requests.append(request)
        return request

    def _plain(self, request: Request, status: int, text: str,
               headers: dict[str, str] | None = None) -> None:
        body = text.encode()
        request.status = status
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
            request.sent = len(body)

    def _serve(self, request: Request, data: HubFile, headers: dict[str, str]) -> None:
        """The bytes of `data`, whole or the Range asked for (unless ignore_range)."""
        start, end, status = 0, data.size, 200
        wanted = request.range
        if wanted and not self.state.ignore_range:
            first, _, last = wanted.removeprefix("bytes=").partition("-")
            try:
                start = int(first)
                end = min(int(last) + 1, data.size) if last else data.size
            except ValueError:
                start = data.size
            if start >= data.size or start >= end:
                self._plain(request, 416, "Range Not Satisfiable",
                            {"Content-Range": f"bytes */{data.size}"})
                return
            status = 206
            headers = dict(headers, **{"Content-Range": f"bytes {start}-{end - 1}/{data.size}"})
        request.status = status
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start))
        self.end_headers()
        if self.command == "HEAD":
            return
        cut = self.state.take_cut()
        try:
            for block in data.blocks(start, end):
                if cut is not None and request.sent + len(block) >= cut:
                    self.wfile.write(block[:cut - request.sent])
                    request.sent = cut
                    self._drop()
                    return
                self.wfile.write(block)
                request.sent += len(block)
        except OSError:  # the client went away (a stopped download)
            self.close_connection = True

    def _drop(self) -> None:
        """End the connection in the middle of the body, as a network failure does."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def do_HEAD(self) -> None:
        self._answer()

    def do_GET(self) -> None:
        self._answer()

    def _answer(self) -> None:
        request = self._record()
        try:
            if self.server_name_ == "storage":
                self._storage(request)
            else:
                self._hub(request)
        except OSError:
            self.close_connection = True

    def _storage(self, request: Request) -> None:
        sha256 = urlsplit(self.path).path.rstrip("/").rsplit("/", 1)[-1]
        data = self.state.storage.get(sha256)
        if data is None:
            self._plain(request, 403, "AccessDenied")  # what S3-like storage says
            return
        self._serve(request, data, {"ETag": f'"{data.sha256}"'})

    def _hub(self, request: Request) -> None:
        parts = unquote(urlsplit(self.path).path).lstrip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            self._plain(request, 404, "Not Found")
            return
        repo_id, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        state = self.state
        if repo_id in state.denied:
            status, code = state.denied[repo_id]
            self._plain(request, status, f"Access to model {repo_id} is restricted.",
                        {"X-Error-Code": code, "X-Error-Message": "Access restricted"})
            return
        if repo_id in state.moved:  # a renamed repository: a relative 307 to its new name
            location = "/" + "/".join([state.moved[repo_id], "resolve", *parts[3:]])
            self._plain(request, 307, f"Temporary Redirect. Redirecting to {location}",
                        {"Location": location})
            return
        files = state.repos.get(repo_id)
        if files is None:
            self._plain(request, 401, "Repository not found",
                        {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not "
                         "found"})
            return
        if revision not in ("main", state.revision):
            self._plain(request, 404, "Revision not found",
                        {"X-Error-Code": "RevisionNotFound"})
            return
        commit = {"X-Repo-Commit": state.revision}
        data = files.get(filename)
        if data is None:
            self._plain(request, 404, "Entry not found",
                        dict(commit, **{"X-Error-Code": "EntryNotFound"}))
            return
        if not data.lfs:
            self._serve(request, data, dict(commit, ETag=f'"{data.git_sha1}"'))
            return
        location = (f"{state.storage_url}/repos/{data.sha256[:2]}/{data.sha256}"
                    f"?X-Amz-Expires=3600&X-Amz-Signature=loopback")
        self._plain(request, 302, f"Found. Redirecting to {location}", dict(commit, **{
            "Location": location,
            "X-Linked-Etag": f'"{data.advertised_sha256}"',
            "X-Linked-Size": str(data.size),
            "ETag": f'W/"{data.git_sha1[:20]}"',  # the redirect's own, not the file's
            "Accept-Ranges": "bytes",
        }))


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away mid-answer is what some tests do on purpose


class FakeHub:
    """The hub and its storage on two loopback ports. Use as a context manager, or call
    start() and close()."""

    def __init__(self, revision: str = REVISION) -> None:
        self._state = _State(revision=revision)
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []
        self.url = ""  # the endpoint, for HF_ENDPOINT
        self.storage_url = ""

    # -- content -------------------------------------------------------------------------------

    def add(self, repo_id: str, filename: str, source: Path | bytes, *,
            lfs: bool = True) -> HubFile:
        """Serve `source` (a file, read as it is sent, or bytes) as repo_id's `filename`."""
        size = len(source) if isinstance(source, bytes) else source.stat().st_size
        sha256, git_sha1 = _digests(source)
        data = HubFile(source, size, sha256, git_sha1, lfs, advertised_sha256=sha256)
        with self._state.lock:
            self._state.repos.setdefault(repo_id, {})[filename] = data
            self._state.storage[sha256] = data
        return data

    # -- switches ------------------------------------------------------------------------------

    def cut_after(self, n_bytes: int, times: int = 1) -> None:
        """The next `times` GETs that serve file bytes send `n_bytes` of them, then drop the
        connection."""
        with self._state.lock:
            self._state.cut = _Cut(n_bytes, times)

    def wrong_sha256(self, repo_id: str, filename: str) -> str:
        """The hub advertises a digest the bytes do not have; returns it."""
        data = self._state.repos[repo_id][filename]
        data.advertised_sha256 = hashlib.sha256(b"not " + data.sha256.encode()).hexdigest()
        return data.advertised_sha256

    def deny(self, repo_id: str, status: int = 401, code: str = "GatedRepo") -> None:
        """Every request for repo_id is refused, as for a gated repository without access."""
        with self._state.lock:
            self._state.denied[repo_id] = (status, code)

    def rename(self, repo_id: str, new_repo_id: str) -> None:
        """repo_id was renamed: the hub redirects its URLs (307, relative) to new_repo_id."""
        with self._state.lock:
            self._state.moved[repo_id] = new_repo_id

    @property
    def ignore_range(self) -> bool:
        return self._state.ignore_range

    @ignore_range.setter
    def ignore_range(self, value: bool) -> None:
        self._state.ignore_range = value

    # -- what happened -------------------------------------------------------------------------

    @property
    def requests(self) -> list[Request]:
        with self._state.lock:
            return list(self._state.requests)

    def request_lines(self) -> list[str]:
        """"METHOD path" for every request, in order."""
        return [str(request) for request in self.requests]

    def downloads(self) -> list[Request]:
        """The GETs that carried file bytes (storage, and plain files on the hub)."""
        return [r for r in self.requests if r.method == "GET" and r.status in (200, 206)
                and (r.server == "storage" or "/resolve/" in r.path)]

    def bytes_served(self) -> int:
        return sum(request.sent for request in self.downloads())

    def clear(self) -> None:
        with self._state.lock:
            self._state.requests.clear()

    # -- running -------------------------------------------------------------------------------

    def start(self) -> FakeHub:
        for name in ("storage", "hub"):
            handler = type(f"_{name.title()}Handler", (_Handler,),
                           {"state": self._state, "server_name_": name})
            server = _Server(("127.0.0.1", 0), handler)
            thread = threading.Thread(target=server.serve_forever, args=(0.02,),
                                      name=f"fake-hub-{name}", daemon=True)
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
            url = f"http://127.0.0.1:{server.server_address[1]}"
            if name == "storage":
                self.storage_url = self._state.storage_url = url
            else:
                self.url = url
        return self

    def close(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()
