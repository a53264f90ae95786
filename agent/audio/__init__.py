"""Audio output: one long-lived stream, a queue of chunks, a cut with a fade."""

from agent.audio.devices import NoAudioDevice
from agent.audio.events import AudioChunk, PlaybackEvent, PlaybackKind, PlaybackListener
from agent.audio.sinks import AudioSink, MemorySink, WavFileSink

__all__ = ["AudioChunk", "AudioSink", "MemorySink", "NoAudioDevice", "PlaybackEvent",
           "PlaybackKind", "PlaybackListener", "WavFileSink"]
