"""Kokoro's `doctor` probe: which model files would be used (assembling the packaged one if
this is the first use), which voices they bring, and whether the configured voice is one of
them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.checks import TEXT_ONLY, Area, Check, Progress, fail, ok, warn
from agent.tts import models
from agent.tts.npm_voices import HOW_TO_GET_THEM_SENTENCE
from agent.tts.voices import PACKAGED_ENGLISH_VOICE, VoiceLibrary, parse_blend

if TYPE_CHECKING:
    from agent.config import Config


def check_kokoro(cfg: Config, progress: Progress | None = None) -> list[Check]:
    """A "Kokoro" line (model and voices), then a "voice" line when the model is usable."""
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
