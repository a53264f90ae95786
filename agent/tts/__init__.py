"""Text to speech: Kokoro-82M behind the `Synthesizer` interface."""

from agent.tts.base import SAMPLE_RATE, Samples, SynthesisError, Synthesizer, VoiceInfo

__all__ = ["SAMPLE_RATE", "Samples", "SynthesisError", "Synthesizer", "VoiceInfo"]
