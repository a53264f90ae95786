"""One long-lived PortAudio output stream, fed from a queue of chunks, cut at the sample.

The callback runs on PortAudio's thread. It only copies samples from ready arrays into the
device buffer: no locks, no I/O, no per-block allocation beyond numpy views. A cut is a
counter the callback compares at the next block (within one block period): it fades what is
playing over a few milliseconds, to avoid a click, then plays zeros. Events leave the callback
through a SimpleQueue and reach listeners on a dispatcher thread, so a slow listener can never
stall the audio.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import threading
import time
from collections import deque
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.audio.devices import NO_DEVICE_HELP, NoAudioDevice, portaudio, resolve_output
from agent.audio.events import AudioChunk, PlaybackEvent, PlaybackKind, PlaybackListener
from agent.audio.tap import PlaybackTap

log = logging.getLogger(__name__)


def resample(samples: npt.NDArray[np.float32], source: int, target: int,
             ) -> npt.NDArray[np.float32]:
    """Linear interpolation: a fallback for devices that refuse 24 kHz, good enough for
    speech, and done when a chunk is queued, never in the callback."""
    count = round(samples.size * target / source)
    positions = np.arange(count, dtype=np.float64) * (source / target)
    resampled: npt.NDArray[np.float32] = np.interp(
        positions, np.arange(samples.size), samples).astype(np.float32)
    return resampled


class AudioPlayer:
    """The sounddevice sink. `enqueue` from any thread; `cut` from any thread."""

    def __init__(self, device: str | int | None = None, blocksize: int = 256,
                 fade_ms: float = 3.0, sample_rate: int = 24_000,
                 latency: str | float = "low", idle_stop_s: float | None = 5.0) -> None:
        self.sample_rate = sample_rate
        self.stream_rate = sample_rate  # the device's rate, if it refuses ours
        self.blocksize = blocksize
        self.fade_samples = max(1, round(fade_ms * sample_rate / 1000))
        # Gain for fade sample k is 1 - (k+1)/N: the last one is exactly zero.
        self._ramp = (1.0 - (np.arange(self.fade_samples, dtype=np.float32) + 1)
                      / self.fade_samples).astype(np.float32)
        self._device_spec = device
        self._latency = latency
        self._listeners: list[PlaybackListener] = []
        self._queue: deque[AudioChunk] = deque()
        self._events: queue.SimpleQueue[PlaybackEvent | None] = queue.SimpleQueue()
        # Written by cut() on the caller's thread, read by the callback.
        self._cut_requests = 0
        self._min_turn = 0
        # Written by hold()/release()/cut() (a new frozenset each time, under the lock), read
        # by the callback, never written there: while any reason holds, it fades out and plays
        # zeros, keeping its place (talk-over: the user may be speaking; a reading paused).
        self._holds: frozenset[str] = frozenset()
        self._holds_lock = threading.Lock()
        # The hold at a chunk's end that hold_after() asks for: set by the callback, ended by
        # release("boundary") or a cut.
        self._boundary_hold = False
        # hold("boundary") once this chunk has played (a reader); None: no such chunk. Not -1:
        # that is a cue's sequence (the interrupt blip, the wake chime).
        self._hold_after_seq: int | None = None
        self._held = False  # owned by the callback
        self._hold_fade_left = 0  # owned by the callback
        # Owned by the callback.
        self._current: AudioChunk | None = None
        self._pos = 0
        self._fade_left = 0
        self._cut_seen = 0
        self._busy = False
        self.underflows = 0
        self.failed = False
        self.frames_written = 0  # since start: the stream position of the next block
        self.last_cut: tuple[float, float, int] | None = None  # (wall, dac time, frame)
        self.last_hold: tuple[float, float, int] | None = None  # the same, for hold()
        self._stream: Any = None
        self._dispatcher: threading.Thread | None = None
        # A running stream costs a callback every block (and keeps the sound server awake)
        # even when it plays zeros: after this long with nothing to play it is stopped, and
        # the next chunk starts it again (a few milliseconds).
        self.idle_stop_s = idle_stop_s
        self._stream_lock = threading.Lock()
        self._running = False
        self._stopping_on_purpose = False
        self._idle_since: float | None = None  # owned by the dispatcher thread
        # What the device is given, for the echo canceller (None: nobody listens).
        self.tap: PlaybackTap | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Open and start the stream now, so it is running (warm) before the first words."""
        if self._stream is not None:
            return
        sd = portaudio()  # NoAudioDevice, saying what to install, when PortAudio is missing
        device = resolve_output(self._device_spec)
        try:
            self._stream = self._open(sd, device, self.sample_rate)
        except sd.PortAudioError as error:
            # Some devices (WASAPI shared mode, some USB cards) take only their own rate:
            # play at that rate and resample each chunk as it is queued.
            native = int(sd.query_devices(device, "output")["default_samplerate"])
            if "sample rate" not in str(error).lower() or native == self.sample_rate:
                raise NoAudioDevice(
                    f"cannot open the audio output ({error}). {NO_DEVICE_HELP}") from error
            log.info("the output device does not take %d Hz; playing at %d Hz",
                     self.sample_rate, native)
            try:
                self._stream = self._open(sd, device, native)
            except sd.PortAudioError as retry_error:
                raise NoAudioDevice(f"cannot open the audio output ({retry_error}). "
                                    f"{NO_DEVICE_HELP}") from retry_error
        self._running = True
        self._idle_since = time.monotonic()
        self._dispatcher = threading.Thread(target=self._dispatch, name="audio-events",
                                            daemon=True)
        self._dispatcher.start()

    def _open(self, sd: Any, device: int | None, rate: int) -> Any:
        stream = sd.OutputStream(
            samplerate=rate, channels=1, dtype="float32", blocksize=self.blocksize,
            latency=self._latency, device=device, callback=self._callback,
            finished_callback=self._on_finished)
        self.stream_rate = rate
        stream.start()
        return stream

    def close(self) -> None:
        """Stop the stream and the dispatcher thread. What is in the device buffer (the end
        of a fade, the last words) plays out first; what is still queued is dropped."""
        stream, self._stream = self._stream, None
        if stream is not None:
            self._queue.clear()
            if self.failed:
                stream.abort()  # a dead device may never drain
            else:
                stream.stop()
            stream.close()
        if self._dispatcher is not None:
            self._events.put(None)
            self._dispatcher.join(timeout=2)
            self._dispatcher = None

    def __enter__(self) -> AudioPlayer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def latency(self) -> float:
        return float(self._stream.latency) if self._stream is not None else 0.0

    @property
    def stream_time(self) -> float:
        return float(self._stream.time) if self._stream is not None else 0.0

    # -- the interface the pipeline uses -------------------------------------------------------

    def playback_tap(self) -> PlaybackTap:
        """The ring every block played is copied into (made on first use; its rate is the
        device's, known once the stream is open)."""
        if self.tap is None:
            self.tap = PlaybackTap(self.stream_rate)
        return self.tap

    def add_listener(self, listener: PlaybackListener) -> None:
        self._listeners.append(listener)

    def enqueue(self, chunk: AudioChunk) -> None:
        if chunk.samples.dtype != np.float32 or chunk.samples.ndim != 1:
            raise ValueError("chunks are 1-D float32 arrays")
        if self.stream_rate != self.sample_rate:
            chunk = dataclasses.replace(chunk, samples=resample(
                chunk.samples, self.sample_rate, self.stream_rate))
        self._queue.append(chunk)
        with self._stream_lock:  # see _pause_if_idle: one of us sees the other's change
            if self.failed and self._stream is not None:
                self._reopen()
            if not self._running and self._stream is not None and not self.failed:
                self._stream.start()
                self._running = True

    def _reopen(self) -> None:
        """The stream died under us (device unplugged, sound server restarted): open a new
        one for the next words. If that fails too, what is queued is dropped (its events
        say so) and the next chunk tries again."""
        import sounddevice as sd

        old = self._stream
        self._stopping_on_purpose = True  # aborting the dead stream may call back again
        try:
            with contextlib.suppress(Exception):
                old.abort()
                old.close()
        finally:
            self._stopping_on_purpose = False
        try:
            self._stream = self._open(sd, resolve_output(self._device_spec), self.stream_rate)
        except (sd.PortAudioError, NoAudioDevice) as error:
            self._stream, self._running = old, False
            while self._queue:
                self._emit(PlaybackKind.DROPPED, self._queue.popleft(), 0)
            self._events.put_nowait(PlaybackEvent(
                PlaybackKind.ERROR, at=time.monotonic(),
                message=f"the audio output is still gone ({error}). {NO_DEVICE_HELP}"))
            log.warning("the audio output is still gone: %s", error)
            return
        self.failed, self._running = False, True
        log.info("the audio output is back")

    @property
    def running(self) -> bool:
        """The stream is started (False while paused for being idle)."""
        return self._running

    def _pause_if_idle(self) -> None:
        with self._stream_lock:
            idle = self._current is None and not self._queue and not self._busy
            if self._running and idle and self._stream is not None:
                self._stopping_on_purpose = True  # its finished callback is no lost device
                try:
                    self._stream.stop()
                finally:
                    self._stopping_on_purpose = False
                self._running = False
                log.debug("audio stream paused (idle)")

    def hold(self, reason: str = "talk-over") -> None:
        """Fade out within one block and play silence, keeping the place: `release()` goes
        on from there, `cut()` ends it. For talk-over: the user's voice was heard, and the
        reply holds its breath while we find out whether they are talking; for a pause.
        Each reason is released on its own: a cough judged during a pause does not resume."""
        with self._holds_lock:
            self._holds = self._holds | {reason}

    def release(self, reason: str = "talk-over") -> None:
        """Go on playing after `hold(reason)` (a cough, a "mm-hmm": not a question)."""
        if reason == "boundary":
            self._boundary_hold = False
            return
        with self._holds_lock:
            self._holds = self._holds - {reason}

    def hold_after(self, seq: int | None) -> None:
        """Hold ("boundary") as soon as chunk `seq` has played to its end, before the next
        one starts: what follows is to be said again differently (a reading's new speed)."""
        self._hold_after_seq = seq

    @property
    def holding(self) -> frozenset[str]:
        """The reasons asked to hold now (the callback follows within a block)."""
        return self._holds | {"boundary"} if self._boundary_hold else self._holds

    @property
    def held(self) -> bool:
        return self._held

    def cut(self, drop_below_turn: int) -> None:
        """Fade out and drop every chunk of turns older than `drop_below_turn`; chunks of that
        turn or later play after the fade. A cut ends every hold asked for until now (the next
        turn plays); one asked for after it (a new reading paused at once) stands."""
        self._min_turn = max(self._min_turn, drop_below_turn)
        self._cut_requests += 1  # before the holds go: the callback never plays a block of
        with self._holds_lock:  # the old turn unheld before it has seen the cut
            self._holds = frozenset()
            self._boundary_hold = False

    # -- the PortAudio callback ---------------------------------------------------------------

    def _callback(self, outdata: Any, frames: int, timeinfo: Any, status: Any) -> None:
        if status.output_underflow:
            self.underflows += 1
        out = outdata[:, 0]
        filled = 0
        holds = self._holds  # before the cut requests are read: see cut()
        if self._cut_requests != self._cut_seen:
            self._cut_seen = self._cut_requests
            chunk = self._current
            if chunk is not None and chunk.turn < self._min_turn and self._fade_left == 0:
                self.last_cut = (time.monotonic(), timeinfo.outputBufferDacTime,
                                 self.frames_written)
                if self._held and not self._hold_fade_left:  # already silent: end it now
                    self._finish(chunk, PlaybackKind.CUT)
                else:
                    self._fade_left = self.fade_samples
                    self._hold_fade_left = 0
            # cut() ended the holds: the next turn plays. A boundary hold set in the block
            # the cut came in (after its check) is ended here.
            self._held = self._boundary_hold = False
        wanted = bool(holds) or self._boundary_hold
        if wanted != self._held:
            self._held = wanted
            if self._held and self._current is not None and not self._fade_left:
                self._hold_fade_left = self.fade_samples
                self.last_hold = (time.monotonic(), timeinfo.outputBufferDacTime,
                                  self.frames_written)
            elif not self._held:
                self._hold_fade_left = 0
        while filled < frames:
            if self._held and not self._hold_fade_left and not self._fade_left:
                out[filled:] = 0  # holding: silence, the place kept
                break
            chunk = self._current
            if chunk is None:
                chunk = self._next_chunk()
                if chunk is None:
                    out[filled:] = 0
                    if self._busy:
                        self._busy = False
                        self._emit(PlaybackKind.DRAINED)
                    break
            samples = chunk.samples
            if self._hold_fade_left:  # fading out into a hold: the chunk stays current
                start = self.fade_samples - self._hold_fade_left
                n = min(frames - filled, self._hold_fade_left, samples.size - self._pos)
                np.multiply(samples[self._pos:self._pos + n], self._ramp[start:start + n],
                            out=out[filled:filled + n])
                self._pos += n
                filled += n
                self._hold_fade_left -= n
                if self._pos >= samples.size:
                    self._hold_fade_left = 0
                    self._finish(chunk, PlaybackKind.FINISHED)
                continue
            if self._fade_left:
                start = self.fade_samples - self._fade_left
                n = min(frames - filled, self._fade_left)
                m = max(0, min(n, samples.size - self._pos))
                np.multiply(samples[self._pos:self._pos + m], self._ramp[start:start + m],
                            out=out[filled:filled + m])
                out[filled + m:filled + n] = 0
                self._pos += m
                self._fade_left -= n
                filled += n
                if self._fade_left == 0:
                    self._finish(chunk, PlaybackKind.CUT)
                continue
            n = min(frames - filled, samples.size - self._pos)
            out[filled:filled + n] = samples[self._pos:self._pos + n]
            self._pos += n
            filled += n
            if self._pos >= samples.size:
                if chunk.seq == self._hold_after_seq:  # silent from the next sample on
                    self._hold_after_seq = None  # (before FINISHED goes: its listener
                    self._boundary_hold = self._held = True  # may release it at once)
                self._finish(chunk, PlaybackKind.FINISHED)
        self.frames_written += frames
        tap = self.tap
        if tap is not None:
            tap.write(out)

    def _next_chunk(self) -> AudioChunk | None:
        while self._queue:
            chunk = self._queue.popleft()
            if chunk.turn < self._min_turn:
                self._emit(PlaybackKind.DROPPED, chunk, 0)
                continue
            self._current, self._pos, self._busy = chunk, 0, True
            self._emit(PlaybackKind.STARTED, chunk, 0)
            return chunk
        return None

    def _finish(self, chunk: AudioChunk, kind: PlaybackKind) -> None:
        self._emit(kind, chunk, min(self._pos, chunk.samples.size))
        self._current = None

    def _emit(self, kind: PlaybackKind, chunk: AudioChunk | None = None, played: int = 0) -> None:
        self._events.put_nowait(PlaybackEvent.of(kind, chunk, played))

    def _on_finished(self) -> None:
        # Not a close() or an idle pause we asked for: the device went away.
        if self._stream is not None and not self._stopping_on_purpose:
            self.failed = True
            self._events.put_nowait(PlaybackEvent(
                PlaybackKind.ERROR, at=time.monotonic(),
                message="the audio output stopped (device unplugged or sound server gone)"))

    # -- events -------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        while True:
            wait = None  # block: no wake-ups while idle, paused or playing
            if self._idle_since is not None and self._running and self.idle_stop_s is not None:
                wait = max(0.0, self._idle_since + self.idle_stop_s - time.monotonic())
            try:
                event = self._events.get(timeout=wait)
            except queue.Empty:
                self._idle_since = None
                self._pause_if_idle()
                continue
            if event is None:
                return
            if event.kind is PlaybackKind.DRAINED:
                self._idle_since = time.monotonic()
            elif event.kind is PlaybackKind.STARTED:
                self._idle_since = None
            for listener in list(self._listeners):
                try:
                    listener(event)
                except Exception:
                    log.exception("playback listener failed on %s", event.kind)
