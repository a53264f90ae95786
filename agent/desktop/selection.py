"""The text to read aloud: the selection the user made anywhere on the desktop, or the
clipboard ("read it to me", issue 17).

Backends, chosen by `choose_backend()`:
- "x11": the PRIMARY (what is highlighted) and CLIPBOARD (what was copied) selections, read
  with python-xlib (already used by the hotkeys, tray and overlay) on a connection of the
  read's own, on the caller's thread: TARGETS first, so an image or other binary data is
  refused, then a text target (UTF8_STRING, then STRING and the like), INCR transfers for
  large selections, and one deadline over everything, so an owner that never answers cannot
  hang the agent.
- "wayland": `wl-paste [--primary] --list-types`, then `wl-paste --no-newline --type T`
  (wl-clipboard), with the same deadline; without wl-paste, an error that says to install it.
  Chosen when WAYLAND_DISPLAY is set and wl-paste is there, or when there is no X at all.
- "copy": Windows and macOS, which have no primary selection: the clipboard is read through
  the Tk thread, and the "selection" is had by pressing the copy shortcut (pynput), reading
  the clipboard, and putting back the text the user had there. Small and untested here (no
  such desktop in CI): see `_CopyShortcut`.

Why not Tk's `selection get` for X11 (the first plan): measured under Xvfb, Tk 8.6 refuses any
property over 400 KB ("selection property too large", its MAX_PROP_WORDS), and xclip offers
1 MB in one property, and bigger texts in INCR pieces that Tk refuses as well. Worse, when Tk
gives up in the middle of an INCR transfer it leaves the owner waiting: after Tk failed on a
10 MB clipboard owned by xclip, `xclip -o` in another program hung with nothing (10 s, then
killed). Tk also blocks the Tk thread in a nested event loop for up to its fixed 5 s owner
timeout (measured 5.06 s). python-xlib reads any size, finishes every transfer it starts (past
the size cap it deletes the remaining pieces unread), and runs off the Tk thread. Measured:
10 MB in about 0.05 s from xclip and from a GTK owner (256 KB pieces), 0.02 s with the cap.

Results: `Selection(text, source, truncated)`; every failure is a `SelectionError` whose
message tells the user what to do, and whose `kind` says which failure it was.

Threads: `SelectionReader.primary()` / `.clipboard()` block for at most their timeout (wl-paste
runs included): call them off the Tk thread (a worker thread), then post
the text. On X11 a selection owned by our own Tk window (text selected in the overlay) is
answered by the Tk thread, so a read on the Tk thread would wait for itself: a reader made
with a Tk root refuses that with RuntimeError.

`read_clipboard_headless()` / `read_primary_headless()` are for `voice-agent read` without a
running agent: no Tk loop is needed on X11 or Wayland; on Windows and macOS a short-lived Tk
root reads the clipboard.
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import os
import select
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    import tkinter as tk

log = logging.getLogger(__name__)

PRIMARY = "primary selection"
CLIPBOARD = "clipboard"
COPIED = "selection"  # Windows/macOS: the selection, had through the copy shortcut

# More than anyone listens to (about a day of speech), and it keeps the text pipeline's work
# bounded; reading is not the limit (10 MB take about 0.05 s). None: no limit.
DEFAULT_MAX_BYTES = 1 << 20
DEFAULT_TIMEOUT_S = 2.0

Backend = Literal["x11", "wayland", "copy", "none"]
Kind = Literal["nothing", "image", "not-text", "timeout", "missing-tool", "no-display",
               "failed"]

WL_CLIPBOARD_HINT = ("install wl-clipboard (Debian/Ubuntu: sudo apt install wl-clipboard; "
                     "Fedora: sudo dnf install wl-clipboard; Arch: sudo pacman -S wl-clipboard)")

# Text targets, best first: X11 atoms and the MIME types Wayland (and some X11 apps) offer.
TEXT_TARGETS = ("UTF8_STRING", "text/plain;charset=utf-8", "STRING", "TEXT", "text/plain")
# Targets every owner lists besides its data: alone, they mean nothing to read.
META_TARGETS = frozenset({"TARGETS", "TIMESTAMP", "MULTIPLE", "SAVE_TARGETS", "DELETE",
                          "INSERT_SELECTION", "INSERT_PROPERTY", "LENGTH", "ATOM_PAIR"})


@dataclass(frozen=True)
class Selection:
    text: str
    source: str  # PRIMARY, CLIPBOARD or COPIED: for messages ("reading the clipboard")
    truncated: bool = False  # longer than the reader's max_bytes: `text` is its beginning


class SelectionError(Exception):
    """A read that gave no text; the message says what to do."""

    def __init__(self, message: str, kind: Kind = "failed") -> None:
        super().__init__(message)
        self.kind: Kind = kind


def nothing_selected(source: str, retry: str) -> SelectionError:
    if source == CLIPBOARD:
        return SelectionError(f"The clipboard is empty. Copy some text first, then {retry}.",
                              "nothing")
    return SelectionError(f"Nothing is selected. Select some text first, then {retry}.",
                          "nothing")


def not_text(source: str, types: Iterable[str]) -> SelectionError:
    offered = [t for t in types if t not in META_TARGETS]
    if any(t.lower().startswith("image/") for t in offered):
        return SelectionError(f"The {source} is an image, not text: select or copy text to "
                              "have it read.", "image")
    shown = ", ".join(offered[:4]) + (", ..." if len(offered) > 4 else "")
    return SelectionError(f"The {source} is not text (it is offered as {shown}): select or "
                          "copy text to have it read.", "not-text")


def owner_timed_out(source: str, timeout: float) -> SelectionError:
    return SelectionError(f"The application that holds the {source} did not answer within "
                          f"{timeout:g} s. Try again, or copy the text and read the clipboard.",
                          "timeout")


def choose_backend(env: Mapping[str, str] | None = None, platform: str | None = None,
                   which: Callable[[str], str | None] = shutil.which) -> Backend:
    """Which backend reads the selection here (see the module's docstring)."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if platform == "win32" or platform == "darwin":
        return "copy"
    wayland, x11 = bool(env.get("WAYLAND_DISPLAY")), bool(env.get("DISPLAY"))
    if wayland and (which("wl-paste") or not x11):
        return "wayland"
    if x11:
        return "x11"
    return "none"


def _no_display() -> SelectionError:
    return SelectionError("There is no display to read a selection from (DISPLAY and "
                          "WAYLAND_DISPLAY are not set). Pass the text itself instead.",
                          "no-display")


def _decoded(data: bytes, encoding: str, truncated: bool) -> str:
    # A cut may split a character: the incremental decoder drops the unfinished tail.
    return codecs.getincrementaldecoder(encoding)("replace").decode(data, final=not truncated)


def _encoding_of(type_name: str) -> str:
    # COMPOUND_TEXT (an answer to TEXT) is Latin-1 outside its escape sequences
    return "latin-1" if type_name in ("STRING", "COMPOUND_TEXT") else "utf-8"


def _pick_text_target(types: list[str]) -> str | None:
    lowered = {t.lower(): t for t in types}
    for wanted in TEXT_TARGETS:
        if wanted.lower() in lowered:
            return lowered[wanted.lower()]
    return None


# -- X11: python-xlib on a connection of the read's own --------------------------------------

class _Deadline(Exception):
    pass


def read_x11(selection: Literal["PRIMARY", "CLIPBOARD"], *, timeout: float = DEFAULT_TIMEOUT_S,
             max_bytes: int | None = DEFAULT_MAX_BYTES, display: str | None = None,
             retry: str = "try again") -> Selection:
    """Read an X selection as text, within `timeout` seconds all told."""
    from Xlib import X
    from Xlib import display as xdisplay
    from Xlib import error as xerror

    source = PRIMARY if selection == "PRIMARY" else CLIPBOARD
    deadline = time.monotonic() + timeout
    try:
        conn = xdisplay.Display(display)
    except (xerror.DisplayError, OSError) as exc:
        raise SelectionError(f"Cannot reach the X display {display or os.environ.get('DISPLAY')!r}"
                             f": {exc}.", "no-display") from exc
    x_errors: list[object] = []
    conn.set_error_handler(lambda err, *_: x_errors.append(err))
    try:
        reader = _XRead(conn, X, selection, deadline, max_bytes)
        owner = conn.get_selection_owner(conn.intern_atom(selection))
        if owner == X.NONE:
            raise nothing_selected(source, retry)
        try:
            data, type_name, truncated = reader.read()
        except _Deadline:
            raise owner_timed_out(source, timeout) from None
        except _NoText as exc:
            if exc.types is None or not [t for t in exc.types if t not in META_TARGETS]:
                raise nothing_selected(source, retry) from None
            raise not_text(source, exc.types) from None
        text = _decoded(data, _encoding_of(type_name), truncated)
        if not text.strip():
            raise nothing_selected(source, retry)
        if x_errors:
            log.debug("X errors while reading the %s: %s", source, x_errors)
        return Selection(text, source, truncated)
    finally:
        with contextlib.suppress(Exception):
            conn.close()


class _NoText(Exception):
    def __init__(self, types: list[str] | None) -> None:
        super().__init__()
        self.types = types  # what the owner offers; None: it would not say


class _XRead:
    """One read: TARGETS, then the best text target, INCR included (ICCCM 2.7.2)."""

    def __init__(self, conn: Any, X: Any, selection: str, deadline: float,
                 max_bytes: int | None) -> None:
        self.conn, self.X, self.deadline, self.max_bytes = conn, X, deadline, max_bytes
        self.selection = conn.intern_atom(selection)
        self.window = conn.screen().root.create_window(0, 0, 1, 1, 0, X.CopyFromParent)
        self.incr = conn.intern_atom("INCR")

    def read(self) -> tuple[bytes, str, bool]:
        """(data, its type's name, truncated)"""
        types = self._targets()
        if types is not None:
            target = _pick_text_target(types)
            if target is None:
                raise _NoText(types)
            candidates = [target]
        else:  # an owner that does not answer TARGETS (old X programs): just ask
            candidates = ["UTF8_STRING", "STRING"]
        for target in candidates:
            got = self._convert(target, "VOICE_AGENT_TEXT")
            if got is not None:
                data, type_name, truncated = got
                # xclip sends what it has, whatever was asked: refuse that here
                if _pick_text_target([type_name]) is None and type_name != "COMPOUND_TEXT":
                    raise _NoText([type_name])
                return data, type_name, truncated
        raise _NoText(None)  # it would not give text after all: as good as nothing there

    def _targets(self) -> list[str] | None:
        got = self._convert("TARGETS", "VOICE_AGENT_TARGETS", limit=64 * 1024)
        if got is None:
            return None
        data, _type_name, _ = got
        atoms = [int.from_bytes(data[i:i + 4], sys.byteorder) for i in range(0, len(data), 4)]
        names = []
        for atom in atoms[:200]:
            with contextlib.suppress(Exception):  # a bad atom in the list: skip it
                names.append(self.conn.get_atom_name(atom))
        return names

    def _wait(self, wanted: Callable[[Any], bool]) -> Any:
        while True:
            while self.conn.pending_events():
                event = self.conn.next_event()
                if wanted(event):
                    return event
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise _Deadline
            select.select([self.conn.fileno()], [], [], left)

    def _convert(self, target_name: str, property_name: str,
                 limit: int | None = -1) -> tuple[bytes, str, bool] | None:
        """Ask the owner for `target`; None when it refuses."""
        X, conn, window = self.X, self.conn, self.window
        limit = self.max_bytes if limit == -1 else limit
        target, prop = conn.intern_atom(target_name), conn.intern_atom(property_name)
        window.convert_selection(self.selection, target, prop, X.CurrentTime)
        conn.flush()
        event = self._wait(lambda e: e.type == X.SelectionNotify
                           and e.requestor.id == window.id and e.target == target)
        if event.property == X.NONE:
            return None
        head = window.get_property(prop, X.AnyPropertyType, 0, 0)
        if head is None:
            return None
        if head.property_type == self.incr:
            return self._incremental(prop, limit)
        data, truncated = self._take(prop, head.bytes_after, limit, head.format)
        window.delete_property(prop)
        conn.flush()
        return data, conn.get_atom_name(head.property_type), truncated

    def _take(self, prop: int, size: int, limit: int | None, fmt: int) -> tuple[bytes, bool]:
        """The property's first `limit` bytes (all of them when None), and whether that cut
        it."""
        wanted = size if limit is None else min(size, max(limit, 0))
        if wanted == 0:
            return b"", size > 0
        reply = self.window.get_property(prop, self.X.AnyPropertyType, 0, (wanted + 3) // 4)
        value = reply.value if reply is not None else b""
        if fmt == 32 or not isinstance(value, (bytes, bytearray)):
            # python-xlib gives 32-bit items as an array; keep them as 4 bytes each
            value = b"".join(int(v).to_bytes(4, sys.byteorder) for v in value)
        return bytes(value[:wanted]), wanted < size

    def _incremental(self, prop: int, limit: int | None) -> tuple[bytes, str, bool]:
        """INCR: delete the property to ask for each chunk; an empty chunk ends it. Past
        `limit` the chunks are deleted unread, so the owner finishes as usual."""
        X, conn, window = self.X, self.conn, self.window
        window.change_attributes(event_mask=X.PropertyChangeMask)
        window.delete_property(prop)
        conn.flush()
        chunks: list[bytes] = []
        got, truncated, type_name = 0, False, ""
        while True:
            self._wait(lambda e: e.type == X.PropertyNotify and e.atom == prop
                       and e.state == X.PropertyNewValue)
            head = window.get_property(prop, X.AnyPropertyType, 0, 0)
            if head is None:  # an event for a chunk read already
                continue
            if not type_name:
                type_name = conn.get_atom_name(head.property_type)
            if head.bytes_after == 0:  # the end
                window.delete_property(prop)
                conn.flush()
                return b"".join(chunks), type_name, truncated
            left = None if limit is None else limit - got
            if left is None or left > 0:
                data, cut = self._take(prop, head.bytes_after, left, head.format)
                chunks.append(data)
                got += len(data)
                truncated = truncated or cut
            else:
                truncated = True
            window.delete_property(prop)
            conn.flush()


# -- Wayland: wl-paste -------------------------------------------------------------------------

def read_wayland(primary: bool, *, timeout: float = DEFAULT_TIMEOUT_S,
                 max_bytes: int | None = DEFAULT_MAX_BYTES, retry: str = "try again",
                 ) -> Selection:
    """Read the Wayland primary selection or clipboard with wl-paste (wl-clipboard)."""
    source = PRIMARY if primary else CLIPBOARD
    exe = shutil.which("wl-paste")
    if exe is None:
        raise SelectionError(f"Reading the {source} on Wayland needs wl-paste: "
                             f"{WL_CLIPBOARD_HINT}.", "missing-tool")
    command = [exe, *(["--primary"] if primary else [])]
    deadline = time.monotonic() + timeout
    out, err, code = _run([*command, "--list-types"], deadline, None)
    if out is None:
        raise owner_timed_out(source, timeout)
    if code != 0:
        raise _wl_paste_failed(err, source, retry)
    types = [line.strip() for line in out[0].decode("utf-8", "replace").splitlines()
             if line.strip()]
    target = _pick_text_target(types)
    if target is None:
        if not [t for t in types if t not in META_TARGETS]:
            raise nothing_selected(source, retry)
        raise not_text(source, types)
    out, err, code = _run([*command, "--no-newline", "--type", target], deadline, max_bytes)
    if out is None:
        raise owner_timed_out(source, timeout)
    data, truncated = out
    if code != 0 and not truncated:
        raise _wl_paste_failed(err, source, retry)
    text = _decoded(data, "utf-8", truncated)
    if not text.strip():
        raise nothing_selected(source, retry)
    return Selection(text, source, truncated)


def _wl_paste_failed(stderr: str, source: str, retry: str) -> SelectionError:
    # wl-clipboard before 2.2 says "No selection", later ones "Nothing is copied".
    if any(words in stderr for words in ("No selection", "Nothing is copied",
                                         "No suitable type")):
        return nothing_selected(source, retry)
    if "support primary selection" in stderr:
        return SelectionError("This Wayland compositor has no primary selection: copy the text "
                              "(Ctrl+C) and read the clipboard instead.", "failed")
    if "Failed to connect" in stderr:
        return SelectionError("wl-paste could not reach the Wayland compositor "
                              f"(WAYLAND_DISPLAY={os.environ.get('WAYLAND_DISPLAY', '')!r}).",
                              "no-display")
    return SelectionError(f"wl-paste failed: {stderr.strip() or 'no message'}.", "failed")


def _run(command: list[str], deadline: float,
         max_bytes: int | None) -> tuple[tuple[bytes, bool] | None, str, int]:
    """Run `command`, keeping the first `max_bytes` of its output (then it is stopped):
    ((output, truncated) or None past the deadline, stderr, exit code)."""
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None and proc.stderr is not None
    out, err = bytearray(), bytearray()
    streams = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    truncated = False
    try:
        while streams:
            left = deadline - time.monotonic()
            if left <= 0:
                return None, err.decode("utf-8", "replace"), -1
            ready, _, _ = select.select(list(streams), [], [], left)
            for fd in ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    del streams[fd]
                    continue
                streams[fd].extend(chunk)
                if fd == proc.stdout.fileno() and max_bytes is not None and len(out) > max_bytes:
                    del out[max_bytes:]
                    truncated = True
                    streams.clear()
                    break
        if truncated:
            return (bytes(out), True), err.decode("utf-8", "replace"), 0
        try:
            code = proc.wait(max(deadline - time.monotonic(), 0.05))
        except subprocess.TimeoutExpired:
            return None, err.decode("utf-8", "replace"), -1
        return (bytes(out), False), err.decode("utf-8", "replace"), code
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


# -- Windows and macOS: the clipboard through Tk, the selection through the copy shortcut ------

T = TypeVar("T")
Post = Callable[[Callable[[], None]], None]


def _tk_clipboard(root: tk.Misc, retry: str, source: str = CLIPBOARD) -> str:
    import tkinter

    try:
        text = str(root.clipboard_get())
    except tkinter.TclError:  # empty, or not text
        raise nothing_selected(source, retry) from None
    if not text.strip():
        raise nothing_selected(source, retry)
    return text


class _CopyShortcut:
    """Windows and macOS. NOT TESTED in CI (no such desktop there): kept small on purpose.

    The clipboard: Tk's `clipboard_get` on the Tk thread. The selection: remember the
    clipboard's text and change count, press Ctrl+C (Cmd+C on macOS) with pynput, wait for the
    clipboard to change, read it, then put the old text back (a clipboard that held something
    other than text, say an image, cannot be put back: it is left with the selection). The
    copy goes to the focused window, so call this after the hotkey's keys are released (with
    Alt still down, the app would see Ctrl+Alt+C)."""

    def __init__(self, root: tk.Misc | None, post: Post | None) -> None:
        self.root, self.post = root, post

    def _on_tk(self, job: Callable[[tk.Misc], T], deadline: float) -> T:
        root, post = self.root, self.post
        if root is None or post is None:
            raise SelectionError("The clipboard is read through the agent's window, which "
                                 "is not there.", "failed")
        done = threading.Event()
        box: list[tuple[bool, Any]] = []

        def run() -> None:
            try:
                box.append((True, job(root)))
            except BaseException as exc:  # handed to the waiting thread
                box.append((False, exc))
            done.set()

        post(run)
        if not done.wait(max(deadline - time.monotonic(), 0.0)):
            raise SelectionError("The agent's window did not answer in time; try again.",
                                 "timeout")
        ok, value = box[0]
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def clipboard(self, timeout: float, retry: str, max_bytes: int | None) -> Selection:
        text = self._on_tk(lambda root: _tk_clipboard(root, retry), time.monotonic() + timeout)
        return _capped(text, CLIPBOARD, max_bytes)

    def primary(self, timeout: float, retry: str, max_bytes: int | None) -> Selection:
        deadline = time.monotonic() + timeout

        def saved_text(root: tk.Misc) -> str | None:
            with contextlib.suppress(SelectionError):
                return _tk_clipboard(root, retry)
            return None

        def restore(root: tk.Misc) -> None:
            root.clipboard_clear()
            root.clipboard_append(saved or "")

        saved = self._on_tk(saved_text, deadline)
        before = _clipboard_change_count()
        _press_copy()
        while _clipboard_change_count() == before:
            if time.monotonic() > deadline:
                raise nothing_selected(COPIED, retry)
            time.sleep(0.02)
        text = self._on_tk(lambda root: _tk_clipboard(root, retry, COPIED), deadline + 1.0)
        if saved is not None:
            self._on_tk(restore, time.monotonic() + 1.0)
        return _capped(text, COPIED, max_bytes)


def _clipboard_change_count() -> int:
    if sys.platform == "win32":
        import ctypes

        return int(ctypes.windll.user32.GetClipboardSequenceNumber())  # type: ignore[attr-defined]
    from AppKit import NSPasteboard  # pyobjc, installed with pynput on macOS

    return int(NSPasteboard.generalPasteboard().changeCount())


def _press_copy() -> None:
    from pynput.keyboard import Controller, Key

    keys = Controller()
    with keys.pressed(Key.cmd if sys.platform == "darwin" else Key.ctrl):
        keys.tap("c")


def _capped(text: str, source: str, max_bytes: int | None) -> Selection:
    data = text.encode("utf-8")
    if max_bytes is not None and len(data) > max_bytes:
        return Selection(_decoded(data[:max_bytes], "utf-8", True), source, True)
    return Selection(text, source)


# -- the reader the agent uses ----------------------------------------------------------------

class SelectionReader:
    """Reads the selection and the clipboard for the running agent.

    `root` and `post` are used on Windows and macOS only (their clipboard is read on the Tk
    thread): `post(fn)` must run `fn` on the Tk thread, e.g. through the app's Mailbox. Make
    the reader on the Tk thread when you pass `root`; call `primary()` and `clipboard()` from
    another thread. `retry` ends the "nothing selected" message: "press ctrl+alt+r"."""

    def __init__(self, root: tk.Misc | None = None, post: Post | None = None, *,
                 backend: Backend | None = None, retry: str = "try again",
                 max_bytes: int | None = DEFAULT_MAX_BYTES) -> None:
        self.backend: Backend = backend or choose_backend()
        self.retry = retry
        self.max_bytes = max_bytes
        self._tk_thread = threading.get_ident() if root is not None else None
        self._copy = _CopyShortcut(root, post)
        # Wayland without wl-paste, with XWayland: X sees what X apps select, and most of what
        # Wayland apps copy; a miss says how to see the rest.
        self._wayland_hint = (self.backend == "x11" and bool(os.environ.get("WAYLAND_DISPLAY")))

    def describe(self) -> str:
        return {"x11": "reading the X11 selection and clipboard (python-xlib)",
                "wayland": "reading the Wayland selection and clipboard with wl-paste",
                "copy": "reading the clipboard; the selection through the copy shortcut",
                "none": "no display: the selection cannot be read"}[self.backend] + (
            f"; {WL_CLIPBOARD_HINT} to read Wayland apps' selections"
            if self._wayland_hint else "")

    def primary(self, timeout: float = DEFAULT_TIMEOUT_S) -> Selection:
        """What is highlighted (X11/Wayland primary selection; elsewhere copied for us)."""
        return self._read(True, timeout)

    def clipboard(self, timeout: float = DEFAULT_TIMEOUT_S) -> Selection:
        return self._read(False, timeout)

    def _read(self, primary: bool, timeout: float) -> Selection:
        if self._tk_thread == threading.get_ident():
            raise RuntimeError("SelectionReader blocks: call it off the Tk thread")
        try:
            if self.backend == "x11":
                return read_x11("PRIMARY" if primary else "CLIPBOARD", timeout=timeout,
                                max_bytes=self.max_bytes, retry=self.retry)
            if self.backend == "wayland":
                return read_wayland(primary, timeout=timeout, max_bytes=self.max_bytes,
                                    retry=self.retry)
            if self.backend == "copy":
                if primary:
                    return self._copy.primary(timeout, self.retry, self.max_bytes)
                return self._copy.clipboard(timeout, self.retry, self.max_bytes)
            raise _no_display()
        except SelectionError as exc:
            if self._wayland_hint and exc.kind == "nothing":
                raise SelectionError(f"{exc} (On Wayland, {WL_CLIPBOARD_HINT} to read the "
                                     "selection of Wayland apps.)", exc.kind) from None
            raise


# -- without a running agent (`voice-agent read --clipboard`) ----------------------------------

def read_clipboard_headless(timeout: float = DEFAULT_TIMEOUT_S, *,
                            retry: str = "run the command again",
                            max_bytes: int | None = DEFAULT_MAX_BYTES) -> Selection:
    """The clipboard, from a process with no Tk loop: X11 and Wayland need none; on Windows
    and macOS a short-lived Tk root on this thread reads it."""
    backend = choose_backend()
    if backend == "copy":
        import tkinter

        root = tkinter.Tk()
        try:
            root.withdraw()
            return _capped(_tk_clipboard(root, retry), CLIPBOARD, max_bytes)
        finally:
            root.destroy()
    return SelectionReader(backend=backend, retry=retry, max_bytes=max_bytes).clipboard(timeout)


def read_primary_headless(timeout: float = DEFAULT_TIMEOUT_S, *,
                          retry: str = "run the command again",
                          max_bytes: int | None = DEFAULT_MAX_BYTES) -> Selection:
    """The primary selection, from a process with no Tk loop (X11 and Wayland only: on Windows
    and macOS the copy shortcut would copy from the terminal, so it says to use the
    clipboard)."""
    backend = choose_backend()
    if backend == "copy":
        raise SelectionError("There is no primary selection here: copy the text, then read "
                             "the clipboard (voice-agent read --clipboard).", "failed")
    return SelectionReader(backend=backend, retry=retry, max_bytes=max_bytes).primary(timeout)
