"""`voice-agent chat` and `voice-agent ask`: the conversation in the terminal."""

from __future__ import annotations

import argparse
import logging
import sys

from agent import logs
from agent.audio.devices import NoAudioDevice
from agent.cli.common import EXIT_INTERRUPTED, ProgressBar, load_config
from agent.cli.speaking import speech_pipeline
from agent.config import Config
from agent.conversation import Conversation
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
from agent.history import History

log = logging.getLogger("agent")


class TerminalView:
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


def _conversation(cfg: Config, args: argparse.Namespace, view: TerminalView,
                  ) -> Conversation:
    from agent.llm import make_backend
    from agent.llm.choice import settings_to_use

    speech = None
    if not args.no_audio:
        try:
            speech = speech_pipeline(cfg, args).start()
            speech.warm_up_in_background()
        except NoAudioDevice as error:  # a conversation still works as text: say so, go on
            log.warning("%s Replies are shown as text only (--no-audio says so without this "
                        "message).", error)
    bus = EventBus()
    bus.subscribe(view)
    logs.TurnTimer().attach(bus, speech)
    llm, picked = settings_to_use(cfg)
    if picked is not None:
        log.warning("%s", picked.notice)
    backend = make_backend(llm, cfg.from_file)
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
    cfg = load_config(args.config)
    if first_run_needed():
        print(run_first_time(cfg, ProgressBar()), file=sys.stderr)
    view = TerminalView()
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
    cfg = load_config(args.config)
    question = sys.stdin.read() if args.question == ["-"] else " ".join(args.question)
    if not question.strip():
        log.error("no question: give it as arguments, or - to read standard input")
        return 2
    view = TerminalView()
    conversation = _conversation(cfg, args, view)
    try:
        conversation.submit(question)
        completed = _wait_for_turns(conversation)
    finally:
        _close(conversation)
    if not completed:
        return EXIT_INTERRUPTED
    return 1 if view.failed else 0
