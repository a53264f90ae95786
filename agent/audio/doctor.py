"""The audio output's `doctor` probe: list the devices, then open and close an output stream
as the agent would."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from agent.audio.devices import NoAudioDevice, list_devices, resolve_output
from agent.audio.player import AudioPlayer
from agent.checks import TEXT_ONLY, Area, Check, Progress, fail, ok

if TYPE_CHECKING:
    from agent.config import Config

NO_OUTPUT_FIX = ("connect a sound card or headset and make sure PulseAudio or PipeWire runs "
                 "(`pactl info` answers), then `voice-agent devices`; meanwhile "
                 "`voice-agent say --out speech.wav TEXT` writes speech to a file")


def check_audio(cfg: Config, progress: Progress | None = None) -> list[Check]:
    """One line: the output the agent would use, opened and closed, or why it cannot be."""
    name = "audio output"
    try:
        devices = list_devices()
    except NoAudioDevice as error:  # PortAudio itself is missing
        return [fail(name, f"{error} ({TEXT_ONLY})", "sudo apt-get install libportaudio2",
                     Area.SPEECH)]
    outputs = [d for d in devices if d.outputs > 0]
    if not outputs:
        return [fail(name, f"no audio output device (PortAudio sees {len(devices)} devices, "
                     f"none that plays); {TEXT_ONLY}", NO_OUTPUT_FIX, Area.SPEECH)]
    try:
        chosen = _device_name(cfg.audio.device, outputs)
    except NoAudioDevice as error:  # [audio] device names none of them
        return [fail(name, f"{error} ({TEXT_ONLY})", "choose a device from `voice-agent "
                     "devices` in [audio] device, or leave it empty for the system default",
                     Area.SPEECH)]
    player = AudioPlayer(device=cfg.audio.device or None, blocksize=cfg.audio.blocksize,
                         fade_ms=cfg.audio.fade_ms, idle_stop_s=None)
    try:
        player.start()
        rate, latency_ms = player.stream_rate, player.latency * 1000
    except Exception as error:  # NoAudioDevice, or whatever PortAudio raises: never crash
        detail = str(error) if isinstance(error, NoAudioDevice) else (
            f"cannot open an output stream ({type(error).__name__}: {error})")
        return [fail(name, f"{detail} ({TEXT_ONLY})", NO_OUTPUT_FIX, Area.SPEECH)]
    finally:
        player.close()
    return [ok(name, f"{chosen}: opened and closed a stream ({rate} Hz, {latency_ms:.0f} ms "
               f"latency); {len(outputs)} output device(s)", Area.SPEECH)]


def _device_name(spec: str, outputs: Sequence[Any]) -> str:
    """The output the agent would use, by name; raises NoAudioDevice if `spec` names none."""
    index = resolve_output(spec or None)
    if index is None:
        default = [d for d in outputs if d.is_default_output]
        return f"the default output ({default[0].name})" if default else "the default output"
    return next((d.name for d in outputs if d.index == index), f"device {index}")
