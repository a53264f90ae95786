"""Text for speech: markdown/HTML/emoji cleanup and streaming clause chunking."""

from agent.text.chunker import ChunkLimits, ClauseChunker, split_for_speech
from agent.text.speakable import to_speakable

__all__ = ["ChunkLimits", "ClauseChunker", "split_for_speech", "to_speakable"]
