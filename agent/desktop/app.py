"""The tray agent: the process `voice-agent` starts with no arguments.

Threads, one owner each:
- main: the Tk mainloop; it owns the overlay and carries out every command (Mailbox).
- tray: pystray's loop (`run_detached` into the main loop on macOS).
- hotkeys and control socket: their listener threads; callbacks only post commands.
- the core (Assistant): model loader, LLM loop, TTS workers, audio callback; its events reach
  Tk through the same mailbox.
Nothing but the main thread touches Tk.

An interrupt overtakes everything: from a hotkey, the tray or the control socket it calls the
core's thread-safe interrupt on the caller's thread (`DesktopApp.post`), so it never waits
behind reply text in the mailbox or behind whatever the Tk thread is doing (a settings save,
turning autostart on).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
import tkinter as tk
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from agent import config as config_module
from agent import paths
from agent.assistant import Assistant
from agent.cli.table import AGENT_COMMANDS_BY_NAME
from agent.config import Config
from agent.control import ControlReply, ControlRequest, ControlServer, unknown_command_reply
from agent.desktop import commands as cmd
from agent.desktop.autostart import Autostart
from agent.desktop.hotkeys import Binding, choose_backend, describe, parse_hotkey
from agent.desktop.llm_menu import DownloadState, ModelDownload, downloaded_models, llm_entries
from agent.desktop.overlay import Overlay, OverlayActions
from agent.desktop.selection import DEFAULT_MAX_BYTES, SelectionError, SelectionReader
from agent.desktop.tray import Tray, TrayModel
from agent.events import (
    AgentState,
    EventBus,
    MicrophoneChanged,
    Notice,
    ReadingStatus,
    SettingsChanged,
    StateChanged,
)
from agent.first_run import first_run_needed, run_first_time, step_notices
from agent.llm import catalog
from agent.llm.base import LLMError
from agent.llm.choice import llm_settings, model_file_choice
from agent.read_aloud import ReadAloud, ReadSource

log = logging.getLogger(__name__)

EXPLAIN = "Explain this."  # the question when the user asks nothing else about a text
INTERRUPTED_SHOWN_S = 1.0  # the tray shows "interrupted" this long, then the real state


class NoDisplay(RuntimeError):
    pass


def check_display() -> None:
    """Raise NoDisplay with what to do when there is no screen to draw on."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                 or os.environ.get("WAYLAND_DISPLAY")):
        raise NoDisplay("no display: DISPLAY and WAYLAND_DISPLAY are not set (an SSH session "
                        "or a server?). The tray agent needs a desktop; `voice-agent chat` "
                        "talks in the terminal instead.")


class Mailbox:
    """Commands from any thread to the Tk thread, without a polling loop: on POSIX a pipe
    wakes Tk's event loop (createfilehandler); where Tk cannot watch a pipe (Windows), Tk
    looks every 50 ms."""

    def __init__(self, root: tk.Tk, handle: Callable[[cmd.Command], None]) -> None:
        self._root = root
        self._handle = handle
        self._queue: queue.SimpleQueue[cmd.Command] = queue.SimpleQueue()
        self._wake_w = -1
        if os.name == "posix" and hasattr(root.tk, "createfilehandler"):
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_w, False)
            root.tk.createfilehandler(self._wake_r, tk.READABLE, self._on_wake)
        else:
            root.after(50, self._poll)

    def post(self, command: cmd.Command) -> None:
        self._queue.put(command)
        if self._wake_w >= 0:
            # A full pipe means a wake-up is pending already; a closed one, that we are quitting.
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"\0")

    def _on_wake(self, *_: object) -> None:
        os.read(self._wake_r, 4096)
        self.drain()

    def _poll(self) -> None:
        self.drain()
        self._root.after(50, self._poll)

    def drain(self) -> None:
        while True:
            try:
                command = self._queue.get_nowait()
            except queue.Empty:
                return
            try:
                self._handle(command)
            except Exception:  # one bad command must not end the agent
                log.exception("command %s failed", type(command).__name__)

    def close(self) -> None:
        if self._wake_w >= 0:
            self._root.tk.deletefilehandler(self._wake_r)
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_w = -1


class DesktopApp:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.root = tk.Tk(className="voice-agent")
        self.mailbox = Mailbox(self.root, self.handle)
        self._shown_seq = 0  # the newest StateChanged the tray shows (older ones are dropped)
        self.bus = EventBus()
        self.bus.subscribe(lambda event: self.mailbox.post(cmd.FromCore(event)))
        self.assistant = Assistant(cfg, self.bus)
        self.overlay = Overlay(self.root, OverlayActions(
            self.assistant.submit, self.assistant.interrupt,
            lambda: self.assistant.listen_level,
            pause_reading=lambda: self.post(cmd.PauseReading()),
            skip_reading=lambda passages: self.post(cmd.SkipReading(passages)),
            ask_about_reading=lambda: self.post(cmd.AskAbout("reading")),
            default_question=EXPLAIN), cfg.overlay)
        self.autostart = Autostart()
        self.model = TrayModel(autostart=self.autostart.is_enabled())  # voices: once loaded
        self._download: ModelDownload | None = None  # the LLM menu's model download
        self._download_state: DownloadState | None = None
        self._mirror_settings()
        self.tray = Tray(self.post, self.model)
        self.hotkeys = choose_backend(cfg.hotkeys.backend)
        read_key = cfg.hotkeys.read.strip()
        self.selection = SelectionReader(
            self.root, lambda job: self.mailbox.post(cmd.RunOnTk(job)),
            retry=f"press {read_key}" if read_key else "use Read selection in the tray menu")
        log.info("read aloud: %s", self.selection.describe())
        self.control = ControlServer(self._on_control)
        self._latest_state = (AgentState.IDLE, "")
        self._interrupted_job: str | None = None
        self._quitting = False
        self._first_run_stop = threading.Event()  # quit abandons the first run's voice fetch
        self._first_run_thread: threading.Thread | None = None
        self._hotkeys_thread: threading.Thread | None = None
        # Push-to-talk: the talk key is down; a hold becomes listening after a threshold.
        self._talk_down = False
        self._hold_job: str | None = None
        self._listening_by_hold = False

    def post(self, command: cmd.Command) -> None:
        """A command from any thread (hotkeys, tray, control socket). What must not wait, the
        interrupt and the barge-in of a talk press, acts here on the caller's thread through
        the core's thread-safe interrupt; the rest (and the overlay's part of those) goes
        through the mailbox to the Tk thread, in order."""
        if isinstance(command, cmd.Interrupt):
            self.assistant.interrupt()
            return
        if isinstance(command, cmd.TalkPressed | cmd.Listen):  # talking over the reply
            self._barge_in()
        self.mailbox.post(command)

    def _barge_in(self) -> None:
        if self.assistant.state in (AgentState.THINKING, AgentState.SPEAKING):
            self.assistant.interrupt()

    # -- lifecycle ---------------------------------------------------------------------------

    def run(self) -> int:
        started = time.monotonic()
        self.control.start()
        self.tray.start()
        self._start_hotkeys()
        if first_run_needed():
            self._first_run_thread = threading.Thread(target=self._first_run, name="first-run",
                                                      daemon=True)
            self._first_run_thread.start()
        else:
            self.assistant.start()
        threading.Thread(target=self._wait_for_models, name="models-ready", daemon=True).start()
        self.overlay.set_details(self.model.voice, "loading the models…")
        self.root.after_idle(lambda: log.info("tray agent up in %.2f s",
                                              time.monotonic() - started))
        try:
            self.root.mainloop()
        finally:
            self.mailbox.close()
        return 0


    def _start_hotkeys(self) -> None:
        """Validate the [hotkeys] settings, then hook them on a thread of their own (pynput
        takes ~0.1 s to confirm its hook is live; the tray is up meanwhile)."""
        choice = self.hotkeys
        log.info("%s", describe(choice))
        talk, interrupt = self.cfg.hotkeys.talk, self.cfg.hotkeys.interrupt
        try:
            parsed_talk = parse_hotkey(talk, "hotkeys.talk")
            parsed_interrupt = parse_hotkey(interrupt, "hotkeys.interrupt")
            if parsed_talk.keyboard_spelling == parsed_interrupt.keyboard_spelling:
                raise ValueError(f"hotkeys.talk and hotkeys.interrupt are both {talk!r}; "
                                 "give them different keys")
        except ValueError as error:
            self._notice(f"{error}. Hotkeys are off until the settings are fixed "
                         f"({self.cfg.path or paths.config_file()}).")
            return
        bindings: dict[str, Callable[[], None] | Binding] = {
            talk: Binding(lambda: self.post(cmd.TalkPressed()),
                          lambda: self.post(cmd.TalkReleased())),
            interrupt: lambda: self.post(cmd.Interrupt())}
        taken = {parsed_talk.keyboard_spelling: "talk",
                 parsed_interrupt.keyboard_spelling: "interrupt"}
        reading_keys: tuple[tuple[str, str, Callable[[], None]], ...] = (
            ("read", self.cfg.hotkeys.read, lambda: self.post(cmd.Read())),
            ("pause", self.cfg.hotkeys.pause, lambda: self.post(cmd.PauseReading())),
            ("ask", self.cfg.hotkeys.ask, lambda: self.post(cmd.AskAbout())),
            ("next_sentence", self.cfg.hotkeys.next_sentence,
             lambda: self.post(cmd.SkipReading(1))),
            ("previous_sentence", self.cfg.hotkeys.previous_sentence,
             lambda: self.post(cmd.SkipReading(-1))))
        for name, chord, action in reading_keys:
            if not chord.strip():
                continue  # turned off
            key = name.replace("_", " ")
            try:
                spelling = parse_hotkey(chord, f"hotkeys.{name}").keyboard_spelling
            except ValueError as error:
                self._notice(f"{error}. The {key} key is off until the settings are fixed.")
                continue
            if spelling in taken:
                self._notice(f"hotkeys.{name} is {chord!r}, the {taken[spelling]} key too: "
                             f"the {key} key is off until you give it another chord.")
                continue
            taken[spelling] = key
            bindings[chord] = action

        def start() -> None:
            try:
                choice.backend.start(bindings)
            except Exception as error:
                log.exception("hotkeys did not start")
                self.mailbox.post(cmd.FromCore(Notice(f"hotkeys are off: {error}")))
            else:
                log.info("hotkeys: %d chords hooked", len(bindings))

        self._hotkeys_thread = threading.Thread(target=start, name="hotkeys-start",
                                                daemon=True)
        self._hotkeys_thread.start()

    def _first_run(self) -> None:
        """Off the Tk thread: the model files are prepared once (~92 MB), then the user is
        told the hotkeys and where the settings live, and the models load."""
        def show(line: str) -> None:
            log.info("%s", line)
            self.mailbox.post(cmd.FromCore(Notice(line)))

        progress = step_notices(show)
        self.mailbox.post(cmd.Show())  # the steps (model assembly, voice fetch) are seen
        text = run_first_time(self.cfg, progress=progress, hotkeys=self.hotkeys,
                              stop=self._first_run_stop)
        if self._first_run_stop.is_set():
            return  # quit meanwhile: nothing more to start
        log.info("%s", text)
        self.mailbox.post(cmd.FromCore(Notice(text)))
        self.mailbox.post(cmd.Show())
        self.assistant.start()

    def _wait_for_models(self) -> None:
        self.assistant.ready.wait()
        self.mailbox.post(cmd.ModelsReady())

    def quit(self) -> None:
        """Stop every thread, close the audio stream; the history is on disk already."""
        if self._quitting:
            return
        self._quitting = True
        self._first_run_stop.set()
        started = time.monotonic()
        if self._download is not None:
            self._download.stop(wait_s=1.0)  # the part fetched stays, for a resume
        if self._first_run_thread is not None:
            # A stopped fetch removes its half-written folders; let it, before the process goes.
            self._first_run_thread.join(1.0)
        if self._hotkeys_thread is not None:
            self._hotkeys_thread.join(1.0)  # stop what has started, not a start in progress
        # Each step on its own: one that fails must not keep the process alive with its
        # socket, tray and hotkeys already gone (nothing could reach it to quit again).
        try:
            for step in (self.overlay.hide, self.hotkeys.backend.stop, self.control.stop,
                         self.tray.stop, self.assistant.close):
                try:
                    step()
                except Exception:
                    log.exception("quitting: %s failed; going on", getattr(step, "__qualname__",
                                                                            step))
        finally:
            self.root.quit()
        log.info("quit in %.2f s", time.monotonic() - started)

    # -- commands (Tk thread) ------------------------------------------------------------------

    def handle(self, command: cmd.Command) -> None:
        match command:
            case cmd.FromCore(SettingsChanged()):  # the file was edited; the menu follows
                self._mirror_settings()
                self.tray.refresh_menu()
                self._show_details()
            case cmd.FromCore(event):
                if isinstance(event, StateChanged):
                    if event.seq and event.seq <= self._shown_seq:
                        return  # older than what is shown: never go back
                    self._shown_seq = event.seq or self._shown_seq
                    self._show_state(event.state, event.message)
                elif isinstance(event, MicrophoneChanged):
                    self.tray.show_microphone(event.is_open, event.description)
                elif isinstance(event, ReadingStatus):
                    was = self.model.reading
                    self.model.reading = event
                    _log_reading(was, event)
                    if (was.active, was.paused, was.resumable) != (
                            event.active, event.paused, event.resumable):
                        self.tray.refresh_menu()
                self.overlay.on_event(event)
            case cmd.Talk():
                self.overlay.show(focus=True)
            case cmd.TalkPressed():
                self._talk_pressed()
            case cmd.TalkReleased():
                self._talk_released()
            case cmd.Listen():
                self._toggle_listening()
            case cmd.Show():
                self.overlay.show(focus=False)
            case cmd.Say(text):
                self.assistant.say(text)
            case cmd.Read(kind, value):
                self._read(kind, value)
            case cmd.RunOnTk(job):
                job()
            case cmd.AskAbout(what, question):
                self._ask_about(what, question)
            case cmd.PauseReading():
                self._with_reading(lambda reading: reading.toggle_pause())
            case cmd.ResumeReading():
                self._with_reading(lambda reading: reading.resume())
            case cmd.SkipReading(passages):
                self._with_reading(lambda reading: reading.skip(passages))
            case cmd.Quit():
                self.quit()
            case cmd.SetVoice(voice):
                # Shown: the voice that speaks (a missing one resolves to a fallback); saved:
                # the one asked for, so it speaks once its pack is here.
                self.model.voice = self.assistant.set_voice(voice)
                log.info("voice: %s", self.model.voice)
                self._save("tts", "voice", voice)
            case cmd.PreviewVoice(voice):
                self.assistant.preview_voice(voice)
            case cmd.SetSpeed(speed):
                self.assistant.set_speed(speed)
                self.model.speed = speed
                self._save("tts", "speed", speed)
            case cmd.SetMute(mute):
                mute = not self.model.mute if mute is None else mute
                self.assistant.set_mute(mute)
                self.model.mute = mute
                self._save("audio", "mute", mute)
            case cmd.SetListen(key, value):
                self._set_listen(key, value)
            case cmd.SetBackend(use_server):
                self._set_backend(use_server)
            case cmd.UseLLM(keys, what):
                self._use_llm(dict(keys), what)
            case cmd.ScanServers():
                threading.Thread(target=self._scan_servers, name="llm-scan", daemon=True).start()
            case cmd.ServersScanned():
                self._mirror_llm_menu()
            case cmd.DownloadModel(key):
                self._start_download(key)
            case cmd.StopDownload():
                if self._download is not None:
                    self._download.stop()
            case cmd.DownloadProgress(done, total):
                if self._download_state is not None:
                    self._download_state = dataclasses.replace(self._download_state, done=done,
                                                               total=total)
                    self._mirror_llm_menu()
            case cmd.DownloadFinished(key, path, error):
                self._download_finished(key, path, error)
            case cmd.SetAutostart(enabled):
                enabled = not self.model.autostart if enabled is None else enabled
                self._notice(self.autostart.set(enabled))
                self.model.autostart = enabled
            case cmd.OpenSettings():
                self._open_settings()
            case cmd.ShowHistory():
                self.overlay.show_history(self.assistant.history.entries[-20:])
                self.overlay.show(focus=False)
            case cmd.ModelsReady():
                self._on_models_ready()
        if isinstance(command, cmd.FromCore):
            return  # reply text arrives per token: the menu and status line are unchanged
        self.tray.refresh_menu()
        self._show_details()

    def _show_details(self) -> None:
        """The overlay's header: the voice that speaks and the LLM."""
        self.overlay.set_details(self.model.voice, self.assistant.backend_label
                                 or "loading the models…")

    # -- reading aloud ---------------------------------------------------------------------------

    def _read(self, kind: str, value: str) -> None:
        """Read the selection or the clipboard, a file or a text. The selection is got off
        the Tk thread (an owner may take its time; our own overlay's selection is answered
        by the Tk thread); nothing selected, an image, a dead owner: said in the overlay."""
        self.overlay.show(focus=False)
        if kind == "file":  # off the Tk thread too: a named pipe or a slow disk may wait
            threading.Thread(target=self.assistant.read_file, args=(Path(value),),
                             name="read-file", daemon=True).start()
        elif kind == "text":
            self.assistant.read_text(value, "standard input")
        else:
            threading.Thread(target=self._read_selection, args=(kind == "clipboard",),
                             name="read-selection", daemon=True).start()

    def _read_selection(self, clipboard: bool) -> None:
        try:
            selection = self.selection.clipboard() if clipboard else self.selection.primary()
        except SelectionError as error:
            self._notice_from_thread(str(error))
            return
        if selection.truncated:
            self._notice_from_thread(
                f"The {selection.source} is over {DEFAULT_MAX_BYTES >> 20} MB: reading its "
                "beginning. Save it to a file for all of it (voice-agent read FILE).")
        origin = {"primary selection": "the selection"}.get(selection.source,
                                                             f"the {selection.source}")
        self.assistant.read_text(selection.text, origin)

    def _ask_about(self, what: str, question: str) -> None:
        """Attach the selection (got off the Tk thread) or what is being read to the next
        question; with `question`, ask it at once."""
        if what == "reading":
            reading = self.assistant.read_aloud
            origin, text = reading.text_to_ask_about() if reading is not None else ("", "")
            if not text:
                self._notice("Nothing is being read to ask about.")
                return
            self._attach(text, origin, question)
            return

        def get() -> None:
            try:
                selection = self.selection.primary()
            except SelectionError as error:
                self._notice_from_thread(str(error))
                return
            origin = {"primary selection": "the selection"}.get(selection.source,
                                                                 f"the {selection.source}")
            self.mailbox.post(cmd.RunOnTk(lambda: self._attach(selection.text, origin,
                                                               question)))

        threading.Thread(target=get, name="ask-selection", daemon=True).start()

    def _notice_from_thread(self, message: str) -> None:
        log.info("%s", message)
        self.mailbox.post(cmd.FromCore(Notice(message)))

    def _attach(self, text: str, origin: str, question: str) -> None:
        attachment = self.assistant.attach(text, origin)
        if attachment is None:
            return
        if question:
            self.assistant.submit(question)
            self.overlay.show(focus=False)
            return
        self.overlay.set_attachment(f"📎 {attachment.summary()}: type or hold the talk key "
                                    f"to ask; Enter alone asks “{EXPLAIN}”")
        self.overlay.show(focus=True)

    def _with_reading(self, act: Callable[[ReadAloud], bool]) -> None:
        reading = self.assistant.read_aloud
        if reading is None:
            self._notice("Nothing is being read.")
            return
        act(reading)

    # -- push-to-talk ----------------------------------------------------------------------------

    def _talk_pressed(self) -> None:
        if self._talk_down:
            return  # key repeat while held
        self._talk_down = True
        self._barge_in()  # done already by post() unless the press came another way
        if self.cfg.stt.mode == "toggle":
            self._toggle_listening()
            return
        self._hold_job = self.root.after(int(self.cfg.stt.hold_threshold_s * 1000),
                                         self._begin_hold)

    def _begin_hold(self) -> None:
        self._hold_job = None
        if self._talk_down and self.assistant.start_listening():
            self._listening_by_hold = True
            self.overlay.show(focus=False)

    def _talk_released(self) -> None:
        self._talk_down = False
        if self._hold_job is not None:  # a tap: type in the overlay
            self.root.after_cancel(self._hold_job)
            self._hold_job = None
            self.overlay.show(focus=True)
        elif self._listening_by_hold:
            self._listening_by_hold = False
            self.assistant.stop_listening()

    def _toggle_listening(self) -> None:
        if self.assistant.listening:
            self.assistant.stop_listening()
        elif self.assistant.start_listening():
            self.overlay.show(focus=False)

    def _show_state(self, state: AgentState, message: str) -> None:
        """The tray picture follows the state; "interrupted" stays a second so it is seen."""
        self._latest_state = (state, message)
        if state is AgentState.INTERRUPTED:
            if self._interrupted_job is not None:
                self.root.after_cancel(self._interrupted_job)
            self._interrupted_job = self.root.after(int(INTERRUPTED_SHOWN_S * 1000),
                                                    self._end_interrupted)
        elif self._interrupted_job is not None:
            return  # shown when the second is over
        log.info("tray: %s", state.value)
        self.tray.show_state(state, message)

    def _end_interrupted(self) -> None:
        self._interrupted_job = None
        state, message = self._latest_state
        if state is not AgentState.INTERRUPTED:
            log.info("tray: %s", state.value)
            self.tray.show_state(state, message)

    def _mirror_settings(self) -> None:
        """The menu's copy of the settings it shows (the tray thread reads it to draw)."""
        cfg = self.cfg
        speech = self.assistant.speech  # once loaded, the voice that speaks: maybe a fallback
        self.model.voice = speech.voice if speech is not None else cfg.tts.voice
        self.model.speed = cfg.tts.speed
        self.model.mute = cfg.audio.mute
        self.model.talk_over = cfg.listen.talk_over
        self.model.echo_cancellation = cfg.listen.echo_cancellation
        self.model.wake_word = cfg.listen.wake_word
        self.model.wake_chime = cfg.listen.wake_chime
        self._mirror_llm_menu()

    def _mirror_llm_menu(self) -> None:
        assistant = self.assistant
        in_use = llm_settings(self.cfg, not self.cfg.llm.use_embedded, assistant.picked)
        self.model.llm = llm_entries(self.cfg, in_use, assistant.local_servers,
                                     downloaded_models(), self._download_state)

    def _on_models_ready(self) -> None:
        speech = self.assistant.speech
        if speech is not None:
            self.model.voice = speech.voice
        self.model.voices = tuple(self.assistant.voices())
        self._mirror_llm_menu()  # the servers found while loading, and the one picked
        log.info("models ready: voice %s, %s", self.model.voice,
                 self.assistant.backend_description)

    def _set_listen(self, key: str, value: bool | str | None) -> None:
        """The Hands-free menu: apply a [listen] setting now and keep it in the file."""
        current = getattr(self.cfg.listen, key)
        new = (not current) if value is None else value
        try:
            self.assistant.set_listen(key, new)
        except ValueError as error:  # a wake word that cannot be loaded here
            self._notice(str(error))
            return
        self._mirror_settings()
        self.tray.refresh_menu()
        self._save("listen", key, new)
        self.assistant.settings_saved()

    def _set_backend(self, use_server: bool) -> None:
        """The LLM menu's item for the server in the settings, or back from it."""
        self._use_llm({"use_embedded": not use_server},
                      "the server in the settings" if use_server else "the embedded model")

    def _use_llm(self, keys: dict[str, bool | int | float | str], what: str) -> None:
        """The LLM menu's choice: in use from the next reply, and saved to the settings file
        (comments kept). A choice that cannot be made changes nothing."""
        try:
            description = self.assistant.choose_llm(keys)
        except LLMError as error:
            self._notice(f"{error} The previous LLM stays in use.")
            return
        path = self.cfg.path or paths.config_file()
        try:
            config_module.save_settings(path, "llm", keys)
        except (config_module.ConfigError, OSError) as error:  # says which line to fix first
            self._notice(f"LLM: {description}, until the agent quits: the choice could not be "
                         f"saved ({error})")
        else:
            log.info("saved the LLM choice (%s) to %s", what, path)
            self.cfg.path = path
            self.assistant.settings_saved()
            self._notice(f"LLM: {description}")
        self._mirror_llm_menu()

    def _scan_servers(self) -> None:
        self.assistant.scan_local_servers()
        self.mailbox.post(cmd.ServersScanned())

    def _start_download(self, key: str) -> None:
        if self._download is not None:
            self._notice("A model is downloading already: stop it first (LLM menu).")
            return
        model = catalog.find(key)
        self._download_state = DownloadState(model.key, model.title)
        self._download = ModelDownload(model, self.mailbox.post).start()
        self._notice(f"Downloading {model.title} ({model.size_text}) from the Hugging Face "
                     "hub; the current model answers meanwhile. Progress: the LLM menu.")
        self._mirror_llm_menu()

    def _download_finished(self, key: str, path: Path | None, error: str) -> None:
        self._download = None
        self._download_state = None
        if path is None:
            self._notice(error)
            self._mirror_llm_menu()
            return
        model = catalog.find(key)
        self._notice(f"Downloaded {model.title} to {path} (checksum verified).")
        self._use_llm(model_file_choice(self.cfg, path), model.title)

    def _save(self, section: str, key: str, value: bool | float | str) -> None:
        path = self.cfg.path or paths.config_file()
        try:
            config_module.save_setting(path, section, key, value)
            log.info("saved %s.%s = %r to %s", section, key, value, path)
        except config_module.ConfigError as error:  # says which line to fix first
            self._notice(str(error))
        except OSError as error:
            self._notice(f"could not save {section}.{key} to {path}: {error}")

    def _notice(self, message: str) -> None:
        log.info("%s", message)
        self.overlay.on_event(Notice(message))

    def _open_settings(self) -> None:
        path = self.cfg.path or paths.config_file()
        if not path.exists():
            config_module.write_starter(path)
        if not open_in_editor(path):
            self._notice(f"settings: {path} (no program to open it was found)")
            self.overlay.show(focus=False)

    # -- the control socket (its own thread: post and answer at once) --------------------------

    def _on_control(self, request: ControlRequest) -> ControlReply:
        """Carry out a request of the control socket. The server has checked it against the
        table of the running agent's commands (agent.cli.table): the command is known, and
        "say" has its text. Runs on the server's thread: it only posts (an interrupt acts at
        once, see `post`) or reads what is thread-safe, and answers at once."""
        command = AGENT_COMMANDS_BY_NAME.get(request.command)
        if command is None:
            return unknown_command_reply(request.command)
        match command.name:
            case "status":
                return ControlReply(True, self.assistant.state.value)
            case "interrupt":
                self.post(cmd.Interrupt())
            case "show":
                self.post(cmd.Show())
            case "talk":
                self.post(cmd.Talk())
            case "listen":
                self.post(cmd.Listen())
            case "say":
                self.post(cmd.Say(request.text))
            case "read":
                source = ReadSource.decode(request.text)
                self.post(cmd.Read(source.kind, source.value))
            case "pause":
                self.post(cmd.PauseReading())
            case "resume":
                self.post(cmd.ResumeReading())
            case "next-sentence":
                self.post(cmd.SkipReading(1))
            case "previous-sentence":
                self.post(cmd.SkipReading(-1))
            case "explain":
                self.post(cmd.AskAbout(question=EXPLAIN))
            case "quit":
                self.post(cmd.Quit())
            case _:  # added to the table, not yet here: say so rather than pretend
                log.error("control: %r is in the table of commands but not carried out here",
                          command.name)
                return ControlReply(False, f"{command.name}: this agent cannot do that yet")
        return ControlReply(True, command.accepted_reply)

def _log_reading(was: ReadingStatus, now: ReadingStatus) -> None:
    """What the reading did, by sentence number (never the text: it may be private)."""
    if now.active and not was.active:
        log.info("reading %s: started at sentence %d", now.origin, now.index + 1)
    elif now.active and now.paused != was.paused:
        log.info("reading: %s at sentence %d", "paused" if now.paused else "resumed",
                 now.index + 1)
    elif now.active and now.index != was.index:
        log.info("reading: sentence %d", now.index + 1)
    elif not now.active and was.active:
        log.info("reading: %s at sentence %d", "finished" if now.finished else "stopped",
                 now.index + 1)


def open_in_editor(path: Path) -> bool:
    """Open `path` with the desktop's program for it; False if there is none."""
    try:
        if sys.platform == "win32":
            os.startfile(path)  # type: ignore[attr-defined]
            return True
        opener = ["open", "-t"] if sys.platform == "darwin" else ["xdg-open"]
        if not shutil.which(opener[0]):
            return False
        subprocess.Popen([*opener, str(path)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
        return True
    except OSError:
        return False


def end_process(code: int) -> NoReturn:
    """Leave now, once the agent has shut down in order (the history is on disk, the audio
    stream closed). Model loads and warm-ups still running in native code (onnxruntime,
    llama.cpp) are abandoned rather than waited for, and their C++ threads never meet the
    static destructors an ordinary interpreter exit runs (that aborted with "terminate called
    without an active exception"): the user asked to quit, so quit takes well under a second."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
