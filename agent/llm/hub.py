"""Downloading a GGUF model file from the Hugging Face hub: resumable, checked, never left
half-written under its final name.

    path = download_gguf(catalog.find("qwen2.5-1.5b"), llm_models_dir(), progress, stop)

The steps, as huggingface_hub's own downloader takes them (file_download.py):
1. HEAD {endpoint}/{repo}/resolve/main/{file} without following redirects: the hub answers an
   LFS file (every GGUF) with a 302 to its storage, carrying the file's sha256 and size in
   X-Linked-Etag and X-Linked-Size; a plain git file answers 200 with ETag (its git blob sha1)
   and Content-Length. Redirects on the hub itself (a renamed repository) are followed.
2. The free disk space is checked against what remains to fetch.
3. GET, following redirects, into <dest>/<file>.part; when a .part is there, from where it
   ends (Range). A broken connection is resumed a few times on its own; stopping (the `stop`
   event, checked between chunks) keeps the .part for the next try.
4. The sha256 of the whole file (computed while it arrives) must match the hub's: then the
   .part is renamed to <dest>/<file> in one step (os.replace); otherwise it is deleted.

The endpoint comes from HF_ENDPOINT (default https://huggingface.co); HF_HUB_OFFLINE=1 turns the
hub off; HF_TOKEN, when set, is sent to the hub (never to the storage it redirects to) for
gated or private repositories. Proxies in the environment are used (httpx trust_env).

Every failure is a ModelDownloadError whose text says what happened and what to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import quote, urljoin, urlsplit

import httpx

from agent.llm.base import LLMError
from agent.llm.catalog import RecommendedModel, format_size, llm_models_dir

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://huggingface.co"
CHUNK_BYTES = 256 * 1024  # reading a file to check it (the network gives what each read brings)
DISK_MARGIN_BYTES = 100_000_000  # beyond what remains to fetch: the disk should not end full
RETRY_PAUSES_S: tuple[float, ...] = (1.0, 3.0, 10.0)  # resuming a broken download, in turn
TIMEOUT = httpx.Timeout(30.0, connect=10.0)
MAX_HUB_REDIRECTS = 5
KEEP = "the current model stays in use"

Progress = Callable[[str, int, int], None]


class ModelDownloadError(LLMError):
    """The download failed; str() says why and what to do. Nothing half-written is left under
    the final name; a .part that can be resumed may be kept (the message says so)."""


class DownloadStopped(ModelDownloadError):
    """The `stop` event was set: the .part is kept, and the next download resumes from it."""


def endpoint() -> str:
    """The hub's address: HF_ENDPOINT, as huggingface_hub reads it, or huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).strip().rstrip("/")


def offline() -> bool:
    """HF_HUB_OFFLINE set to 1/true/yes/on, as huggingface_hub reads it."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def local_path(model: RecommendedModel | tuple[str, str], dest_dir: Path | None = None) -> Path:
    """Where `model` is (or would be) once downloaded."""
    _repo_id, filename = _names(model)
    return (dest_dir or llm_models_dir()) / PurePosixPath(filename).name


def downloaded(model: RecommendedModel | tuple[str, str],
               dest_dir: Path | None = None) -> Path | None:
    """The downloaded file, or None. Only a verified download is ever given the final name."""
    path = local_path(model, dest_dir)
    return path if path.is_file() else None


@dataclass(frozen=True)
class RemoteFile:
    """What the hub says of a file before it is fetched."""

    url: str  # the resolve URL (GET follows its redirect to the storage)
    size: int
    digest: str  # hex; empty when the hub gave no usable digest
    algorithm: str  # "sha256" (LFS files), "git-sha1" (plain git files) or ""
    commit: str  # the revision main pointed at (X-Repo-Commit), for the log


def download_gguf(model: RecommendedModel | tuple[str, str], dest_dir: Path,
                  progress: Progress | None = None,
                  stop: threading.Event | None = None) -> Path:
    """Fetch `model` (a catalogue entry, or (repo_id, filename)) into dest_dir and return the
    verified file. progress(what, done, total) is called as bytes are checked ("checking
    NAME") and arrive ("downloading NAME"); done counts from the start of the file, so a
    resumed download starts where it left off. A file already there whose sha256 matches the
    hub's is not fetched again. Blocking: run it on a thread of its own."""
    repo_id, filename = _names(model)
    name = PurePosixPath(filename).name
    dest_dir = Path(dest_dir)
    final = dest_dir / name
    base = endpoint()
    _check_endpoint(base)
    if offline():
        if final.is_file():  # verified when it was put there; nothing to ask the hub
            return final
        raise ModelDownloadError(
            f"cannot download {filename}: the Hugging Face hub is switched off here "
            f"(HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '').strip()}); unset "
            f"HF_HUB_OFFLINE to download it; {KEEP}.")
    stop = stop or threading.Event()
    url = f"{base}/{repo_id}/resolve/main/{quote(filename)}"
    with httpx.Client(timeout=TIMEOUT, headers=_request_headers(), trust_env=True) as client:
        remote = _metadata(client, url, repo_id, filename)
        if isinstance(model, RecommendedModel) and model.sha256 and remote.algorithm == \
                "sha256" and remote.digest != model.sha256:
            log.warning("%s on the hub has changed since the catalogue was written (sha256 "
                        "%s, catalogued %s): fetching the hub's current file", filename,
                        remote.digest, model.sha256)
        try:
            dest_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ModelDownloadError(f"cannot create {dest_dir} for {name}: {error}; "
                                     f"{KEEP}.") from None
        if final.is_file() and _already_there(final, remote, progress, stop):
            log.info("%s is already in %s (verified)", name, dest_dir)
            return final
        _Download(client, remote, repo_id, dest_dir, name, progress, stop).run()
    log.info("downloaded %s from %s (revision %s) into %s", filename, repo_id,
             remote.commit or "?", dest_dir)
    return final


# -- the pieces --------------------------------------------------------------------------------

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _names(model: RecommendedModel | tuple[str, str]) -> tuple[str, str]:
    if isinstance(model, RecommendedModel):
        repo_id, filename = model.repo_id, model.filename
    else:
        repo_id, filename = model
    if not _REPO_ID.match(repo_id) or ".." in repo_id:
        raise ModelDownloadError(f"{repo_id!r} is not a Hugging Face repository name: it has "
                                 f"the form owner/name, e.g. Qwen/Qwen2.5-1.5B-Instruct-GGUF.")
    parts = PurePosixPath(filename).parts
    if (not parts or filename.startswith("/") or "\\" in filename or ".." in parts
            or not filename.lower().endswith(".gguf")):
        raise ModelDownloadError(f"{filename!r} is not a .gguf file in a repository: name the "
                                 f"file as the repository's file list shows it, e.g. "
                                 f"qwen2.5-1.5b-instruct-q4_k_m.gguf.")
    return repo_id, filename


def _check_endpoint(base: str) -> None:
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ModelDownloadError(f"HF_ENDPOINT={base!r} is not a web address: it starts with "
                                 f"https:// (or leave it unset for https://huggingface.co).")


def _request_headers() -> dict[str, str]:
    try:
        from importlib.metadata import version

        ours = version("voice-agent")
    except Exception:  # not installed (a source tree): the name is enough
        ours = "dev"
    headers = {"User-Agent": f"voice-agent/{ours}; httpx/{httpx.__version__}",
               # The real bytes, so sizes, ranges and the digest are the file's own.
               "Accept-Encoding": "identity"}
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token:  # httpx drops it on a redirect to another origin (the storage)
        headers["Authorization"] = f"Bearer {token.strip()}"
    return headers


def _host(url: str) -> str:
    return urlsplit(url).netloc or url


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def _unreachable(url: str, error: Exception, after: str = "") -> ModelDownloadError:
    reason = str(error) or type(error).__name__
    via = ""
    if isinstance(error, httpx.ProxyError):
        via = " through the proxy set in the environment (HTTPS_PROXY / HTTP_PROXY)"
    elif os.environ.get("HF_ENDPOINT"):
        via = " (HF_ENDPOINT)"
    return ModelDownloadError(f"could not reach {_host(url)}{via} ({reason}): check the network "
                              f"connection{after}; {KEEP}.")


def _metadata(client: httpx.Client, url: str, repo_id: str, filename: str) -> RemoteFile:
    """HEAD the resolve URL: the size and digest of the file, from the hub's own headers."""
    target = url
    for _ in range(MAX_HUB_REDIRECTS):
        try:
            response = client.head(target, follow_redirects=False)
        except httpx.TransportError as error:
            raise _unreachable(url, error) from None
        _check_status(response, repo_id, filename)
        location = response.headers.get("Location")
        if (response.is_redirect and location and "X-Linked-Etag" not in response.headers
                and _origin(urljoin(target, location)) == _origin(url)):
            target = urljoin(target, location)  # moved on the hub itself: a renamed repo
            continue
        break
    else:
        raise ModelDownloadError(f"{_host(url)} redirected the request for {filename} more than "
                                 f"{MAX_HUB_REDIRECTS} times; {KEEP}.")
    headers = response.headers
    etag = headers.get("X-Linked-Etag") or headers.get("ETag") or ""
    digest = etag.strip().removeprefix("W/").strip('"').lower()
    size_text = headers.get("X-Linked-Size") or (
        None if response.is_redirect else headers.get("Content-Length"))
    try:
        size = int(size_text or "")
    except ValueError:
        raise ModelDownloadError(f"{_host(url)} did not give the size of {filename} in "
                                 f"{repo_id}: is HF_ENDPOINT a Hugging Face hub? {KEEP}."
                                 ) from None
    if re.fullmatch(r"[0-9a-f]{64}", digest):
        algorithm = "sha256"
    elif re.fullmatch(r"[0-9a-f]{40}", digest) and "X-Linked-Etag" not in headers:
        algorithm = "git-sha1"
    else:
        log.warning("%s: the hub gave no sha256 (ETag %r); only the size is checked",
                    filename, etag)
        digest, algorithm = "", ""
    return RemoteFile(url=url, size=size, digest=digest, algorithm=algorithm,
                      commit=headers.get("X-Repo-Commit", ""))


def _check_status(response: httpx.Response, repo_id: str, filename: str) -> None:
    status = response.status_code
    if status < 400:
        return
    host = _host(str(response.request.url))
    page = f"{endpoint()}/{repo_id}"
    code = response.headers.get("X-Error-Code", "")
    if status in (401, 403):
        token = ("HF_TOKEN is set, but its account has no access: "
                 if os.environ.get("HF_TOKEN") else "")
        raise ModelDownloadError(
            f"{repo_id} is gated or private ({host} answered HTTP {status}"
            f"{', ' + code if code else ''}): {token}open {page}, accept its terms there if it "
            f"asks, and set HF_TOKEN to an access token of that account; or choose another "
            f"model (voice-agent models llm); {KEEP}.")
    if status == 404:
        if code == "RepoNotFound":
            raise ModelDownloadError(f"there is no repository {repo_id} on {host} (HTTP 404); "
                                     f"check the name; {KEEP}.")
        raise ModelDownloadError(f"{filename} is not in {repo_id} on {host} (HTTP 404): the "
                                 f"repository's files are listed at {page}/tree/main; {KEEP}.")
    if status == 429:
        raise ModelDownloadError(f"{host} is limiting requests (HTTP 429): try again in a few "
                                 f"minutes; {KEEP}.")
    raise ModelDownloadError(f"{host} answered HTTP {status} for {filename} in {repo_id}"
                             f"{' (the service has a problem)' if status >= 500 else ''}: try "
                             f"again later; {KEEP}.")


def _new_hasher(remote: RemoteFile) -> Any:
    if remote.algorithm == "git-sha1":  # a git blob's id: sha1 of a header and the content
        hasher = hashlib.sha1(usedforsecurity=False)
        hasher.update(b"blob %d\0" % remote.size)
        return hasher
    return hashlib.sha256()


def _hash_file(handle: IO[bytes], length: int, remote: RemoteFile, what: str,
               progress: Progress | None, stop: threading.Event) -> Any:
    """The hasher fed with the first `length` bytes of the open file."""
    hasher = _new_hasher(remote)
    handle.seek(0)
    done = 0
    while done < length:
        block = handle.read(min(4 * CHUNK_BYTES, length - done))
        if not block:
            break
        hasher.update(block)
        done += len(block)
        if progress:
            progress(f"checking {what}", done, remote.size)
        if stop.is_set():
            raise DownloadStopped(f"checking {what} was stopped; nothing was lost.")
    return hasher


def _already_there(final: Path, remote: RemoteFile, progress: Progress | None,
                   stop: threading.Event) -> bool:
    if final.stat().st_size != remote.size:
        return False
    if not remote.algorithm:
        return True
    with final.open("rb") as handle:
        hasher = _hash_file(handle, remote.size, remote, final.name, progress, stop)
    if hasher.hexdigest() == remote.digest:
        return True
    log.info("%s differs from the hub's file: fetching it again", final)
    return False


class _Discard(ModelDownloadError):
    """A failure that makes the .part worthless: it is deleted."""


class _Retry(Exception):
    """A failure worth resuming after a pause: a broken connection, a busy server."""

    def __init__(self, reason: str, unreachable: Exception | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unreachable = unreachable


@contextlib.contextmanager
def _locked(path: Path, name: str) -> Iterator[IO[bytes]]:
    """The .part, open for appending and reading, held by this download alone (POSIX: an
    advisory lock, so the tray and a command cannot write the same file at once)."""
    try:
        handle = path.open("a+b")
    except OSError as error:
        raise ModelDownloadError(f"cannot write {path}: {error}; {KEEP}.") from None
    with handle:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; one download at a time is enough
            yield handle
            return
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ModelDownloadError(f"{name} is being downloaded already (by the tray or "
                                     f"another command): wait for it to finish.") from None
        yield handle


class _Download:
    """One download into <dest>/<name>.part, resumed as often as RETRY_PAUSES_S allows."""

    def __init__(self, client: httpx.Client, remote: RemoteFile, repo_id: str, dest_dir: Path,
                 name: str, progress: Progress | None, stop: threading.Event) -> None:
        self.client = client
        self.repo_id = repo_id
        self.remote = remote
        self.dest_dir = dest_dir
        self.name = name
        self.part = dest_dir / f"{name}.part"
        self.final = dest_dir / name
        self.progress = progress
        self.stop = stop
        self.have = 0
        self.hasher: Any = None

    def _percent(self) -> str:
        return f"{100 * self.have // max(self.remote.size, 1)}%"

    def _stopped(self) -> DownloadStopped:
        return DownloadStopped(
            f"the download of {self.name} was stopped at {self._percent()} "
            f"({format_size(self.have)} of {format_size(self.remote.size)}); the part fetched "
            f"is kept in {self.part}, and downloading it again resumes from there.")

    def run(self) -> None:
        with _locked(self.part, self.name) as handle:
            try:
                self._run(handle)
            except _Discard:
                handle.close()
                self.part.unlink(missing_ok=True)
                raise
            except BaseException:
                if self.have == 0:  # nothing worth keeping: leave no empty .part behind
                    handle.close()
                    self.part.unlink(missing_ok=True)
                raise
        try:
            os.replace(self.part, self.final)
        except OSError as error:
            raise ModelDownloadError(f"cannot rename {self.part} to {self.final.name}: {error}; "
                                     f"{KEEP}.") from None

    def _run(self, handle: IO[bytes]) -> None:
        self.have = os.fstat(handle.fileno()).st_size
        if self.have > self.remote.size:  # not a prefix of this file
            handle.truncate(0)
            self.have = 0
        self._check_space()
        self.hasher = _hash_file(handle, self.have, self.remote, self.name, self.progress,
                                 self.stop)
        self._fetch(handle)
        digest = self.hasher.hexdigest()
        if self.remote.algorithm and digest != self.remote.digest:
            raise _Discard(
                f"{self.name} arrived damaged (its {self.remote.algorithm} is {digest[:16]}..., "
                f"the hub says {self.remote.digest[:16]}...): it was deleted; download it "
                f"again, and if this repeats, a proxy or the hub's copy is at fault; {KEEP}.")
        handle.flush()
        os.fsync(handle.fileno())

    def _check_space(self) -> None:
        remaining = self.remote.size - self.have
        need = remaining + DISK_MARGIN_BYTES
        free = shutil.disk_usage(self.dest_dir).free
        if free < need:
            raise ModelDownloadError(
                f"not enough free disk space for {self.name}: it needs {format_size(need)} in "
                f"{self.dest_dir} ({format_size(remaining)} to download and "
                f"{format_size(DISK_MARGIN_BYTES)} to spare) and {format_size(free)} is free; "
                f"free some space and download it again; {KEEP}.")

    def _fetch(self, handle: IO[bytes]) -> None:
        pauses = list(RETRY_PAUSES_S)
        while self.have < self.remote.size:
            if self.stop.is_set():
                raise self._stopped()
            try:
                self._fetch_once(handle)
                if self.have >= self.remote.size:
                    return
                problem = _Retry(f"the connection ended at {format_size(self.have)}")
            except _Retry as retry:
                problem = retry
            if not pauses:
                kept = (f"; the part fetched ({self._percent()}) is kept, and downloading it "
                        f"again resumes from there" if self.have else "")
                if problem.unreachable is not None:
                    raise _unreachable(self.remote.url, problem.unreachable, kept)
                raise ModelDownloadError(f"the download of {self.name} broke off "
                                         f"({problem.reason}){kept}; {KEEP}.")
            pause = pauses.pop(0)
            log.info("%s: %s; resuming in %.0f s", self.name, problem.reason, pause)
            if self.stop.wait(pause):
                raise self._stopped()

    def _fetch_once(self, handle: IO[bytes]) -> None:
        """One GET from self.have on; self.have and self.hasher follow what is written."""
        headers = {"Range": f"bytes={self.have}-"} if self.have else {}
        try:
            with self.client.stream("GET", self.remote.url, headers=headers,
                                    follow_redirects=True) as response:
                self._start(response, handle)
                # Each read as it comes (at most 64 KiB): a stop is seen at once, and a cut
                # connection loses nothing that arrived (a chunk size would hold bytes back).
                for chunk in response.iter_bytes():
                    if self.have + len(chunk) > self.remote.size:  # not the hub's file
                        raise _Discard(
                            f"{_host(str(response.url))} sent more than the "
                            f"{format_size(self.remote.size)} of {self.name}; the part was "
                            f"deleted; download it again later; {KEEP}.")
                    handle.write(chunk)
                    self.hasher.update(chunk)
                    self.have += len(chunk)
                    if self.progress:
                        self.progress(f"downloading {self.name}", self.have, self.remote.size)
                    if self.stop.is_set():
                        handle.flush()
                        raise self._stopped()
                handle.flush()
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.ProxyError) as error:
            raise _Retry(str(error) or type(error).__name__, unreachable=error) from None
        except httpx.TransportError as error:  # cut, reset, timed out mid-file
            raise _Retry(f"{type(error).__name__}: {error}" if str(error)
                         else type(error).__name__) from None
        except OSError as error:  # writing: a full disk, a removed folder
            raise ModelDownloadError(f"cannot write {self.part}: {error}; {KEEP}.") from None

    def _start(self, response: httpx.Response, handle: IO[bytes]) -> None:
        """Check the answer to a GET and place the file for what it carries."""
        status = response.status_code
        if status == 416:  # the range is past the file's end: start again
            handle.truncate(0)
            self.have, self.hasher = 0, _new_hasher(self.remote)
            raise _Retry("the server refused to resume (HTTP 416)")
        if status == 429 or status >= 500:
            raise _Retry(f"{_host(str(response.url))} answered HTTP {status}")
        _check_status(response, self.repo_id, self.name)
        if status == 206:
            content_range = response.headers.get("Content-Range", "")
            match = re.match(r"bytes (\d+)-", content_range)
            if match and int(match.group(1)) == self.have:
                return
            handle.truncate(0)  # not the range asked for: start from the beginning
            self.have, self.hasher = 0, _new_hasher(self.remote)
            raise _Retry(f"the server sent another part than asked ({content_range!r})")
        if status != 200:
            raise ModelDownloadError(f"{_host(str(response.url))} answered HTTP {status} to "
                                     f"the download of {self.name}; {KEEP}.")
        if self.have:  # the server ignored Range and sends the whole file: start over
            log.info("%s: the server does not resume downloads; starting from the beginning",
                     self.name)
            handle.truncate(0)
            self.have, self.hasher = 0, _new_hasher(self.remote)
