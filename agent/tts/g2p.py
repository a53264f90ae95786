"""Text to Kokoro phonemes.

misaki's espeak G2P maps espeak-ng's phonemes onto the set Kokoro was trained on and runs
offline (espeakng_loader ships the library and its data). misaki's full English G2P (a
dictionary plus spaCy) is better, but needs spaCy's en_core_web_sm, which it tries to download:
it is used only when that model is already installed.

Japanese and Mandarin take misaki's own G2Ps, as hexgrad's KPipeline does: espeak-ng reads
kanji aloud as "Chinese letter" and writes Mandarin tones as digits Kokoro has no tokens for.
misaki's Japanese G2P (the cutlet one KPipeline uses for Kokoro v1.0) needs fugashi with the
unidic-lite dictionary inside its wheel; misaki.ja itself also imports pyopenjtalk, which
builds from source and downloads its dictionary, so the cutlet class is used directly. The
Mandarin one needs jieba, pypinyin and cn2an (dictionaries in their wheels). Without them,
or when they fail to start, those languages fall back to espeak-ng. bench/languages.py
measures every language with Whisper.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import threading
import warnings
from collections.abc import Callable

log = logging.getLogger(__name__)

# Kokoro's context is 512 tokens including the two pads.
MAX_PHONEMES = 510

Phonemizer = Callable[[str], str]

_lock = threading.Lock()
_cache: dict[str, Phonemizer] = {}
_names: dict[str, str] = {}  # which G2P each cached phonemizer is


# Kanji, kana and the CJK punctuation: text a Japanese or Mandarin G2P can read.
_CJK = re.compile(r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]")


def language_for(voice: str, configured: str, text: str = "") -> str:
    """The G2P language for a voice: "auto" follows the voice's language (the first voice of
    a blend). A Japanese or Mandarin voice given text with no CJK characters reads it as
    American English, as jm_kumo always has, rather than spelling it out letter by letter."""
    if configured != "auto":
        return configured
    from agent.tts.voices import LANGUAGES

    first = voice.split(",")[0].strip()
    language = LANGUAGES.get(first[:1])
    if language is None:
        return "en-us"
    if language.code in ("j", "z") and not _CJK.search(text):
        return "en-us"
    return language.g2p


def _build(language: str) -> tuple[Phonemizer, str]:
    """The phonemizer for a language and the name of the G2P behind it."""
    if language in ("en-us", "en-gb") and importlib.util.find_spec("en_core_web_sm"):
        from misaki import en
        from misaki.espeak import EspeakFallback

        british = language == "en-gb"
        full = en.G2P(trf=False, british=british, fallback=EspeakFallback(british=british))
        return (lambda text: str(full(text)[0])), "misaki.en"
    builder = _MISAKI.get(language)
    if builder is not None:
        try:
            return builder()
        except Exception as error:  # not installed, or its dictionary cannot be opened
            log.warning("%s text falls back to espeak-ng's G2P, which reads it poorly: %s "
                        "(%s)", language, error, _MISAKI_INSTALL)
    from misaki.espeak import EspeakG2P

    espeak = EspeakG2P(language=language)
    if language == "hi":  # espeak drops the danda, and the sentence's falling end with it
        return (lambda text: str(espeak(text.replace("।", "."))[0])), "espeak-ng hi"
    return (lambda text: str(espeak(text)[0])), f"espeak-ng {language}"


def _misaki_japanese() -> tuple[Phonemizer, str]:
    # The G2P misaki.ja.JAG2P() runs for Kokoro v1.0, without misaki.ja's pyopenjtalk import.
    with warnings.catch_warnings():  # its importlib.resources.open_text is deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        from misaki.cutlet import Cutlet

    cutlet = Cutlet()  # fugashi's MeCab with unidic-lite; raises if no dictionary opens
    return (lambda text: str(cutlet(text)[0])), "misaki.ja (cutlet, unidic-lite)"


def _misaki_mandarin() -> tuple[Phonemizer, str]:
    import jieba
    from misaki.zh import ZHG2P

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()  # its dictionary (about a second), now rather than in the first reply
    zh = ZHG2P()  # version None: the G2P Kokoro v1.0 was trained with

    def phonemize(text: str) -> str:
        result = zh(text)[0]
        # misaki 0.9.4 returns a string; some versions nest its legacy (phonemes, None) pair
        return str(result[0] if isinstance(result, tuple) else result)

    return phonemize, "misaki.zh (jieba, pypinyin)"


_MISAKI: dict[str, Callable[[], tuple[Phonemizer, str]]] = {
    "ja": _misaki_japanese, "cmn": _misaki_mandarin}
_MISAKI_INSTALL = ("pip install 'voice-agent[languages]' (fugashi, unidic-lite, jieba, pypinyin, "
                   "cn2an, …)")


def phonemizer(language: str) -> Phonemizer:
    """One phonemizer per language, built once (espeak's setup costs about half a second)."""
    with _lock:
        if language not in _cache:
            _cache[language], _names[language] = _build(language)
        return _cache[language]


def g2p_name(language: str) -> str:
    """Which G2P phonemises `language` ("espeak-ng es", "misaki.zh ..."); builds it if need be."""
    phonemizer(language)
    return _names[language]


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
