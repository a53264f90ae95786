"""Turn LLM-style text (markdown, bits of HTML, URLs, emoji) into plain text to be spoken.

Decisions a listener would notice:

- Fenced code blocks are never read out: the whole block becomes CODE_BLOCK_PHRASE
  ("Here is some code.") so the listener knows something was skipped. An unclosed fence runs
  to the end of the text (the reply was cut off mid-block).
- Inline code up to SHORT_CODE_MAX_CHARS characters is read as written (`ls -la` -> "ls -la");
  longer inline code becomes LONG_CODE_PHRASE ("this code").
- Bare URLs and autolinks become their host name without "www."
  ("https://www.example.com/a?b=1" -> "example.com"): short, and still useful to a listener.
  Markdown links keep only their text. E-mail addresses are read "name at host"
  ("bob@example.com" -> "bob at example.com").
- Emoji and other pictographs (symbol categories plus the emoji blocks, with their variation
  selectors, skin tones, ZWJ joiners and tags) are dropped; letters of every script, digits,
  punctuation, math and currency signs, and degree signs are kept.
- Markdown markers (emphasis, headings, list markers, blockquotes, table pipes, rules) are
  removed. A heading, a list item, a table row and a paragraph end with a full stop when more
  text follows, so the TTS pauses there; a heading always does.
- HTML tags and comments are stripped and entities unescaped (`&amp;` -> "&").

The line-level grammar (`classify_line`, `is_fence_close`) is shared with the streaming chunker,
so the chunker never splits a construct that this module would read differently in pieces.
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit

__all__ = [
    "CODE_BLOCK_PHRASE",
    "LINK_PHRASE",
    "LONG_CODE_PHRASE",
    "SHORT_CODE_MAX_CHARS",
    "to_speakable",
]

CODE_BLOCK_PHRASE = "Here is some code."
LONG_CODE_PHRASE = "this code"
LINK_PHRASE = "a link"  # only for a URL whose host cannot be parsed
SHORT_CODE_MAX_CHARS = 40

# Past this many undecided characters a line of dashes/stars is taken as a rule; keeps the
# chunker's per-line look-ahead bounded (it only moves chunk boundaries, never words).
RULE_PREFIX_CAP = 64


class LineKind(Enum):
    PLAIN = "plain"
    BLANK = "blank"
    HEADING = "heading"
    LIST = "list"
    QUOTE = "quote"
    TABLE = "table"
    RULE = "rule"
    FENCE = "fence"


# Lines that end a phrase of their own (the chunker treats their line breaks as boundaries).
STRUCTURAL = frozenset(
    {LineKind.HEADING, LineKind.LIST, LineKind.QUOTE, LineKind.TABLE, LineKind.RULE,
     LineKind.FENCE}
)

_DIGITS = "0123456789"


def is_hspace(ch: str) -> bool:
    """Whitespace other than the line break."""
    return ch != "\n" and ch.isspace()


def classify_line(prefix: str, final: bool) -> tuple[LineKind, int] | None:
    """Classify a line from its first characters.

    `prefix` is the start of a line (it may end with "\\n"); `final` says no more characters
    of the line will come. Returns None while undecided, else (kind, content_start): the index
    where the text after the marker begins (for QUOTE, just after ">"; for FENCE, the fence).
    A decision never changes when more characters arrive, which the chunker relies on.
    """
    n = len(prefix)
    i = 0
    while i < n and is_hspace(prefix[i]):
        i += 1
    if i == n:
        return (LineKind.BLANK, n) if final else None
    c = prefix[i]
    if c == "\n":
        return LineKind.BLANK, i
    run = 1
    while i + run < n and prefix[i + run] == c:
        run += 1
    end = i + run
    nxt = prefix[end] if end < n else ""
    undecided = nxt == "" and not final
    plain = (LineKind.PLAIN, 0)
    if c in "`~":
        if run >= 3:
            return LineKind.FENCE, i
        return None if undecided else plain
    if c == "#":
        if run > 6:
            return plain
        if undecided:
            return None
        return (LineKind.HEADING, end + 1) if is_hspace(nxt) else plain
    if c in "-*_":
        if run == 1 and c != "_":
            if undecided:
                return None
            return (LineKind.LIST, end + 1) if is_hspace(nxt) else plain
        return _classify_rule(prefix, i, c, final)
    if c in "+•":
        if undecided:
            return None
        return (LineKind.LIST, end + 1) if run == 1 and is_hspace(nxt) else plain
    if c in _DIGITS:
        j = i
        while j < n and prefix[j] in _DIGITS:
            j += 1
        if j - i > 3:
            return plain
        if j == n or (prefix[j] in ".)" and j + 1 == n):
            return plain if final else None
        if prefix[j] in ".)" and is_hspace(prefix[j + 1]):
            return LineKind.LIST, j + 2
        return plain
    if c == ">":
        return LineKind.QUOTE, i + 1
    if c == "|":
        return LineKind.TABLE, i
    return plain


def _classify_rule(prefix: str, i: int, c: str, final: bool) -> tuple[LineKind, int] | None:
    """A thematic break is three or more of one of - * _ with only spaces between."""
    count = 0
    for ch in prefix[i:]:
        if ch == c:
            count += 1
        elif ch == "\n":
            break
        elif not is_hspace(ch):
            return LineKind.PLAIN, 0
    else:
        if not final:
            if len(prefix) - i > RULE_PREFIX_CAP and count >= 3:
                return LineKind.RULE, 0
            return None
    return (LineKind.RULE, 0) if count >= 3 else (LineKind.PLAIN, 0)


def fence_run(content: str) -> tuple[str, int]:
    """The fence character and run length at the start of a FENCE line's content."""
    ch = content[0]
    n = 1
    while n < len(content) and content[n] == ch:
        n += 1
    return ch, n


def is_fence_close(line: str, fence_char: str, fence_len: int) -> bool:
    """A closing fence: only the fence character (at least as many) and spaces."""
    s = line.strip()
    return len(s) >= fence_len and s == fence_char * len(s)


# --- inline rules ------------------------------------------------------------------------

_HSPACE_RE = re.compile(r"[^\S\n]")
# [text](target), ![alt](src) and [text][ref], in one pass so a replacement never makes a new match
_LINK_RE = re.compile(r"!?\[([^\[\]\n]*)\](?:\([^)\n]*\)|\[[^\[\]\n]*\])")
_INLINE_CODE_RE = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)")
_AUTOLINK_RE = re.compile(r"<((?:https?|ftp)://[^\s<>]+)>", re.IGNORECASE)
_AUTOMAIL_RE = re.compile(r"<(?:mailto:)?([A-Za-z][^\s<>@]*@[^\s<>@]+)>", re.IGNORECASE)
# Stops at spaces, brackets, quotes, dashes and CJK punctuation: those end a URL in prose.
_URL_RE = re.compile(
    r"(?<![^\W_])(?:(?:https?|ftp)://|www\.)"
    r"[^\s<>\"'`()\[\]{}|\\^\u2013\u2014\u2026\u3000-\u303f\uff00-\uffef]+",
    re.IGNORECASE,
)
_URL_TRAILING = ".,;:!?'\")]}*_~"
_EMAIL_RE = re.compile(r"(?<![\w.+-])(?:mailto:)?([\w.+-]+)@([\w-]+(?:\.[\w-]+)+)", re.IGNORECASE)
_COMMENT_RE = re.compile(r"<!--[^>\n]*-->")
_TAG_RE = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>\n]*)?/?>")
# Markdown markers that are never spoken; "_" also joins words in identifiers (snake_case).
_MARKER_TABLE = str.maketrans({"*": " ", "_": " ", "~": " ", "`": " ", "\\": " ", "[": " ",
                               "]": " ", "|": ", "})
_HEADING_TAIL_RE = re.compile(r"\s+#+\s*$")
_TABLE_SEPARATOR_RE = re.compile(r"^[\s|:-]*-[\s|:-]*$")

_SPACE_RUN_RE = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT_RE = re.compile(r"\s+([,.;:!?…)\]}%])")
_REPEATED_COMMA_RE = re.compile(r"([,;:])(?:\s*[,;:])+")
_EMPTY_PARENS_RE = re.compile(r"\(\s*\)")
_LEADING_COMMA_RE = re.compile(r"^[\s,;:]+")


def _host_of(url: str) -> str:
    target = url if "://" in url else "http://" + url
    try:
        host = urlsplit(target).hostname or ""
    except ValueError:
        host = ""
    host = host.removeprefix("www.")
    return host or LINK_PHRASE


def _speak_url(match: re.Match[str]) -> str:
    url = match.group(0)
    stripped = url.rstrip(_URL_TRAILING)
    return _host_of(stripped) + url[len(stripped):]


def _speak_email(match: re.Match[str]) -> str:
    return f"{match.group(1)} at {match.group(2)}"


def _inline_text(text: str) -> str:
    """Inline rules for text outside code spans."""
    # the `in` tests only skip regex passes that could not match
    has_angle = "<" in text
    if has_angle:
        text = _AUTOLINK_RE.sub(lambda m: f" {_host_of(m.group(1))} ", text)
        text = _AUTOMAIL_RE.sub(r" \1 ", text)
    if "://" in text or "www." in text.lower():
        text = _URL_RE.sub(_speak_url, text)
    if "@" in text:
        text = _EMAIL_RE.sub(_speak_email, text)
    if has_angle:
        text = _COMMENT_RE.sub(" ", text)
        text = _TAG_RE.sub(" ", text)
    if "&" in text:
        text = html.unescape(text)
    return text.translate(_MARKER_TABLE)


def _inline(text: str) -> str:
    if "[" in text:
        text = _LINK_RE.sub(r"\1", text)
    if "`" not in text:
        return _inline_text(text)
    parts: list[str] = []
    pos = 0
    for match in _INLINE_CODE_RE.finditer(text):
        parts.append(_inline_text(text[pos:match.start()]))
        code = match.group(2).strip()
        parts.append(code if len(code) <= SHORT_CODE_MAX_CHARS else LONG_CODE_PHRASE)
        pos = match.end()
    parts.append(_inline_text(text[pos:]))
    return "".join(parts)


# --- characters --------------------------------------------------------------------------

_KEEP_SYMBOLS = frozenset("°℃℉")
# Blocks that hold emoji and pictographs whatever their category: arrows, technical symbols,
# dingbats, misc symbols, and the supplementary emoji planes.
_PICTOGRAPH_RANGES = (
    (0x2190, 0x21FF), (0x2300, 0x23FF), (0x2460, 0x24FF), (0x25A0, 0x27BF),
    (0x27F0, 0x27FF), (0x2900, 0x297F), (0x2B00, 0x2BFF), (0x1F000, 0x1FAFF),
)


def _is_pictograph(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in _PICTOGRAPH_RANGES)


def _is_letter(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "LM"


def _filter_chars(text: str) -> str:
    """Drop pictographs and invisible/control characters; keep every script's letters."""
    if text.isascii() and text.isprintable():
        return text
    out: list[str] = []
    dropped_prev = False  # combining marks on a dropped pictograph go with it
    last = len(text) - 1
    for i, ch in enumerate(text):
        if ch < "\x7f":
            out.append(ch if ch >= " " else " ")
            dropped_prev = False
            continue
        cp = ord(ch)
        if 0xFE00 <= cp <= 0xFE0F or 0xE0100 <= cp <= 0xE01EF:
            continue  # variation selectors
        if cp in (0x200C, 0x200D):
            # joiners matter inside words of some scripts; elsewhere they glue emoji
            if 0 < i < last and _is_letter(text[i - 1]) and _is_letter(text[i + 1]):
                out.append(ch)
            continue
        cat = unicodedata.category(ch)
        major = cat[0]
        if _is_pictograph(cp) or (i < last and text[i + 1] == "\ufe0f"):
            out.append(" ")
            dropped_prev = True
            continue
        if major == "M":
            if cat != "Me" and not dropped_prev:
                out.append(ch)
            continue
        dropped_prev = False
        if major in "LNP" or cat in ("Sm", "Sc") or ch in _KEEP_SYMBOLS:
            out.append(ch)
        elif cat == "Cf":
            continue
        else:
            out.append(" ")
            dropped_prev = cat == "So"
    return "".join(out)


# --- lines -------------------------------------------------------------------------------


@dataclass
class _Block:
    text: str
    kind: LineKind


def _end_sentence(text: str) -> str:
    """Add a full stop unless the text already ends in punctuation."""
    if text and (text[-1].isalnum() or text[-1] in "\"')]}”’»"):
        return text + "."
    return text


def _parse_line(line: str) -> tuple[LineKind, str]:
    """(kind, content) of one whole line; blockquote markers are peeled off first."""
    quoted = False
    while True:
        decided = classify_line(line, final=True)
        assert decided is not None  # final=True always decides
        kind, start = decided
        if kind is not LineKind.QUOTE:
            break
        quoted = True
        line = line[start:]
    if kind is LineKind.HEADING:
        return kind, _HEADING_TAIL_RE.sub("", line[start:])
    if kind is LineKind.LIST:
        return kind, line[start:]
    if kind is LineKind.FENCE:
        return kind, line[start:]
    if kind in (LineKind.PLAIN, LineKind.BLANK) and quoted:
        return LineKind.QUOTE, line
    return kind, line


def _table_row(line: str) -> str:
    # Cells are not split before the inline rules, so a row reads the same as the same text
    # met in the middle of a line (the chunker may cut a long row at a space).
    if _TABLE_SEPARATOR_RE.match(line):
        return ""
    return _inline(line.strip().strip("|"))


def speakable_fragment(text: str, at_line_start: bool = True) -> str:
    """`to_speakable` for a piece of a longer text.

    `at_line_start` is False when the piece starts in the middle of a line, so its first line
    must not be read as a heading, list item, quote or fence.
    """
    if _is_plain_prose(text, at_line_start):
        return _tidy(text)
    text = _HSPACE_RE.sub(" ", text)
    blocks: list[_Block] = []
    fence: tuple[str, int] | None = None
    for index, line in enumerate(text.split("\n")):
        if fence is not None:
            if is_fence_close(line, *fence):
                fence = None
            continue
        if index == 0 and not at_line_start:
            kind, content = LineKind.PLAIN, line
        else:
            kind, content = _parse_line(line)
        if kind is LineKind.FENCE:
            fence = fence_run(content)
            blocks.append(_Block(CODE_BLOCK_PHRASE, kind))
        elif kind is LineKind.TABLE:
            blocks.append(_Block(_filter_chars(_table_row(content)), kind))
        elif kind in (LineKind.BLANK, LineKind.RULE):
            blocks.append(_Block("", LineKind.BLANK))
        else:
            blocks.append(_Block(_filter_chars(_inline(content)), kind))

    spoken: list[str] = []
    has_later = False  # a non-empty block follows the one being looked at
    for index in range(len(blocks) - 1, -1, -1):
        block = blocks[index]
        words = _SPACE_RUN_RE.sub(" ", block.text).strip()
        if not words:
            continue
        following = blocks[index + 1] if index + 1 < len(blocks) else None
        breaks = block.kind in STRUCTURAL or (
            following is not None
            and (following.kind in STRUCTURAL or following.kind is LineKind.BLANK)
        )
        if block.kind is LineKind.HEADING or (breaks and has_later):
            words = _end_sentence(words)
        spoken.append(words)
        has_later = True
    spoken.reverse()
    return _tidy(" ".join(spoken))


def _tidy(text: str) -> str:
    text = _SPACE_RUN_RE.sub(" ", text)
    text = _EMPTY_PARENS_RE.sub(" ", text)
    text = _SPACE_BEFORE_PUNCT_RE.sub(r"\1", text)
    text = _REPEATED_COMMA_RE.sub(r"\1", text)
    text = _LEADING_COMMA_RE.sub("", text)
    text = _SPACE_RUN_RE.sub(" ", text).strip()
    # nothing to say without a letter or digit ("🎉", "---", "?!")
    return text if any(ch.isalnum() for ch in text) else ""


_PLAIN_TEXT_RE = re.compile(r"[A-Za-z0-9 ,.;:!?'\"()$%+=-]*")


def _is_plain_prose(text: str, at_line_start: bool) -> bool:
    """Text no rule here would change (the chunker's usual case): skip the regex passes."""
    if not _PLAIN_TEXT_RE.fullmatch(text) or "//" in text or "www." in text.lower():
        return False
    return not at_line_start or classify_line(text, final=True) == (LineKind.PLAIN, 0)


def to_speakable(text: str) -> str:
    """Plain text for the TTS: markup, links, code, emoji and HTML removed or rephrased."""
    return speakable_fragment(text, at_line_start=True)
