"""Speech to text for push-to-talk: the microphone (`Recorder`, open only while listening),
Whisper through faster-whisper (`Transcriber`), offline with the models that ship in wheels
(`resolve_stt_model`), and Silero VAD for the toggle mode's stop-after-silence.

Importing this package is cheap: faster-whisper, onnxruntime and sounddevice load when used.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import threading
import time
from typing import Protocol

import numpy as np
import numpy.typing as npt

from agent.listen.microphone import (
    NoInputDevice,
    Recorder,
    list_input_devices,
    resolve_input,
)
from agent.listen.models import DEFAULT_MODEL, SttModel, SttModelError, resolve_stt_model
from agent.listen.vad import SilenceStop
from agent.listen.whisper import Transcriber

__all__ = ["DEFAULT_MODEL", "NoInputDevice", "Recorder", "SilenceStop", "SpeechToText",
           "SttModel", "SttModelError", "Transcriber", "add_listen_parsers",
           "list_input_devices", "resolve_input", "resolve_stt_model"]

log = logging.getLogger(__name__)


class SpeechToText(Protocol):
    def transcribe(self, samples: npt.NDArray[np.float32], sample_rate: int) -> str: ...


# -- the command line: `voice-agent transcribe FILE` and `voice-agent listen` ----------------

def _transcriber(args: argparse.Namespace) -> Transcriber:
    return Transcriber(model=args.model, language=args.language, beam_size=args.beam_size)


def cmd_transcribe(args: argparse.Namespace) -> int:
    """Print what the model hears in an audio file."""
    import av  # faster-whisper reads files with PyAV (FFmpeg)

    transcriber = _transcriber(args)
    try:
        transcriber.load()
        text = transcriber.transcribe_file(args.file)
    except SttModelError as error:
        log.error("%s", error)
        return 2
    except (OSError, av.FFmpegError) as error:
        log.error("cannot read %s: %s", args.file, error)
        return 1
    if transcriber.notice:
        print(transcriber.notice, file=sys.stderr)
    print(text)
    return 0 if text else 1


def _meter(level_db: float, width: int = 30) -> str:
    filled = max(0, min(width, round((level_db + 60.0) / 60.0 * width)))
    return "#" * filled + "-" * (width - filled)


def print_wake_words() -> int:
    """The wake words this machine has, with their engines and licences."""
    from agent.listen.wakeword import available_wake_words

    print("wake words for [listen] wake_word (the first are Apache-2.0):")
    for info in available_wake_words():
        print(f"  {info.name:<16} \"{info.phrase}\"  {info.engine}, {info.licence}")
    return 0


def cmd_listen(args: argparse.Namespace) -> int:
    """Record from the microphone until a pause (or Ctrl-C), then print the words."""
    transcriber = _transcriber(args)
    loader = threading.Thread(target=_load_quietly, args=(transcriber,), name="stt-load",
                              daemon=True)
    loader.start()  # loads while the user speaks
    recorder = Recorder(device=args.device, max_s=args.max_seconds,
                        silence_stop=SilenceStop(silence_s=args.pause))
    try:
        recorder.start()
    except NoInputDevice as error:
        log.error("%s", error)
        loader.join()
        return 2
    print("listening: speak, then pause (or press Ctrl-C)", file=sys.stderr)
    try:
        while not recorder.ended.wait(0.1):
            if sys.stderr.isatty():
                sys.stderr.write(f"\r{_meter(recorder.level)} {recorder.duration_s:5.1f} s")
                sys.stderr.flush()
    except KeyboardInterrupt:
        pass
    finally:
        samples = recorder.stop()
        if sys.stderr.isatty():
            sys.stderr.write("\n")
    released = time.monotonic()
    loader.join()
    if recorder.error:  # the microphone went away while listening
        log.error("%s", recorder.error)
        return 2
    try:
        text = transcriber.transcribe(samples, recorder.sample_rate)
    except SttModelError as error:
        log.error("%s", error)
        return 2
    if transcriber.notice:
        print(transcriber.notice, file=sys.stderr)
    log.debug("%.1f s of audio, transcribed in %.2f s", samples.size / recorder.sample_rate,
              time.monotonic() - released)
    print(text)
    return 0 if text else 1


def _load_quietly(transcriber: Transcriber) -> None:
    with contextlib.suppress(SttModelError):  # transcribe() raises it again, on its thread
        transcriber.load()


def add_listen_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Adds `transcribe FILE` and `listen` to the voice-agent command line."""

    def model_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", default=DEFAULT_MODEL,
                       help="base (built in, the default), tiny.en (built in, faster), another "
                       "faster-whisper name such as small.en (downloaded), or a model folder")
        p.add_argument("--language", default="en",
                       help="spoken language code, or auto (default en)")
        p.add_argument("--beam-size", type=int, default=1,
                       help="1 = greedy (fast, the default); 5 = beam search")

    transcribe = sub.add_parser("transcribe", help="print the words spoken in an audio file")
    model_options(transcribe)
    transcribe.add_argument("file", metavar="FILE", help="WAV, FLAC, MP3, OGG...")
    transcribe.set_defaults(func=cmd_transcribe)

    listen = sub.add_parser("listen", help="record from the microphone, print the words")
    model_options(listen)
    listen.add_argument("--device", help="input device, by name or index (voice-agent devices)")
    listen.add_argument("--pause", type=float, default=1.0,
                        help="seconds of quiet that end the recording (default 1.0)")
    listen.add_argument("--max-seconds", type=float, default=30.0,
                        help="the longest recording (default 30)")
    wake_words = sub.add_parser("wake-words", help="list the wake words for [listen] "
                                "wake_word, with their licences")
    wake_words.set_defaults(func=lambda _args: print_wake_words())
    listen.set_defaults(func=cmd_listen)
