"""Recording from the microphone while the user talks, and only then.

The input stream is opened by `start()` (the talk key goes down) and closed by `stop()` (the
key goes up): nothing listens while idle, and the sound server's microphone indicator says
so. Opening takes a few milliseconds through PulseAudio (bench/listen.py measures it), so the
first word is not lost to the open; Whisper still gets a little silence put before the
recording (agent.listen.whisper), which it needs to hear a word that starts at once.

The PortAudio callback only copies each block, keeps its level for a meter, and (toggle
mode) hands it to a watcher thread that runs the VAD and says when the speaker has finished.

Faults: when the stream dies under us (the microphone unplugged, the sound server killed),
PortAudio ends it at once and calls its finished callback: the recording ends there with the
reason "microphone lost" and `Recorder.error` says what happened and what to do; `stop()`
still returns what was heard before. PortAudio reads the list of devices only when it
initialises, so a microphone (or a sound server) that appears later is invisible to it: when
no usable input is found, `start()` reads the list again (`refresh_portaudio`) and tries once
more.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.audio.devices import DeviceInfo, NoAudioDevice, list_devices
from agent.listen.vad import VAD_RATE, EndOfSpeech, SilenceStop

log = logging.getLogger(__name__)

RECORD_RATE = 16_000  # what Whisper takes; PulseAudio/PipeWire resample for us
BLOCK_S = 0.032  # one VAD window at 16 kHz; also the meter's refresh
LEVEL_FLOOR_DB = -100.0
MAX_RECORDING_S = 120.0

NO_INPUT_HELP = (
    "No microphone was found. Connect one (or a headset), check that PulseAudio/PipeWire is "
    "running (`pactl info`) and that the input is not muted, then run `voice-agent devices` "
    "to see the input devices; type instead of talking meanwhile.")

Samples = npt.NDArray[np.float32]
# The reason: "silence", "no speech", "time limit" or "microphone lost".
SilenceListener = Callable[[str], None]
LOST = "microphone lost"
LOST_HELP = (
    "The microphone stopped while listening: it was unplugged, or the sound server "
    "(PulseAudio/PipeWire) stopped. What was said after that is lost. Check the microphone "
    "and the sound server (`pactl info`, `voice-agent devices`), then talk again; no restart "
    "is needed.")

GONE_HELP = (
    "The microphone cannot be opened ({}): it is gone, or the sound server (PulseAudio/"
    "PipeWire) is not running (`pactl info`). Check it, run `voice-agent devices` to see the "
    "input devices, and talk again; no restart is needed. Type instead meanwhile.")

# Opening a stream and re-initialising PortAudio must not overlap (in this module).
_portaudio_lock = threading.Lock()


class NoInputDevice(RuntimeError):
    """No usable microphone (none, gone, or busy); the message says what to do."""


def list_input_devices() -> list[DeviceInfo]:
    """The devices that can record (for `voice-agent devices`); [] when there are none."""
    try:
        return [d for d in list_devices() if d.inputs > 0]
    except NoAudioDevice as error:  # PortAudio itself is missing
        raise NoInputDevice(str(error)) from error


def resolve_input(spec: str | int | None) -> int | None:
    """The PortAudio index for an input device given by index or (part of) its name; None
    means the system's default microphone."""
    inputs = list_input_devices()
    if not inputs:
        raise NoInputDevice(NO_INPUT_HELP)
    if spec is None or spec == "":
        return None
    choices = "choices: " + "; ".join(f"{d.index}: {d.name}" for d in inputs)
    if isinstance(spec, int) or str(spec).isdigit():
        if any(d.index == int(spec) for d in inputs):
            return int(spec)
        raise NoInputDevice(f"there is no input device with index {spec}; {choices}")
    wanted = str(spec).lower()
    matches = ([d for d in inputs if d.name.lower() == wanted]
               or [d for d in inputs if wanted in d.name.lower()])
    if len(matches) == 1:
        return matches[0].index
    if not matches:
        raise NoInputDevice(f"no input device matches {spec!r}; {choices}")
    raise NoInputDevice(f"{spec!r} matches several input devices; name one exactly or by "
                        f"index; {choices}")


def open_streams(sd: Any) -> int:
    """How many PortAudio streams this process has open through sounddevice now.

    A stream whose constructor failed (PortAudio refused to open it) is left half made, its
    `_ptr` still the `PaStream **` out-parameter, and stays alive as long as the exception's
    traceback does: that is no open stream (`closed` would say it is)."""
    stream_ptr = sd._ffi.typeof("PaStream *")
    return sum(1 for obj in gc.get_objects()
               if isinstance(obj, sd._StreamBase) and not obj.closed
               and sd._ffi.typeof(obj._ptr) is stream_ptr)


def refresh_portaudio() -> bool:
    """Make PortAudio read the list of devices again (a microphone plugged in, a sound server
    started since it initialised); True when it did.

    Pa_Terminate closes every open stream and frees it under its Python object, which then
    holds a dangling pointer. So this refuses (False) while any sounddevice stream of this
    process is open, such as the speech player's; the message the caller shows then stands
    until that stream is closed. About 30 ms; only for the path where no input was found.
    """
    try:
        import sounddevice as sd
    except OSError:  # PortAudio itself is missing: nothing to refresh
        return False
    with _portaudio_lock:
        busy = open_streams(sd)
        if busy:
            log.info("not re-reading the audio devices: %d stream(s) open", busy)
            return False
        sd._terminate()
        sd._initialize()
    log.info("re-read the audio device list")
    return True


def dbfs(block: Samples) -> float:
    """RMS level in dB relative to full scale, floored for silence."""
    if block.size == 0:
        return LEVEL_FLOOR_DB
    rms = float(np.sqrt(np.mean(np.square(block, dtype=np.float64))))
    return max(LEVEL_FLOOR_DB, 20.0 * np.log10(rms)) if rms > 0 else LEVEL_FLOOR_DB


def open_input_stream(device: str | int | None, rate: int, callback: Callable[..., None],
                      finished: Callable[[], None],
                      before_start: Callable[[int], None] | None = None) -> tuple[Any, int]:
    """Open and start a mono float32 input stream of BLOCK_S blocks on the device (by name,
    index, or None for the default); returns it and the rate it records at. If the device
    cannot be opened, the device list is read again (a microphone or sound server may have
    appeared since PortAudio started) and it is tried once more: the second error is the one
    raised, as a NoInputDevice that says what to do. A device that refuses `rate` records at
    its own. `before_start(rate)` runs once the rate is known, before the first block."""
    try:
        return _open_at(resolve_input(device), rate, callback, finished, before_start)
    except NoInputDevice as error:
        if not refresh_portaudio():
            raise
        log.info("retrying the microphone with a fresh device list (%s)", error)
    return _open_at(resolve_input(device), rate, callback, finished, before_start)


def _open_at(device: int | None, rate: int, callback: Callable[..., None],
             finished: Callable[[], None],
             before_start: Callable[[int], None] | None) -> tuple[Any, int]:
    try:
        import sounddevice as sd
    except OSError as error:
        raise NoInputDevice(f"PortAudio is not installed ({error}). On Debian/Ubuntu: "
                            "sudo apt-get install libportaudio2") from error

    def start(at: int) -> tuple[Any, int]:
        if before_start is not None:
            before_start(at)
        with _portaudio_lock:
            stream = sd.InputStream(
                samplerate=at, channels=1, dtype="float32", blocksize=round(BLOCK_S * at),
                latency="low", device=device, callback=callback, finished_callback=finished)
        try:
            stream.start()
        except Exception:
            stream.close()
            raise
        return stream, at

    try:
        return start(rate)
    except sd.PortAudioError as error:
        # Some devices (WASAPI shared mode, some USB microphones) take only their own rate:
        # record at that and resample later.
        try:
            native = int(sd.query_devices(device, "input")["default_samplerate"])
        except (sd.PortAudioError, ValueError):  # no default input, or a stale index
            native = rate
        if "sample rate" not in str(error).lower() or native == rate:
            raise open_error(error) from error
        log.info("the microphone does not take %d Hz; recording at %d Hz", rate, native)
        try:
            return start(native)
        except sd.PortAudioError as retry_error:
            raise open_error(retry_error) from retry_error


def open_error(error: Exception) -> NoInputDevice:
    text = str(error)
    if any(word in text.lower() for word in ("unavailable", "busy", "-9985")):
        return NoInputDevice(
            f"the microphone is busy ({text}): another program is using it. Close that "
            "program or choose another input device (`voice-agent devices`).")
    if "-9993" in text:  # what PortAudio's ALSA host API says when the device won't open
        return NoInputDevice(GONE_HELP.format(text))
    return NoInputDevice(f"cannot open the microphone ({text}). {NO_INPUT_HELP}")


class Recorder:
    """One recording at a time: `start()`, then `stop()` returns float32 mono samples at
    `sample_rate` (16 kHz unless the device refuses it).

    `silence_stop` (toggle mode) watches for the end of speech on a thread of its own and
    then sets `ended` and calls `on_end(reason)` (from that thread: post to your own loop
    rather than working there; calling `stop()` from it is allowed).

    If the stream dies (the microphone unplugged, the sound server gone), the recording ends
    the same way, in either mode, with the reason LOST, and `error` says what happened and
    what to do; `stop()` then returns what was heard before, and the next `start()` opens
    the microphone afresh.
    """

    def __init__(self, device: str | int | None = None, sample_rate: int = RECORD_RATE,
                 silence_stop: SilenceStop | None = None, on_end: SilenceListener | None = None,
                 max_s: float = MAX_RECORDING_S) -> None:
        self.device = device
        self.requested_rate = sample_rate
        self.sample_rate = sample_rate
        self.silence_stop = silence_stop
        self.on_end = on_end
        self.max_s = max_s
        self.ended = threading.Event()
        self.end_reason = ""
        self.error = ""  # why the last recording ended early (LOST_HELP); "" when it did not
        self.overflows = 0
        # Measurements of the last start(): how long opening took, and when the first block
        # arrived (both from the start() call).
        self.open_s = 0.0
        self.first_block_s: float | None = None
        self._stream: Any = None
        # The running stream's token, from its start until stop(): its finished callback
        # while it is still this one is a stream that died under us (PortAudio's thread).
        self._live: object | None = None
        self._blocks: list[Samples] = []
        self._frames = 0
        self._max_frames = 0
        self._level = LEVEL_FLOOR_DB
        self._started_at = 0.0
        self._watch_queue: queue.SimpleQueue[Samples | None] = queue.SimpleQueue()
        self._watcher: threading.Thread | None = None
        self._vad: Any = None  # the toggle mode's SileroVad, made on first use
        self._state_lock = threading.Lock()

    @property
    def recording(self) -> bool:
        return self._stream is not None

    @property
    def level(self) -> float:
        """dBFS of the last block (about 32 ms); LEVEL_FLOOR_DB when silent or idle."""
        return self._level if self._stream is not None else LEVEL_FLOOR_DB

    @property
    def duration_s(self) -> float:
        return self._frames / self.sample_rate

    # -- start and stop ---------------------------------------------------------------------

    def start(self) -> None:
        """Open the microphone and record; raises NoInputDevice with what to do."""
        with self._state_lock:
            if self._stream is not None:
                if self._live is not None:
                    return  # already recording
                stream, self._stream = self._stream, None  # died, and stop() was not called
                self._close_stream(stream, lost=True)
                self._stop_watcher()
            self._started_at = time.monotonic()
            self._blocks, self._frames, self.overflows = [], 0, 0
            self.first_block_s, self._level = None, LEVEL_FLOOR_DB
            self.ended.clear()
            self.end_reason = self.error = ""
            if self.silence_stop is not None:  # before the stream: it sees the first block
                self._watch_queue = queue.SimpleQueue()
                self._watcher = threading.Thread(
                    target=self._watch, args=(self.silence_stop, self._watch_queue),
                    name="listen-vad", daemon=True)
                self._watcher.start()
            try:
                self._stream = self._open_device()
            except BaseException:
                self._stop_watcher()
                raise
            self.open_s = time.monotonic() - self._started_at

    def _open_device(self) -> Any:
        token = object()
        self._live = token
        try:
            stream, self.sample_rate = open_input_stream(
                self.device, self.requested_rate, self._callback,
                lambda: self._on_finished(token),
                before_start=lambda rate: setattr(self, "_max_frames", round(self.max_s * rate)))
        except BaseException:
            self._live = None
            raise
        return stream

    def stop(self) -> Samples:
        """Close the microphone; the recording since start() (empty if none)."""
        with self._state_lock:
            stream, self._stream = self._stream, None
            lost, self._live = self._live is None, None  # what finishes now is our doing
            if stream is not None:
                self._close_stream(stream, lost)
            self._stop_watcher()
            blocks, self._blocks = self._blocks, []
        self._level = LEVEL_FLOOR_DB
        return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)

    @staticmethod
    def _close_stream(stream: Any, lost: bool) -> None:
        """Stop and close; never raises (a dead stream may refuse, and the caller is ending
        the recording either way)."""
        import sounddevice as sd

        try:
            if lost:
                stream.abort()  # nothing to drain from a dead device
            else:
                stream.stop()
        except sd.PortAudioError as error:
            log.warning("stopping the microphone: %s", error)
        finally:
            with contextlib.suppress(sd.PortAudioError):
                stream.close()

    def cancel(self) -> None:
        """Stop and forget what was recorded."""
        self.stop()

    def _stop_watcher(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is None:
            return
        self._watch_queue.put(None)
        if watcher is not threading.current_thread():  # on_end may call stop()
            watcher.join(timeout=2)

    # -- the PortAudio callback (its own thread: copy and return) -----------------------------

    def _callback(self, indata: Any, frames: int, _timeinfo: Any, status: Any) -> None:
        if status.input_overflow:
            self.overflows += 1
        if self.first_block_s is None:
            self.first_block_s = time.monotonic() - self._started_at
        block: Samples = indata[:, 0].copy()
        self._level = dbfs(block)
        if self._frames + frames > self._max_frames:
            if not self.ended.is_set():
                self._end("time limit")
            return
        self._blocks.append(block)
        self._frames += frames
        if self._watcher is not None:
            self._watch_queue.put_nowait(block)

    def _on_finished(self, token: object) -> None:
        """PortAudio's thread: a stream has ended. Unless stop() ended it, it died."""
        if token is not self._live:
            return
        self._live = None
        self.error = LOST_HELP
        self._level = LEVEL_FLOOR_DB
        log.warning("the microphone stream ended by itself (device or sound server gone)")
        if not self.ended.is_set():
            self._end(LOST)

    # -- toggle mode --------------------------------------------------------------------------

    def _watch(self, settings: SilenceStop, blocks: queue.SimpleQueue[Samples | None]) -> None:
        from agent.listen.vad import SileroVad
        from agent.listen.whisper import resample

        if self._vad is None:  # one model per recorder (about 10 ms to create)
            self._vad = SileroVad()
        vad, end_of_speech = self._vad, EndOfSpeech(settings)
        vad.reset()
        while (block := blocks.get()) is not None:
            if self.ended.is_set():
                continue  # drain until stop()
            if self.sample_rate != VAD_RATE:
                block = resample(block, self.sample_rate, VAD_RATE)
            reason = end_of_speech.update(vad.feed(block))
            if reason:
                self._end(reason)

    def _end(self, reason: str) -> None:
        self.end_reason = reason
        self.ended.set()
        if self.on_end is None:
            return
        if threading.current_thread() is self._watcher:
            self._notify(reason)
        else:  # the audio callback: never call out from it (once per recording)
            threading.Thread(target=self._notify, args=(reason,), name="listen-end",
                             daemon=True).start()

    def _notify(self, reason: str) -> None:
        try:
            if self.on_end is not None:
                self.on_end(reason)
        except Exception:
            log.exception("the end-of-speech listener failed")
