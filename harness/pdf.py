"""PDFs built by hand for the tests: Helvetica text streams, a tiny image for the scans, an
encryption entry that no password opens (no PDF writer is a dependency)."""

from __future__ import annotations

import random

Line = tuple[int, int, str]  # x, y (PDF points from the bottom left), text
IMAGE = "image"  # a page that is only a picture


def build_pdf(pages: list[list[Line] | str], encrypted: bool = False) -> bytes:
    """A valid PDF: each page is Helvetica lines, or IMAGE (a 2x2 grey image, no text)."""
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica "
               b"/Encoding /WinAnsiEncoding >>")
    image = add(b"<< /Type /XObject /Subtype /Image /Width 2 /Height 2 /ColorSpace /DeviceGray "
                b"/BitsPerComponent 8 /Length 4 >>\nstream\n\x00\xff\xff\x00\nendstream")
    page_ids: list[tuple[int, int]] = []
    for page in pages:
        if isinstance(page, str):  # IMAGE
            ops = "q 612 0 0 792 0 0 cm /Im1 Do Q\n"
        else:
            ops = "".join(f"BT /F1 11 Tf {x} {y} Td ({_escape(text)}) Tj ET\n"
                          for x, y, text in page)
        data = ops.encode("cp1252")
        contents = add(b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream")
        page_ids.append((add(b""), contents))
    pages_id = add(b"")
    for page_id, contents in page_ids:
        objects[page_id - 1] = (
            b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 %d 0 R >> /XObject << /Im1 %d 0 R >> >> >>"
            % (pages_id, contents, font, image))
    kids = b" ".join(b"%d 0 R" % page_id for page_id, _ in page_ids)
    objects[pages_id - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(page_ids))
    catalog = add(b"<< /Type /Catalog /Pages %d 0 R >>" % pages_id)
    trailer_extra = b""
    if encrypted:  # RC4 40-bit; no password opens it, since /U matches none
        rnd = random.Random(7)
        o_entry = bytes(rnd.randrange(256) for _ in range(32)).hex().encode()
        u_entry = bytes(rnd.randrange(256) for _ in range(32)).hex().encode()
        encrypt = add(b"<< /Filter /Standard /V 1 /R 2 /O <%s> /U <%s> /P -44 >>"
                      % (o_entry, u_entry))
        trailer_extra = (b" /Encrypt %d 0 R /ID [<0123456789abcdef0123456789abcdef> "
                         b"<0123456789abcdef0123456789abcdef>]" % encrypt)
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, catalog, trailer_extra, xref)
    return bytes(out)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def text_page(lines: list[str], number: int | None = None) -> list[Line]:
    page = [(72, 740 - 14 * i, line) for i, line in enumerate(lines)]
    if number is not None:
        page.append((300, 40, str(number)))
    return page
