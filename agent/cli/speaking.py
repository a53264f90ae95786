"""`voice-agent say` and `voice-agent dialogue`: speech without the tray agent."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from agent.audio.devices import NoAudioDevice
from agent.audio.events import PlaybackEvent, PlaybackKind
from agent.cli.common import EXIT_INTERRUPTED, load_config, load_engine, make_sink
from agent.config import Config
from agent.speech import SpeechPipeline

log = logging.getLogger("agent")


class _Interrupted(Exception):
    pass


def speech_pipeline(cfg: Config, args: argparse.Namespace) -> SpeechPipeline:
    """The speech pipeline for the command's options. The output stream opens first, so it
    is warm when the first words arrive (and a missing device is reported before the model
    loads); raises NoAudioDevice."""
    sink = make_sink(cfg, getattr(args, "device", None), getattr(args, "out", None))
    sink.start()
    voice = getattr(args, "voice", None)
    return SpeechPipeline(load_engine(cfg, voice), sink, voice=voice or cfg.tts.voice,
                          speed=getattr(args, "speed", None) or cfg.tts.speed,
                          workers=cfg.tts.workers, lookahead=cfg.tts.lookahead,
                          interrupt_sound=cfg.audio.interrupt_sound)


def speak(cfg: Config, args: argparse.Namespace, lines: Sequence[tuple[str, str, str | None]],
          ) -> int:
    """Speak (speaker, text, voice) lines; Ctrl-C fades out and exits 130."""
    try:
        pipeline = speech_pipeline(cfg, args)
    except NoAudioDevice as error:
        log.error("%s", error)
        return 2
    errors: list[str] = []

    def on_event(event: PlaybackEvent) -> None:
        if event.kind is PlaybackKind.ERROR:
            errors.append(event.message)
            log.error("%s", event.message)

    pipeline.add_listener(on_event)

    def on_sigint(_signum: int, _frame: FrameType | None) -> None:
        raise _Interrupted

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        pipeline.start()
        for speaker, text, voice in lines:
            if speaker:
                pipeline.add_dialogue(speaker, text, voice)
            else:
                pipeline.say(text, voice)
        while not pipeline.wait_until_done(timeout=0.1):
            pass
        status = 1 if errors else 0
    except _Interrupted:
        pipeline.interrupt()
        pipeline.wait_until_done(timeout=2)
        status = EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGINT, previous)
        pipeline.close()  # plays out the device buffer (the fade's tail), then closes
    if args.out and status != EXIT_INTERRUPTED:
        log.info("wrote %s", args.out)
    return status


def cmd_say(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    text = sys.stdin.read() if args.text == ["-"] else " ".join(args.text)
    if not text.strip():
        log.error("nothing to say: give the text as arguments, or - to read standard input")
        return 2
    if not (args.out or args.device or args.voice or args.speed):
        from agent.control import tell_running_agent

        if tell_running_agent("say", text, quiet_if_absent=True):
            return 0  # the running tray agent speaks it (its voice, its stream)
    return speak(cfg, args, [("", text, args.voice)])


def parse_dialogue(text: str) -> list[tuple[str, str]]:
    """Lines of `Speaker: text`; a line without a speaker continues the previous one; blank
    lines and lines starting with # are skipped."""
    lines: list[tuple[str, str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        speaker, sep, said = line.partition(":")
        if sep and speaker.strip() and len(speaker) <= 40 and " " not in speaker.strip()[:1]:
            lines.append((speaker.strip(), said.strip()))
        elif lines:
            lines[-1] = (lines[-1][0], f"{lines[-1][1]} {line}")
        else:
            lines.append(("Narrator", line))
    return lines


def cmd_dialogue(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    try:
        script = Path(args.file).read_text(encoding="utf-8")
    except OSError as error:
        log.error("cannot read %s: %s", args.file, error)
        return 2
    voices = dict(cfg.dialogue.voices)
    for item in args.speaker_voice or []:
        speaker, sep, voice = item.partition("=")
        if not sep:
            log.error("--voice-for takes SPEAKER=VOICE, got %r", item)
            return 2
        voices[speaker.strip()] = voice.strip()
    lines = [(s, t, voices.get(s)) for s, t in parse_dialogue(script)]
    if not lines:
        log.error("%s has no lines of the form 'Speaker: text'", args.file)
        return 2
    return speak(cfg, args, lines)
