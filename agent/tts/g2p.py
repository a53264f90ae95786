"""Text to Kokoro phonemes.

misaki's espeak G2P maps espeak-ng's phonemes onto the set Kokoro was trained on and runs
offline (espeakng_loader ships the library and its data). misaki's full English G2P (a
dictionary plus spaCy) is better, but needs spaCy's en_core_web_sm, which it tries to download:
it is used only when that model is already installed.
"""

from __future__ import annotations

import importlib.util
import re
import threading
from collections.abc import Callable

# Kokoro's context is 512 tokens including the two pads.
MAX_PHONEMES = 510

Phonemizer = Callable[[str], str]

_lock = threading.Lock()
_cache: dict[str, Phonemizer] = {}


def language_for(voice: str, configured: str) -> str:
    """The espeak language for a voice: "auto" reads English, British for b* voices."""
    if configured != "auto":
        return configured
    first = voice.split(",")[0].strip()
    return "en-gb" if first.startswith("b") else "en-us"


def _build(language: str) -> Phonemizer:
    if language in ("en-us", "en-gb") and importlib.util.find_spec("en_core_web_sm"):
        from misaki import en
        from misaki.espeak import EspeakFallback

        british = language == "en-gb"
        full = en.G2P(trf=False, british=british, fallback=EspeakFallback(british=british))
        return lambda text: str(full(text)[0])
    from misaki.espeak import EspeakG2P

    espeak = EspeakG2P(language=language)
    return lambda text: str(espeak(text)[0])


def phonemizer(language: str) -> Phonemizer:
    """One phonemizer per language, built once (espeak's setup costs about half a second)."""
    with _lock:
        if language not in _cache:
            _cache[language] = _build(language)
        return _cache[language]


def split_phonemes(phonemes: str, limit: int = MAX_PHONEMES) -> list[str]:
    """Pieces that fit Kokoro's context, cut after punctuation where possible, else at spaces."""
    pieces: list[str] = []
    rest = phonemes.strip()
    while len(rest) > limit:
        window = rest[:limit]
        cut = max((m.end() for m in re.finditer(r"[.!?;:,—…]\s", window)), default=0)
        if cut == 0:
            cut = window.rfind(" ") + 1 or limit
        pieces.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    if rest:
        pieces.append(rest)
    return pieces
