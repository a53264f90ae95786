"""The tray agent as users run it: `python -m agent` in its own process under Xvfb, with a
real tray host (trayer), a session bus, dunst, the real Kokoro model, the embedded LLM and
the real audio stream (ALSA tap). Commands come the ways users give them: typing into the
overlay, the tray menu, global hotkeys through the real `keyboard` backend (the evdev FIFO)
and through pynput (xdotool), and `voice-agent ...` from other processes.

The screenshots go to the folder printed at the start (SHOTS, else <repo>/shots).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agent.desktop.icons import icon_image
from agent.events import AgentState
from agent.first_run import MARKER_NAME
from agent.tts.voices import LANGUAGES
from harness.agent_process import AgentProcess
from harness.desktop import (
    EvdevKeyboard,
    find_windows,
    screenshot,
    shots_dir,
    wait_until,
    window_geometry,
    xdotool,
)
from harness.microphone import VirtualMicrophone
from harness.services import read_tap

pytestmark = [pytest.mark.audio, pytest.mark.slow]

RATE = 24_000
LONG_TEXT = ("This is a long announcement so that there is time to cut it. It goes on for a "
             "while about nothing in particular, and then some more, until somebody stops it.")


def tray_icon() -> str:
    """The agent's icon window, embedded in trayer at the bottom right."""
    found = find_windows(".", predicate=lambda g: g.y > 700 and 16 <= g.width <= 40
                         and g.height >= 16, timeout=10)
    icons = [w for w in found if "panel" not in xdotool("getwindowname", w)]
    assert icons, "the tray icon is not embedded in the tray"
    return icons[-1]


def icon_state_on_screen(shot: Path, icon: str) -> AgentState:
    """Which state's picture the tray shows: the nearest in mean colour over the icon."""
    geometry = window_geometry(icon)
    with Image.open(shot) as image:
        crop = image.convert("RGB").crop((geometry.x, geometry.y, geometry.x + geometry.width,
                                          geometry.y + geometry.height))
    seen = np.asarray(crop, dtype=np.float64).reshape(-1, 3).mean(axis=0)

    def distance(state: AgentState) -> float:
        picture = icon_image(state, 64).convert("RGBA")
        canvas = Image.new("RGBA", picture.size, (*crop.getpixel((0, 0)), 255))
        canvas.alpha_composite(picture)
        expected = np.asarray(canvas.convert("RGB").resize(crop.size), dtype=np.float64)
        return float(np.abs(expected.reshape(-1, 3).mean(axis=0) - seen).sum())

    return min(AgentState, key=distance)


def assert_icon_shows(icon: str, state: AgentState, name: str) -> Path:
    """Screenshots until the tray shows `state` (the tray host redraws a moment after the
    agent logs the change), keeping the last one as shots/NAME.png."""
    shot = shots_dir() / f"{name}.png"
    seen: list[AgentState] = []

    def shows() -> bool:
        seen.append(icon_state_on_screen(screenshot(shot), icon))
        return seen[-1] is state

    assert wait_until(shows, timeout=3, step=0.05), f"the tray showed {seen}, not {state}"
    return shot


def overlay_visible() -> bool:
    return bool(find_windows("^voice-agent$", visible=True, timeout=0.1))


def tap_samples() -> int:
    path = Path(os.environ["AUDIO_TAP_FILE"])
    return path.stat().st_size // 4 if path.exists() else 0


def assert_cut(before: int, margin_s: float = 0.15) -> None:
    """There was speech just before `before` (a tap position taken before the interrupt),
    and nothing but silence from shortly after it on."""
    tail = Path(os.environ["AUDIO_TAP_FILE"])
    wait_until(lambda: tap_samples() > before + int(0.6 * RATE), timeout=5)
    samples = read_tap(tail)
    assert np.abs(samples[max(0, before - RATE // 2):before]).max() > 0.01, \
        "nothing was playing before the interrupt"
    after = samples[before + int(margin_s * RATE):]
    assert after.size > RATE // 4
    assert np.abs(after).max() == 0.0, "sound after the interrupt"


@pytest.fixture(scope="module")
def desktop_env(xdisplay: str, session_bus: str, tray_host: str, pulse: Path,
                evdev_keyboard: EvdevKeyboard, engine) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The environment every agent process gets: the screen, bus, sound server and tap; the
    `engine` fixture has assembled the packaged model into the shared cache already."""
    return dict(os.environ)


@pytest.fixture(scope="module")
def agent(desktop_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory,
          ) -> Iterator[AgentProcess]:
    Path(desktop_env["AUDIO_TAP_FILE"]).unlink(missing_ok=True)
    process = AgentProcess(tmp_path_factory.mktemp("agent"), "keyboard", desktop_env)
    process.wait_for(r"models ready", timeout=120)
    yield process
    process.stop()


def test_the_first_run_tells_the_hotkeys_and_where_the_settings_are(
        agent: AgentProcess) -> None:
    agent.wait_for(r"hotkeys: using keyboard")
    agent.wait_for(r"(?i)ctrl\+alt\+space")
    agent.wait_for(re.escape(str(agent.config_file)))
    assert wait_until(overlay_visible, timeout=5), "the welcome is shown in the overlay"
    screenshot(shots_dir() / "first_run_overlay.png")
    assert (agent.home / "data" / MARKER_NAME).exists()


def test_a_first_run_without_the_voices_fetches_them_and_shows_each_step(
        desktop_env: dict[str, str], tmp_path: Path) -> None:
    """A new user with npm and an empty cache: the default voice, af_bella, needs the npm
    voices, so the first start fetches them (the overlay shows each step) and speaks with
    af_bella, with no fallback notice."""
    env = {**desktop_env, "VOICE_AGENT_CACHE_DIR": str(tmp_path / "cache")}
    process = AgentProcess(tmp_path / "home", "none", env, voice=None)  # keys: the module agent's
    try:
        start = 0
        process.wait_for(r"Fetching the Kokoro voices \(kokoro-js@1\.2\.1 from npm", start,
                         timeout=60)
        assert wait_until(overlay_visible, timeout=5), "the steps are shown in the overlay"
        process.wait_for(r"All 54 Kokoro voices are ready", start, timeout=120)
        ready = process.wait_for(r"models ready: voice (\S+),", start, timeout=120)
        assert ready.group(1) == "af_bella"
        assert not [line for line in process.lines if "is not on this machine" in line]
        assert (tmp_path / "cache" / "kokoro" / "voices-kokoro-js-1.2.1" / "af_bella.bin"
                ).stat().st_size == 522_240
    finally:
        process.stop()


def test_the_icon_is_in_the_tray_and_shows_idle(agent: AgentProcess) -> None:
    icon = tray_icon()
    assert_icon_shows(icon, AgentState.IDLE, "tray_idle")


def test_a_typed_question_streams_into_the_overlay_and_the_icon_follows_the_reply(
        agent: AgentProcess) -> None:
    icon = tray_icon()
    start = agent.mark()
    agent.send("talk")
    assert wait_until(overlay_visible, timeout=5), "the overlay did not open"
    time.sleep(0.3)  # the overlay asks X for the focus 30-80 ms after it maps
    xdotool("type", "--delay", "20", "Tell me about the moon.")
    xdotool("key", "Return")
    agent.wait_for(r"tray: thinking", start)
    agent.wait_for(r"tray: speaking", start, timeout=60)
    shot = assert_icon_shows(icon, AgentState.SPEAKING, "tray_speaking_overlay_streaming")
    # The overlay shows the question and the reply text (light text on the dark window).
    overlay = find_windows("^voice-agent$", visible=True)[0]
    g = window_geometry(overlay)
    with Image.open(shot) as image:
        pane = np.asarray(image.convert("L").crop((g.x, g.y + 30, g.x + g.width,
                                                  g.y + g.height - 40)))
    assert (pane > 150).sum() > 400, "no text in the overlay"

    done = agent.cli("interrupt")  # another process, as a desktop shortcut runs it
    assert done.returncode == 0, done.stderr
    before = tap_samples()  # the command is with the agent now (python took ~0.5 s to start)
    agent.wait_for(r"tray: interrupted", start)
    assert_icon_shows(icon, AgentState.INTERRUPTED, "tray_interrupted")
    agent.wait_for(r"tray: idle", start, timeout=5)
    assert_cut(before)
    assert_icon_shows(icon, AgentState.IDLE, "tray_idle_after_reply")
    order = [m.group(1) for line in agent.lines[start:]
             if (m := re.search(r"tray: (\w+)", line))]
    assert order[:4] == ["thinking", "speaking", "interrupted", "idle"], order


def likeness(heard: np.ndarray, reference: np.ndarray) -> float:
    """Peak normalised cross-correlation of what played with a reference (FFT: the direct
    sum over seconds of audio is slow)."""
    a = (heard - heard.mean()) / (heard.std() + 1e-9)
    b = (reference - reference.mean()) / (reference.std() + 1e-9)
    a = np.pad(a, (0, max(0, b.size - a.size)))
    size = 1 << (a.size + b.size - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)
    return float(np.abs(corr[:a.size - b.size + 1]).max() / b.size)


def open_voice_menu(icon: str, speaking: bool = False) -> None:
    """Right-click the icon, then the keyboard through the GTK menu: Talk, Interrupt (only
    while speaking: else it is disabled, and skipped), Voice -> its submenu, the first
    language selected."""
    g = window_geometry(icon)
    shown = shown_windows()
    xdotool("mousemove", str(g.x + g.width // 2), str(g.y + g.height // 2), "click", "3")
    assert another_window(shown), "the tray menu did not open"
    time.sleep(0.1)  # GTK takes the keyboard as it maps the menu
    # Talk, (Interrupt: enabled while speaking), Read selection, then Voice.
    menu_keys("Down", "Down", "Down", *(["Down"] if speaking else []), "Right")


def shown_windows() -> set[int]:
    """Mapped override-redirect windows: GTK's menus and submenus (they have no names)."""
    from Xlib import X
    from Xlib import display as xdisplay

    conn = xdisplay.Display()
    try:
        shown = set()
        for window in conn.screen().root.query_tree().children:
            attributes = window.get_attributes()
            if attributes.override_redirect and attributes.map_state == X.IsViewable:
                shown.add(window.id)
        return shown
    finally:
        conn.close()


def another_window(shown: set[int]) -> bool:
    """Whether a window not in `shown` maps within 3 s (a menu or submenu opening)."""
    return wait_until(lambda: bool(shown_windows() - shown), timeout=3)


def menu_keys(*keys: str) -> None:
    """Keys through an open GTK menu; each Right waits until its submenu is on the screen
    (a submenu that is not shown yet takes the next key elsewhere)."""
    for key in keys:
        shown = shown_windows()
        xdotool("key", key)
        if key == "Right" and not another_window(shown):
            screenshot(shots_dir() / "tray_menu_failure.png")
            pytest.fail(f"{keys}: no submenu opened (see tray_menu_failure.png)")
        time.sleep(0.1)  # GTK selects the submenu's first item as it maps it


def played_since(before: int) -> np.ndarray:
    """The tap from `before` on, once the sound server has passed on the last of it."""
    end = tap_samples()
    wait_until(lambda: tap_samples() > end + int(0.3 * RATE), timeout=5)
    return read_tap(Path(os.environ["AUDIO_TAP_FILE"]))[before:]


def test_the_voice_menu_chooses_the_next_voice_and_plays_samples_without_choosing(
        agent: AgentProcess, engine) -> None:  # type: ignore[no-untyped-def]
    icon = tray_icon()
    start = agent.mark()
    open_voice_menu(icon)
    menu_keys("Right")  # American English -> its first voice (the "Female" header is disabled)
    screenshot(shots_dir() / "tray_menu_voices.png")
    xdotool("key", "Return")
    voice = agent.wait_for(r"saved tts.voice = '(\w+)'", start).group(1)
    assert voice == "af_alloy"
    agent.wait_for(r"voice: af_alloy$", start)  # what speaks, shown in the tray and overlay
    assert f'voice = "{voice}"' in agent.config_file.read_text()
    assert "# written by the test" in agent.config_file.read_text()  # the rest is kept

    # A sample while something is playing: cut, then the sample in the other voice.
    agent.send("say", LONG_TEXT)
    agent.wait_for(r"tray: speaking", start, timeout=30)
    sampling = agent.mark()
    open_voice_menu(icon, speaking=True)
    # British English -> its first voice; Up wraps to "Hear a sample" -> its first voice.
    menu_keys("Down", "Right", "Up", "Right")
    screenshot(shots_dir() / "tray_menu_samples.png")
    xdotool("key", "Return")
    sampled = agent.wait_for(r"voice sample: (\w+)", sampling).group(1)
    before = tap_samples()
    assert sampled == "bf_alice"
    agent.wait_for(r"tray: interrupted", sampling, timeout=5)
    after_cut = agent.mark()  # the sample starts within the second "interrupted" is shown
    agent.wait_for(r"tray: speaking", after_cut, timeout=30)
    agent.wait_for(r"tray: idle", agent.mark(), timeout=30)
    heard = played_since(before)
    sample = LANGUAGES["b"].sample
    in_sampled = likeness(heard, engine.synthesize(sample, sampled))
    assert in_sampled > 0.8
    assert in_sampled > likeness(heard, engine.synthesize(sample, voice)) + 0.2

    # The chosen voice stayed: the next speech is in it.
    text = "The new voice speaks now."
    before, said = tap_samples(), agent.mark()
    agent.send("say", text)
    agent.wait_for(r"tray: speaking", said, timeout=30)
    agent.wait_for(r"tray: idle", said, timeout=30)
    heard = played_since(before)
    in_chosen = likeness(heard, engine.synthesize(text, voice))
    assert in_chosen > 0.8
    for other in ("jm_kumo", sampled):
        assert in_chosen > likeness(heard, engine.synthesize(text, other)) + 0.2


def test_keyboard_hotkeys_open_the_overlay_and_cut_the_speech(
        agent: AgentProcess, evdev_keyboard: EvdevKeyboard) -> None:
    k = evdev_keyboard
    if overlay_visible():
        agent.send("talk")
        time.sleep(0.3)
        xdotool("key", "Escape")  # Escape while idle hides the overlay
        assert wait_until(lambda: not overlay_visible(), timeout=3)
    k.tap(k.KEY_LEFTCTRL, k.KEY_LEFTALT, k.KEY_SPACE)
    assert wait_until(overlay_visible, timeout=3), "ctrl+alt+space did not open the overlay"
    start = agent.mark()
    agent.send("say", LONG_TEXT)
    agent.wait_for(r"tray: speaking", start, timeout=30)
    time.sleep(0.5)  # well into the speech
    before = tap_samples()
    k.tap(k.KEY_LEFTCTRL, k.KEY_LEFTALT, k.KEY_X)
    agent.wait_for(r"tray: interrupted", start, timeout=5)
    assert_cut(before, margin_s=0.25)  # the chord itself takes ~6 paced events


def history_entries(agent: AgentProcess) -> list[dict[str, object]]:
    path = agent.home / "data" / "history.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_holding_the_talk_key_asks_by_voice_and_holding_it_again_cuts_the_answer(
        agent: AgentProcess, evdev_keyboard: EvdevKeyboard, virtual_mic: VirtualMicrophone,
        engine) -> None:  # type: ignore[no-untyped-def]
    k = evdev_keyboard
    talk = (k.KEY_LEFTCTRL, k.KEY_LEFTALT, k.KEY_SPACE)
    question = "What is the capital of France?"
    clip = engine.synthesize(question, "jm_kumo")
    asked_before = len(history_entries(agent))
    start = agent.mark()
    for key in talk:
        k.press(key)
    agent.wait_for(r"tray: listening", start, timeout=5)  # held past the tap threshold
    virtual_mic.say(clip, RATE)
    assert virtual_mic.wait_until_said(30)
    time.sleep(0.4)  # what was fed plays into the microphone within ~0.1 s
    for key in reversed(talk):
        k.release(key)
    assert wait_until(lambda: len(history_entries(agent)) > asked_before, timeout=30)
    said = history_entries(agent)[asked_before]
    assert said["role"] == "user"
    assert words(str(said["content"])) == words(question), said
    agent.wait_for(r"tray: speaking", start, timeout=60)  # the answer is spoken
    screenshot(shots_dir() / "push_to_talk_answer.png")

    time.sleep(0.5)
    before, again = tap_samples(), agent.mark()
    for key in talk:  # barge in: the press cuts the answer, the hold listens again
        k.press(key)
    agent.wait_for(r"tray: interrupted", again, timeout=5)
    agent.wait_for(r"tray: listening", again, timeout=5)
    for key in reversed(talk):
        k.release(key)
    assert_cut(before, margin_s=0.25)
    agent.wait_for(r"I heard nothing", again, timeout=30)  # nothing was said this time
    agent.wait_for(r"tray: idle", again, timeout=10)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def test_a_second_launch_opens_the_first_ones_overlay(agent: AgentProcess) -> None:
    xdotool("key", "Escape")
    wait_until(lambda: not overlay_visible(), timeout=3)
    done = agent.cli()
    assert done.returncode == 0, done.stderr
    assert "already running" in done.stdout
    assert wait_until(overlay_visible, timeout=3)


def test_quit_from_another_process_ends_everything_within_a_second(
        agent: AgentProcess) -> None:
    done = agent.cli("quit")
    assert done.returncode == 0, done.stderr
    assert agent.proc.wait(5) == 0
    took = float(agent.wait_for(r"quit in ([\d.]+) s").group(1))
    assert took < 1.0
    done = agent.cli("interrupt")
    assert done.returncode != 0 and "not running" in done.stderr


def test_pynput_hotkeys_under_x11(desktop_env: dict[str, str],
                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    process = AgentProcess(tmp_path_factory.mktemp("agent-pynput"), "pynput", desktop_env,
                           first_run=False)
    try:
        process.wait_for(r"models ready", timeout=120)
        process.wait_for(r"hotkeys: using pynput")
        assert not overlay_visible()
        xdotool("key", "ctrl+alt+space")
        assert wait_until(overlay_visible, timeout=3), "ctrl+alt+space did not open the overlay"
        start = process.mark()
        process.send("say", LONG_TEXT)
        process.wait_for(r"tray: speaking", start, timeout=30)
        time.sleep(0.5)
        before = tap_samples()
        xdotool("key", "ctrl+alt+x")
        process.wait_for(r"tray: interrupted", start, timeout=5)
        assert_cut(before)
        assert process.cli("quit").returncode == 0
        assert process.proc.wait(5) == 0
    finally:
        process.stop()


def test_without_a_display_it_says_so_and_points_to_chat(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["VOICE_AGENT_RUNTIME_DIR"] = str(tmp_path / "run")
    done = subprocess.run([sys.executable, "-m", "agent"], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "no display" in done.stderr and "voice-agent chat" in done.stderr
