"""Read it to me, as users do it: the tray agent in its own process under Xvfb, a real X
selection owner (xclip) holding the text, the read and pause keys through the real `keyboard`
backend (the evdev FIFO), `voice-agent read` / `pause` from another process, the real Kokoro
voice at the ALSA tap, and Whisper to hear what was read."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from harness.agent_process import AgentProcess
from harness.desktop import EvdevKeyboard, evdev_keyboard_fifo, require_tools, wait_until
from harness.pdf import IMAGE, build_pdf
from harness.services import read_tap
from harness.speech_samples import wer

pytestmark = [pytest.mark.audio, pytest.mark.slow]

RATE = 24_000
PARAGRAPH = ("The library opens at nine in the morning. Books may be borrowed for three weeks, "
             "and renewed once online. Please return them to the desk near the front door.")
# Five sentences, about 25 s: Whisper hears it in one 30 s window.
LONG = " ".join(f"Sentence number {n} is here, and it says a few ordinary words about the "
                f"weather." for n in range(1, 6))
WER_LIMIT = 0.15  # measured: 0.00-0.04 for PARAGRAPH in af_bella (Whisper base)


class Owner:
    """xclip owning an X selection with `data`, until another owner takes it or `close`."""

    def __init__(self, data: bytes, selection: str = "primary", target: str = "") -> None:
        args = ["xclip", "-quiet", "-selection", selection, "-loops", "0"]
        if target:
            args += ["-t", target]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.close()
        # Owned once xclip answers a read of it.
        assert wait_until(lambda: subprocess.run(
            ["xclip", "-o", "-selection", selection, "-t", "TARGETS"], capture_output=True,
            timeout=5).returncode == 0, timeout=5)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


@pytest.fixture(scope="module")
def keys(evdev_keyboard: EvdevKeyboard) -> Iterator[EvdevKeyboard]:
    """A keyboard FIFO of this module's own, made before its agent starts: an earlier
    test's `keyboard` listener in this process reads the session's FIFO and would take
    the keys, but never this one (the library looks for devices once)."""
    with evdev_keyboard_fifo("-read") as keyboard:
        yield keyboard


@pytest.fixture(scope="module")
def reader_agent(xdisplay: str, session_bus: str, tray_host: str, pulse: Path,
                 keys: EvdevKeyboard, engine,  # type: ignore[no-untyped-def]
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    require_tools("xclip")
    env = dict(os.environ)
    Path(env["AUDIO_TAP_FILE"]).unlink(missing_ok=True)
    process = AgentProcess(tmp_path_factory.mktemp("reader"), "keyboard", env,
                           first_run=False, voice="af_bella")
    process.wait_for(r"models ready", timeout=180)
    process.wait_for(r"hotkeys: \d+ chords hooked", timeout=30)
    yield process
    process.stop()


def fifo_readers(path: Path) -> list[str]:
    """The processes with `path` open (pid and command line): who could take its keys."""
    readers = []
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        with contextlib.suppress(OSError):
            if os.readlink(fd) == str(path):
                pid = fd.parent.parent.name
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                readers.append(f"{pid}: {command.decode(errors='replace')[:120]}")
    return readers


def tap_samples() -> int:
    path = Path(os.environ["AUDIO_TAP_FILE"])
    return path.stat().st_size // 4 if path.exists() else 0


def heard_since(before: int, transcriber) -> str:  # type: ignore[no-untyped-def]
    samples = read_tap(Path(os.environ["AUDIO_TAP_FILE"]))[before:]
    return str(transcriber.transcribe(samples, RATE))


def test_the_read_key_reads_the_x_selection_aloud(
        reader_agent: AgentProcess, keys: EvdevKeyboard,
        transcriber) -> None:  # type: ignore[no-untyped-def]
    k = keys
    owner = Owner(PARAGRAPH.encode())
    try:
        before, start = tap_samples(), reader_agent.mark()
        k.tap(k.KEY_LEFTCTRL, k.KEY_LEFTALT, k.KEY_R)
        try:
            reader_agent.wait_for(r"reading the selection: started at sentence 1", start, 10)
        except AssertionError as missed:  # say who else reads the keyboard FIFO
            raise AssertionError(f"{missed}\nreading {k.path}: {fifo_readers(k.path)}"
                                 ) from None
        reader_agent.wait_for(r"reading: finished", start, 120)
    finally:
        owner.close()
    heard = heard_since(before, transcriber)
    error = wer(PARAGRAPH, heard)
    print(f"read aloud, heard back by Whisper: WER {error:.2f}: {heard!r}")
    assert error <= WER_LIMIT, heard
    assert reader_agent.proc.poll() is None


def test_pause_is_exact_silence_and_resume_goes_on_from_the_same_sentence(
        reader_agent: AgentProcess, keys: EvdevKeyboard,
        transcriber) -> None:  # type: ignore[no-untyped-def]
    k = keys
    owner = Owner(LONG.encode())
    try:
        before, start = tap_samples(), reader_agent.mark()
        reader_agent.send("read")
        reader_agent.wait_for(r"reading: sentence 2\b", start, 60)
        k.tap(k.KEY_LEFTCTRL, k.KEY_LEFTALT, k.KEY_P)  # the pause key
        paused = reader_agent.wait_for(r"reading: paused at sentence (\d+)", start, 5)
        paused_at = tap_samples()
        sentence = int(paused.group(1))
        # A second of the stream while paused: zeros, exactly (after the fade and the
        # blocks already queued in the device when the key came).
        assert wait_until(lambda: tap_samples() > paused_at + RATE + RATE // 2, 10)
        held = read_tap(Path(os.environ["AUDIO_TAP_FILE"]))[paused_at + RATE // 4:
                                                             paused_at + RATE + RATE // 4]
        assert held.size == RATE and not np.any(held), "sound while paused"
        assert np.abs(read_tap(Path(os.environ["AUDIO_TAP_FILE"]))[
            paused_at - RATE // 2:paused_at]).max() > 0.01, "nothing was playing"
        again = reader_agent.mark()
        result = reader_agent.cli("pause")  # `voice-agent pause` goes on
        assert result.returncode == 0, result.stderr
        reader_agent.wait_for(rf"reading: resumed at sentence {sentence}\b", again, 5)
        reader_agent.wait_for(rf"reading: sentence {sentence + 1}\b", again, 60)
        reader_agent.wait_for(r"reading: finished", start, 240)
    finally:
        owner.close()
    heard = heard_since(before, transcriber)
    error = wer(LONG, heard)
    print(f"paused and resumed: WER {error:.2f}")
    assert error <= WER_LIMIT, heard  # nothing lost, nothing said twice


def test_skip_interrupt_and_resume_reading(reader_agent: AgentProcess,
                                           keys: EvdevKeyboard) -> None:
    """Skip forward and back with the keys (ctrl+alt+n, ctrl+alt+b) and the command line."""
    k = keys
    owner = Owner(LONG.encode())
    try:
        start = reader_agent.mark()
        reader_agent.send("read")
        reader_agent.wait_for(r"reading: sentence 2\b", start, 60)
        k.tap(k.KEY_LEFTCTRL, k.KEY_LEFTALT, k.KEY_N)  # the next-sentence key
        reader_agent.wait_for(r"reading: sentence 3\b", start, 30)
        reader_agent.send("next-sentence")
        reader_agent.wait_for(r"reading: sentence 4\b", start, 30)
        mark = reader_agent.mark()
        k.tap(k.KEY_LEFTCTRL, k.KEY_LEFTALT, k.KEY_B)  # the previous-sentence key
        reader_agent.wait_for(r"reading: sentence 3\b", mark, 30)
        mark = reader_agent.mark()
        reader_agent.send("previous-sentence")
        reader_agent.wait_for(r"reading: sentence 2\b", mark, 30)
        reader_agent.send("interrupt")
        stopped = reader_agent.wait_for(r"reading: stopped at sentence (\d+)", mark, 5)
        mark = reader_agent.mark()
        reader_agent.send("resume")  # the menu's "Resume reading"
        reader_agent.wait_for(rf"started at sentence {stopped.group(1)}\b", mark, 10)
        reader_agent.send("interrupt")
        reader_agent.wait_for(r"reading: stopped", mark, 5)
    finally:
        owner.close()


def test_the_clipboard_and_a_file_from_the_command_line(
        reader_agent: AgentProcess, tmp_path: Path) -> None:
    owner = Owner(b"This came from the clipboard.", selection="clipboard")
    try:
        start = reader_agent.mark()
        result = reader_agent.cli("read", "--clipboard")
        assert result.returncode == 0 and "reading in the running agent" in result.stdout
        reader_agent.wait_for(r"reading the clipboard: started", start, 10)
        reader_agent.wait_for(r"reading: finished", start, 60)
    finally:
        owner.close()
    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\n\nThe **meeting** moved to [Thursday](https://example.com).\n")
    start = reader_agent.mark()
    assert reader_agent.cli("read", str(notes)).returncode == 0
    reader_agent.wait_for(r"reading notes\.md: started", start, 10)
    reader_agent.wait_for(r"reading: finished", start, 60)


def test_bad_input_is_told_and_the_agent_stays_usable(
        reader_agent: AgentProcess, tmp_path: Path) -> None:
    subprocess.run(["xclip", "-selection", "primary", "-i", "/dev/null"], check=True,
                   timeout=5)  # an empty selection
    start = reader_agent.mark()
    reader_agent.send("read")
    reader_agent.wait_for(r"(?i)select some text", start, 10)
    image = Owner(b"\x89PNG\r\n\x1a\n" + bytes(64), selection="clipboard", target="image/png")
    try:
        reader_agent.send("read", "clipboard")
        reader_agent.wait_for(r"(?i)image", start, 10)
    finally:
        image.close()
    reader_agent.send("read", f"file:{tmp_path / 'missing.txt'}")
    reader_agent.wait_for(r"missing\.txt", start, 10)
    binary = tmp_path / "program.bin"
    binary.write_bytes(bytes(range(256)) * 64)
    reader_agent.send("read", f"file:{binary}")
    reader_agent.wait_for(r"program\.bin", start, 10)
    scan = tmp_path / "scan.pdf"
    scan.write_bytes(build_pdf([IMAGE]))
    reader_agent.send("read", f"file:{scan}")
    reader_agent.wait_for(r"(?i)no text layer", start, 10)
    reader_agent.send("pause")  # nothing being read: said, nothing breaks
    reader_agent.wait_for(r"(?i)nothing is being read", start, 10)
    # Still usable: a text reads.
    mark = reader_agent.mark()
    reader_agent.send("read", "text:Still here.")
    reader_agent.wait_for(r"reading: finished", mark, 60)


def test_read_without_a_running_agent_reads_a_file_and_standard_input(
        tmp_path: Path, pulse: Path, engine) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "VOICE_AGENT_RUNTIME_DIR": str(tmp_path / "run"),
           "VOICE_AGENT_CONFIG_DIR": str(tmp_path / "config")}
    page = tmp_path / "page.html"
    page.write_text("<html><head><title>x</title><script>var a = 1;</script></head><body>"
                    "<p>A short page to read.</p></body></html>")
    out = tmp_path / "page.wav"
    result = subprocess.run([sys.executable, "-m", "agent", "read", str(page), "--out",
                             str(out)], env=env, capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    with wave.open(str(out)) as written:
        assert 0.8 < written.getnframes() / written.getframerate() < 4.0
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "agent", "read", "-", "--out",
                             str(tmp_path / "stdin.wav")], env=env, capture_output=True,
                            text=True, timeout=120, input="Read from a pipe.")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "stdin.wav").stat().st_size > 44
    assert time.monotonic() - started < 120
    # Not UTF-8 (Latin-1 "café"), and a PDF: piped in, read all the same.
    from harness.pdf import build_pdf, text_page

    for name, data in (("latin1", "Un café, s'il vous plaît. Merci.".encode("latin-1")),
                       ("pdf", build_pdf([text_page(["A page that came down a pipe."])]))):
        wav = tmp_path / f"{name}.wav"
        result = subprocess.run([sys.executable, "-m", "agent", "read", "-", "--out",
                                 str(wav)], env=env, capture_output=True, timeout=120,
                                input=data)
        assert result.returncode == 0, result.stderr.decode()
        assert wav.stat().st_size > 24_000, name  # more than a moment of speech


def test_explain_sends_the_selection_with_the_question_and_keeps_a_note(
        reader_agent: AgentProcess) -> None:
    owner = Owner(PARAGRAPH.encode())
    try:
        start = reader_agent.mark()
        result = reader_agent.cli("explain")
        assert result.returncode == 0, result.stderr
        reader_agent.wait_for(r"asking about the selection: \d+ characters fit", start, 30)
        reader_agent.wait_for(r"tray: speaking", start, 120)
        reader_agent.wait_for(r"tray: idle", start, 120)
    finally:
        owner.close()
    entries = history_entries(reader_agent)
    asked = [e for e in entries if e["role"] == "user"][-1]
    assert asked["content"] == (f"Explain this. [about the selection: "
                                f"{len(PARAGRAPH.split())} words]")


def history_entries(agent: AgentProcess) -> list[dict[str, object]]:
    import json

    path = agent.home / "data" / "history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
