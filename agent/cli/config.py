"""`voice-agent config`: see, check and change the settings file.

    voice-agent config path              the settings file's path
    voice-agent config show              the settings in effect, marking the file's keys
    voice-agent config edit              open the file in $VISUAL / $EDITOR, then check it
    voice-agent config set KEY VALUE     change one setting (checked first; comments kept)
    voice-agent config validate          every problem in the file; exit 1 if there is any

Each command takes the parsed arguments (`.config`: the --config path or None) and returns
the exit status: 0 done, 1 the file has problems (validate, edit), 2 refused or failed.
"""

from __future__ import annotations

import argparse
import getpass
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent import paths
from agent.config import (
    API_KEY_ENV,
    DEFAULTS,
    SECRET_SETTINGS,
    SPEAKER_VOICES,
    Config,
    ConfigError,
    SettingError,
    api_key_source,
    check_setting,
    load,
    resolve_setting,
    same_chord,
    save_setting,
    toml_key,
    toml_value,
    write_starter,
)

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_REFUSED = 2

_TRUE_WORDS = ("true", "yes", "on", "1")
_FALSE_WORDS = ("false", "no", "off", "0")


def add_config_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `config` and its actions to the main parser's subcommands."""
    parser = sub.add_parser(
        "config", help="see, check or change the settings file",
        description="See, check or change the settings file (--config, before `config`, "
                    "names another one).")
    actions = parser.add_subparsers(dest="config_action", metavar="ACTION")
    actions.add_parser("path", help="print the settings file's path")
    actions.add_parser("show", help="the settings in effect: the defaults and the file's keys")
    actions.add_parser("edit", help="open the file in $VISUAL or $EDITOR, then check it")
    setter = actions.add_parser("set", help="change one setting, e.g. set tts.voice af_bella")
    setter.add_argument("key", metavar="KEY",
                        help="section.key, e.g. tts.voice, audio.blocksize, hotkeys.talk, "
                             "dialogue.voices.Alice")
    setter.add_argument("value", metavar="VALUE",
                        help="the new value (for llm.api_key, - reads it from standard input)")
    actions.add_parser("validate", help="report every problem; exit 1 if there is any")
    parser.set_defaults(func=cmd_config)


def cmd_config(args: argparse.Namespace) -> int:
    commands = {"path": cmd_path, "show": cmd_show, "edit": cmd_edit, "set": cmd_set,
                "validate": cmd_validate}
    action = getattr(args, "config_action", None)
    if action not in commands:
        print("voice-agent config: choose one of path, show, edit, set KEY VALUE, validate",
              file=sys.stderr)
        return EXIT_REFUSED
    return commands[action](args)


def settings_path(args: argparse.Namespace) -> Path:
    configured = getattr(args, "config", None)
    return Path(configured).expanduser() if configured else paths.config_file()


def cmd_path(args: argparse.Namespace) -> int:
    print(settings_path(args))
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    cfg = load(settings_path(args))
    print(render_settings(cfg), end="")
    for issue in cfg.issues:
        print(issue, file=sys.stderr)
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    return _report(settings_path(args))


def cmd_edit(args: argparse.Namespace) -> int:
    path = settings_path(args)
    if not path.exists():
        write_starter(path)
        print(f"created {path} from the starter settings")
    editor = find_editor(path)
    if editor is None:
        print(f"no editor found: set $EDITOR (e.g. export EDITOR=nano), or open {path} in any "
              "text editor", file=sys.stderr)
        return EXIT_REFUSED
    try:
        if editor.waits:
            finished = subprocess.run(editor.argv, check=False)
        else:
            subprocess.Popen(editor.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    except OSError as error:
        print(f"cannot start the editor {editor.argv[0]!r}: {error.strerror or error}",
              file=sys.stderr)
        return EXIT_REFUSED
    if not editor.waits:  # the desktop's opener returns at once: nothing to check yet
        print(f"opened {path} in the desktop's editor; once it is saved, check it with "
              "`voice-agent config validate`")
        return EXIT_OK
    if finished.returncode != 0:
        print(f"the editor exited with status {finished.returncode}", file=sys.stderr)
    return _report(path)


def cmd_set(args: argparse.Namespace) -> int:
    path = settings_path(args)
    try:
        section, key = resolve_setting(args.key)
        current = load(path)
        value = check_setting(section, key, parse_value(section, key, args.value),
                              custom_voices=bool(current.tts.voices_path))
        _check_chord_is_free(section, key, value, current)
    except SettingError as error:
        print(f"voice-agent config set: refused, nothing was written: {error}", file=sys.stderr)
        return EXIT_REFUSED
    try:
        save_setting(path, section, key, value)
    except ConfigError as error:
        print(f"voice-agent config set: {error}", file=sys.stderr)
        return EXIT_REFUSED
    except OSError as error:
        print(f"voice-agent config set: cannot write {path}: {error.strerror or error}",
              file=sys.stderr)
        return EXIT_REFUSED
    dotted = f"{section}.{key}"
    shown = ('"(set)"' if value else '""') if dotted in SECRET_SETTINGS else toml_value(value)
    print(f"{path}: {dotted} = {shown}")
    return EXIT_OK


def parse_value(section: str, key: str, text: str) -> bool | int | float | str:
    """The command line's text in the setting's type; SettingError if it is not one."""
    dotted = f"{section}.{key}"
    if section == SPEAKER_VOICES:
        return text
    if dotted in SECRET_SETTINGS and text == "-":
        return _read_secret(dotted)
    default = DEFAULTS[section][key]
    if isinstance(default, bool):
        word = text.strip().lower()
        if word in _TRUE_WORDS or word in _FALSE_WORDS:
            return word in _TRUE_WORDS
        raise SettingError(f"{dotted} = {text!r} is not true or false; write true or false "
                           "(or yes/no, on/off, 1/0)")
    if isinstance(default, int | float):
        kind = int if isinstance(default, int) else float
        try:
            return kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise SettingError(f"{dotted} = {text!r} is not {what}; write e.g. "
                               f"voice-agent config set {dotted} {default}") from None
    return text


def _read_secret(dotted: str) -> str:
    if sys.stdin.isatty():
        return getpass.getpass(f"{dotted}: ").strip()
    return sys.stdin.readline().strip()


def _check_chord_is_free(section: str, key: str, value: Any, current: Config) -> None:
    if section != "hotkeys" or key not in ("talk", "interrupt"):
        return
    other = "interrupt" if key == "talk" else "talk"
    taken = getattr(current.hotkeys, other)
    if same_chord(value, taken):
        raise SettingError(f"hotkeys.{key} = {value!r} is the same chord as hotkeys.{other} "
                           f"({taken!r}); give each its own")


def _report(path: Path) -> int:
    """Print every problem in the file: exit 1 if there is any, else 0 and "ok: PATH"."""
    cfg = load(path)
    for issue in cfg.issues:
        print(issue)
    if cfg.issues:
        count = len(cfg.issues)
        print(f"{count} problem{'s' if count > 1 else ''} in {path}; each bad key uses its "
              "default until it is fixed")
        return EXIT_PROBLEMS
    print(f"ok: {path}" + ("" if path.exists() else " (no file yet: every setting is its "
                                                   "default)"))
    return EXIT_OK


@dataclass(frozen=True)
class EditorCommand:
    argv: list[str]
    waits: bool  # returns when the user is done (a terminal editor, notepad)


def find_editor(path: Path) -> EditorCommand | None:
    """$VISUAL, $EDITOR, else the desktop's program for text files."""
    for variable in ("VISUAL", "EDITOR"):
        spec = os.environ.get(variable, "").strip()
        if spec:
            return EditorCommand([*shlex.split(spec, posix=os.name != "nt"), str(path)], True)
    if sys.platform == "win32":
        return EditorCommand(["notepad", str(path)], True)
    if sys.platform == "darwin":
        return EditorCommand(["open", "-t", str(path)], False)
    if shutil.which("xdg-open"):
        return EditorCommand(["xdg-open", str(path)], False)
    return None


# --- show -----------------------------------------------------------------------------------


def render_settings(cfg: Config) -> str:
    """The settings in effect as TOML; keys from the file are marked, the API key is only
    said to be set (and where from)."""
    path = cfg.path or paths.config_file()
    rejected = {issue.key for issue in cfg.issues}
    lines = [f"# The settings in effect: the defaults, and the keys set in {path}",
             "# (marked \"from the file\")."]
    if not path.exists():
        lines.append("# That file does not exist yet: `voice-agent config edit` creates it.")
    elif any(not issue.key for issue in cfg.issues):
        lines.append("# The file cannot be read as a whole, so every setting is its default.")
    for section, keys in DEFAULTS.items():
        if section == "dialogue":
            continue
        lines += ["", f"[{section}]"]
        for key in keys:
            dotted = f"{section}.{key}"
            value = getattr(getattr(cfg, section), key)
            shown = _secret_shown(cfg) if dotted in SECRET_SETTINGS else toml_value(value)
            lines.append(f"{toml_key(key)} = {shown}{_mark(dotted, cfg, rejected)}")
    lines += ["", f"[{SPEAKER_VOICES}]"]
    for speaker, voice in cfg.dialogue.voices.items():
        lines.append(f"{toml_key(speaker)} = {toml_value(voice)}  # from the file")
    if not cfg.dialogue.voices:
        lines.append("# none: every speaker has the default voice")
    return "\n".join(lines) + "\n"


def _mark(dotted: str, cfg: Config, rejected: set[str]) -> str:
    if dotted in cfg.from_file:
        return "  # from the file"
    if dotted in rejected:
        return "  # the file's value is invalid (voice-agent config validate); the default"
    return ""


def _secret_shown(cfg: Config) -> str:
    source = api_key_source(cfg)
    if source == "file":
        return '"(set)"'
    if source == API_KEY_ENV:
        return f'"(from {API_KEY_ENV})"'
    return '"(not set)"'
