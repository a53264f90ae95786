"""The `voice-agent` command's first stop: commands for the running agent (bound to desktop
shortcuts, so they must be quick) go straight to its control socket without loading the
rest of the program (numpy, the models' code); everything else goes to agent.cli."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from agent.cli.table import AGENT_COMMANDS_BY_NAME


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = AGENT_COMMANDS_BY_NAME.get(args[0]) if len(args) == 1 else None
    if command is not None and command.quick:
        from agent.control import tell_running_agent

        # `listen` with no agent running records in the terminal instead (agent.cli): stay
        # quiet about the missing agent and fall through to the full command line.
        fall_back = command.done_here_without_agent
        done = tell_running_agent(command.name, quiet_if_absent=fall_back)
        if done is not None or not fall_back:
            return 0 if done else 1
    from agent.cli import main as full_main

    return full_main(args)
