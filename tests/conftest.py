"""Session fixtures: real services for the audio and desktop tests, and the real models; and
the markers that say which tests need them.

The services and test doubles themselves live in the top-level `harness` package, shared with
bench/ (tests import `harness.*`, never each other or this file).

The tests never reach the network: HF_HUB_OFFLINE keeps the Hugging Face client local, and
the agent's own directories point into a temporary folder (the packaged model is assembled
there once per session).

Markers, applied here from the fixtures a test uses (directly or through other fixtures), so
`pytest -m "not slow and not desktop and not audio"` (scripts/test --fast) needs no services
and no model; tests that start those things themselves carry the mark explicitly:
- slow: a real model is loaded (Kokoro, Whisper, the LLM), in this process or a child, or
  the test waits tens of seconds on purpose (a library's retries);
- desktop: Xvfb, the tray host, D-Bus, the evdev keyboard, Tk;
- audio: the private PulseAudio behind the ALSA tap, or the virtual microphone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from harness.desktop import (
    EvdevKeyboard,
    evdev_keyboard_fifo,
    start_session_bus,
    start_tray_host,
    start_xvfb,
)
from harness.microphone import VirtualMicrophone

if TYPE_CHECKING:
    from harness.room import Room
from harness.services import (
    LOGS,
    Processes,
    missing_tools,
    reinitialise_portaudio,
    start_pulse_with_tap,
)

# A test that uses one of these fixtures (or a fixture built on one) gets the marker.
MARKED_BY_FIXTURE = {
    "slow": {"engine", "packaged_only_engine", "transcriber", "llama_server"},
    "desktop": {"xdisplay", "session_bus", "tray_host", "evdev_keyboard"},
    "audio": {"pulse", "audio_tap", "virtual_mic"},
}
# Tests that load a model in a `voice-agent` child process, so no fixture tells, in files whose
# owners were rewriting them when the markers came: to move into those files as
# @pytest.mark.slow (elsewhere the mark is on the test itself).
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


def pytest_unconfigure(config: pytest.Config) -> None:
    """The session's directory goes even when no test asked for `session_dir`: the voices
    fetched into its cache alone are 250 MB, left behind by every run of a few unit tests."""
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
    from harness.llm_servers import start_llama_server

    server = start_llama_server(locate_model(), LOGS)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def virtual_mic(pulse: Path, procs: Processes) -> Iterator[VirtualMicrophone]:
    """The virtual microphone on the session's PulseAudio (after the `pulse` fixture)."""
    if os.environ.get("XDG_RUNTIME_DIR") is None:
        pytest.fail("the pulse fixture did not set XDG_RUNTIME_DIR")
    microphone = VirtualMicrophone(procs)
    yield microphone
    microphone.close()


@pytest.fixture(scope="module")
def room(virtual_mic: VirtualMicrophone) -> Iterator[Room]:
    """What is played comes back into the virtual microphone as through a laptop's speakers
    (harness.room: 40 ms, reflections with RT60 0.25 s, -6 dB, noise at -60 dBFS). Per
    module: other tests' microphones hear no echo."""
    from harness.room import Room

    simulated = Room(virtual_mic)
    yield simulated
    simulated.close()


# -- the desktop -------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def xdisplay(procs: Processes) -> str:
    """A private Xvfb screen (1024x768x24); its name (":N"), set in DISPLAY, with
    NO_AT_BRIDGE=1 so GTK starts no accessibility bus."""
    return start_xvfb(procs)


@pytest.fixture(scope="session")
def session_bus(procs: Processes, xdisplay: str) -> str:
    """A private D-Bus session bus and dunst on it (pystray's gtk backend notifies on stop);
    the bus address, set in DBUS_SESSION_BUS_ADDRESS."""
    return start_session_bus(procs)


@pytest.fixture(scope="session")
def tray_host(procs: Processes, xdisplay: str) -> str:
    """trayer, a system tray at the bottom right of the screen; its "panel" window."""
    return start_tray_host(procs)


@pytest.fixture(scope="session")
def evdev_keyboard() -> Iterator[EvdevKeyboard]:
    """A FIFO keyboard that the real `keyboard` library reads (see
    harness.desktop.evdev_keyboard_fifo). Request it before anything starts `keyboard`'s
    listener: the library looks for devices once."""
    with evdev_keyboard_fifo() as keyboard:
        yield keyboard


# -- markers -----------------------------------------------------------------------------------

def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Add the markers before `-m` selects (this hook runs ahead of pytest's own)."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        wanted = {marker for marker, fixtures in MARKED_BY_FIXTURE.items() if used & fixtures}
        for marker in sorted(wanted):
            if item.get_closest_marker(marker) is None:
                item.add_marker(marker)
