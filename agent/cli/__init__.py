"""`voice-agent`: the command line. The headless commands use only the core.

    table.py     the commands of the running agent: read by the entry point, the control
                 socket and the desktop app (imports nothing heavy)
    parser.py    the parser and main()
    running.py   run (the tray agent) and the subcommands that only send to it
    speaking.py  say, dialogue
    chat.py      chat, ask
    listing.py   history, voices, devices, models
    config.py    config path|show|edit|set|validate
    common.py    what they share: the settings, the progress line, the engine and sink

This file stays light: agent.control and the quick path of agent.entry import the table
through it, before anything heavy (numpy, the models' code) is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the command; its exit status."""
    from agent.cli.parser import main as run_command_line

    return run_command_line(argv)
