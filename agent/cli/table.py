"""The commands the running agent answers: one table, read by everything that names them.

- `voice-agent NAME` (agent.entry, agent.cli.parser): the subcommands that send a command to
  the running agent, their help, and the quick path that skips loading the rest.
- The control socket (agent.control): which requests it carries to the app, and the words
  of its "unknown command" reply.
- The desktop app: what each request does there, and the words of its reply.

This module imports nothing of the program: the quick path (a desktop shortcut's
`voice-agent talk`) reads it before anything heavy is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType


class CommandLine(Enum):
    """How `voice-agent NAME` reaches a command of the running agent."""

    # Not a subcommand: only the program sends it (a second launch sends "show").
    NONE = "none"
    # Only sends it; with no agent running it says so and exits 1.
    SEND = "send"
    # With no agent running it does the work itself (say speaks, listen records), so its
    # subcommand has that work's options, and is built beside that work.
    SEND_OR_DO_HERE = "send or do here"


@dataclass(frozen=True)
class AgentCommand:
    name: str
    help: str  # one line, for `voice-agent --help`
    command_line: CommandLine = CommandLine.SEND
    takes_text: bool = False  # the request carries text, and is refused without any
    accepted: str = "sent to the running agent"  # the reply once the agent has taken it

    @property
    def accepted_reply(self) -> str:
        return f"{self.name}: {self.accepted}"

    @property
    def quick(self) -> bool:
        """`voice-agent NAME`, alone, goes straight to the control socket: what a desktop
        shortcut binds, so it must not wait for numpy and the models' code to load."""
        return self.command_line is not CommandLine.NONE and not self.takes_text

    @property
    def done_here_without_agent(self) -> bool:
        return self.command_line is CommandLine.SEND_OR_DO_HERE


AGENT_COMMANDS: tuple[AgentCommand, ...] = (
    AgentCommand("show", "open the running agent's overlay without taking the focus",
                 command_line=CommandLine.NONE),
    AgentCommand("talk", "open the running agent's overlay to talk"),
    AgentCommand("listen", "start listening in the running agent, or stop and send "
                 "(with none running: record here and print the words)",
                 command_line=CommandLine.SEND_OR_DO_HERE),
    AgentCommand("interrupt", "stop the running agent's reply"),
    AgentCommand("say", "speak text (TEXT - reads standard input)",
                 command_line=CommandLine.SEND_OR_DO_HERE, takes_text=True,
                 accepted="speaking in the running agent"),
    AgentCommand("read", "read the selection aloud (--clipboard, FILE, or - for standard "
                 "input; with no agent running: read here)",
                 command_line=CommandLine.SEND_OR_DO_HERE, accepted="reading in the running agent"),
    AgentCommand("pause", "pause the text being read aloud, or go on"),
    AgentCommand("resume", "go on reading from the sentence that was cut"),
    AgentCommand("next-sentence", "skip to the next sentence of the text being read"),
    AgentCommand("previous-sentence", "go back a sentence in the text being read"),
    AgentCommand("explain", "ask the running agent to explain the selection"),
    AgentCommand("quit", "quit the running agent"),
    # Its reply is the state itself (idle, speaking...), not `accepted_reply`.
    AgentCommand("status", "print the running agent's state"),
)

AGENT_COMMANDS_BY_NAME = MappingProxyType({command.name: command for command in AGENT_COMMANDS})

AGENT_COMMAND_NAMES: tuple[str, ...] = tuple(AGENT_COMMANDS_BY_NAME)
