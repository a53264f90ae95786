"""`voice-agent doctor`: what works on this machine, and how to fix what does not.

One line per check: `ok`, `warn` or `FAIL`, what was found and, for the others, the fix. The
checks do the real thing where it is cheap: open (and close) the audio output, list the
Kokoro voices, ask the LLM server for its models (3 s at most), load pystray and Tk in a
separate process.

The exit status says whether the agent can work:

- 0: it can answer, in some front end. Warnings are allowed, and so are FAIL lines for speech
  (no audio output device, no Kokoro model) or the desktop (no tray, no overlay): without
  speech the replies are shown as text, and without a desktop `voice-agent chat` talks in a
  terminal. The last line says which of these limits apply.
- 1: it cannot answer at all: the LLM it would use (the configured server, and the embedded
  model where that stands in for it) fails its check.

Nothing printed contains an API key: the lines pass through the same redaction as the log.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import enum
import importlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent import logs, paths
from agent.config import Config, LLMConfig

PROBE_TIMEOUT_S = 3.0  # the LLM server: reaching it is quick or hopeless
DISPLAY_PROBE_TIMEOUT_S = 20.0
TEXT_ONLY = "speech is off; the agent still works as text"

Progress = Callable[[str, int, int], None]  # (what, done, total), as the CLI's ProgressBar


class Status(enum.Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


class Area(enum.Enum):
    """What a FAIL takes away: `ANSWERS` stops the agent; the others limit it."""

    ANSWERS = "answers"
    SPEECH = "speech"
    DESKTOP = "desktop"
    OTHER = "other"


@dataclass(frozen=True)
class Check:
    status: Status
    name: str
    detail: str
    fix: str = ""
    area: Area = Area.OTHER

    def line(self) -> str:
        text = f"{self.status.value:<4} {self.name}: {self.detail.rstrip('.')}"
        if self.fix and self.status is not Status.OK:
            text += f". Fix: {self.fix.rstrip('.')}"
        return text + "."


def ok(name: str, detail: str, area: Area = Area.OTHER) -> Check:
    return Check(Status.OK, name, detail, area=area)


def warn(name: str, detail: str, fix: str, area: Area = Area.OTHER) -> Check:
    return Check(Status.WARN, name, detail, fix, area)


def fail(name: str, detail: str, fix: str, area: Area = Area.OTHER) -> Check:
    return Check(Status.FAIL, name, detail, fix, area)


# -- config ----------------------------------------------------------------------------------------


def check_config(cfg: Config) -> list[Check]:
    path = cfg.path or paths.config_file()
    if not cfg.problems:
        where = str(path) if path.exists() else f"none yet at {path}: the defaults apply"
        return [ok("config", where)]
    return [warn("config", problem, "correct the key in the file (the default applies "
                 "meanwhile); every key is documented in config.example.toml")
            for problem in cfg.problems]


# -- audio -----------------------------------------------------------------------------------------


NO_OUTPUT_FIX = ("connect a sound card or headset and make sure PulseAudio or PipeWire runs "
                 "(`pactl info` answers), then `voice-agent devices`; meanwhile "
                 "`voice-agent say --out speech.wav TEXT` writes speech to a file")


def check_audio(cfg: Config) -> Check:
    """List the devices, then open and close an output stream as the agent would."""
    from agent.audio.devices import NoAudioDevice, list_devices

    name = "audio output"
    try:
        devices = list_devices()
    except NoAudioDevice as error:  # PortAudio itself is missing
        return fail(name, f"{error} ({TEXT_ONLY})", "sudo apt-get install libportaudio2",
                    Area.SPEECH)
    outputs = [d for d in devices if d.outputs > 0]
    if not outputs:
        return fail(name, f"no audio output device (PortAudio sees {len(devices)} devices, "
                    f"none that plays); {TEXT_ONLY}", NO_OUTPUT_FIX, Area.SPEECH)
    try:
        chosen = _device_name(cfg.audio.device, outputs)
    except NoAudioDevice as error:  # [audio] device names none of them
        return fail(name, f"{error} ({TEXT_ONLY})", "choose a device from `voice-agent "
                    "devices` in [audio] device, or leave it empty for the system default",
                    Area.SPEECH)
    from agent.audio.player import AudioPlayer

    player = AudioPlayer(device=cfg.audio.device or None, blocksize=cfg.audio.blocksize,
                         fade_ms=cfg.audio.fade_ms, idle_stop_s=None)
    try:
        player.start()
        rate, latency_ms = player.stream_rate, player.latency * 1000
    except Exception as error:  # NoAudioDevice, or whatever PortAudio raises: never crash
        detail = str(error) if isinstance(error, NoAudioDevice) else (
            f"cannot open an output stream ({type(error).__name__}: {error})")
        return fail(name, f"{detail} ({TEXT_ONLY})", NO_OUTPUT_FIX, Area.SPEECH)
    finally:
        player.close()
    return ok(name, f"{chosen}: opened and closed a stream ({rate} Hz, {latency_ms:.0f} ms "
              f"latency); {len(outputs)} output device(s)", Area.SPEECH)


def _device_name(spec: str, outputs: Sequence[Any]) -> str:
    """The output the agent would use, by name; raises NoAudioDevice if `spec` names none."""
    from agent.audio.devices import resolve_output

    index = resolve_output(spec or None)
    if index is None:
        default = [d for d in outputs if d.is_default_output]
        return f"the default output ({default[0].name})" if default else "the default output"
    return next((d.name for d in outputs if d.index == index), f"device {index}")


# -- Kokoro ----------------------------------------------------------------------------------------


def check_kokoro(cfg: Config, progress: Progress | None = None) -> list[Check]:
    """Which model files would be used (assembling the packaged one if this is the first
    use), which voices they bring, and whether the configured voice is one of them."""
    from agent.tts import models
    from agent.tts.voices import PACKAGED_ENGLISH_VOICE, VoiceLibrary, parse_blend

    try:
        files = models.resolve(cfg.tts.source, cfg.tts.model_path, cfg.tts.voices_path,
                               progress=progress)
        names = VoiceLibrary(files.voices).names()
    except Exception as error:  # ModelFilesError says what to do; anything else is reported
        return [fail("Kokoro", f"{error} ({TEXT_ONLY})",
                     "reinstall voice-agent (pip install --force-reinstall voice-agent), or "
                     "fix [tts] model_path / voices_path", Area.SPEECH)]
    if not names:
        return [fail("Kokoro", f"{files.source} model {files.model} but no voices in "
                     f"{', '.join(map(str, files.voices))} ({TEXT_ONLY})",
                     "set [tts] voices_path to a .npz file or a folder of .pt voices, or "
                     "leave it empty", Area.SPEECH)]
    shown = ", ".join(names) if len(names) <= 8 else f"{', '.join(names[:8])}, …"
    checks = [ok("Kokoro", f"{files.source} model {files.model} with {len(names)} voices "
                 f"({shown})", Area.SPEECH)]
    try:
        parts = [part.voice for part in parse_blend(cfg.tts.voice)]
    except Exception as error:
        checks.append(warn("voice", str(error), "set [tts] voice to one voice, or a blend "
                           "such as 'af_bella:0.7,af_sky:0.3'", Area.SPEECH))
        return checks
    missing = [voice for voice in parts if voice not in names]
    if not missing:
        checks.append(ok("voice", f"{cfg.tts.voice} is available", Area.SPEECH))
        return checks
    from agent.tts.npm_voices import HOW_TO_GET_THEM_SENTENCE

    stand_in = PACKAGED_ENGLISH_VOICE if PACKAGED_ENGLISH_VOICE in names else names[0]
    official = [voice for voice in missing if voice in models.OFFICIAL_VOICE_NAMES]
    if official:
        fix = f"{HOW_TO_GET_THEM_SENTENCE}; or set [tts] voice = \"{stand_in}\""
    else:
        fix = f"set [tts] voice to one of the voices above, e.g. \"{stand_in}\""
    why = (f"{', '.join(missing)} missing" if len(parts) > 1 else
           "its voice files are not fetched yet" if official else "no such voice")
    checks.append(warn("voice", f"{cfg.tts.voice} is not available here ({why}); {stand_in} "
                       "speaks instead", fix, Area.SPEECH))
    return checks


class StderrProgress:
    """The packaged model is assembled once (~92 MB, a few seconds): say so when it starts
    and when it is done, on stderr (stdout holds the check lines)."""

    def __init__(self) -> None:
        self._started: set[str] = set()

    def __call__(self, what: str, done: int, total: int) -> None:
        if what not in self._started or done >= total:
            self._started.add(what)
            sys.stderr.write(f"{what}: {100 * done // max(total, 1)}%\n")
            sys.stderr.flush()


# -- the LLM ---------------------------------------------------------------------------------------


def check_embedded(name: str = "LLM") -> Check:
    from agent.llm.base import LLMError
    from agent.llm.embedded import INSTALL_RUNTIME, locate_model, require_runtime

    try:
        model = locate_model()
        require_runtime()
    except LLMError as error:
        return fail(name, f"embedded model: {error}", "reinstall as the message says, or set "
                    "llm.backend to a server", Area.ANSWERS)
    try:
        llama_cpp = importlib.import_module("llama_cpp")
    except Exception as error:  # a binding built for another CPU or library raises anything
        return fail(name, f"embedded model: llama_cpp does not import ({type(error).__name__}: "
                    f"{error})", f"`{INSTALL_RUNTIME} --force-reinstall`", Area.ANSWERS)
    size_mb = model.stat().st_size / 1e6
    version = getattr(llama_cpp, "__version__", "?")
    return ok(name, f"embedded {model.name} ({size_mb:.0f} MB), llama.cpp binding {version}",
              Area.ANSWERS)


def check_server(llm: LLMConfig) -> Check:
    """Ask the server for its models (GET, 3 s at most) and look for llm.model there."""
    from agent.llm.base import LLMError
    from agent.llm.ollama import OllamaBackend
    from agent.llm.openai_compat import OpenAICompatBackend, api_key_from, public_url

    kind = llm.backend.strip().lower()
    name = f"LLM server ({kind})"
    fix = ("start the server, or correct llm.base_url; llm.fallback = \"embedded\" answers "
           "with the embedded model while it is down")
    backend: OpenAICompatBackend | OllamaBackend
    try:
        if kind == "ollama":
            backend = OllamaBackend(llm.base_url, llm.model, llm.api_key,
                                    timeout_s=PROBE_TIMEOUT_S)
            path = "/api/tags"
            hint = "is llm.base_url Ollama's root URL (e.g. http://127.0.0.1:11434)?"
        else:
            if not llm.base_url.strip():
                return fail(name, "llm.base_url is empty", "set it to the server's "
                            "OpenAI-compatible URL, e.g. http://127.0.0.1:11434/v1 (Ollama) "
                            "or https://api.openai.com/v1", Area.ANSWERS)
            backend = OpenAICompatBackend(llm.base_url, llm.model, llm.api_key,
                                          timeout_s=PROBE_TIMEOUT_S)
            path = "/models"
            hint = "check that llm.base_url is the server's OpenAI-compatible root (/v1)."
    except LLMError as error:
        return fail(name, str(error), "correct llm.base_url", Area.ANSWERS)
    url = public_url(backend.base_url)
    try:
        listing = asyncio.run(_get_json(backend, path, hint))
    except LLMError as error:
        return fail(name, str(error), fix, Area.ANSWERS)
    if kind == "ollama":
        entries = listing.get("models") if isinstance(listing, dict) else None
        names = [n for m in entries or [] if isinstance(m, dict)
                 for n in [m.get("model") or m.get("name")] if isinstance(n, str) and n]
    else:
        entries = listing.get("data") if isinstance(listing, dict) else None
        names = [m["id"] for m in entries or [] if isinstance(m, dict)
                 and isinstance(m.get("id"), str)]
    keyed = "" if kind == "ollama" else (
        ", with an API key" if api_key_from(llm.api_key) else ", without an API key")
    model = llm.model.strip()
    if not names:
        pull = "`ollama pull llama3.2` and " if kind == "ollama" else ""
        return warn(name, f"{url} answers{keyed} but lists no models",
                    f"{pull}set llm.model", Area.ANSWERS)
    listed = ", ".join(names[:6]) + (", …" if len(names) > 6 else "")
    if not model:
        return ok(name, f"{url} answers{keyed}; llm.model is empty, so {names[0]} (the first "
                  f"listed) answers", Area.ANSWERS)
    if model in names or (kind == "ollama" and f"{model}:latest" in names):
        return ok(name, f"{url} answers{keyed}; model {model} is listed", Area.ANSWERS)
    pull = f"`ollama pull {model}`, or " if kind == "ollama" else ""
    return warn(name, f"{url} answers{keyed}, but model {model} is not listed (it lists "
                f"{listed})", f"{pull}set llm.model to a listed model", Area.ANSWERS)


async def _get_json(backend: Any, path: str, hint: str) -> Any:
    try:
        return await backend.http.get_json(path, hint)
    finally:
        await backend.http.aclose()


def check_llm(cfg: Config) -> list[Check]:
    """The LLM the agent would use, and the embedded model where it stands in for a server
    (the tray's LLM menu chose it, llm.fallback = "embedded", or the server settings are
    unusable). The agent can answer when one of them passes; if none does, each FAIL says
    so (Area.ANSWERS). A server that fails while the embedded model stands in is a warning."""
    llm = cfg.llm
    kind = llm.backend.strip().lower()
    if kind == "embedded":
        return [check_embedded()]
    if kind not in ("openai", "ollama"):
        return [warn("LLM", f"llm.backend = {llm.backend!r} is not known; the embedded model "
                     "answers instead", "use \"embedded\", \"openai\" or \"ollama\""),
                check_embedded("LLM (embedded)")]
    server = check_server(llm)
    if llm.use_embedded:
        embedded = check_embedded("LLM (embedded, chosen in the tray's LLM menu)")
        if server.status is Status.FAIL and embedded.status is not Status.FAIL:
            server = dataclasses.replace(server, status=Status.WARN, area=Area.OTHER)
        return [embedded, server]
    if server.status is not Status.FAIL:
        return [server]
    if llm.fallback.strip().lower() != "embedded":
        return [server]
    embedded = check_embedded("LLM fallback (embedded)")
    if embedded.status is Status.FAIL:
        return [server, embedded]
    return [dataclasses.replace(server, status=Status.WARN, area=Area.OTHER,
                                detail=f"{server.detail} The embedded model answers meanwhile"),
            embedded]


# -- the desktop -----------------------------------------------------------------------------------


def check_hotkeys(cfg: Config) -> Check:
    from agent.desktop.hotkeys import SHORTCUT_HINT, choose_backend, describe, parse_hotkey

    talk, interrupt = cfg.hotkeys.talk, cfg.hotkeys.interrupt
    try:
        parsed_talk = parse_hotkey(talk, "hotkeys.talk")
        parsed_interrupt = parse_hotkey(interrupt, "hotkeys.interrupt")
    except ValueError as error:
        return warn("hotkeys", str(error), "correct it in the config file", Area.DESKTOP)
    if parsed_talk.keyboard_spelling == parsed_interrupt.keyboard_spelling:
        return warn("hotkeys", f"hotkeys.talk and hotkeys.interrupt are both {talk!r}",
                    "give them different keys", Area.DESKTOP)
    choice = choose_backend(cfg.hotkeys.backend)
    if choice.backend.name != "none":
        return ok("hotkeys", f"{_without_prefix(describe(choice))}; talk {talk}, interrupt "
                  f"{interrupt}", Area.DESKTOP)
    # The fix says what to bind: the reasons need not say it again.
    reasons = tuple(r.removesuffix(f": {SHORTCUT_HINT}") for r in choice.reasons
                    if r != SHORTCUT_HINT)
    detail = _without_prefix(describe(dataclasses.replace(choice, reasons=reasons)))
    return warn("hotkeys", f"{detail} (no global hotkeys)",
                f"bind `voice-agent talk` ({talk}) and `voice-agent interrupt` ({interrupt}) "
                "in the desktop's keyboard shortcut settings (see the README)", Area.DESKTOP)


def _without_prefix(line: str) -> str:
    return line.removeprefix("hotkeys: ")


# Run in a child process: importing pystray without a usable display raises (or, with a
# broken one, can hang), and Tk must not open a window in the doctor itself.
_DISPLAY_PROBE = """
import json
found = {}
try:
    import pystray
    found["tray"] = pystray.Icon.__module__.rpartition("._")[2]
except Exception as error:
    found["tray_error"] = f"{type(error).__name__}: {error}"
try:
    import tkinter
    root = tkinter.Tk()
    root.withdraw()
    found["tk"] = str(root.tk.call("info", "patchlevel"))
    root.destroy()
except Exception as error:
    found["tk_error"] = f"{type(error).__name__}: {error}"
print(json.dumps(found))
"""


def display_name() -> str:
    """The display this session has, in words ("" for none)."""
    x11, wayland = os.environ.get("DISPLAY", ""), os.environ.get("WAYLAND_DISPLAY", "")
    if wayland:
        return f"Wayland {wayland}" + (f" (XWayland {x11})" if x11 else " (no XWayland)")
    return f"X11 {x11}" if x11 else ""


def check_desktop() -> list[Check]:
    """The display, then which pystray backend loads and whether Tk opens (the overlay)."""
    needs_display = sys.platform.startswith("linux")
    shown = display_name()
    if needs_display and not shown:
        return [warn("display", "none (DISPLAY and WAYLAND_DISPLAY are not set): the tray "
                     "and the overlay cannot start here",
                     "`voice-agent chat` talks in the terminal; run `voice-agent` in a "
                     "desktop session for the tray", Area.DESKTOP)]
    shown = shown or sys.platform
    unusable = ("run `voice-agent` inside the desktop session (with its DISPLAY and "
                "XAUTHORITY); `voice-agent chat` talks in a terminal meanwhile")
    try:
        done = subprocess.run([sys.executable, "-c", _DISPLAY_PROBE], capture_output=True,
                              text=True, timeout=DISPLAY_PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return [fail("display", f"{shown}: loading pystray and Tk took over "
                     f"{DISPLAY_PROBE_TIMEOUT_S:.0f} s", unusable, Area.DESKTOP)]
    except OSError as error:
        return [fail("display", f"{shown}: the check did not start ({error})",
                     "run `voice-agent -v run` and read the log", Area.DESKTOP)]
    try:
        found: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):  # the probe itself crashed (a native library abort)
        return [fail("display", f"{shown}: the check crashed ({done.stderr.strip()[-300:]})",
                     "run `voice-agent -v run` and read the log", Area.DESKTOP)]
    errors = f"{found.get('tray_error', '')} {found.get('tk_error', '')}".lower()
    if "tray" not in found and "tk" not in found and "connect to display" in errors:
        return [fail("display", f"{shown} does not answer ({found.get('tk_error')})",
                     unusable, Area.DESKTOP)]
    checks = [ok("display", shown, Area.DESKTOP)]
    if "tray" in found:
        backend = found["tray"]
        desktop = os.environ.get("XDG_CURRENT_DESKTOP", "")
        if "GNOME" in desktop.upper():
            checks.append(warn("tray", f"pystray {backend} backend; GNOME Shell shows tray "
                               "icons only with the AppIndicator extension",
                               "install and enable gnome-shell-extension-appindicator",
                               Area.DESKTOP))
        else:
            checks.append(ok("tray", f"pystray {backend} backend", Area.DESKTOP))
    else:
        checks.append(fail("tray", f"pystray does not load: {found.get('tray_error')}",
                           "pip install --force-reinstall pystray; for the GTK backend "
                           "pip install 'voice-agent[gtk]'", Area.DESKTOP))
    if "tk" in found:
        checks.append(ok("overlay", f"Tk {found['tk']}", Area.DESKTOP))
    else:
        checks.append(fail("overlay", f"Tk does not open: {found.get('tk_error')}",
                           "sudo apt-get install python3-tk (or your Python's Tk)",
                           Area.DESKTOP))
    return checks


def check_log() -> Check:
    path = logs.log_file()
    folder = path.parent
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        return warn("log", f"cannot create {folder} ({error})",
                    "set VOICE_AGENT_LOG_DIR to a writable folder")
    if not os.access(folder, os.W_OK):
        return warn("log", f"{folder} is not writable", "set VOICE_AGENT_LOG_DIR to a "
                    "writable folder")
    return ok("log", f"{path} (the tray agent's log)")


# -- speech input ----------------------------------------------------------------------------------


def check_speech_input(cfg: Config) -> list[Check]:
    """The microphone (found, without opening it: doctor must not record) and the Whisper
    model files for [stt] model (the embedded base is joined on first use)."""
    from agent.listen import NoInputDevice, SttModelError, resolve_input, resolve_stt_model

    checks = []
    fix = ("connect a microphone and check that PulseAudio or PipeWire sees it (`pactl list "
           "sources short`), or set [stt] input_device (`voice-agent devices` lists them); "
           "typing in the overlay works without one")
    try:
        device = resolve_input(cfg.stt.input_device or None)
        checks.append(ok("microphone", "the system default input" if device is None
                         else f"input device {device}", Area.OTHER))
    except NoInputDevice as error:
        checks.append(warn("microphone", str(error), fix))
    except Exception as error:  # PortAudio missing or broken: the audio check says more
        checks.append(warn("microphone", f"cannot list input devices ({error})", fix))
    try:
        model = resolve_stt_model(cfg.stt.model)
        detail = f"Whisper {model.name} at {model.path}"
        if model.notice:
            checks.append(warn("speech recognition", f"{detail}; {model.notice}",
                               "set [stt] model to \"base\" or \"tiny.en\" (built in)"))
        else:
            checks.append(ok("speech recognition", detail))
    except SttModelError as error:
        checks.append(warn("speech recognition", str(error),
                           "reinstall the model packages (scripts/setup), or set [stt] model"))
    return checks


# -- putting it together ---------------------------------------------------------------------------


def run_checks(cfg: Config, progress: Progress | None = None) -> list[Check]:
    return [*check_config(cfg), check_audio(cfg), *check_kokoro(cfg, progress),
            *check_llm(cfg), check_hotkeys(cfg), *check_speech_input(cfg), *check_desktop(),
            check_log()]


def verdict(checks: Sequence[Check]) -> tuple[int, str]:
    """The exit status and the closing line (the rule is in the module docstring)."""
    failed = {check.area for check in checks if check.status is Status.FAIL}
    warnings = sum(check.status is Status.WARN for check in checks)
    if Area.ANSWERS in failed:
        return 1, "voice-agent cannot answer: no LLM works (the FAIL lines say how to fix it)."
    limits = []
    if Area.SPEECH in failed:
        limits.append("as text only (no speech)")
    if Area.DESKTOP in failed:
        limits.append("in the terminal only (`voice-agent chat`; no tray)")
    if limits:
        return 0, f"voice-agent works, {' and '.join(limits)}: see the FAIL lines."
    if warnings:
        return 0, f"voice-agent works ({warnings} warning{'s' * (warnings != 1)})."
    return 0, "voice-agent is ready."


def run_doctor(cfg: Config, progress: Progress | None = None) -> int:
    """Print one line per check, then the verdict; 0 when the agent can work, 1 when it
    cannot answer at all (see the module docstring)."""
    logs.add_secret(cfg.llm.api_key)
    checks = []
    for check in run_checks(cfg, progress or StderrProgress()):
        checks.append(check)
        print(logs.redact(check.line()), flush=True)
    status, closing = verdict(checks)
    print(closing)
    return status


def cmd_doctor(args: argparse.Namespace) -> int:
    from agent import config as config_module

    cfg = config_module.load(Path(args.config) if args.config else None)
    return run_doctor(cfg)


def add_doctor_parser(sub: Any) -> argparse.ArgumentParser:
    """The `doctor` subcommand on the CLI's subparsers (it uses the global --config)."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "doctor", help="check the audio, the models, the LLM and the desktop; say what to fix")
    parser.set_defaults(func=cmd_doctor)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m agent.doctor [--config FILE]`: the same as `voice-agent doctor`."""
    parser = argparse.ArgumentParser(
        prog="voice-agent doctor", description="Check what works here and say what to fix.")
    parser.add_argument("--config", help="config file (default: the user config dir)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug output")
    args = parser.parse_args(argv)
    logs.setup_logging(args.verbose)
    return cmd_doctor(args)


if __name__ == "__main__":
    raise SystemExit(main())
