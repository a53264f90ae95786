"""Documents to read aloud: a file, standard input or the clipboard as a lazy stream of pieces.

A `Document` says where its text comes from (`origin`), what it is (`kind`: "text",
"markdown", "html" or "pdf") and yields its text in `pieces()`: paragraph-sized strings of at
most MAX_PIECE_CHARS characters (a longer paragraph is cut at a sentence end), read from the
source only as they are asked for, so a long text starts speaking at once and memory does not
grow with its length. Pieces are raw text for `agent.text.speakable.to_speakable`, which strips
markdown, URLs and code when speaking: Markdown passes through as written, and a fenced code
block is never cut without being closed and reopened, so every piece reads as the whole would.
HTML headings, list items and preformatted blocks come out in Markdown form ("## Title",
"- item", a fence) so the speech filter gives them the same pauses.

Bad input raises DocumentError, whose message names the file and says what to do. What can be
told from the first few KB (missing, a directory, unreadable, binary, an image, an encrypted
PDF, an empty file) is raised by `open_document`/`document_from_*`; the rest (a PDF with no
text layer, a file of only whitespace past the first few KB, an HTML page of only scripts) by
`pieces()`, before its first piece.

Libraries, measured on a 2-core machine under load, with hand-built PDFs like those of
tests/test_documents.py (no PDF writer is needed):

- PDF: pypdfium2 (PDFium, the PDF engine of Chrome; Apache-2.0 / BSD-3-Clause; a 4.0 MB binary
  wheel for every major platform, no dependencies). A 100-page text PDF: 0.14 s and 22 MB peak
  RSS, against pypdf (BSD, pure Python, 0.4 MB wheel) 0.29 s / 38 MB and pdfminer.six (MIT,
  6.6 MB wheel plus cryptography) 2.8 s / 39 MB. All three give a normal two-column page in
  reading order; only pdfminer's layout analysis also untangles text drawn out of order, at 20
  times the cost. PDFium opens a file without parsing its pages, so pages are read one at a
  time, and it tells an encrypted file (FPDF_ERR_PASSWORD) from a damaged one. Through this
  module the 100-page PDF gives its first piece in 2 ms; a 2 MB text file streams with a
  tracemalloc peak under 100 KB.
- HTML: the standard library's incremental `html.parser`: no dependency, fed 64 KB at a time so
  memory stays bounded, 1.8 MB of HTML in 0.07 s. selectolax (MIT, 1.6 MB wheel) parses the
  same in 0.01 s but builds the whole tree in memory; beautifulsoup4 took 2.6 s; html2text is
  GPL-3.0, which this MIT project does not take.
- Language: a stopword count for the Latin-script languages and the script for ja/zh/hi. The
  candidate py3langid (BSD, 4.6 MB wheel, numpy) loads its model in 0.9 s and adds 106 MB of
  RSS, too much for a tray app that only has to tell five languages apart on 1,000 characters.
"""

from __future__ import annotations

import codecs
import io
import re
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import IO, Any, BinaryIO, Literal, TextIO, cast

from agent.text.speakable import LineKind, classify_line, fence_run, is_fence_close

__all__ = [
    "MAX_PIECE_CHARS",
    "Document",
    "DocumentError",
    "Kind",
    "detect_language",
    "document_from_stream",
    "document_from_text",
    "open_document",
]

Kind = Literal["text", "markdown", "html", "pdf"]

MAX_PIECE_CHARS = 2000
SNIFF_BYTES = 8192  # how much of a file is looked at to decide what it is
READ_CHUNK = 16384  # how much is read (bytes or characters) at a time
LINE_CAP = 600  # a longer line is passed on in parts, so no line is held whole
PDF_FIRST_PAGES = 3  # pages read before a PDF with no text so far is probed for a text layer
PDF_PROBE_PAGES = 5  # pages spread over the rest of the PDF looked at by that probe

_MARKDOWN_SUFFIXES = {".md", ".markdown", ".mdown", ".mkd", ".mkdn"}
_HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".heic",
                   ".heif", ".avif", ".ico", ".svg"}
_IMAGE_MAGIC = [(b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"),
                (b"GIF89a", "GIF"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF")]
_OCR_HINT = ("to read a photo or scan of text, run OCR on it first (e.g. `tesseract IMAGE out` "
             "or `ocrmypdf in.pdf out.pdf`) and read the result")


class DocumentError(Exception):
    """A source that cannot be read aloud; the message names it and says what to do."""


@dataclass(frozen=True)
class Document:
    """A text source: `pieces()` yields its text lazily, paragraph by paragraph, each at most
    MAX_PIECE_CHARS long. A document from a file or from a string can be read again; one from
    a stream only once."""

    origin: str
    kind: Kind
    _source: Callable[[], Iterator[str]] = field(repr=False, compare=False)

    def pieces(self) -> Iterator[str]:
        """The text in pieces; raises DocumentError for what shows only on reading."""
        found = False
        for piece in self._source():
            found = True
            yield piece
        if not found:
            raise DocumentError(f"{self.origin}: nothing to read (no text in it).")


# --- opening ------------------------------------------------------------------------------


def open_document(path: Path | str) -> Document:
    """The document in a file: its kind from the name, or else from its first bytes."""
    path = Path(path)
    origin = str(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise DocumentError(f"{origin}: no such file. Check the name, or give `-` to read "
                            "standard input.") from None
    except OSError as error:
        raise _os_error(origin, error) from None
    if stat.S_ISDIR(info.st_mode):
        raise DocumentError(f"{origin} is a directory: name a file in it to read.")
    try:
        handle = path.open("rb")
    except OSError as error:
        raise _os_error(origin, error) from None
    if not stat.S_ISREG(info.st_mode):  # a pipe or a device: it can be read only once
        return _from_binary(handle, origin, path.suffix.lower())
    with handle:
        head = handle.read(SNIFF_BYTES)
    complete = len(head) < SNIFF_BYTES
    kind = _kind_of(head, path.suffix.lower(), origin, complete)
    if kind == "pdf":
        _check_pdf(lambda: str(path), origin)
        return Document(origin, "pdf", lambda: _pdf_pieces(lambda: str(path), origin))
    encoding = _text_encoding(head, origin, complete, html=kind == "html")

    def chunks() -> Iterator[str]:
        try:
            with path.open("r", encoding=encoding, errors="replace", newline=None) as text:
                yield from iter(lambda: text.read(READ_CHUNK), "")
        except OSError as error:
            raise _os_error(origin, error) from None

    return Document(origin, kind, lambda: _pieces_of(kind, chunks()))


def document_from_text(text: str, origin: str = "the clipboard") -> Document:
    """A document from a string (the clipboard, the selection): any size, still read lazily."""
    if not text.strip():
        raise DocumentError(f"{origin}: nothing to read (it is empty).")
    kind: Kind = "html" if _looks_like_html(text[:SNIFF_BYTES]) else "text"
    return Document(origin, kind, lambda: _pieces_of(
        kind, (text[i:i + READ_CHUNK] for i in range(0, len(text), READ_CHUNK))))


def document_from_stream(stream: TextIO | BinaryIO, origin: str = "standard input") -> Document:
    """A document from a stream (`voice-agent read -`): read once, as it arrives. A text stream
    with a binary buffer underneath (sys.stdin) is read as bytes, so a PDF piped in works too."""
    binary = getattr(stream, "buffer", None)
    if binary is not None:
        return _from_binary(binary, origin, "")
    if isinstance(stream.read(0), str):
        return _from_text_stream(cast(IO[str], stream), origin)
    return _from_binary(cast(IO[bytes], stream), origin, "")


def _from_text_stream(stream: IO[str], origin: str) -> Document:
    head = stream.read(SNIFF_BYTES)
    if not head.strip() and len(head) < SNIFF_BYTES:
        raise DocumentError(f"{origin}: nothing to read (it is empty).")
    if head.lstrip().startswith("%PDF-"):
        raise DocumentError(f"{origin}: a PDF cannot be read as text: give its file name.")
    kind: Kind = "html" if _looks_like_html(head) else "text"
    chunks = _chain([head], iter(lambda: stream.read(READ_CHUNK), ""))
    return Document(origin, kind, _once(origin, lambda: _pieces_of(kind, chunks)))


def _from_binary(stream: IO[bytes], origin: str, suffix: str) -> Document:
    head = _read_head(stream, origin)
    complete = len(head) < SNIFF_BYTES
    kind = _kind_of(head, suffix, origin, complete)
    if kind == "pdf":
        # PDFium needs to seek: the stream goes to a temporary file, not into memory.
        spool = tempfile.TemporaryFile()  # noqa: SIM115 (closed when its pieces are read)
        spool.write(head)
        for chunk in iter(lambda: stream.read(READ_CHUNK), b""):
            spool.write(chunk)
        spool.seek(0)
        try:
            _check_pdf(lambda: spool, origin)
        except DocumentError:
            spool.close()
            raise
        return Document(origin, "pdf", _once(origin, lambda: _spooled_pdf(spool, origin)))
    encoding = _text_encoding(head, origin, complete, html=kind == "html")
    text = io.TextIOWrapper(io.BufferedReader(_Prepend(head, stream)), encoding=encoding,
                            errors="replace")
    chunks = iter(lambda: text.read(READ_CHUNK), "")
    return Document(origin, kind, _once(origin, lambda: _pieces_of(kind, chunks)))


def _spooled_pdf(spool: IO[bytes], origin: str) -> Iterator[str]:
    with spool:
        yield from _pdf_pieces(lambda: spool, origin)


def _read_head(stream: IO[bytes], origin: str) -> bytes:
    """Up to SNIFF_BYTES from a stream that may return short reads (a pipe)."""
    parts: list[bytes] = []
    size = 0
    try:
        while size < SNIFF_BYTES:
            part = stream.read(SNIFF_BYTES - size)
            if not part:
                break
            parts.append(part)
            size += len(part)
    except OSError as error:
        raise _os_error(origin, error) from None
    return b"".join(parts)


class _Prepend(io.RawIOBase):
    """A binary stream that gives `head` first, then the rest of `rest`."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(target), len(self._head))
            target[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(target))
        target[:len(data)] = data
        return len(data)


def _once(origin: str, source: Callable[[], Iterator[str]]) -> Callable[[], Iterator[str]]:
    used = False

    def first_time() -> Iterator[str]:
        nonlocal used
        if used:
            raise DocumentError(f"{origin} has already been read: a stream can be read only once.")
        used = True
        return source()

    return first_time


def _chain(*parts: Iterable[str]) -> Iterator[str]:
    for part in parts:
        yield from part


def _os_error(origin: str, error: OSError) -> DocumentError:
    if isinstance(error, PermissionError):
        return DocumentError(f"{origin}: permission denied. Make it readable (`chmod u+r "
                             f"{origin}`) or ask its owner.")
    if isinstance(error, IsADirectoryError):
        return DocumentError(f"{origin} is a directory: name a file in it to read.")
    return DocumentError(f"{origin}: cannot read it ({error.strerror or error}).")


# --- what a file is ------------------------------------------------------------------------


def _kind_of(head: bytes, suffix: str, origin: str, complete: bool) -> Kind:
    """The kind from the first bytes and the name; DocumentError for what cannot be read."""
    if not head.strip() and complete:
        raise DocumentError(f"{origin}: nothing to read (the file is empty).")
    if b"%PDF-" in head[:1024]:
        return "pdf"
    if suffix == ".pdf":
        raise DocumentError(f"{origin}: not a PDF (it does not start with %PDF-): the file is "
                            "damaged or misnamed.")
    image = _image_type(head)
    if image or suffix in _IMAGE_SUFFIXES:
        what = image or suffix[1:].upper()
        raise DocumentError(f"{origin} is an image ({what}), not text: {_OCR_HINT}.")
    if head.startswith(b"PK\x03\x04"):
        raise DocumentError(f"{origin} is a ZIP archive (a .docx, .odt or .epub is one): "
                            "save or export it as PDF or plain text, then read that.")
    if suffix in _MARKDOWN_SUFFIXES:
        return "markdown"
    if suffix in _HTML_SUFFIXES:
        return "html"
    if suffix not in (".txt", ".text") and _looks_like_html(head[:1024].decode("latin-1")):
        return "html"
    return "text"


def _image_type(head: bytes) -> str | None:
    for magic, name in _IMAGE_MAGIC:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"avif"):
        return "HEIF"
    return None


_HTML_START = re.compile(r"\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html[\s>]|head[\s>]|body[\s>])",
                         re.IGNORECASE | re.DOTALL)


def _looks_like_html(head: str) -> bool:
    return _HTML_START.match(head.lstrip("\ufeff")) is not None


_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:-]+)", re.IGNORECASE)
# Bytes that plain text in any 8-bit encoding hardly has: C0 controls but tab, newlines, form
# feed and escape; and DEL.
_CONTROL_BYTES = bytes([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x1B), *range(0x1C, 0x20), 0x7F])


def _text_encoding(head: bytes, origin: str, complete: bool, html: bool) -> str:
    """The encoding to read a text file with, from its first bytes; DocumentError if the bytes
    are not text. Invalid bytes later in the file are read as U+FFFD, not raised."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\x00" in head:
        raise _binary(origin)
    if html and (declared := _META_CHARSET.search(head)):
        try:
            return codecs.lookup(declared.group(1).decode("ascii")).name
        except LookupError:
            pass
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=complete)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    as_utf8 = head.decode("utf-8", errors="replace")
    invalid = as_utf8.count("\ufffd")
    decoded = sum(1 for ch in as_utf8 if ord(ch) > 0x7F) - invalid
    if decoded >= 4 * invalid:  # UTF-8 with a few bad bytes
        return "utf-8"
    controls = sum(head.count(b) for b in _CONTROL_BYTES)
    high = sum(1 for b in head if b > 0x7F)
    if controls > len(head) / 100 or high > len(head) * 3 / 10:
        raise _binary(origin)
    return "cp1252"  # Latin-1 text as Windows writes it (Latin-1 is its subset but for C1)


def _binary(origin: str) -> DocumentError:
    return DocumentError(f"{origin}: binary data, not text. Read a text, Markdown, HTML or PDF "
                         "file; text in another encoding can be converted first, e.g. "
                         f"`iconv -f CP1251 -t UTF-8 {origin} > out.txt`.")


# --- text to pieces ------------------------------------------------------------------------


def _pieces_of(kind: Kind, chunks: Iterable[str]) -> Iterator[str]:
    if kind == "html":
        return _paragraphs(_html_text(chunks))
    return _paragraphs(chunks)


def _lines(chunks: Iterable[str]) -> Iterator[str]:
    """Lines ending in "\\n" (the last may not; "\\r\\n" becomes "\\n"); a line longer than
    LINE_CAP comes in parts, only the last of which ends in "\\n"."""
    pending = ""
    for chunk in chunks:
        pending += chunk  # at most LINE_CAP + one chunk
        start, size = 0, len(pending)
        while start < size:
            end = pending.find("\n", start, start + LINE_CAP)
            if end >= 0:
                line = pending[start:end + 1]
                yield line[:-2] + "\n" if line.endswith("\r\n") else line
                start = end + 1
            elif size - start > LINE_CAP:
                yield pending[start:start + LINE_CAP]
                start += LINE_CAP
            else:
                break
        pending = pending[start:]
    if pending:
        yield pending


# A sentence end: . ! ? … then closing quotes/brackets, then a space; or a CJK/Devanagari stop.
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’»)\]]*\s+|[。！？।॥]+[」』”’）)]*\s*")
_CLAUSE_END = re.compile(r"[,;:]\s+|[，、；：]\s*")
_SPACE = re.compile(r"\s+")


def _cut_point(text: str, limit: int) -> int:
    """Where to cut `text` (longer than `limit`) so the first part is at most `limit` long: the
    last sentence end, else the last clause end, else the last space, else at `limit`."""
    window = text[:limit]
    for pattern in (_SENTENCE_END, _CLAUSE_END, _SPACE):
        last = 0
        for match in pattern.finditer(window):
            last = match.end()
        if last > 0:
            return last
    return limit


def _split(text: str, limit: int) -> tuple[list[str], str]:
    """Pieces of at most `limit` cut off the front of `text`, and what is left (<= limit)."""
    out: list[str] = []
    while len(text) > limit:
        cut = _cut_point(text, limit)
        piece = text[:cut].strip()
        if piece:
            out.append(piece)
        text = text[cut:].lstrip()
    return out, text


def _paragraphs(chunks: Iterable[str], limit: int = MAX_PIECE_CHARS) -> Iterator[str]:
    """Group text into pieces: blank lines end a paragraph; a paragraph over `limit` is cut at
    sentence ends; a fenced code block is one piece, or, over `limit`, several that each
    reopen and close the fence. Holds at most about `limit` + LINE_CAP characters."""
    buffer: list[str] = []
    size = 0
    closer: str | None = None  # the fence that closes the code block we are in
    at_line_start = True
    for line in _lines(chunks):
        complete = line.endswith("\n")
        if closer is not None:
            closing = at_line_start and complete and is_fence_close(line, closer[0], len(closer))
            if size + len(line) + len(closer) + 1 > limit and len(buffer) > 1:
                body = "".join(buffer)
                yield (body if body.endswith("\n") else body + "\n") + closer
                buffer, size = [closer + "\n"], len(closer) + 1  # reopened, without the info
                if closing:
                    buffer, size, closer = [], 0, None
                    continue
            buffer.append(line)
            size += len(line)
            at_line_start = complete
            if closing:
                yield "".join(buffer).strip()
                buffer, size, closer = [], 0, None
            continue
        if at_line_start and complete:
            if not line.strip():
                yield from _flush(buffer, limit)
                buffer, size = [], 0
                continue
            kind = classify_line(line, True)
            if kind is not None and kind[0] is LineKind.FENCE:
                yield from _flush(buffer, limit)
                char, run = fence_run(line[kind[1]:])
                closer = char * run
                buffer, size = [line], len(line)
                continue
        buffer.append(line)
        size += len(line)
        at_line_start = complete
        if size > limit:
            pieces, rest = _split("".join(buffer), limit)
            yield from pieces
            buffer, size = [rest], len(rest)
    yield from _flush(buffer, limit)


def _flush(buffer: list[str], limit: int) -> Iterator[str]:
    pieces, rest = _split("".join(buffer).strip(), limit)
    yield from pieces
    if rest.strip():
        yield rest.strip()


# --- HTML ------------------------------------------------------------------------------------

_SKIPPED = {"script", "style", "nav", "head", "title", "noscript", "template", "svg",
            "iframe", "object", "select", "button"}
_BLOCKS = {"p", "div", "section", "article", "main", "aside", "header", "footer", "blockquote",
           "ul", "ol", "dl", "dt", "dd", "table", "tr", "figure", "figcaption", "address",
           "details", "summary", "form", "fieldset", "hr", "center", "body", "html", "caption"}
_HEADINGS = {"h1": "# ", "h2": "## ", "h3": "### ", "h4": "#### ", "h5": "##### ",
             "h6": "###### "}
_HEAD_END = _BLOCKS | set(_HEADINGS) | {"li", "pre", "br", "td", "th"}  # these close <head>


class _HtmlText(HTMLParser):
    """HTML to text, incrementally: blocks become paragraphs, headings and list items take
    their Markdown form, <pre> a code fence; skipped elements are dropped; runs of white space
    become one space. `out` collects the text as it comes, nothing held back but the state."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skip: list[str] = []  # the skipped elements open now
        self._pre = 0
        self._pre_at_line_start = True
        self._started = False  # the current block has text
        self._space = False  # a space is due before the next text
        self._prefix = ""  # "## " or "- ", written before the block's first text

    def _break(self, prefix: str = "") -> None:
        """End the current block (a paragraph break if it had text); the next one starts with
        `prefix`. A block that had no text yet keeps a pending list marker."""
        if self._started:
            self.out.append("\n\n")
            self._started = self._space = False
            self._prefix = ""
        if prefix:
            self._prefix = prefix

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skip == ["head"] and tag in _HEAD_END:
            self._skip.pop()  # the end tag of <head> is optional
        if tag in _SKIPPED:
            self._skip.append(tag)
        elif self._skip:
            return
        elif tag == "pre":
            self._break()
            self._prefix = ""
            if not self._pre:
                self.out.append("```\n")
                self._pre_at_line_start = True
            self._pre += 1
        elif self._pre:
            return
        elif tag in _HEADINGS:
            self._break(_HEADINGS[tag])
        elif tag == "li":
            self._break("- ")
        elif tag in _BLOCKS:
            self._break()
        elif tag in ("br", "td", "th"):
            self._space = self._started

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _SKIPPED:  # <svg/> opens nothing to skip
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            if tag in self._skip:
                while self._skip.pop() != tag:
                    pass
            return
        if self._skip:
            return
        if tag == "pre" and self._pre:
            self._pre -= 1
            if not self._pre:
                self.out.append("```\n\n" if self._pre_at_line_start else "\n```\n\n")
        elif self._pre:
            return
        elif tag in _HEADINGS or tag in _BLOCKS or tag == "li":
            self._break()
            self._prefix = ""  # an empty heading or item marks nothing after it

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._pre:
            self.out.append(data)
            self._pre_at_line_start = data.endswith("\n")
            return
        words = data.split()
        if not words:
            self._space = self._space or (self._started and data != "")
            return
        text = " ".join(words)
        if not self._started:
            text = self._prefix + text
            self._started = True
        elif self._space or data[0].isspace():
            text = " " + text
        self.out.append(text)
        self._space = data[-1].isspace()

    def close(self) -> None:
        super().close()
        if self._pre:
            self.out.append("\n```\n")
        self._break()


def _html_text(chunks: Iterable[str]) -> Iterator[str]:
    parser = _HtmlText()
    for chunk in chunks:
        parser.feed(chunk)
        yield from parser.out
        parser.out.clear()
    parser.close()
    yield from parser.out


# --- PDF -------------------------------------------------------------------------------------

_NO_TEXT_LAYER = ("{origin}: this PDF has no text layer (a scan?): there is nothing to read. "
                  "Run OCR on it first, e.g. `ocrmypdf {origin} out.pdf`, and read out.pdf.")
_PAGE_NUMBER = re.compile(r"(?:page\s+)?\d{1,4}(?:\s*(?:/|of)\s*\d{1,4})?", re.IGNORECASE)
_PDF_SENTENCE_END = re.compile(r"[.!?…:。！？।][\"'”’»)\]]*$")


def _open_pdf(source: Callable[[], Any], origin: str) -> Any:
    import pypdfium2

    try:
        return pypdfium2.PdfDocument(source())
    except pypdfium2.PdfiumError as error:
        code = getattr(error, "err_code", None)
        if code == pypdfium2.raw.FPDF_ERR_PASSWORD:
            raise DocumentError(f"{origin}: this PDF is encrypted (it needs a password). Save "
                                "a copy without the password, e.g. `qpdf --decrypt "
                                f"--password=PASSWORD {origin} out.pdf`, and read that.") from None
        if code == pypdfium2.raw.FPDF_ERR_SECURITY:
            raise DocumentError(f"{origin}: this PDF uses an encryption scheme that cannot be "
                                "opened here: save a decrypted copy and read that.") from None
        raise DocumentError(f"{origin}: the PDF cannot be opened (damaged?): {error}. Try "
                            "repairing it, e.g. `qpdf in.pdf out.pdf`.") from None


def _check_pdf(source: Callable[[], Any], origin: str) -> None:
    document = _open_pdf(source, origin)
    try:
        if len(document) == 0:
            raise DocumentError(f"{origin}: nothing to read (the PDF has no pages).")
    finally:
        document.close()


def _page_text(document: Any, index: int) -> str:
    page = document[index]
    try:
        textpage = page.get_textpage()
        try:
            return str(textpage.get_text_bounded())
        finally:
            textpage.close()
    finally:
        page.close()


def _pdf_pieces(source: Callable[[], Any], origin: str) -> Iterator[str]:
    """Page by page; before reading on past PDF_FIRST_PAGES pages with no text, look at a few
    pages spread over the rest, so a long scan is told in a moment, not after every page."""
    document = _open_pdf(source, origin)
    try:
        yield from _paragraphs(_pdf_lines(document, origin))
    finally:
        document.close()


def _pdf_lines(document: Any, origin: str) -> Iterator[str]:
    count = len(document)
    found = False
    carry = ""  # a word hyphenated across the end of the page before
    for index in range(count):
        text = _page_text(document, index)
        if text.strip():
            found = True
        elif not found and index + 1 == PDF_FIRST_PAGES < count:
            step = max(1, (count - index - 1) // PDF_PROBE_PAGES)
            probes = range(index + 1, count, step)
            if not any(_page_text(document, i).strip() for i in probes):
                raise DocumentError(_NO_TEXT_LAYER.format(origin=origin))
        lines, carry = _page_lines(text, carry)
        yield from lines
    if carry:
        yield carry + "\n"
    if not found:
        raise DocumentError(_NO_TEXT_LAYER.format(origin=origin))


# PDFium writes a hyphen that ends a line as "\x02" and drops the line break after it.
_SOFT_HYPHEN_JOIN = re.compile(r"\x02(?=[^\W\d_])")  # before a letter: one word, re-joined
_HYPHENATED = re.compile(r"[^\W\d_]-$")


def _page_lines(text: str, carry: str) -> tuple[list[str], str]:
    """A page's text as lines, with blank lines where paragraphs seem to end: after a line that
    ends a sentence and is clearly shorter than the page's full lines, or ends the page. Page
    numbers are dropped and words hyphenated across lines joined; `carry` is the start of such
    a word from the page before, and what is returned with the lines the same for the page
    after."""
    text = _SOFT_HYPHEN_JOIN.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = text.replace("\x02", "-\n").replace("\x00", "")
    lines = [line.strip() for line in text.split("\n")]
    while lines and (not lines[-1] or _PAGE_NUMBER.fullmatch(lines[-1])):
        lines.pop()
    while lines and (not lines[0] or _PAGE_NUMBER.fullmatch(lines[0])):
        lines.pop(0)
    if not lines:
        return [], carry
    widths = sorted(len(line) for line in lines)
    full = widths[int(len(widths) * 0.9)]
    out: list[str] = []
    for line in lines:
        if carry:
            if line[:1].islower():
                line = carry[:-1] + line  # "exam-" + "ple" -> "example"
            else:
                out.append(carry + "\n")
            carry = ""
        if _HYPHENATED.search(line):
            carry = line
            continue
        out.append(line + "\n")
        if not line or (_PDF_SENTENCE_END.search(line) and len(line) < 0.8 * full):
            out.append("\n")
    if out and out[-1] != "\n" and _PDF_SENTENCE_END.search(out[-1][:-1]):
        out.append("\n")  # a sentence that ends a page: cutting there costs only a pause
    return out, carry


# --- language ------------------------------------------------------------------------------

# Frequent short words, which decide the language of a few sentences of Latin-script text.
_STOPWORDS = {
    "en-us": set("the and of to is that it with for was this are be have you not on as which "
                 "from by at they we he she his her would will there their been has were what "
                 "can but an or i".split()),
    "fr-fr": set("le la les des et est une un du de que qui dans pour pas sur au aux avec ce "
                 "cette il elle nous vous sont ne se plus par mais ou où été être je l d qu c "
                 "n s j".split()),
    "es": set("el la los las de y en que es un una por con para del al se no lo su como más "
              "pero está son muy también ha fue ser hay yo esta este sus le".split()),
    "it": set("il lo la gli le di e che è un una per con del della dei non sono ma come più "
              "anche nel nella alla al si ha questo questa ci io sul degli delle l".split()),
    "pt-br": set("o a os as de e que do da dos das em no na um uma para com não por se mais "
                 "como mas foi ao é são está também muito eu você ele ela isso seu sua nos "
                 "nas".split()),
}
_LETTER_HINTS = {"es": "ñ¿¡", "pt-br": "ãõ", "fr-fr": "œùû", "it": ""}
_WORD = re.compile(r"[^\W\d_]+")


def detect_language(sample: str) -> str | None:
    """The G2P language code of a text, as agent.tts.voices.LANGUAGES names them ("en-us",
    "es", "fr-fr", "hi", "it", "ja", "pt-br", "cmn"), or None when unsure or another language.
    English is "en-us": British and American English are not told apart. Looks at the first
    1,000 characters."""
    sample = sample[:1000]
    kana = han = devanagari = latin = letters = 0
    for ch in sample:
        if not ch.isalpha():
            continue
        letters += 1
        code = ord(ch)
        if 0x3040 <= code <= 0x30FF or 0x31F0 <= code <= 0x31FF or 0xFF66 <= code <= 0xFF9F:
            kana += 1
        elif 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF:
            han += 1
        elif 0x0900 <= code <= 0x097F:
            devanagari += 1
        elif code < 0x250 or 0x1E00 <= code <= 0x1EFF:
            latin += 1
    if letters == 0:
        return None
    if kana + han >= 0.3 * letters:
        return "ja" if kana >= max(2, 0.1 * (kana + han)) else "cmn"
    if devanagari >= 0.3 * letters:
        return "hi"
    if latin < 0.5 * letters:
        return None
    lowered = sample.lower()
    words = _WORD.findall(lowered)
    scores = {lang: sum(word in stop for word in words) for lang, stop in _STOPWORDS.items()}
    for lang, hints in _LETTER_HINTS.items():
        scores[lang] += 2 * sum(lowered.count(ch) for ch in hints)
    ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)
    (best, top), (_, second) = ranked[0], ranked[1]
    if top < 2 or top < 1.25 * second:
        return None
    return best
