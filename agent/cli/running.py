"""`voice-agent` (run): the tray agent; and the subcommands that only send a command to it."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from agent import logs
from agent.cli.chat import cmd_chat
from agent.cli.common import load_config

log = logging.getLogger("agent")


def cmd_control(args: argparse.Namespace) -> int:
    """A subcommand of the table's CommandLine.SEND kind: the running agent carries it out."""
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
    cfg = load_config(args.config)
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
    from agent.desktop.app import end_process

    end_process(app.run())  # the instance lock goes with the process
