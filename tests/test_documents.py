"""Tests for agent.text.documents: files, streams and strings as lazy pieces to read aloud.

The PDFs are built by hand here (Helvetica text streams, a tiny image for the scans, an
/Encrypt dictionary for the locked one), so no PDF writer is needed to test the reader.
"""

from __future__ import annotations

import io
import os
import random
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.text import documents, to_speakable
from agent.text.documents import (
    MAX_PIECE_CHARS,
    DocumentError,
    detect_language,
    document_from_stream,
    document_from_text,
    open_document,
)
from agent.text.speakable import CODE_BLOCK_PHRASE
from agent.tts.voices import LANGUAGES
from harness.pdf import IMAGE, Line, build_pdf, text_page

# --- hand-built PDFs ---------------------------------------------------------------------

FULL = "The reader takes a document and reads it aloud, one paragraph at a"  # a full-width line


def read_all(document: documents.Document) -> list[str]:
    return list(document.pieces())


def error_of(call: object) -> str:
    assert callable(call)
    with pytest.raises(DocumentError) as caught:
        result = call()
        if isinstance(result, documents.Document):
            read_all(result)
    return str(caught.value)


# --- PDF ------------------------------------------------------------------------------------


def test_pdf_pages_become_paragraphs_in_order(tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(build_pdf([
        text_page([FULL, "time, so that the first words come at once and memory stays",
                   "small. The end of the first paragraph.",
                   FULL, "time, in a second paragraph that runs on to the next",
                   "page with an exam-"],
                  number=1),
        text_page(["ple of a hyphenated word and the café. The end."], number=2),
    ]))
    document = open_document(path)
    assert (document.kind, document.origin) == ("pdf", str(path))
    pieces = read_all(document)
    assert len(pieces) == 2, pieces
    assert pieces[0].startswith("The reader takes a document")
    assert pieces[0].endswith("The end of the first paragraph.")
    assert "second paragraph" in pieces[1]
    assert "next page with an example of" in " ".join(pieces[1].split())
    assert "café" in pieces[1]
    assert not any(piece.strip() in ("1", "2") for piece in pieces)  # page numbers dropped
    assert "1\n" not in pieces[0] and "\n2\n" not in pieces[1]
    assert read_all(document) == pieces  # a file can be read again


def test_pdf_is_known_by_its_magic_not_its_name(tmp_path: Path) -> None:
    path = tmp_path / "download"
    path.write_bytes(build_pdf([text_page(["Hello from a PDF without a suffix."])]))
    document = open_document(path)
    assert document.kind == "pdf"
    assert read_all(document) == ["Hello from a PDF without a suffix."]


def test_pdf_without_a_text_layer_says_to_run_ocr(tmp_path: Path) -> None:
    path = tmp_path / "scan.pdf"
    path.write_bytes(build_pdf([IMAGE, IMAGE]))
    document = open_document(path)  # opening is cheap; the check runs on reading
    message = error_of(document.pieces().__next__)
    assert "no text layer" in message and "ocrmypdf" in message and str(path) in message


def test_a_long_scan_is_told_without_reading_every_page(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "book-scan.pdf"
    path.write_bytes(build_pdf([IMAGE] * 300))
    pages_read: list[int] = []
    real = documents._page_text

    def counting(document: object, index: int) -> str:
        pages_read.append(index)
        return real(document, index)

    monkeypatch.setattr(documents, "_page_text", counting)
    message = error_of(lambda: open_document(path))
    assert "no text layer" in message
    assert len(pages_read) <= documents.PDF_FIRST_PAGES + documents.PDF_PROBE_PAGES + 1
    assert max(pages_read) > 200  # the probe looked past the start


def test_a_pdf_whose_text_starts_after_some_picture_pages_is_read(tmp_path: Path) -> None:
    path = tmp_path / "cover.pdf"
    pages: list[list[Line] | str] = [IMAGE] * 6 + [text_page([f"Chapter {n} begins here."])
                                                   for n in range(1, 13)]
    path.write_bytes(build_pdf(pages))
    pieces = read_all(open_document(path))
    assert pieces[0] == "Chapter 1 begins here."
    assert "Chapter 12 begins here." in pieces[-1]


def test_encrypted_pdf(tmp_path: Path) -> None:
    path = tmp_path / "locked.pdf"
    path.write_bytes(build_pdf([text_page(["Secret."])], encrypted=True))
    message = error_of(lambda: open_document(path))
    assert "encrypted" in message and "qpdf --decrypt" in message and str(path) in message


def test_damaged_and_misnamed_pdfs(tmp_path: Path) -> None:
    fake = tmp_path / "fake.pdf"
    fake.write_text("This is not really a PDF at all.\n")
    assert "not a PDF" in error_of(lambda: open_document(fake))
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 4)
    message = error_of(lambda: open_document(broken))
    assert "cannot be opened" in message and str(broken) in message


# --- HTML -----------------------------------------------------------------------------------

PAGE = """<!DOCTYPE html>
<html><head><title>Page title</title>
<meta charset="utf-8"><style>p { color: red }</style>
<script>var secret = "do not read me";</script>
<body>
<nav><a href="/">Home</a> | <a href="/about">Menu entry</a></nav>
<h1>Big   heading</h1>
<p>First paragraph with <b>bold</b> text,
   spread over lines &amp; an entity.</p>
<script>alert("never")</script>
<ul><li>one item</li><li><p>second item</p></li></ul>
<pre>x = 1

y = 2</pre>
<p>Last words.<br>After a break.</p>
</body></html>
"""


def test_html_drops_scripts_styles_navigation_and_head(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(PAGE)
    document = open_document(path)
    assert document.kind == "html"
    pieces = read_all(document)
    joined = "\n".join(pieces)
    for hidden in ("secret", "never", "color", "Menu entry", "Page title", "Home"):
        assert hidden not in joined
    assert pieces[0] == "# Big heading"
    assert pieces[1] == "First paragraph with bold text, spread over lines & an entity."
    assert pieces[2:4] == ["- one item", "- second item"]
    assert pieces[4] == "```\nx = 1\n\ny = 2\n```"  # one piece, blank line and all
    assert pieces[5] == "Last words. After a break."
    spoken = [to_speakable(piece) for piece in pieces]
    assert spoken[0] == "Big heading."
    assert spoken[4] == CODE_BLOCK_PHRASE


def test_html_is_sniffed_without_a_suffix_and_head_may_be_left_open(tmp_path: Path) -> None:
    path = tmp_path / "saved"
    path.write_text("<html><head><title>T</title><body><p>Body text.</p></body></html>")
    document = open_document(path)
    assert document.kind == "html"
    assert read_all(document) == ["Body text."]


def test_html_of_only_scripts_has_nothing_to_read(tmp_path: Path) -> None:
    path = tmp_path / "app.html"
    path.write_text("<html><body><script>" + "x();" * 5000 + "</script></body></html>")
    assert "nothing to read" in error_of(lambda: open_document(path))


def test_html_declared_charset_is_used(tmp_path: Path) -> None:
    path = tmp_path / "old.htm"
    path.write_bytes('<html><meta charset="iso-8859-1"><p>Déjà vu.</p></html>'.encode("latin-1"))
    assert read_all(open_document(path)) == ["Déjà vu."]


# --- Markdown and plain text ----------------------------------------------------------------


def test_markdown_passes_through_and_keeps_code_blocks_whole(tmp_path: Path) -> None:
    path = tmp_path / "notes.md"
    path.write_text("# Title\n\nSome *emphasis* and a [link](https://example.com).\n\n"
                    "```python\ndef f():\n\n    return 1\n```\n\nAfter the code.\n")
    document = open_document(path)
    assert document.kind == "markdown"
    pieces = read_all(document)
    assert pieces == ["# Title", "Some *emphasis* and a [link](https://example.com).",
                      "```python\ndef f():\n\n    return 1\n```", "After the code."]
    assert to_speakable(pieces[2]) == CODE_BLOCK_PHRASE


def test_a_long_code_block_is_cut_into_closed_fences(tmp_path: Path) -> None:
    path = tmp_path / "long.markdown"
    code = "".join(f"line_{i} = compute({i})  # a comment\n" for i in range(400))
    path.write_text(f"Before.\n\n~~~~ python\n{code}~~~~\n\nAfter.\n")
    pieces = read_all(open_document(path))
    assert pieces[0] == "Before." and pieces[-1] == "After."
    blocks = pieces[1:-1]
    assert len(blocks) > 3
    for block in blocks:
        assert len(block) <= MAX_PIECE_CHARS
        assert block.startswith("~~~~") and block.endswith("~~~~")
        assert to_speakable(block) == CODE_BLOCK_PHRASE
    assert sum(block.count("compute(") for block in blocks) == 400


def test_a_long_paragraph_is_cut_at_sentence_ends(tmp_path: Path) -> None:
    sentences = [f"Sentence number {i} says something worth hearing." for i in range(200)]
    path = tmp_path / "one-paragraph.txt"
    path.write_text(" ".join(sentences) + "\n\nA second paragraph.\n")
    pieces = read_all(open_document(path))
    assert pieces[-1] == "A second paragraph."
    body = pieces[:-1]
    assert len(body) >= 4
    assert all(len(piece) <= MAX_PIECE_CHARS for piece in body)
    assert all(piece.endswith("hearing.") for piece in body)
    assert " ".join(body) == " ".join(sentences)


def test_text_without_any_break_is_still_cut(tmp_path: Path) -> None:
    path = tmp_path / "blob.txt"
    path.write_text("x" * 10_000)
    pieces = read_all(open_document(path))
    assert "".join(pieces) == "x" * 10_000
    assert all(len(piece) <= MAX_PIECE_CHARS for piece in pieces)


def _paragraphs(count: int) -> Iterator[str]:
    rnd = random.Random(3)
    words = "voice agent reads the long text aloud while memory stays flat and small".split()
    for i in range(count):
        yield f"Paragraph {i}. " + " ".join(rnd.choice(words) for _ in range(rnd.randrange(
            5, 120))) + ".\n" + ("\n" if rnd.random() < 0.8 else "")


def test_a_2_mb_file_streams_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    with path.open("w") as out:
        size = 0
        count = 0
        for paragraph in _paragraphs(100_000):
            out.write(paragraph)
            size += len(paragraph)
            count += 1
            if size > 2_000_000:
                break
    assert path.stat().st_size > 2_000_000
    document = open_document(path)
    pieces = document.pieces()
    tracemalloc.start()
    try:
        first = next(pieces)
        assert first.startswith("Paragraph 0.")
        seen = 1
        longest = len(first)
        last = first
        for piece in pieces:  # consumed one at a time, as the reader does
            seen += 1
            longest = max(longest, len(piece))
            last = piece
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 200_000, f"peak {peak} bytes while reading a {size}-byte file"
    assert longest <= MAX_PIECE_CHARS
    assert last.startswith(f"Paragraph {count - 1}.")
    assert seen > count // 2  # most paragraphs are pieces of their own


def test_one_huge_line_streams_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "line.txt"
    path.write_text("All on one line. " * 120_000)  # 2 MB, no newline
    tracemalloc.start()
    try:
        count = sum(1 for _ in open_document(path).pieces())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 200_000
    assert count >= 2_000_000 // MAX_PIECE_CHARS


# --- encodings and bad input -------------------------------------------------------------


def test_latin1_utf8_bom_and_utf16_text_read(tmp_path: Path) -> None:
    latin = tmp_path / "latin.txt"
    latin.write_bytes("Un café à Paris, déjà fermé. Œuvre complète.\n".encode("cp1252"))
    assert read_all(open_document(latin)) == ["Un café à Paris, déjà fermé. Œuvre complète."]
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbfHello with a BOM.\r\nSecond line.\r\n")
    assert read_all(open_document(bom)) == ["Hello with a BOM.\nSecond line."]
    wide = tmp_path / "wide.txt"
    wide.write_text("Texte en UTF-16: ça marche.\n", encoding="utf-16")
    assert read_all(open_document(wide)) == ["Texte en UTF-16: ça marche."]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.txt"
    message = error_of(lambda: open_document(path))
    assert "no such file" in message and str(path) in message and "`-`" in message


def test_directory(tmp_path: Path) -> None:
    message = error_of(lambda: open_document(tmp_path))
    assert "is a directory" in message and str(tmp_path) in message


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "secret.txt"
    path.write_text("private")
    if os.geteuid() != 0:
        path.chmod(0)
    else:  # root reads anything: make the open fail as it would for a user
        real_open = Path.open

        def refuse(self: Path, *args: object, **kwargs: object) -> object:
            if self == path:
                raise PermissionError(13, "Permission denied", str(self))
            return real_open(self, *args, **kwargs)  # type: ignore[call-overload]

        monkeypatch.setattr(Path, "open", refuse)
    message = error_of(lambda: open_document(path))
    assert "permission denied" in message and "chmod u+r" in message and str(path) in message


@pytest.mark.parametrize(("name", "data", "expected"), [
    ("nul.txt", b"text\x00with\x00nul bytes" * 10, "binary data"),
    ("random.dat", bytes(random.Random(5).randrange(256) for _ in range(5000)), "binary data"),
    ("photo.txt", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "is an image (PNG)"),
    ("photo", b"\xff\xd8\xff\xe0" + b"\x00" * 100, "is an image (JPEG)"),
    ("picture.jpg", b"not really a jpeg", "is an image (JPG)"),
    ("report.docx", b"PK\x03\x04" + b"\x00" * 100, "ZIP archive"),
    ("empty.txt", b"", "nothing to read"),
    ("blank.md", b"  \n\n\t \n", "nothing to read"),
])
def test_bad_input(tmp_path: Path, name: str, data: bytes, expected: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    message = error_of(lambda: open_document(path))
    assert expected in message and str(path) in message
    if "image" in expected:
        assert "OCR" in message


def test_whitespace_past_the_sniffed_head_is_found_on_reading(tmp_path: Path) -> None:
    path = tmp_path / "spaces.txt"
    path.write_text(" \n" * 20_000)
    document = open_document(path)
    assert "nothing to read" in error_of(document.pieces().__next__)


# --- streams and strings ------------------------------------------------------------------


def test_binary_stream_of_text() -> None:
    document = document_from_stream(io.BytesIO(b"First paragraph.\n\nSecond one.\n"))
    assert (document.origin, document.kind) == ("standard input", "text")
    assert read_all(document) == ["First paragraph.", "Second one."]
    assert "only once" in error_of(lambda: read_all(document))


def test_text_stream_with_a_buffer_like_stdin_takes_a_pdf() -> None:
    stdin = io.TextIOWrapper(io.BytesIO(build_pdf([text_page(["Piped in."])])))
    document = document_from_stream(stdin)
    assert document.kind == "pdf"
    assert read_all(document) == ["Piped in."]


def test_string_stream_with_html() -> None:
    document = document_from_stream(io.StringIO("<!doctype html><p>One</p><p>Two</p>"), "pipe")
    assert (document.origin, document.kind) == ("pipe", "html")
    assert read_all(document) == ["One", "Two"]


class _Trickle(io.RawIOBase):
    """A pipe: short reads of at most 7 bytes."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        chunk = self._data.read(min(7, len(buffer)))
        buffer[:len(chunk)] = chunk
        return len(chunk)


def test_short_reads_and_bad_streams() -> None:
    text = "Déjà lu, dans un tuyau.\n\n" * 1000
    document = document_from_stream(_Trickle(text.encode()))  # type: ignore[arg-type]
    assert read_all(document) == ["Déjà lu, dans un tuyau."] * 1000
    assert "nothing to read" in error_of(lambda: document_from_stream(io.BytesIO(b" \n")))
    assert "binary data" in error_of(
        lambda: document_from_stream(io.BytesIO(b"\x00\x01\x02" * 100)))
    assert "give its file name" in error_of(
        lambda: document_from_stream(io.StringIO("%PDF-1.4 ...")))


def test_named_pipe(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def write() -> None:
        with fifo.open("w") as out:
            out.write("Through a named pipe.\n")

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert read_all(open_document(fifo)) == ["Through a named pipe."]
    finally:
        writer.join(5)


def test_text_from_the_clipboard_is_lazy_and_rereadable() -> None:
    text = "".join(_paragraphs(60_000))
    assert len(text) > 3_000_000
    document = document_from_text(text)
    assert (document.origin, document.kind) == ("the clipboard", "text")
    tracemalloc.start()
    try:
        pieces = document.pieces()
        first = next(pieces)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert first.startswith("Paragraph 0.")
    assert peak < 200_000  # no copy of the text, nor of all its pieces
    assert next(document.pieces()) == first
    assert "nothing to read" in error_of(lambda: document_from_text("  \n "))
    assert document_from_text("<html><body><p>Hi</p>").kind == "html"


# --- language -----------------------------------------------------------------------------

SAMPLES = {
    "en-us": "The agent reads the document aloud, and it stops when you tell it to. This is "
             "what the first paragraph of a report would say.",
    "fr-fr": "L'agent lit le document à voix haute et il s'arrête quand vous le lui demandez. "
             "C'est ce que dirait le premier paragraphe d'un rapport.",
    "es": "El agente lee el documento en voz alta y se detiene cuando se lo pides. Esto es lo "
          "que diría el primer párrafo de un informe.",
    "it": "L'agente legge il documento ad alta voce e si ferma quando glielo chiedi. Questo è "
          "quello che direbbe il primo paragrafo di una relazione.",
    "pt-br": "O agente lê o documento em voz alta e para quando você pede. Isso é o que diria "
             "o primeiro parágrafo de um relatório.",
    "ja": "エージェントは文書を声に出して読み上げ、頼めば止まります。"
          "これは報告書の最初の段落です。",
    "cmn": "助手会大声朗读文档，你让它停下时它就会停下。这是一份报告的第一段。",
    "hi": "सहायक दस्तावेज़ को ज़ोर से पढ़ता है और जब आप कहते हैं तो रुक जाता है। "
          "यह रिपोर्ट का पहला अनुच्छेद है।",
}


@pytest.mark.parametrize("code", SAMPLES)
def test_detect_language(code: str) -> None:
    assert detect_language(SAMPLES[code]) == code
    assert code in {language.g2p for language in LANGUAGES.values()}


def test_detect_language_declines_when_unsure() -> None:
    assert detect_language("") is None
    assert detect_language("12345 !!!") is None
    assert detect_language("OK") is None
    assert detect_language("Агент читает документ вслух и останавливается.") is None
    # Japanese with many kanji is still Japanese; English with a Chinese name still English
    assert detect_language("東京都の天気予報によると、明日は雨です。") == "ja"
    assert detect_language("The meeting with 王先生 is on Monday, and the agenda is in the "
                           "shared folder for the team.") == "en-us"
    # only the first 1,000 characters count
    assert detect_language(SAMPLES["en-us"] * 10 + SAMPLES["es"] * 30) == "en-us"
