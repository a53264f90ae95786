"""All 54 Kokoro-82M v1.0 voices, fetched once from the npm package kokoro-js.

No PyPI package carries Kokoro's English voices; kokoro-js 1.2.1 (Apache-2.0) holds every
voice as a raw float32 (510, 1, 256) file, the layout of our packs. `npm pack` downloads its
tarball without installing anything. We check the tarball against a pinned sha256, take only
`package/voices/*.bin`, and move the finished folder into the user cache dir with one rename:
a failed, cut or corrupt fetch leaves whatever was there before (usually nothing) and says why.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from agent import paths
from agent.files import sha256
from agent.tts.models import OFFICIAL_REPO, OFFICIAL_VOICE_NAMES, ModelFilesError
from agent.tts.voices import RAW_PACK_BYTES

log = logging.getLogger(__name__)

PACKAGE = "kokoro-js@1.2.1"
# sha256 of kokoro-js-1.2.1.tgz as the npm registry serves it (26,887,218 bytes).
PACKAGE_SHA256 = "1f0d0383ef0349af0bd9440d81dc12abbea3a5392eb645283eda876f537f5860"
PACKAGE_BYTES = 26_887_218
FOLDER = "voices-kokoro-js-1.2.1"
STAMP = "kokoro-js.sha256"  # written last inside the folder: its presence means "complete"
FETCH_TIMEOUT_S = 300.0
RETRY_AFTER_S = 24 * 3600  # an automatic fetch that failed is not tried again for a day
# A staging folder untouched this long belongs to a fetch that will never finish (its process
# ended mid-way); a live fetch gives up after FETCH_TIMEOUT_S.
STALE_STAGING_S = 3600.0

# npm runs under this watchdog, a child of ours that npm is a child of. It passes npm's exit
# status on. When its standard input ends, we are gone (the tray agent quits with os._exit,
# or was killed, or crashed) and nobody will read the download: it kills npm and removes the
# download and staging folders (argv[1], argv[2]) rather than leave npm fetching 27 MB for
# minutes. A line on its standard input ("stop": the user quit, or the time ran out) kills npm
# and leaves the folders to the fetch, which cleans up after itself.
_WATCHDOG = """
import os, shutil, subprocess, sys, threading
folders, command = sys.argv[1:3], sys.argv[3:]
try:
    npm = subprocess.Popen(command, cwd=folders[0], stdin=subprocess.DEVNULL)
except OSError as error:
    print(f"could not run {command[0]}: {error.strerror or error}", file=sys.stderr)
    sys.exit(127)
abandoned = threading.Event()
def finish():
    code = npm.wait()
    if not abandoned.is_set():
        sys.stdout.flush()
        os._exit(code if code >= 0 else 1)
threading.Thread(target=finish, daemon=True).start()
said = sys.stdin.buffer.readline()
abandoned.set()
npm.kill()
npm.wait()
if not said:
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
os._exit(1)
"""

_MEMBER = re.compile(r"package/voices/([a-z]{2}_[a-z]+)\.bin")

Progress = Callable[[str, int, int], None]  # (what, done, total)

HOW_TO_GET_THEM = (
    "to get all 54 voices (English included) either install npm (e.g. `sudo apt install "
    "npm`, or Node.js from nodejs.org) and run `voice-agent voices fetch`, or run "
    f"`voice-agent models download` for the official {OFFICIAL_REPO} files from the model hub")


# The same, as a sentence of its own.
HOW_TO_GET_THEM_SENTENCE = f"{HOW_TO_GET_THEM[0].upper()}{HOW_TO_GET_THEM[1:]}"


class VoiceFetchError(ModelFilesError):
    """The voices could not be fetched; nothing on disk was changed. The message says why
    and what to do."""


def voices_dir() -> Path:
    return paths.cache_dir() / "kokoro" / FOLDER


def installed() -> Path | None:
    """The folder of fetched voices, if a fetch completed (no network, no hashing)."""
    folder = voices_dir()
    try:
        return folder if (folder / STAMP).read_text().strip() == PACKAGE_SHA256 else None
    except OSError:
        return None


def npm_command() -> str | None:
    return shutil.which("npm")


def fetch(progress: Progress | None = None, stop: threading.Event | None = None,
          npm: str | None = None) -> Path:
    """Fetch and install the voices (a no-op when they are here); the folder they are in.
    Raises VoiceFetchError with what to do; `stop` abandons the fetch (quitting)."""
    done = installed()
    if done is not None:
        return done
    npm = npm or npm_command()
    if npm is None:
        raise VoiceFetchError(f"npm is not installed, so the Kokoro voices cannot be fetched; "
                              f"{HOW_TO_GET_THEM}")
    target = voices_dir()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_staging(target.parent)
        staging = Path(tempfile.mkdtemp(prefix=f".{FOLDER}.", dir=target.parent))
    except OSError as error:
        raise VoiceFetchError(f"cannot write the voices into {target.parent} "
                              f"({error.strerror or error}); make that folder writable, or "
                              "point VOICE_AGENT_CACHE_DIR at a writable one; nothing was "
                              "changed") from error
    try:
        with tempfile.TemporaryDirectory(prefix="voice-agent-npm-") as download:
            tarball = _npm_pack(npm, Path(download), progress, stop, staging)
            _report(progress, "checking the voices' sha256", 0, 1)
            digest = sha256(tarball)
            _report(progress, "checking the voices' sha256", 1, 1)
            if digest != PACKAGE_SHA256:
                raise VoiceFetchError(
                    f"the downloaded {tarball.name} ({tarball.stat().st_size:,} bytes) does not "
                    f"match its pinned sha256 (got {digest[:16]}…, expected "
                    f"{PACKAGE_SHA256[:16]}…): a cut download or a changed package; it was "
                    "deleted and nothing was changed. Try again with `voice-agent voices "
                    "fetch`")
            _extract_voices(tarball, staging, progress, stop)
        (staging / STAMP).write_text(PACKAGE_SHA256 + "\n")
        _swap_into_place(staging, target)
    except OSError as error:
        raise VoiceFetchError(f"could not write the voices into {target.parent} "
                              f"({error.strerror or error}); nothing was changed") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("Kokoro voices from npm (%s) installed in %s", PACKAGE, target)
    return target


def fetch_unless_failed_recently(progress: Progress | None = None,
                                 stop: threading.Event | None = None) -> Path | None:
    """`fetch` for the agent's own start: None, with the reason logged, when npm is missing
    or a fetch failed less than a day ago (an offline machine should not wait every start)."""
    done = installed()
    if done is not None:
        return done
    marker = paths.cache_dir() / "npm-voices-fetch-failed"
    try:
        if time.time() - marker.stat().st_mtime < RETRY_AFTER_S:
            return None
    except OSError:
        pass
    try:
        return fetch(progress, stop)
    except VoiceFetchError as error:
        log.warning("%s", error)
        stopped = stop is not None and stop.is_set()  # the user quit: not a failure
        if npm_command() is not None and not stopped:  # without npm there is nothing to retry
            try:
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.touch()
            except OSError:
                pass
        return None


def _report(progress: Progress | None, what: str, done: int, total: int) -> None:
    if progress is not None:
        progress(what, done, total)


def _npm_pack(npm: str, folder: Path, progress: Progress | None,
              stop: threading.Event | None, staging: Path | None = None) -> Path:
    """`npm pack kokoro-js@1.2.1` into `folder`; the tarball it wrote. npm runs under
    _WATCHDOG, so it never outlives this process; `staging` is removed with `folder` if this
    process ends while npm runs."""
    what = f"fetching the Kokoro voices ({PACKAGE} from npm, 27 MB)"
    _report(progress, what, 0, PACKAGE_BYTES)
    # Errors only; one quick retry (npm's default waits about 70 s on a dead network before it
    # gives up, which would hold up an offline machine's start); npm's cache without asking.
    command = [npm, "pack", PACKAGE, "--pack-destination", str(folder), "--loglevel=error",
               "--fetch-retries=1", "--fetch-retry-mintimeout=1000",
               "--fetch-retry-maxtimeout=2000", "--prefer-offline"]
    watched = [sys.executable, "-I", "-S", "-c", _WATCHDOG, str(folder),
               str(staging or folder), *command]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            process = subprocess.Popen(watched, cwd=folder, stdin=subprocess.PIPE,
                                       stdout=out, stderr=err)
        except OSError as error:
            raise VoiceFetchError(f"could not run {npm} ({error.strerror or error}); "
                                  f"{HOW_TO_GET_THEM}") from error
        deadline = time.monotonic() + FETCH_TIMEOUT_S
        try:
            while True:
                try:
                    process.wait(timeout=0.1)
                    break
                except subprocess.TimeoutExpired:
                    if (stop is not None and stop.is_set()) or time.monotonic() > deadline:
                        why = "stopped" if stop is not None and stop.is_set() else (
                            f"npm did not finish in {FETCH_TIMEOUT_S:.0f} s")
                        raise VoiceFetchError(f"fetching {PACKAGE}: {why}; nothing was "
                                              "changed") from None
        except BaseException:  # stopped, timed out, Ctrl-C: npm goes too
            _stop_watched(process)
            raise
        _close_quietly(process.stdin)
        said = _read_back(err) or _read_back(out)
    tarballs = sorted(folder.glob("*.tgz"))
    if process.returncode != 0 or len(tarballs) != 1:
        said = _npm_said(said) or f"exit status {process.returncode}"
        raise VoiceFetchError(f"npm could not fetch {PACKAGE} (npm said: {said}); check the "
                              "network connection and try `voice-agent voices fetch` again; "
                              f"nothing was changed. Or: {HOW_TO_GET_THEM}")
    _report(progress, what, PACKAGE_BYTES, PACKAGE_BYTES)
    return tarballs[0]


def _stop_watched(process: subprocess.Popen[bytes]) -> None:
    """Ask the watchdog to kill npm (a line on its standard input) and wait for both; kill
    the watchdog itself if it does not answer."""
    try:
        assert process.stdin is not None
        process.stdin.write(b"stop\n")
        process.stdin.flush()
        process.wait(5)
    except (OSError, subprocess.TimeoutExpired):
        process.kill()
        process.wait()
    finally:
        _close_quietly(process.stdin)


def _close_quietly(stream: IO[bytes] | None) -> None:
    if stream is not None:
        with contextlib.suppress(OSError):
            stream.close()


def _read_back(file: IO[bytes]) -> str:
    file.seek(0)
    return file.read().decode("utf-8", "replace")


def _remove_stale_staging(parent: Path) -> None:
    """Remove the staging folders of fetches whose process ended before they finished (a
    quit or a crash while the voices were checked or unpacked)."""
    now = time.time()
    for leftover in parent.glob(f".{FOLDER}.*"):
        with contextlib.suppress(OSError):
            if leftover.is_dir() and now - leftover.stat().st_mtime > STALE_STAGING_S:
                shutil.rmtree(leftover, ignore_errors=True)


def _npm_said(output: str) -> str:
    """npm's error in a line: its first error lines, without the stack trace and the advice
    ("npm error code ECONNREFUSED" ... "FetchError: request to ... failed, reason: ...")."""
    lines = []
    for line in output.splitlines():
        text = re.sub(r"^npm (error|ERR!)\s*", "", line.strip())
        if text and not text.startswith(("at ", "{", "}", "If you are", "A complete log")):
            lines.append(text)
    return "; ".join(lines[:4])[:300]


def _extract_voices(tarball: Path, into: Path, progress: Progress | None,
                    stop: threading.Event | None) -> None:
    """Only the voice packs, each checked for its size, and every Kokoro v1.0 voice there."""
    found: set[str] = set()
    what = "unpacking the Kokoro voices"
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            for member in archive:
                match = _MEMBER.fullmatch(member.name)
                if match is None or not member.isfile():
                    continue
                if stop is not None and stop.is_set():
                    raise VoiceFetchError(f"fetching {PACKAGE}: stopped; nothing was changed")
                if member.size != RAW_PACK_BYTES:
                    raise VoiceFetchError(f"{tarball.name}: {member.name} is {member.size} "
                                          f"bytes, not {RAW_PACK_BYTES}; nothing was changed")
                source = archive.extractfile(member)
                if source is None:
                    continue
                with source, (into / f"{match[1]}.bin").open("wb") as out:
                    shutil.copyfileobj(source, out)
                found.add(match[1])
                _report(progress, what, len(found), len(OFFICIAL_VOICE_NAMES))
    except (tarfile.TarError, EOFError, OSError) as error:
        if isinstance(error, OSError) and error.errno:
            raise  # a disk problem (gzip's own errors have no errno), reported by the caller
        raise VoiceFetchError(f"{tarball.name} is damaged ({error}); nothing was changed; "
                              "try `voice-agent voices fetch` again") from error
    missing = OFFICIAL_VOICE_NAMES - found
    if missing:
        raise VoiceFetchError(f"{tarball.name} lacks {len(missing)} of Kokoro's voices "
                              f"({', '.join(sorted(missing)[:5])}…); nothing was changed")


def _swap_into_place(staging: Path, target: Path) -> None:
    """Move the finished folder in with a rename. An incomplete folder from an older fetch
    (no stamp) is moved aside first and removed after."""
    old = None
    if target.exists():
        old = target.with_name(f".{FOLDER}.old.{os.getpid()}")
        target.rename(old)
    staging.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
