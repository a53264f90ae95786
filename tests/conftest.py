"""Session fixtures: real services for the audio tests, and the real Kokoro model.

The tests never reach the network: HF_HUB_OFFLINE keeps the Hugging Face client local, and
the agent's own directories point into a temporary folder (the packaged model is assembled
there once per session).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.harness.desktop import *  # noqa: F403  (the desktop fixtures)
from tests.harness.microphone import virtual_mic  # noqa: F401  (a fixture)
from tests.harness.services import (
    Processes,
    missing_tools,
    reinitialise_portaudio,
    start_pulse_with_tap,
)

LOGS = Path(os.environ.get("TEST_LOGS") or Path(__file__).resolve().parent.parent / "logs")

_session_root = Path(tempfile.mkdtemp(prefix="voice-agent-tests-"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("VOICE_AGENT_CACHE_DIR", str(_session_root / "cache"))
os.environ["VOICE_AGENT_CONFIG_DIR"] = str(_session_root / "config")
os.environ["VOICE_AGENT_DATA_DIR"] = str(_session_root / "data")
# The control socket: never reach a developer's own running agent.
os.environ["VOICE_AGENT_RUNTIME_DIR"] = str(_session_root / "run")
os.environ["VOICE_AGENT_LOG_DIR"] = str(_session_root / "log")
os.environ["HF_HOME"] = str(_session_root / "hf")


@pytest.fixture(scope="session")
def session_dir() -> Iterator[Path]:
    yield _session_root
    shutil.rmtree(_session_root, ignore_errors=True)


@pytest.fixture(scope="session")
def procs() -> Iterator[Processes]:
    LOGS.mkdir(parents=True, exist_ok=True)
    processes = Processes(LOGS)
    yield processes
    processes.stop()


@pytest.fixture(scope="session")
def pulse(procs: Processes, session_dir: Path) -> Path:
    missing = missing_tools("pulseaudio", "pactl", "pacat")
    if missing:  # scripts/test installs them; a developer without root is told what is missing
        pytest.fail(f"audio tests need {', '.join(missing)}: run scripts/test as root, or "
                    "apt-get install pulseaudio pulseaudio-utils libasound2-plugins libportaudio2")
    return start_pulse_with_tap(procs, session_dir)


@pytest.fixture
def audio_tap(pulse: Path) -> Path:
    """A fresh tap file and a freshly initialised PortAudio."""
    pulse.unlink(missing_ok=True)
    reinitialise_portaudio()
    return pulse


def read_tap(path: Path) -> np.ndarray:
    return np.fromfile(path, dtype="<f4") if path.exists() else np.zeros(0, np.float32)


@pytest.fixture(scope="session", autouse=True)
def npm_voices() -> Path:
    """All 54 Kokoro voices, fetched for real from npm (kokoro-js, checked by sha256) into the
    session's cache dir, as scripts/setup does for a user; npm's own cache makes it about 1 s
    after the first time on a machine. For every test, so none depends on the order tests
    run in: a test of a machine without them uses a cache dir of its own."""
    from agent.tts import npm_voices as fetcher

    if fetcher.npm_command() is None:
        pytest.fail("the voice tests need npm (Debian: apt-get install npm); scripts/test "
                    "runs on machines that have it")
    return fetcher.fetch()


@pytest.fixture(scope="session")
def engine(npm_voices: Path):  # type: ignore[no-untyped-def]
    """The real Kokoro-82M (packaged int8 ONNX) with all 54 voices, loaded once."""
    from agent.tts import kokoro, models

    return kokoro.load_engine(models.resolve("packaged"))


@pytest.fixture
def packaged_only_engine(engine):  # type: ignore[no-untyped-def]
    """The session's model with only the five voices that ship in the wheel, as on a machine
    where the npm voices could not be fetched (the model session is shared, not reloaded)."""
    import copy

    from agent.tts import models
    from agent.tts.voices import VoiceLibrary

    alone = copy.copy(engine)
    alone.library = VoiceLibrary([models.packaged_voices()], models.voice_origin)
    alone._blends = {}
    return alone


@pytest.fixture(scope="session")
def transcriber():  # type: ignore[no-untyped-def]
    """Whisper base as the assistant makes it (the default model, the VAD gate on), assembled
    in the session's cache dir and loaded once."""
    from agent.listen.whisper import Transcriber

    transcriber = Transcriber()
    transcriber.load()
    return transcriber


@pytest.fixture(scope="session")
def llama_server():  # type: ignore[no-untyped-def]
    """The real llama.cpp OpenAI-compatible server with the packaged SmolLM2, on loopback."""
    from agent.llm.embedded import locate_model
    from tests.harness.llm_servers import start_llama_server

    server = start_llama_server(locate_model(), LOGS)
    yield server
    server.stop()
