"""voice-agent: an always-on voice assistant. The core (everything but `desktop/`) runs headless."""

__version__ = "0.1.0"
