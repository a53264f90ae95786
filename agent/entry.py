"""The `voice-agent` command's first stop: commands for the running agent (bound to desktop
shortcuts, so they must be quick) go straight to its control socket without loading the
rest of the program (numpy, the models' code); everything else goes to agent.cli."""

from __future__ import annotations

import sys
from collections.abc import Sequence

QUICK_COMMANDS = ("talk", "listen", "interrupt", "quit", "status")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) == 1 and args[0] in QUICK_COMMANDS:
        from agent.control import ControlError, ControlRequest, NotRunning, send

        try:
            reply = send(ControlRequest(args[0]))
        except NotRunning as error:
            if args[0] != "listen":
                print(error, file=sys.stderr)
                return 1
            reply = None  # no agent: listen here, in the terminal (agent.cli)
        except ControlError as error:
            print(error, file=sys.stderr)
            return 1
        if reply is not None:
            print(reply.message, file=sys.stdout if reply.ok else sys.stderr)
            return 0 if reply.ok else 1
    from agent.cli import main as full_main

    return full_main(args)
