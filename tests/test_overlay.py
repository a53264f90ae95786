"""The overlay's conversation pane on the real Tk window under Xvfb: every line it shows is
shown whole below the header (none is cut at the top by a pixel scroll), a message longer
than the pane is shown from its first line (the first-run welcome), and a conversation
longer than the pane follows the newest line, shown whole at the bottom.

Issue 14.6: a new user saw "the overlay's first line of text hidden under its header": the
welcome (13 wrapped lines in a 9-line pane) was scrolled to its end by `see("end")`, which
scrolls by pixels, so the welcome's first lines were out of view and the top line shown was
cut in half just under the header. The screenshots go to shots/ (or $SHOTS).
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable, Iterator

import pytest

from agent.config import OverlayConfig
from agent.desktop.overlay import Overlay, OverlayActions
from agent.events import AgentState, Notice, ReplyDelta, ReplyDone, StateChanged, UserSaid
from harness.desktop import screenshot, shots_dir, wait_until

WELCOME = "\n".join([
    "Welcome to voice-agent.",
    "Talk: Ctrl+Alt+Space (or Talk in the tray menu) opens the overlay; type, and Enter "
    "sends.",
    "Interrupt: Ctrl+Alt+X (or Escape in the overlay) stops the reply at once.",
    "Hotkeys: using keyboard (/dev/input).",
    "Settings: /tmp/pytest-of-root/pytest-53/agent0/config/config.toml (the tray's Settings "
    "opens it).",
    "Log: /tmp/voice-agent-tests-yur18ofh/log/voice-agent.log.",
    "Check the setup any time: voice-agent doctor."])


def settle(root: tk.Tk, ready: Callable[[], object] | None = None,
           timeout: float = 5.0) -> bool:
    """Run Tk's pending events and idle work until `ready()` (default: the window is mapped)
    holds, or `timeout` passes."""
    def done() -> bool:
        root.update()
        return bool(ready() if ready is not None else root.winfo_viewable())

    return wait_until(done, timeout=timeout, step=0.01)


@pytest.fixture
def overlay(xdisplay: str) -> Iterator[Overlay]:
    root = tk.Tk()
    pane = Overlay(root, OverlayActions(submit=lambda _text: None, interrupt=lambda: None),
                   OverlayConfig(hide_after_s=0, corner="bottom-right"))
    pane.set_details("jm_kumo", "SmolLM2-135M-Instruct.Q4_1 (embedded)")
    yield pane
    root.destroy()


def shown(overlay: Overlay) -> None:
    overlay.show()
    text = overlay.text
    assert settle(overlay.root, lambda: overlay.root.winfo_viewable()
                  and text.winfo_height() > 100), "the overlay was not mapped"


def inset(text: tk.Text) -> int:
    """Where a line shown whole at the top of the pane starts (the pane's own padding)."""
    return sum(int(text.cget(k)) for k in ("borderwidth", "highlightthickness", "pady"))


def assert_whole(overlay: Overlay, index: str, what: str) -> tuple[int, int]:
    """The display line of `index` is all inside the pane, below the header; its top and
    bottom, in the pane's pixels."""
    text = overlay.text
    info = text.dlineinfo(index)
    assert info is not None, f"{what} ({text.index(index)}) is not shown at all"
    top, bottom = info[1], info[1] + info[3]
    assert top >= inset(text), f"{what} is cut at the top: it starts at y={top}"
    assert bottom <= text.winfo_height() - inset(text), \
        f"{what} is cut at the bottom: it ends at y={bottom} of {text.winfo_height()}"
    header = overlay.status.master
    assert text.winfo_rooty() + top >= header.winfo_rooty() + header.winfo_height(), \
        f"{what} is under the header"
    return top, bottom


def content_height(text: tk.Text) -> int:
    """All the text's display lines, in pixels, wherever the pane is scrolled."""
    return int(text.tk.call(str(text), "count", "-update", "-ypixels", "1.0", "end"))


def top_line(text: tk.Text) -> str:
    return text.index("@0,0")


def last_line(text: tk.Text) -> str:
    """The last line with text (not the empty one after a final newline)."""
    return "end-2c" if text.get("end-2c", "end-1c") == "\n" else "end-1c"


def test_a_short_text_shows_its_first_line_whole_below_the_header(overlay: Overlay) -> None:
    overlay.on_event(UserSaid("hello", 1))
    overlay.on_event(ReplyDelta(1, text="Hi there."))
    shown(overlay)
    text = overlay.text
    assert text.index("@0,0") == "1.0"
    assert assert_whole(overlay, "1.0", "the first line")[0] == inset(text)
    assert_whole(overlay, "end-1c", "the reply")
    screenshot(shots_dir() / "overlay_short_text.png")


def test_the_first_run_welcome_is_shown_from_its_first_line(overlay: Overlay) -> None:
    overlay.on_event(Notice("Preparing the speech model (once)… done."))
    overlay.on_event(Notice(WELCOME))
    shown(overlay)
    text = overlay.text
    assert content_height(text) > text.winfo_height(), "the welcome should not fit the pane"
    welcome = text.search("Welcome to voice-agent.", "1.0")
    assert welcome, overlay.transcript()
    assert text.compare(top_line(text), "==", welcome), \
        f"the pane starts at {top_line(text)!r}: {text.get(top_line(text), 'end')[:60]!r}"
    assert_whole(overlay, welcome, "the welcome's first line")
    screenshot(shots_dir() / "overlay_first_run_welcome.png")


def test_a_long_conversation_follows_the_newest_line_and_cuts_none(overlay: Overlay) -> None:
    shown(overlay)
    text = overlay.text
    for turn in range(1, 6):
        overlay.on_event(UserSaid(f"question number {turn}, asked by the user", turn))
        overlay.on_event(StateChanged(AgentState.THINKING, turn))
        for word in f"answer {turn}: a reply long enough to wrap over two lines of the "\
                    "overlay so that the pane must scroll to show the newest words".split():
            overlay.on_event(ReplyDelta(turn, text=word + " "))
            assert settle(overlay.root, lambda: True)
            assert_whole(overlay, top_line(text), "the top line")
            assert_whole(overlay, last_line(text), "the newest line")
        overlay.on_event(ReplyDone(turn, text="…", heard="…", interrupted=False))
        overlay.on_event(StateChanged(AgentState.IDLE, turn))
    assert content_height(text) > 2 * text.winfo_height(), "it should not fit the pane"
    assert "newest words" in text.get(top_line(text), "end")
    bottom = assert_whole(overlay, last_line(text), "the newest line")[1]
    assert bottom == text.winfo_height() - inset(text), "a row is left empty under the text"
    # Listening shows the level meter above the pane: the pane shrinks and still cuts none.
    pane = text.master
    height = pane.winfo_height()
    overlay.on_event(StateChanged(AgentState.LISTENING, 6))
    assert settle(overlay.root, lambda: pane.winfo_height() < height), "no meter shown"
    assert_whole(overlay, top_line(text), "the top line while listening")
    assert_whole(overlay, last_line(text), "the newest line while listening")
    screenshot(shots_dir() / "overlay_long_conversation.png")
    overlay.on_event(StateChanged(AgentState.IDLE, 6))
    assert settle(overlay.root, lambda: pane.winfo_height() == height)
    assert_whole(overlay, top_line(text), "the top line")
    assert_whole(overlay, last_line(text), "the newest line")
