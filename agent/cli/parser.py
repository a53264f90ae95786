"""`voice-agent`'s command line: the parser, and main(), which runs the chosen command.

The subcommands that send a command to the running agent come from the table
(agent.cli.table), in its order; the others are written out here, or added by the module
that does their work (doctor, config, autostart, transcribe and listen)."""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence

from agent import __version__, logs
from agent.audio.devices import NoAudioDevice
from agent.cli.chat import cmd_ask, cmd_chat
from agent.cli.config import add_config_parser
from agent.cli.listing import cmd_devices, cmd_history, cmd_models, cmd_voices
from agent.cli.llm import add_llm_parser
from agent.cli.reading import add_read_parser
from agent.cli.running import cmd_control, cmd_run
from agent.cli.speaking import cmd_dialogue, cmd_say
from agent.cli.table import AGENT_COMMANDS, AGENT_COMMANDS_BY_NAME, CommandLine
from agent.desktop.autostart import add_autostart_parser
from agent.doctor import add_doctor_parser
from agent.listen import add_listen_parsers
from agent.tts.base import SynthesisError
from agent.tts.models import ModelFilesError

log = logging.getLogger("agent")


def _speech_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--voice", help="voice or blend, e.g. af_bella or af_bella:0.7,af_sky:0.3")
    parser.add_argument("--speed", type=float, help="speaking rate, 0.5-2.0 (default 1.0)")
    parser.add_argument("--device", help="output device, by name or index (voice-agent devices)")
    parser.add_argument("--out", metavar="FILE.wav", help="write a WAV file instead of playing")


def build_parser() -> argparse.ArgumentParser:
    sent = [c.name for c in AGENT_COMMANDS if c.command_line is not CommandLine.NONE]
    parser = argparse.ArgumentParser(
        prog="voice-agent", description="An always-on voice assistant (Kokoro-82M speech).",
        epilog=f"For the running agent (bind them to desktop shortcuts): {', '.join(sent)}.")
    parser.add_argument("--version", action="version", version=f"voice-agent {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug output")
    parser.add_argument("--config", help="config file (default: the user config dir)")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="the tray agent (the default with no command)").set_defaults(
        func=cmd_run)
    for command in AGENT_COMMANDS:
        if command.command_line is CommandLine.SEND:
            sub.add_parser(command.name, help=command.help).set_defaults(func=cmd_control)

    # The table's SEND_OR_DO_HERE commands: say here (listen: add_listen_parsers, below).
    say = sub.add_parser("say", help=AGENT_COMMANDS_BY_NAME["say"].help)
    _speech_options(say)
    say.add_argument("text", nargs="+", metavar="TEXT")
    say.set_defaults(func=cmd_say)

    add_read_parser(sub, _speech_options, AGENT_COMMANDS_BY_NAME["read"].help)

    dialogue = sub.add_parser("dialogue", help="speak a script of 'Speaker: text' lines")
    _speech_options(dialogue)
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

    models = sub.add_parser(
        "models", help="show the speech model files; download the official ones; list (llm) "
        "and download (download llm NAME) a better LLM",
        description="voice-agent models [show]: the speech model files. models download: the "
        "official Kokoro files. models llm: better LLMs to download. models download llm "
        "NAME: fetch one from the Hugging Face hub (resumable, checksum verified) and use it.")
    models.add_argument("action", nargs="?", choices=["show", "download", "llm"],
                        default="show")
    models.add_argument("what", nargs="?", choices=["kokoro", "llm"], default="kokoro",
                        help="for download: kokoro (default) or llm")
    models.add_argument("name", nargs="?", help="for download llm: the model (models llm)")
    models.add_argument("--voice", action="append", help="official voice to download "
                        "(repeatable; default af_bella)")
    models.set_defaults(func=cmd_models)
    add_llm_parser(sub)
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
