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
        from agent.control import tell_running_agent

        # `listen` with no agent running records in the terminal instead (agent.cli).
        done = tell_running_agent(args[0], quiet_if_absent=args[0] == "listen")
        if done is not None or args[0] != "listen":
            return 0 if done else 1
    from agent.cli import main as full_main

    return full_main(args)
