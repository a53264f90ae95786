"""Output devices: listing them and choosing one by name or index, with errors that say what
to do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class NoAudioDevice(RuntimeError):
    """No usable output device; the message says how to fix it or work without one."""


NO_DEVICE_HELP = (
    "No audio output device was found. Check that a sound card or headset is connected and "
    "that PulseAudio/PipeWire is running (`pactl info`), then run `voice-agent devices`. "
    "Without a device, `voice-agent say --out speech.wav TEXT` still writes the speech to a file."
)


@dataclass(frozen=True)
class DeviceInfo:
    index: int
    name: str
    hostapi: str
    inputs: int
    outputs: int
    default_samplerate: float
    is_default_output: bool
    is_default_input: bool


def portaudio() -> Any:
    """The sounddevice module; NoAudioDevice with what to install when PortAudio is missing."""
    try:
        import sounddevice
    except OSError as error:  # the PortAudio library itself is missing
        raise NoAudioDevice(
            f"PortAudio is not installed ({error}). On Debian/Ubuntu: "
            "sudo apt-get install libportaudio2") from error
    return sounddevice


def list_devices() -> list[DeviceInfo]:
    sd = portaudio()
    devices = sd.query_devices()
    apis = sd.query_hostapis()
    default_in, default_out = sd.default.device
    return [DeviceInfo(
        index=d["index"], name=d["name"], hostapi=apis[d["hostapi"]]["name"],
        inputs=d["max_input_channels"], outputs=d["max_output_channels"],
        default_samplerate=d["default_samplerate"],
        is_default_output=d["index"] == default_out, is_default_input=d["index"] == default_in,
    ) for d in devices]


def resolve_output(spec: str | int | None) -> int | None:
    """The PortAudio index for a device given by index or by (part of) its name; None means
    the system default. Raises NoAudioDevice when nothing can play."""
    outputs = [d for d in list_devices() if d.outputs > 0]
    if not outputs:
        raise NoAudioDevice(NO_DEVICE_HELP)
    if spec is None or spec == "":
        return None
    if isinstance(spec, int) or str(spec).isdigit():
        index = int(spec)
        if any(d.index == index for d in outputs):
            return index
        raise NoAudioDevice(f"there is no output device with index {index}; "
                            + _choices(outputs))
    wanted = str(spec).lower()
    exact = [d for d in outputs if d.name.lower() == wanted]
    matches = exact or [d for d in outputs if wanted in d.name.lower()]
    if len(matches) == 1:
        return matches[0].index
    if not matches:
        raise NoAudioDevice(f"no output device matches {spec!r}; " + _choices(outputs))
    raise NoAudioDevice(f"{spec!r} matches several output devices; name one exactly or by "
                        "index; " + _choices(matches))


def _choices(devices: list[DeviceInfo]) -> str:
    return "choices: " + "; ".join(f"{d.index}: {d.name}" for d in devices)
