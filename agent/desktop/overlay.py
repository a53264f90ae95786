"""The overlay: a small borderless, always-on-top window near a screen corner with the
conversation (the reply streams in as it arrives), an input line, a status line and an
Interrupt button. It lives on the Tk (main) thread; the app calls it only from there.

Escape interrupts while the agent thinks or speaks, otherwise hides the window. After a quiet
period (overlay.hide_after_s) it hides itself. It takes the keyboard focus only when opened
to talk, so a reply shown while the user works elsewhere does not steal their typing.
"""

from __future__ import annotations

import contextlib
import tkinter as tk
import tkinter.font as tkfont
from collections.abc import Callable
from dataclasses import dataclass

from agent.config import OverlayConfig
from agent.events import (
    AgentEvent,
    AgentState,
    MicrophoneChanged,
    Notice,
    ReadingStatus,
    ReplyDelta,
    ReplyDone,
    StateChanged,
    UserSaid,
)
from agent.history import HistoryEntry

TITLE = "voice-agent"
WIDTH, HEIGHT, MARGIN = 440, 260, 24
BACKGROUND, FOREGROUND, DIM, ACCENT, ERROR = "#202124", "#e8eaed", "#9aa0a6", "#8ab4f8", "#f28b82"
FONT = ("DejaVu Sans", 11)
BUSY = (AgentState.THINKING, AgentState.SPEAKING)


@dataclass(frozen=True)
class OverlayActions:
    """What the overlay asks of the app (called on the Tk thread)."""

    submit: Callable[[str], None]
    interrupt: Callable[[], None]
    level: Callable[[], float] = lambda: -90.0  # the microphone, dBFS, while listening
    # Reading aloud: pause or go on; skip (+1 next sentence, -1 back); ask about the text.
    pause_reading: Callable[[], None] = lambda: None
    skip_reading: Callable[[int], None] = lambda passages: None
    ask_about_reading: Callable[[], None] = lambda: None
    default_question: str = "Explain this."  # Enter on an empty line with a text attached


def give_x11_focus(window_id: int) -> None:
    """XSetInputFocus through python-xlib (it comes with pynput on Linux); without it the
    overlay still opens, and takes keys when the pointer is over it."""
    try:
        from Xlib import X
        from Xlib import display as xdisplay
    except ImportError:
        return
    try:
        connection = xdisplay.Display()
    except Exception:  # no X connection (a Wayland session without XWayland rights)
        return
    try:
        window = connection.create_resource_object("window", window_id)
        window.set_input_focus(X.RevertToParent, X.CurrentTime)
        connection.sync()
    finally:
        connection.close()


class Overlay:
    def __init__(self, root: tk.Tk, actions: OverlayActions, settings: OverlayConfig) -> None:
        self.root = root
        self.actions = actions
        self.settings = settings
        self.state = AgentState.IDLE
        self.visible = False
        self._hide_job: str | None = None
        self._reply_open = False  # a reply line is being written
        self._message_open = False  # the "message" mark starts the newest whole message
        self._voice = ""
        self._microphone = ""  # "🎤 mic on" while the hands-free microphone is open
        self._backend = ""
        self._build()

    # -- the window ----------------------------------------------------------------------------

    def _build(self) -> None:
        root = self.root
        root.title(TITLE)
        root.withdraw()
        root.overrideredirect(True)  # borderless: no title bar, the window manager leaves it
        root.attributes("-topmost", True)
        root.configure(bg=BACKGROUND)
        root.update_idletasks()  # X11: -alpha set before the window exists is silently lost
        with contextlib.suppress(tk.TclError):  # no transparency here: opaque is fine
            root.attributes("-alpha", self.settings.opacity)
        self.place()

        header = tk.Frame(root, bg=BACKGROUND)
        header.pack(fill="x", padx=8, pady=(6, 0))
        # The button first, so a long status line never pushes it out of the window.
        self.interrupt_button = tk.Button(
            header, text="Interrupt", command=self.actions.interrupt, state="disabled",
            bg=BACKGROUND, fg=FOREGROUND, activebackground="#3c4043", relief="flat",
            highlightthickness=0, font=FONT)
        self.interrupt_button.pack(side="right")
        self.status = tk.Label(header, text="starting…", bg=BACKGROUND, fg=DIM, font=FONT,
                               anchor="w")
        self.status.pack(side="left", fill="x", expand=True)

        # While a text is read aloud: its sentence, and pause / skip / ask (shown only then).
        self.reading_bar = tk.Frame(root, bg=BACKGROUND)
        controls = tk.Frame(self.reading_bar, bg=BACKGROUND)
        controls.pack(side="right")
        self.reading_buttons: dict[str, tk.Button] = {}
        for name, label, action in (
                ("previous", "⏮", lambda: self.actions.skip_reading(-1)),
                ("pause", "⏸", self.actions.pause_reading),
                ("next", "⏭", lambda: self.actions.skip_reading(1)),
                ("ask", "Ask", self.actions.ask_about_reading)):
            button = tk.Button(controls, text=label, command=action, bg=BACKGROUND,
                               fg=FOREGROUND, activebackground="#3c4043", relief="flat",
                               highlightthickness=0, font=FONT, padx=4)
            button.pack(side="left")
            self.reading_buttons[name] = button
        self.reading_label = tk.Label(self.reading_bar, text="", bg=BACKGROUND, fg=ACCENT,
                                      font=FONT, anchor="w", justify="left",
                                      wraplength=WIDTH - 170)
        self.reading_label.pack(side="left", fill="x", expand=True)
        self.reading = ReadingStatus()

        # The microphone's level while listening (drawn only then).
        self.meter = tk.Canvas(root, height=6, bg=BACKGROUND, highlightthickness=0)
        self._meter_job: str | None = None

        # The conversation. Tk scrolls a Text by pixels, and at the end of the text it fills
        # the pane down to the last line: in a pane that is not a whole number of lines tall
        # the top line shown is cut, just under the header (issue 14.6). So the Text sits in
        # a frame that takes the space, and is as tall as the whole lines that fit in it.
        self.pane = tk.Frame(root, bg=BACKGROUND, height=1)
        self.text = tk.Text(self.pane, bg=BACKGROUND, fg=FOREGROUND, font=FONT, wrap="word",
                            borderwidth=0, highlightthickness=0, height=1, state="disabled")
        self._line_height = tkfont.Font(root=root, font=FONT).metrics("linespace")
        self.text.tag_configure("user", foreground=ACCENT)
        self.text.tag_configure("reasoning", foreground=DIM)
        self.text.tag_configure("notice", foreground=DIM)
        self.text.tag_configure("error", foreground=ERROR)
        # The newline that ends the text: hidden, so the empty line after it takes no row.
        self.text.tag_configure("tail", elide=True)
        self.pane.pack(fill="both", expand=True, padx=8, pady=4)
        self.text.place(x=0, y=0, relwidth=1.0)
        self.pane.bind("<Configure>", self._fit_text)
        # Laid out, or shrunk by the level meter: the newest text is shown again, whole.
        self.text.bind("<Configure>", lambda _event: self._follow())

        self._attachment = ""
        self.attachment_label = tk.Label(root, text="", bg=BACKGROUND, fg=ACCENT, font=FONT,
                                         anchor="w", justify="left", wraplength=WIDTH - 20)
        self.entry = tk.Entry(root, bg="#303134", fg=FOREGROUND, insertbackground=FOREGROUND,
                              relief="flat", font=FONT, highlightthickness=0)
        self.entry.pack(fill="x", padx=8, pady=(0, 8))
        self.entry.bind("<Return>", self._on_return)
        for widget in (root, self.entry, self.text):
            widget.bind("<Escape>", self._on_escape)
            widget.bind("<Key>", self._on_activity, add="+")

    def _fit_text(self, event: tk.Event[tk.Frame]) -> None:
        """The Text as tall as the whole lines that fit in the pane (at least one)."""
        text = self.text
        pad = 2 * self._inset()
        lines = max(1, (event.height - pad) // self._line_height)
        text.place_configure(height=lines * self._line_height + pad)

    def _inset(self) -> int:
        """From the Text's edge to its first line's top (border, highlight, padding)."""
        return sum(int(self.text.cget(key))
                   for key in ("borderwidth", "highlightthickness", "pady"))

    def place(self) -> None:
        """Near the configured corner of the screen, clear of a panel."""
        screen_w, screen_h = self.root.winfo_screenwidth(), self.root.winfo_screenheight()
        corner = self.settings.corner
        x = MARGIN if corner.endswith("left") else screen_w - WIDTH - MARGIN
        y = MARGIN if corner.startswith("top") else screen_h - HEIGHT - MARGIN * 3
        self.root.geometry(f"{WIDTH}x{HEIGHT}+{x}+{y}")

    # -- showing and hiding --------------------------------------------------------------------

    def show(self, focus: bool = False) -> None:
        if not self.visible:
            self.root.deiconify()
            self.root.attributes("-topmost", True)
            self.visible = True
        self.root.lift()
        if focus:
            self.root.after(30, self._take_focus)
        self._restart_hide_timer()

    def _take_focus(self, tries: int = 10) -> None:
        if not self.root.winfo_viewable():  # not mapped yet: X refuses focus to it
            if tries:
                self.root.after(20, self._take_focus, tries - 1)
            return
        if self.root.tk.call("tk", "windowingsystem") == "x11":
            # No window manager gives focus to a borderless (override-redirect) window, and
            # Tk's `focus -force` does not ask X for it: ask X directly.
            give_x11_focus(int(self.root.wm_frame(), 16))
        self.root.after(50, self._focus_entry)

    def _focus_entry(self) -> None:
        self.root.focus_force()
        self.entry.focus_set()

    def hide(self) -> None:
        if self.visible:
            self.root.withdraw()
            self.visible = False
        self._cancel_hide_timer()

    def toggle(self) -> None:
        if self.visible:
            self.hide()
        else:
            self.show(focus=True)

    def _restart_hide_timer(self) -> None:
        self._cancel_hide_timer()
        if self.settings.hide_after_s > 0 and self.visible:
            self._hide_job = self.root.after(int(self.settings.hide_after_s * 1000),
                                             self._hide_if_quiet)

    def _cancel_hide_timer(self) -> None:
        if self._hide_job is not None:
            self.root.after_cancel(self._hide_job)
            self._hide_job = None

    def _hide_if_quiet(self) -> None:
        self._hide_job = None
        if self.state in BUSY or self.entry.get() or self.reading.active:
            self._restart_hide_timer()  # never hide mid-reply or with words half typed
        else:
            self.hide()

    # -- user input ----------------------------------------------------------------------------

    def _on_return(self, _event: object) -> str:
        text = self.entry.get().strip()
        if not text and self._attachment:  # a text attached: Enter alone asks about it
            text = self.actions.default_question
        if text:
            self.entry.delete(0, "end")
            self.set_attachment("")
            self.actions.submit(text)
        return "break"

    def set_attachment(self, note: str) -> None:
        """The text the next question is about ("" once asked): shown above the entry."""
        self._attachment = note
        if note:
            self.attachment_label.configure(text=note)
            if not self.attachment_label.winfo_ismapped():
                self.attachment_label.pack(fill="x", padx=8, before=self.entry)
        elif self.attachment_label.winfo_ismapped():
            self.attachment_label.pack_forget()

    def _on_escape(self, _event: object) -> str:
        if self.state in BUSY:
            self.actions.interrupt()
        else:
            self.hide()
        return "break"

    def _on_activity(self, _event: object) -> None:
        self._restart_hide_timer()

    # -- what the agent says -------------------------------------------------------------------

    def set_details(self, voice: str, backend: str) -> None:
        self._voice, self._backend = voice, backend  # the model that answers, in a few words
        self._render_status()

    def _render_status(self, message: str = "") -> None:
        parts = [message or self.state.value, self._microphone, self._voice, self._backend]
        self.status.configure(text="  ·  ".join(p for p in parts if p),
                              fg=ERROR if self.state is AgentState.ERROR else DIM)

    def _show_meter(self, on: bool) -> None:
        if on and self._meter_job is None:
            self.meter.pack(fill="x", padx=8, after=self.status.master)
            self._draw_meter()
        elif not on and self._meter_job is not None:
            self.root.after_cancel(self._meter_job)
            self._meter_job = None
            self.meter.pack_forget()

    def _draw_meter(self) -> None:
        """20 times a second, only while listening."""
        level = max(0.0, min(1.0, (self.actions.level() + 60.0) / 60.0))  # -60..0 dBFS
        width = self.meter.winfo_width()
        self.meter.delete("all")
        self.meter.create_rectangle(0, 0, int(width * level), 6, fill=ACCENT, width=0)
        self._meter_job = self.root.after(50, self._draw_meter)

    def show_history(self, entries: list[HistoryEntry]) -> None:
        for entry in entries:
            if entry.role == "user":
                self._append(f"You: {entry.content}\n", "user", whole=True)
            elif entry.role == "assistant":
                mark = " [interrupted]" if entry.interrupted else ""
                self._append(f"{entry.content}{mark}\n", whole=True)

    def on_event(self, event: AgentEvent) -> None:
        """An event from the core, already on the Tk thread."""
        if isinstance(event, StateChanged):
            self.state = event.state
            self._show_meter(event.state is AgentState.LISTENING)
            if event.state is AgentState.LISTENING:
                self.show()  # a wake word or talk-over: the user is not at the keyboard
            self.interrupt_button.configure(state="normal" if event.state in BUSY
                                            else "disabled")
            self._render_status(event.message if event.state is AgentState.ERROR else "")
            if event.state is AgentState.ERROR:
                self._end_reply()
                self._append(f"{event.message}\n", "error", whole=True)
                self.show()
        elif isinstance(event, UserSaid):
            self.set_attachment("")  # asked: spoken or typed, the attachment went with it
            self._end_reply()
            self._append(f"You: {event.text}\n", "user", whole=True)
        elif isinstance(event, ReplyDelta):
            self._reply_open = True
            if event.reasoning:
                self._append(event.reasoning, "reasoning")
            if event.text:
                self._append(event.text)
            self.show()
        elif isinstance(event, ReplyDone):
            if event.interrupted and event.text:
                self._append(" [interrupted]", "notice")
            self._end_reply()
        elif isinstance(event, Notice):
            self._end_reply()
            self._append(f"{event.message}\n", "notice", whole=True)
        elif isinstance(event, MicrophoneChanged):  # hands-free: say so while it is open
            self._microphone = "🎤 mic on" if event.is_open else ""
            self._render_status()
        elif isinstance(event, ReadingStatus):
            self._show_reading(event)
        self._restart_hide_timer()

    def _show_reading(self, status: ReadingStatus) -> None:
        """The sentence being read, with its controls, while a text is read (or paused)."""
        self.reading = status
        if status.active:
            if not self.reading_bar.winfo_ismapped():
                self.reading_bar.pack(fill="x", padx=8, after=self.status.master)
            where = f"{status.origin} · paused: " if status.paused else f"{status.origin}: "
            self.reading_label.configure(text=where + status.passage)
            self.reading_buttons["pause"].configure(text="▶" if status.paused else "⏸")
        elif self.reading_bar.winfo_ismapped():
            self.reading_bar.pack_forget()

    def _end_reply(self) -> None:
        if self._reply_open:
            self._append("\n")
            self._reply_open = False

    def _append(self, text: str, tag: str = "", whole: bool = False) -> None:
        """Add text at the end and show it. `whole`: a complete message (a notice, an
        error, the user's line), shown from its first line if it is longer than the pane;
        reply text streams in and is followed to its newest line."""
        self.text.configure(state="normal")
        if whole:
            self.text.mark_set("message", "end-1c")
            self.text.mark_gravity("message", "left")
        self._message_open = whole
        self.text.insert("end", text, tag or ())
        # Keep the window light during an all-day session: the last 200 lines are plenty.
        lines = int(self.text.index("end-1c").split(".")[0])
        if lines > 200:
            self.text.delete("1.0", f"{lines - 200}.0")
        self.text.tag_remove("tail", "1.0", "end")
        if self.text.get("end-2c", "end-1c") == "\n":
            self.text.tag_add("tail", "end-2c")
        self.text.configure(state="disabled")
        self._follow()

    def _follow(self) -> None:
        """Show the newest text: its last line at the bottom, but never past the first
        line of the newest whole message, so a message longer than the pane (the first-run
        welcome) reads from its start. The Text is a whole number of lines tall (_fit_text),
        so every line shown is whole."""
        text = self.text
        if text.winfo_height() <= 1:
            return  # not laid out yet: <Configure> calls again when it is
        text.yview_moveto(0.0)
        text.see("end-1c")  # the least scroll that shows it
        if self._message_open and text.compare("message", "<", "@0,0"):
            text.yview("message")

    def transcript(self) -> str:
        """What the conversation pane shows (for tests and the History view)."""
        return self.text.get("1.0", "end-1c")
