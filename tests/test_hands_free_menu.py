"""The tray's Hands-free menu and the microphone's visibility: built by the real Tray and read
back through pystray's own menu objects; a choice goes through the real DesktopApp into the
settings file and the core; the icon and the overlay show when the microphone is open."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import config
from agent.desktop import commands as cmd
from agent.desktop.tray import Tray, TrayModel, with_microphone_dot
from agent.events import AgentState, MicrophoneChanged
from agent.listen.wakeword import available_wake_words


@pytest.fixture(scope="module")
def pystray() -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYSTRAY_BACKEND", "dummy")  # only if this process has not imported it yet
        import pystray

    yield pystray


def hands_free_menu(pystray: Any, model: TrayModel) -> tuple[list[str], dict[str, Any]]:
    posted: list[cmd.Command] = []
    tray = Tray(posted.append, model)
    top = next(i for i in tray._menu(pystray) if i.text == "Hands-free")
    lines, items = [], {}
    for item in top.submenu:
        if item is pystray.Menu.SEPARATOR:
            lines.append("----")
            continue
        mark = "" if item.checked is None else "(•) " if item.checked else "( ) "
        lines.append(f"{mark}{'' if item.enabled else '~'}{item.text}")
        items[item.text] = item
    items["_posted"] = posted
    return lines, items


def test_the_menu_offers_talk_over_echo_cancellation_and_wake_words_with_licences(
        pystray: Any) -> None:
    lines, items = hands_free_menu(pystray, TrayModel(talk_over=True, wake_word="hey_jarvis"))
    assert lines[0] == "(•) Talk over replies (your voice stops it)"
    assert lines[1] == "(•) Echo cancellation"
    assert "( ) Off" in lines and "(•) Hey Jarvis (Apache-2.0)" in lines
    for info in available_wake_words():
        assert any(info.phrase in line and info.licence in line for line in lines), info
    # The non-commercial openWakeWord models say so where they are chosen.
    assert all("non-commercial" in line for line in lines if "openWakeWord" in line
               or "CC BY-NC-SA" in line)
    assert lines[-1] == "~🎤 microphone closed"
    assert "(•) Chime when it hears the wake word" in lines
    items["Hey Jarvis (Apache-2.0)"](None)
    items["Talk over replies (your voice stops it)"](None)
    items["Chime when it hears the wake word"](None)
    assert items["_posted"] == [cmd.SetListen("wake_word", "hey_jarvis"),
                                cmd.SetListen("talk_over", None),
                                cmd.SetListen("wake_chime", None)]


def test_an_open_microphone_puts_a_red_dot_on_the_icon_and_says_why(pystray: Any) -> None:
    from agent.desktop.icons import icon_image

    model = TrayModel()
    tray = Tray(lambda _c: None, model)
    plain = tray.picture()
    tray.show_microphone(True, "microphone open (wake word hey_jarvis; echo cancellation on)")
    marked = tray.picture()
    assert plain.tobytes() == icon_image(AgentState.IDLE, 64).tobytes()
    assert marked.tobytes() == with_microphone_dot(plain).tobytes() != plain.tobytes()
    red = marked.getpixel((marked.width - 9, marked.height - 9))
    assert red[0] > 200 and red[1] < 100  # the dot's red, in the corner
    assert "🎤 microphone open (wake word hey_jarvis" in tray.tooltip()
    tray.show_microphone(False, "microphone closed")
    assert tray.picture().tobytes() == plain.tobytes()
    assert "🎤" not in tray.tooltip()


@pytest.fixture
def app(xdisplay: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A DesktopApp whose core has not loaded its models (the microphone opens only once
    they have: tests/test_hands_free.py has that part)."""
    from agent.desktop.app import DesktopApp

    monkeypatch.setenv("VOICE_AGENT_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("VOICE_AGENT_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "config").mkdir()
    path = tmp_path / "config" / "config.toml"
    path.write_text("# my settings\n[listen]\ntalk_over = false  # not yet\n")
    holder = [DesktopApp(config.load(path))]
    yield holder[0]
    shown = holder.pop()
    shown.assistant.close()
    shown.mailbox.close()
    shown.root.destroy()
    del shown  # Tk objects are freed on the thread that made them (see test_interrupt)
    gc.collect()


def test_a_menu_choice_is_saved_applied_and_shown(app: Any) -> None:
    app.handle(cmd.SetListen("talk_over", None))
    app.handle(cmd.SetListen("wake_word", "hey_mycroft"))
    text = app.cfg.path.read_text()
    assert "talk_over = true  # not yet" in text  # the user's comment kept
    assert 'wake_word = "hey_mycroft"' in text
    assert app.cfg.listen.talk_over and app.model.talk_over
    assert app.model.wake_word == "hey_mycroft"
    assert app.assistant.cfg.listen.wake_word == "hey_mycroft"  # the core's own settings
    app.handle(cmd.SetListen("wake_word", "no_such_word"))  # refused, said, nothing saved
    assert 'wake_word = "hey_mycroft"' in app.cfg.path.read_text()
    assert "no_such_word" in app.overlay.transcript()
    # The overlay's status line says when the microphone is open.
    app.handle(cmd.FromCore(MicrophoneChanged(True, "microphone open (talk-over)")))
    assert "🎤 mic on" in app.overlay.status.cget("text")
    app.handle(cmd.FromCore(MicrophoneChanged(False, "microphone closed")))
    assert "🎤" not in app.overlay.status.cget("text")
    app.handle(cmd.SetListen("wake_chime", None))
    assert "wake_chime = false" in app.cfg.path.read_text()
    assert not app.model.wake_chime and not app.assistant.cfg.listen.wake_chime
    app.handle(cmd.SetListen("talk_over", False))
    app.handle(cmd.SetListen("wake_word", ""))
    assert not app.cfg.listen.talk_over and app.cfg.listen.wake_word == ""
