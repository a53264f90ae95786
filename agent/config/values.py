"""What one setting's value must look like, where a range or a list of choices cannot say it:
voices, language codes, device names, server URLs, API keys and hotkeys. `schema` names the
check beside each field; each check returns the value or raises a `SettingError` that ends
with the expected form. Only the spelling is checked: whether a device or server exists is
known when it is used."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from agent.hotkey_syntax import parse_hotkey
from agent.redaction import API_KEY_ENV


class SettingError(ValueError):
    """A value a setting cannot take, or an unknown setting: the message names the setting,
    says what is wrong and gives the expected form (never a secret's value)."""


@dataclass(frozen=True)
class CheckContext:
    """What a check may need beyond the value: the rest of the same file."""

    # tts.voices_path names the voice files, so any voice name may be in them.
    custom_voices: bool = False


# (dotted name, value, context) -> the value as the setting takes it, or a SettingError.
ValueCheck = Callable[[str, str, CheckContext], str]

VOICE_FORM = ('a voice that `voice-agent voices` lists, e.g. "af_bella", or a blend with '
              'weights, e.g. "af_bella:0.7,af_sky:0.3"')
URL_FORM = ('http(s)://host[:port][/path], e.g. "http://127.0.0.1:11434/v1", or leave it '
            'empty ("") for the embedded model')
DEVICE_FORM = ('a device name (any part of it) or index as `voice-agent devices` lists them, '
               'or "" for the system default')
_LANGUAGE = re.compile(r"auto|[a-z]{2,3}(-[a-z0-9]{1,8})*", re.IGNORECASE)


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate `word` is most likely a typo of, if any is close enough."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def valid_voice(dotted: str, spec: str, context: CheckContext) -> str:
    """A Kokoro voice or a weighted blend of voices; any name when the voices are the
    user's own files."""
    # The TTS package is imported only when a voice is checked (it pulls numpy).
    from agent.tts.base import SynthesisError
    from agent.tts.voices import OFFICIAL_VOICES, parse_blend

    try:
        parts = parse_blend(spec)
    except SynthesisError as error:
        # parse_blend's own hint is dropped: the message ends with the expected form.
        reason = str(error).removeprefix(f"voice {spec!r}: ").split(" (")[0]
        raise SettingError(f"{dotted} = {spec!r} is not a valid voice ({reason}); "
                           f"write {VOICE_FORM}") from None
    unknown = [part.voice for part in parts if part.voice not in OFFICIAL_VOICES]
    if unknown and not context.custom_voices:
        guess = closest(unknown[0], OFFICIAL_VOICES)
        hint = f" (did you mean {guess}?)" if guess else ""
        what = "" if len(parts) == 1 else f": {unknown[0]!r}"
        raise SettingError(f"{dotted} = {spec!r}{what} is not a Kokoro voice{hint}; "
                           f"write {VOICE_FORM}")
    return spec


def valid_language(dotted: str, value: str, _context: CheckContext) -> str:
    """"auto" or an espeak-ng language code."""
    if not _LANGUAGE.fullmatch(value):
        raise SettingError(f'{dotted} = {value!r} is not a language; write "auto" or an '
                           'espeak-ng language code, e.g. "en-us", "en-gb" or "fr-fr"')
    return value


def valid_device(dotted: str, value: str, _context: CheckContext) -> str:
    """A device's name or index, or "": only the spelling (whether the device exists is
    known when the stream opens)."""
    if value == "":
        return value
    if not value.strip():
        why = "is blank"
    elif any(ord(c) < 32 or ord(c) == 127 for c in value):
        why = "has control characters in it"
    elif re.fullmatch(r"\s*-\d+\s*", value):
        why = "is a negative index"
    else:
        return value
    raise SettingError(f"{dotted} = {value!r} {why}; write {DEVICE_FORM}")


def valid_url(dotted: str, value: str, _context: CheckContext) -> str:
    """An http(s) server URL without credentials, or "" (the embedded model)."""
    url = value.strip()
    if not url:
        return value
    not_a_url = SettingError(f"{dotted} = {value!r} is not an http(s) URL; write {URL_FORM}")
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed [IPv6 address
        raise not_a_url from None
    if parts.username is not None or parts.password is not None:  # not echoed: a secret
        raise SettingError(f"{dotted} has a user name or password in it (not shown): keep "
                           f"the key in {API_KEY_ENV} or llm.api_key; write {URL_FORM}")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0 or (port is None and ":" in parts.netloc.rpartition("]")[2]):
        raise SettingError(f"{dotted} = {value!r} has a port that is not a number from 1 to "
                           f"65535; write {URL_FORM}")
    if (parts.scheme.lower() not in ("http", "https") or not parts.hostname or parts.query
            or parts.fragment or any(c.isspace() for c in url)):
        raise not_a_url
    return value


def valid_api_key(dotted: str, value: str, _context: CheckContext) -> str:
    """One word: a key with a space or line break in it is a pasting mistake."""
    if any(c.isspace() for c in value.strip()):
        raise SettingError(f"{dotted} has spaces or line breaks in it (the value is not shown); "
                           f"write the key alone in double quotes, or better set {API_KEY_ENV}")
    return value


def valid_wake_word(dotted: str, value: str, _context: CheckContext) -> str:
    """"" (off) or the name of a wake-word model this machine has."""
    if value == "":
        return value
    from agent.listen.wakeword import available_wake_words

    names = [info.name for info in available_wake_words()]
    if value in names:
        return value
    guess = closest(value.strip().lower(), names)
    hint = f" (did you mean {guess!r}?)" if guess else ""
    raise SettingError(f"{dotted} = {value!r} is not a wake word here{hint}; choices: "
                       f"{', '.join(names)}, or \"\" for off")


def valid_hotkey(dotted: str, value: str, _context: CheckContext) -> str:
    """One chord in the hotkey syntax (agent.hotkey_syntax: no display needed)."""
    try:
        parse_hotkey(value, dotted)
    except ValueError as error:
        raise SettingError(str(error).rstrip(".")) from None
    return value


def valid_hotkey_or_off(dotted: str, value: str, context: CheckContext) -> str:
    """A chord, or "" for none (a key the user does not want taken)."""
    return value if not value.strip() else valid_hotkey(dotted, value, context)
