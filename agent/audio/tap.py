"""What the speakers are playing, sample for sample, for whoever needs to hear it (the echo
canceller: it subtracts the agent's own voice from the microphone).

The player's PortAudio callback writes every block it hands the device, zeros included, into
a ring allocated once: a copy into place and two integer updates, nothing that can block or
allocate on the audio thread. One reader (the microphone's thread) takes what is new since
its last read. A reader that falls more than the ring behind loses the oldest samples and is
told how many; it never reads a half-overwritten block as if it were whole.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.float32]


class PlaybackTap:
    """A single-writer, single-reader ring of the samples written to the output stream."""

    def __init__(self, sample_rate: int, seconds: float = 2.0) -> None:
        self.sample_rate = sample_rate
        self._ring = np.zeros(max(1024, round(sample_rate * seconds)), np.float32)
        self.written = 0  # samples written since the start (the writer's only counter)

    # -- the writer: the audio callback --------------------------------------------------------

    def write(self, block: Samples) -> None:
        total = size = block.size
        ring = self._ring
        if size >= ring.size:  # a block longer than the ring: only its end can be kept
            block, size = block[-ring.size:], ring.size
        start = (self.written + total - size) % ring.size
        first = min(size, ring.size - start)
        ring[start:start + first] = block[:first]
        ring[:size - first] = block[first:]
        self.written += total  # after the copy: a reader never sees samples not yet there

    # -- the reader ----------------------------------------------------------------------------

    def read_since(self, position: int) -> tuple[Samples, int, int]:
        """The samples written after `position` (a value this returned before, or 0), the
        position to pass next time, and how many samples were lost because the reader fell
        more than the ring behind."""
        end = self.written
        ring = self._ring
        # A quarter of the ring is margin: the writer may be overwriting the oldest part now.
        oldest = max(0, end - ring.size * 3 // 4)
        lost = max(0, oldest - position)
        start = max(position, oldest)
        count = end - start
        if count <= 0:
            return np.zeros(0, np.float32), end, lost
        first = start % ring.size
        if first + count <= ring.size:
            out = ring[first:first + count].copy()
        else:
            out = np.concatenate([ring[first:], ring[:count - (ring.size - first)]])
        return out, end, lost
