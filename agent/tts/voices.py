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
from agent.tts.models import OFFICIAL_VOICE_NAMES, VoiceOrigin

VoicePack = npt.NDArray[np.float32]

# The voices of hexgrad/Kokoro-82M v1.0. The first letter is the language, the second the gender.
OFFICIAL_VOICES = tuple(sorted(OFFICIAL_VOICE_NAMES))



@dataclass(frozen=True)
class Language:
    """A language Kokoro v1.0 has voices for, keyed by the voices' first letter."""

    code: str  # the voices' first letter: "a" in af_bella
    name: str
    g2p: str  # the G2P language its text is read as: espeak-ng's code, misaki's for ja/cmn
    sample: str  # a short line for hearing a voice before choosing it
    # Measured with Whisper base (bench.languages): False marks it in the voice menu as
    # poorly understood, so nobody mistakes it for a broken voice.
    understood: bool = True


LANGUAGES = {lang.code: lang for lang in (
    Language("a", "American English", "en-us", "Hello! This is how I sound."),
    Language("b", "British English", "en-gb", "Hello! This is how I sound."),
    Language("e", "Spanish", "es", "¡Hola! Así suena mi voz."),
    Language("f", "French", "fr-fr", "Bonjour ! Voici ma voix."),
    Language("h", "Hindi", "hi", "नमस्ते! मेरी आवाज़ ऐसी है।", understood=False),
    Language("i", "Italian", "it", "Ciao! Ecco come suona la mia voce."),
    Language("j", "Japanese", "ja", "こんにちは。これが私の声です。"),
    Language("p", "Brazilian Portuguese", "pt-br", "Olá! Esta é a minha voz."),
    Language("z", "Mandarin Chinese", "cmn", "你好！这是我的声音。"),
)}

# The last fallback for English text when only the packaged Japanese pack is here: measured,
# jm_kumo reading English phonemes is understood almost word for word; the others much less.
PACKAGED_ENGLISH_VOICE = "jm_kumo"

def sample_line(voice: str) -> str:
    """A short line in the voice's language (a blend's first voice), to hear it by."""
    language = LANGUAGES.get(voice.strip()[:1])
    return language.sample if language is not None else LANGUAGES["a"].sample


def language_of(voice: str) -> str:
    lang = LANGUAGES.get(voice[:1])
    return lang.name if lang else "unknown"


def gender_of(voice: str) -> str:
    return {"f": "female", "m": "male"}.get(voice[1:2], "unknown")


def by_language(names: Iterable[str]) -> list[tuple[str, list[str], list[str]]]:
    """(language code, female voices, male voices), sorted, in LANGUAGES' order, then the
    voices of no known language (code "", listed as female unless named as male): how the
    voice menu and `voice-agent voices` group them."""
    groups: dict[str, tuple[list[str], list[str]]] = {}
    for name in sorted(names):
        code = name[:1] if name[:1] in LANGUAGES and name[2:3] == "_" else ""
        female, male = groups.setdefault(code, ([], []))
        (male if gender_of(name) == "male" else female).append(name)
    return [(code, *groups[code]) for code in [*LANGUAGES, ""] if code in groups]


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


# A voice pack's size as raw float32 (510, 1, 256): the .bin files of the npm voices.
RAW_PACK_BYTES = 510 * 256 * 4


class VoiceLibrary:
    """Voice packs from .npz archives (name -> array), .npy/.pt files, raw float32 .bin files
    (kokoro-js's layout), or folders of them. The first source that has a name wins. Only the
    index is built up front: a pack is read when it is first used."""

    def __init__(self, sources: Iterable[Path],
                 origin: Callable[[Path], VoiceOrigin] | None = None) -> None:
        self._files: dict[str, tuple[Path, str | None]] = {}
        self._origin_of = origin or (lambda _path: "custom")
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
        elif self._is_single_pack(source):
            self._files.setdefault(source.stem, (source, None))

    @staticmethod
    def _is_single_pack(source: Path) -> bool:
        if source.suffix in (".pt", ".npy"):
            return source.exists()
        # A raw .bin pack is whole style vectors of 256 float32s.
        return (source.suffix == ".bin" and source.is_file()
                and source.stat().st_size % (256 * 4) == 0)

    def origin(self, name: str) -> VoiceOrigin | None:
        """Where the pack for `name` comes from; None if there is none."""
        found = self._files.get(name)
        return self._origin_of(found[0]) if found else None

    def names(self) -> list[str]:
        return sorted(self._files)

    def __contains__(self, name: object) -> bool:
        return name in self._files

    def load(self, name: str) -> VoicePack:
        if name in self._cache:
            return self._cache[name]
        if name not in self._files:
            names = self.names()
            shown = ", ".join(names) if len(names) <= 8 else (
                f"{len(names)} voices (voice-agent voices lists them)")
            raise SynthesisError(f"voice {name!r} is not available; available now: {shown}")
        file, member = self._files[name]
        if member is not None:
            with np.load(file) as archive:
                pack = archive[member]
        elif file.suffix == ".npy":
            pack = np.load(file)
        elif file.suffix == ".bin":
            pack = np.fromfile(file, dtype="<f4")
        else:
            import torch  # only for official .pt voices, which need torch anyway

            pack = torch.load(file, weights_only=True).numpy()
        pack = np.asarray(pack, dtype=np.float32).reshape(-1, 1, 256)
        self._cache[name] = pack
        return pack
