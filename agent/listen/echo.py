"""Echo cancellation: the agent's own voice taken out of the microphone, so it can listen
while it speaks through speakers (talk-over, the wake word) without hearing itself.

WebRTC's AEC3 (through `pywebrtc-audio`) does the work. It needs the *reference*: what the
speakers play, presented no later than its echo reaches the microphone, and at most about
half a second earlier (it finds the delay in between by itself; see TESTING.md). The player
copies every block it hands the device into a `PlaybackTap` as it writes it; each microphone
block then takes the same number of reference samples, resampled to the microphone's rate,
from what was written since. So the reference leads its echo by the output latency plus the
room plus the input latency, less the little that waits here: tens of milliseconds.

Measured in docs/hands-free.md and bench/hands_free.py.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.audio.tap import PlaybackTap

log = logging.getLogger(__name__)

Samples = npt.NDArray[np.float32]
AEC_RATE = 16_000
QUIET_S = 1.0  # the room's echo (RT60 a few tenths) and AEC3's lead are over by then
# After the microphone opens, or the speakers start again after a quiet spell, AEC3 takes a
# few tenths of a second to find the echo's delay again (the streams' buffering changed); its
# output is not trusted to be free of echo until this much reference has played.
SETTLE_S = 0.6


class StreamResampler:
    """Sample-rate conversion by a rational factor, block by block with no seam between
    blocks: what zero-stuffing, a low-pass FIR and decimation give, computed polyphase (only
    the outputs kept, only the taps that meet an input sample), with the inputs' history and
    the output positions carried over. Linear and time-invariant enough for an echo
    canceller's reference, unlike interpolating each block on its own. 44.1 -> 16 kHz (160 /
    441) costs as little as 24 -> 16 kHz this way; the direct form took 185 ms per 32 ms."""

    def __init__(self, source: int, target: int, taps_per_phase: int = 24) -> None:
        common = math.gcd(source, target)
        self.up, self.down = target // common, source // common
        self.identity = self.up == self.down == 1
        rate_up = source * self.up
        cutoff = 0.45 * min(source, target) / rate_up  # cycles per upsampled sample
        length = taps_per_phase * max(self.up, self.down) | 1
        k = np.arange(length) - (length - 1) / 2
        taps = 2 * cutoff * np.sinc(2 * cutoff * k) * np.blackman(length)
        taps = taps * self.up / taps.sum()
        # Polyphase: output at upsampled position t is sum over m of
        # taps[t % up + m * up] * x[t // up - m].
        self._per_phase = -(-length // self.up)
        padded = np.zeros(self._per_phase * self.up)
        padded[:length] = taps
        self._phases = padded.reshape(self._per_phase, self.up).T.astype(np.float32)
        self._lags = np.arange(self._per_phase)
        self._history = np.zeros(self._per_phase - 1, np.float32)  # the inputs before
        self._consumed = 0  # inputs seen before this block
        self._next = 0  # the upsampled position of the next output

    def process(self, block: Samples) -> Samples:
        if self.identity or block.size == 0:
            return np.asarray(block, np.float32)
        inputs = np.concatenate([self._history, np.asarray(block, np.float32)])
        first_input = self._consumed - self._history.size  # the input inputs[0] is
        self._consumed += block.size
        positions = np.arange(self._next, self._consumed * self.up, self.down, dtype=np.int64)
        if positions.size:
            self._next = int(positions[-1]) + self.down
        newest = positions // self.up - first_input
        gathered = inputs[newest[:, None] - self._lags[None, :]]
        out: Samples = np.einsum("ij,ij->i", self._phases[positions % self.up],
                                 gathered).astype(np.float32)
        self._history = inputs[inputs.size - self._history.size:]
        return out


class EchoCanceller:
    """Takes the agent's playback out of microphone blocks (16 kHz float32 mono).

    Owned by one thread (the microphone's): `process` reads the tap, resamples what is new,
    and runs AEC3 on the block with the same number of reference samples. While nothing plays
    the reference is silence and AEC3 passes the microphone through."""

    def __init__(self, tap: PlaybackTap, max_waiting_s: float = 0.032) -> None:
        try:
            from pywebrtc_audio import EchoCanceller as Aec3
        except ImportError as error:  # a broken install: say what to do
            raise RuntimeError("echo cancellation needs pywebrtc-audio: pip install "
                               "pywebrtc-audio (or set [listen] echo_cancellation = false)"
                               ) from error
        self._aec: Any = Aec3(sample_rate=AEC_RATE)
        self._tap = tap
        self._resampler = StreamResampler(tap.sample_rate, AEC_RATE)
        self._position = tap.written  # what played before we listened is no echo of now
        self._waiting = np.zeros(0, np.float32)
        # Reference that waits here lags its echo by as much: keep no more than a block.
        self._max_waiting = round(max_waiting_s * AEC_RATE)
        self.reference_lost = 0  # tap samples skipped because this reader fell behind
        # Samples since the speakers last played anything: after QUIET_S of that there is no
        # echo left to cancel, and AEC3 (most of the cost) is skipped while the agent is idle.
        self._quiet = QUIET_S * AEC_RATE
        self._playing = 0  # reference samples since the speakers started (again)
        self.skipped = 0  # microphone samples passed through untouched while quiet
        self.reference_dropped = 0  # reference samples dropped to keep the lead
        self.reference_padded = 0  # silence put in for reference that had not come yet

    def process(self, mic: Samples) -> Samples:
        new, self._position, lost = self._tap.read_since(self._position)
        self.reference_lost += lost
        if new.size:
            self._waiting = np.concatenate([self._waiting, self._resampler.process(new)])
        need = mic.size
        if self._waiting.size >= need:
            far, self._waiting = self._waiting[:need], self._waiting[need:]
        else:  # the speakers are silent (or a little behind): silence, then what there is
            if self._waiting.size:
                self.reference_padded += need - self._waiting.size
            far = np.concatenate([np.zeros(need - self._waiting.size, np.float32),
                                  self._waiting])
            self._waiting = np.zeros(0, np.float32)
        if far.any():
            if self._quiet > QUIET_S * AEC_RATE:
                self._playing = 0  # starting again after a quiet spell
            self._quiet = 0
            self._playing += need
        else:
            self._quiet += need
            if self._quiet > QUIET_S * AEC_RATE:
                self.skipped += need
                return np.asarray(mic, np.float32)
        if self._waiting.size > self._max_waiting:
            excess = self._waiting.size - self._max_waiting
            self.reference_dropped += excess
            self._waiting = self._waiting[excess:]
        cleaned: Samples = self._aec.process(np.ascontiguousarray(mic, np.float32),
                                             np.ascontiguousarray(far, np.float32))
        return cleaned

    @property
    def settled(self) -> bool:
        """False for SETTLE_S after the speakers start again: echo may still come through."""
        return self._quiet > QUIET_S * AEC_RATE or self._playing >= SETTLE_S * AEC_RATE

    def resync(self) -> None:
        """The microphone (re)opens: what played while it was closed has no echo in what it
        will hear, so reading starts from now. AEC3 keeps what it learnt of the room."""
        self._position = self._tap.written
        self._waiting = np.zeros(0, np.float32)
        self._quiet = QUIET_S * AEC_RATE + 1
