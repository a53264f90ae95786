"""Kokoro voices: the catalogue, blend specs ("af_bella:0.7,af_sky:0.3") and voice packs.

A voice pack is a float32 array (510, 1, 256): one style vector per phoneme-sequence length.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from agent.tts.base import SynthesisError
from agent.tts.models import OFFICIAL_VOICE_NAMES

VoicePack = npt.NDArray[np.float32]

# The voices of hexgrad/Kokoro-82M v1.0. The first letter is the language, the second the gender.
OFFICIAL_VOICES = tuple(sorted(OFFICIAL_VOICE_NAMES))

LANGUAGES = {
    "a": "American English", "b": "British English", "e": "Spanish", "f": "French",
    "h": "Hindi", "i": "Italian", "j": "Japanese", "p": "Brazilian Portuguese",
    "z": "Mandarin Chinese",
}

# The offline default for English text: measured here, jm_kumo reading English phonemes is
# understood almost word for word; the shipped female voices much less.
PACKAGED_ENGLISH_VOICE = "jm_kumo"


def language_of(voice: str) -> str:
    return LANGUAGES.get(voice[:1], "unknown")


def gender_of(voice: str) -> str:
    return {"f": "female", "m": "male"}.get(voice[1:2], "unknown")


@dataclass(frozen=True)
class BlendPart:
    voice: str
    weight: float


def parse_blend(spec: str) -> list[BlendPart]:
    """"af_bella:0.7,af_sky:0.3" -> parts with weights summing to 1; "af_bella" -> one part."""
    parts: list[BlendPart] = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        name, _, weight_text = item.partition(":")
        try:
            weight = float(weight_text) if weight_text else 1.0
        except ValueError:
            raise SynthesisError(
                f"voice {spec!r}: weight {weight_text!r} is not a number "
                "(write voices as name or name:weight, e.g. af_bella:0.7,af_sky:0.3)") from None
        if weight <= 0:
            raise SynthesisError(f"voice {spec!r}: weights must be positive")
        parts.append(BlendPart(name.strip(), weight))
    if not parts:
        raise SynthesisError("no voice given")
    total = sum(p.weight for p in parts)
    return [BlendPart(p.voice, p.weight / total) for p in parts]


def blend(spec: str, load: Callable[[str], VoicePack]) -> VoicePack:
    """The weighted mean of the named packs (Kokoro voices blend linearly in style space)."""
    parts = parse_blend(spec)
    packs = [load(p.voice) for p in parts]
    if len(packs) == 1:
        return packs[0]
    mixed: VoicePack = np.sum([pack * p.weight for pack, p in zip(packs, parts, strict=True)],
                              axis=0).astype(np.float32)
    return mixed


def style_for(pack: VoicePack, phoneme_count: int) -> npt.NDArray[np.float32]:
    """The style vector Kokoro was trained to use for a sequence of this length."""
    index = min(max(phoneme_count - 1, 0), pack.shape[0] - 1)
    style: npt.NDArray[np.float32] = pack[index].reshape(1, -1).astype(np.float32)
    return style


class VoiceLibrary:
    """Voice packs from .npz archives (name -> array), .npy/.pt files, or folders of them."""

    def __init__(self, sources: Iterable[Path]) -> None:
        self._files: dict[str, tuple[Path, str | None]] = {}
        for source in sources:
            self._index(Path(source))
        self._cache: dict[str, VoicePack] = {}

    def _index(self, source: Path) -> None:
        if source.is_dir():
            for file in sorted(source.iterdir()):
                if file.suffix in (".pt", ".npy", ".npz", ".bin"):
                    self._index(file)
        elif source.suffix in (".npz", ".bin") and zipfile.is_zipfile(source):
            with np.load(source) as archive:
                for name in archive.files:
                    self._files.setdefault(name, (source, name))
        elif source.suffix in (".pt", ".npy") and source.exists():
            self._files.setdefault(source.stem, (source, None))

    def names(self) -> list[str]:
        return sorted(self._files)

    def __contains__(self, name: object) -> bool:
        return name in self._files

    def load(self, name: str) -> VoicePack:
        if name in self._cache:
            return self._cache[name]
        if name not in self._files:
            raise SynthesisError(
                f"voice {name!r} is not available; available now: {', '.join(self.names())}")
        file, member = self._files[name]
        if member is not None:
            with np.load(file) as archive:
                pack = archive[member]
        elif file.suffix == ".npy":
            pack = np.load(file)
        else:
            import torch  # only for official .pt voices, which need torch anyway

            pack = torch.load(file, weights_only=True).numpy()
        pack = np.asarray(pack, dtype=np.float32).reshape(-1, 1, 256)
        self._cache[name] = pack
        return pack
