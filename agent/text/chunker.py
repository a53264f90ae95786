"""Streaming clause chunker: LLM text deltas in, TTS-ready chunks out.

The first chunk leaves at the first clause boundary that has enough words, or at a space
once it has a few words, so speech starts early. Optionally the next chunks ramp up the same
way, each with its own word cap (a ramp of maximums: any clause boundary past the minimum
ends a chunk). After that, chunks are whole sentences (short ones merged), and an overlong
sentence is split at its last clause boundary, or at a space as a last resort.

Each character is looked at once, by a small state machine, so `feed` costs O(len(delta))
amortised. A boundary is confirmed only once the character after it has arrived, because a
delta can end anywhere ("3." + "14"); the chunks are therefore the same however the text is
split into deltas. The line grammar comes from `speakable`, so the chunker never cuts through
something `to_speakable` would read differently in two pieces (code, links, tags).
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import TypedDict

from agent.text.speakable import (
    RULE_PREFIX_CAP,
    STRUCTURAL,
    LineKind,
    classify_line,
    is_hspace,
    speakable_fragment,
)

__all__ = ["ChunkLimits", "ClauseChunker", "split_for_speech"]


class _Kind(IntEnum):
    """Strength of a boundary; a chunk after the first ends at SENTENCE or stronger."""

    CLAUSE = 1
    SENTENCE = 2
    HARD = 3  # paragraph break, list item, heading, code block


class _Mode(Enum):
    PREFIX = "prefix"  # reading the start of a line to see what kind of line it is
    LINE = "line"
    FENCE = "fence"  # inside a ``` block: nothing is a boundary until it closes


class _Await(Enum):
    NOTHING = "nothing"
    ELLIPSIS = "ellipsis"  # "Wait... what": a lowercase word after it makes it a pause
    NUMBER_SIGN = "number sign"  # "No. 5" versus "No. I won't."


_SENTENCE_PUNCT = frozenset(".!?…。！？")
_CLAUSE_PUNCT = frozenset(",;:—–，、；：")
_PUNCT = _SENTENCE_PUNCT | _CLAUSE_PUNCT
# CJK text has no spaces, and an em dash is often written tight ("this—that").
_NO_SPACE_NEEDED = frozenset("。！？，、；：—")
_CLOSERS = frozenset("\"')]}”’»」』*_~")
_OPENERS = "\"'([{“‘«*_~"
# Characters _scan has a rule for (outside a candidate); any other visible one only extends
# the current word.
_SPECIAL = _PUNCT | frozenset("`<>[]()\n")
_ABBREVIATIONS = frozenset(
    """dr mr mrs ms mx prof st vs etc inc ltd jr sr co corp dept est approx fig vol ca cf al
    gen gov sen rep capt col lt sgt mt ave blvd rd jan feb mar apr jun jul aug sep sept oct
    nov dec""".split()
)
# Letters separated by dots: e.g, i.e, U.S, a.m, J.R.R.
_DOTTED_RE = re.compile(r"(?:[^\W\d_]\.)+[^\W\d_]")
_ENTITY_RE = re.compile(r"&#?[A-Za-z0-9]+")
_TOKEN_CAP = 24
# Inline code, a link or an HTML tag is never cut, but one still open after this many
# characters is taken for a stray "`", "[" or "<": a reply with one must not become a single
# chunk that nothing is spoken of until the line ends. Only a construct longer than this can
# be read differently in pieces than whole.
PROTECTED_MAX_CHARS = 300
# A run with no place to split (a word with no spaces, a flood of one character) is cut
# after this many characters, even inside code, a link or a tag, so no chunk, and no
# synthesis job, grows without bound. Longer than any URL worth keeping whole (a URL is read
# as its host name).
MAX_RUN_CHARS = 600


class ChunkLimits(TypedDict, total=False):
    """ClauseChunker's keyword arguments, for a caller that keeps them as a setting."""

    first_chunk_min_words: int
    min_chunk_words: int
    max_chunk_chars: int
    first_chunk_max_words: int
    second_chunk_max_words: int
    later_chunk_max_words: tuple[int, ...]


@dataclass
class _Candidate:
    """Punctuation that may end a chunk, waiting for the character after it."""

    end: int  # absolute position just after the punctuation (and closing quotes/brackets)
    punct: str
    token: str  # the word before the punctuation, for abbreviations and initials
    words: int  # words before `end`
    waiting: _Await = _Await.NOTHING


@dataclass
class _Cut:
    pos: int
    words: int


class ClauseChunker:
    """Split a streamed reply into speakable chunks. Not thread-safe."""

    def __init__(
        self, first_chunk_min_words: int = 3, min_chunk_words: int = 6, max_chunk_chars: int = 300,
        first_chunk_max_words: int = 7, second_chunk_max_words: int = 0,
        later_chunk_max_words: tuple[int, ...] = (),
    ) -> None:
        if min(first_chunk_min_words, min_chunk_words, max_chunk_chars,
               *later_chunk_max_words) < 1 or first_chunk_max_words < 0:
            raise ValueError("chunk limits must be positive")
        if later_chunk_max_words and second_chunk_max_words <= 0:
            raise ValueError("later_chunk_max_words continues a ramp: set "
                             "second_chunk_max_words too")
        self.first_chunk_min_words = first_chunk_min_words
        self.min_chunk_words = min_chunk_words
        self.max_chunk_chars = max_chunk_chars
        # The word caps of the first chunks, in order (none after the ramp). The first chunk
        # decides when the user first hears anything, and synthesis takes about as long as
        # the audio lasts here: a first clause with no break in its first few words is cut at
        # a space after that many words instead of waiting for a comma. With a second cap
        # (else the second chunk is a sentence like the rest) and later ones, the next chunks
        # are capped the same way, so that each is ready before the one before it has been
        # played (chunk sizes ramp up, then whole sentences).
        # first_chunk_max_words=0: no ramp, every chunk a sentence (text read from a file).
        ramp = [first_chunk_max_words] if first_chunk_max_words else []
        if ramp and second_chunk_max_words > 0:
            ramp += [second_chunk_max_words, *later_chunk_max_words]
        self._ramp = tuple(max(cap, first_chunk_min_words) for cap in ramp)
        self.reset()

    # --- public ---------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything buffered; the next text is a new reply."""
        # text not yet emitted: _pieces joined starts at absolute position _base
        self._pieces: list[str] = []
        self._base = 0
        self._start = 0  # where the next chunk begins
        self._start_words = 0
        self._emitted = 0  # chunks given out since the reply began
        # candidate chunk ends, in position order
        self._bpos: list[int] = []
        self._bkind: list[int] = []
        self._bwords: list[int] = []
        self._bi = 0  # first boundary after _start
        self._bscan = 0  # boundaries before this one were rejected for the current _start
        self._last_bpos = -1
        self._spos: list[int] = []  # spaces: last-resort split points
        self._swords: list[int] = []
        self._si = 0
        self._final = False
        self._changed = False  # split points were added since _next_cut last found nothing
        self._wake_at = 0  # ... and until _pos reaches this, it would find nothing again
        # scanner
        self._pos = 0
        self._words = 0
        self._prev_alnum = False
        self._prev_space = True
        self._last_visible = 0  # position just after the last non-space character
        self._mode = _Mode.PREFIX
        self._prefix = ""
        self._prefix_start = 0
        self._plain = False  # see _step
        self._nl_pos = -1  # the line break before the current line
        self._nl_words = 0
        self._nl_visible = 0
        self._line_kind = LineKind.PLAIN
        self._cand: _Candidate | None = None
        self._token = ""
        self._ticks = 0  # length of the backtick run being read
        self._code = 0  # backtick count of the open inline code span, 0 outside
        self._bracket = 0  # 1 inside [link text]
        self._paren = 0  # 1 inside (link target)
        self._after_bracket = False
        self._tag = 0  # 1: just read "<", 2: inside an HTML tag
        self._protect_until = 1 << 62  # the code, link or tag open now lapses after this
        self._last_split = 0  # the latest split point (space, boundary or forced)
        self._force_at = MAX_RUN_CHARS  # no split point by here: force one
        self._fence_char = ""
        self._fence_len = 0
        self._fence_opening = False  # still on the ``` line itself
        self._fence_counting = False
        self._close_state = 0  # closing-fence matcher: 0 indent, 1 run, 2 trailing, -1 no
        self._close_run = 0

    def feed(self, delta: str) -> list[str]:
        """Add a piece of the reply; return the chunks that are complete now."""
        if not delta:
            return []
        self._pieces.append(delta)
        step = self._step
        for ch in delta:
            step(ch)
        if self._changed or self._pos >= self._wake_at:
            return self._drain()
        return []  # nothing new to decide on: keeps one-character deltas cheap

    def flush(self) -> list[str]:
        """End of the reply: return every remaining chunk, then start afresh."""
        self._finish_scan()
        self._final = True
        out = self._drain()
        rest = "".join(self._pieces)[self._start - self._base:]
        self._emit(rest, out)
        self.reset()
        return out

    # --- scanning -------------------------------------------------------------------------

    def _step(self, ch: str) -> None:
        p = self._pos
        self._pos = p + 1
        if p >= self._force_at:
            self._force_split(ch, p)
        if self._plain:
            # fast paths for the commonest characters, doing what _scan would do
            if ch.isalnum():
                if not self._prev_alnum:
                    self._words += 1
                    self._prev_alnum = True
                self._last_visible = p + 1
                self._prev_space = False
                if len(self._token) < _TOKEN_CAP:
                    self._token += ch
                return
            if ch == " ":
                self._prev_alnum = False
                self._record_space(p)
                return
            if ch not in _SPECIAL and not ch.isspace():
                self._prev_alnum = False
                self._last_visible = p + 1
                self._prev_space = False
                if len(self._token) < _TOKEN_CAP:
                    self._token += ch
                return
        if ch.isalnum():
            if not self._prev_alnum:
                self._words += 1
                self._prev_alnum = True
            self._last_visible = p + 1
        else:
            self._prev_alnum = False
            if not ch.isspace():
                self._last_visible = p + 1
        if self._mode is _Mode.LINE:
            self._scan(ch, p)
        elif self._mode is _Mode.PREFIX:
            self._prefix_char(ch, p)
        else:
            self._fence_step(ch, p)
        # may the next letter take the fast path? (_scan would change nothing but the word)
        self._plain = (
            self._mode is _Mode.LINE
            and self._cand is None
            and not self._ticks
            and self._tag != 1
            and not self._after_bracket
        )

    def _prefix_char(self, ch: str, p: int) -> None:
        if not self._prefix:
            if is_hspace(ch):
                return  # indentation: nothing to decide yet
            self._prefix_start = p
        self._prefix += ch
        decided = classify_line(self._prefix, final=False)
        if decided is None and len(self._prefix) > RULE_PREFIX_CAP:
            decided = LineKind.PLAIN, 0
        if decided is not None:
            self._apply_line_kind(*decided)

    def _apply_line_kind(self, kind: LineKind, content: int) -> None:
        prefix, start = self._prefix, self._prefix_start
        self._prefix = ""
        if kind is LineKind.BLANK:
            self._hard_at_line_break()
            self._end_line(start)  # the prefix is just this "\n"
            return
        if kind is LineKind.PLAIN:
            self._mode = _Mode.LINE
            for k, ch in enumerate(prefix):
                self._scan(ch, start + k)
            return
        self._hard_at_line_break()
        if kind is LineKind.QUOTE:
            self._line_kind = kind
            for k, ch in enumerate(prefix[content:]):  # classify what follows ">"
                self._prefix_char(ch, start + content + k)
            return
        if kind is LineKind.FENCE:
            self._mode = _Mode.FENCE
            self._fence_char = prefix[content]
            self._fence_len = len(prefix) - content  # decided on exactly three
            self._fence_opening = True
            self._fence_counting = True
            return
        self._mode = _Mode.LINE
        self._line_kind = kind
        for k, ch in enumerate(prefix[content:]):
            self._scan(ch, start + content + k)

    def _fence_step(self, ch: str, p: int) -> None:
        if self._fence_opening:
            if ch == "\n":
                self._fence_opening = False
                self._close_state = self._close_run = 0
            elif self._fence_counting and ch == self._fence_char:
                self._fence_len += 1
            else:
                self._fence_counting = False
            return
        if ch == "\n":
            if self._close_state in (1, 2) and self._close_run >= self._fence_len:
                self._line_kind = LineKind.FENCE
                self._prev_space = False
                self._end_line(p)  # the block ends at this line break
            else:
                self._close_state = self._close_run = 0
            return
        state = self._close_state
        if state == 0:
            if ch == self._fence_char:
                self._close_state, self._close_run = 1, 1
            elif not is_hspace(ch):
                self._close_state = -1
        elif state == 1:
            if ch == self._fence_char:
                self._close_run += 1
            elif is_hspace(ch):
                self._close_state = 2
            else:
                self._close_state = -1
        elif state == 2 and not is_hspace(ch):
            self._close_state = -1

    def _protected(self) -> bool:
        """Inside inline code, a link or an HTML tag: no boundary, no split at a space."""
        return bool(self._code or self._bracket or self._paren or self._tag == 2)

    def _open(self, p: int) -> None:
        """Code, a link or a tag starts at `p`: its protection lasts PROTECTED_MAX_CHARS."""
        if not self._protected():
            self._protect_until = p + PROTECTED_MAX_CHARS

    def _lapse(self) -> None:
        """Past `_protect_until`: what is still open was a stray opener, not a construct."""
        self._code = self._bracket = self._paren = self._tag = 0
        self._after_bracket = False
        self._protect_until = 1 << 62

    def _force_split(self, ch: str, p: int) -> None:
        """MAX_RUN_CHARS without a split point: make one before `ch` (not between a letter
        and its combining mark or joiner, unless those run on too)."""
        if self._mode is _Mode.LINE:
            if (p < self._last_split + MAX_RUN_CHARS + _TOKEN_CAP
                    and (unicodedata.category(ch)[0] == "M" or ch in "\u200c\u200d")):
                self._force_at = p + 1
                return
            if p > self._protect_until:
                self._lapse()
            if ch.isspace() and not self._prev_space:
                return  # this space becomes a split point itself
            self._spos.append(p)
            self._swords.append(self._words)
            self._changed = True
        self._last_split = p
        self._force_at = p + MAX_RUN_CHARS

    def _scan(self, ch: str, p: int) -> None:
        if ch == "\n":
            self._end_line(p)
            return
        if ch == "`":
            self._ticks += 1
        elif self._ticks:
            if not self._code:
                self._open(p)
                self._code = self._ticks
            elif self._code == self._ticks:
                self._code = 0
            self._ticks = 0
        is_space = ch.isspace()
        cand = self._cand
        if cand is not None and self._advance_candidate(cand, ch, p, is_space):
            return
        if is_space:
            if self._tag == 1:
                self._tag = 0  # "a < b" is not a tag
            self._record_space(p)
            return
        before = self._token
        self._note_visible(ch)
        if p > self._protect_until:
            self._lapse()
        # Links are resolved before code and tags by to_speakable, so track them everywhere.
        # Like its regex, a link's text runs from a "[" to the first "]".
        if ch == "[":
            self._open(p)
            self._bracket = 1
            self._after_bracket = False
            return
        if ch == "]" and self._bracket:
            self._bracket = 0
            self._after_bracket = True
            return
        if self._paren:
            if ch == ")":
                self._paren = 0
            return
        if self._after_bracket:
            self._after_bracket = False
            if ch == "(":
                self._open(p)
                self._paren = 1
                return
        if self._code or ch == "`":
            return
        if self._tag == 2:
            if ch == ">":
                self._tag = 0
            return
        if self._tag == 1:
            if ch.isascii() and (ch.isalpha() or ch in "/!"):
                self._open(p)
                self._tag = 2
                return
            self._tag = 0
        if ch == "<":
            self._tag = 1
            return
        if self._bracket or ch not in _PUNCT or self._line_kind is LineKind.TABLE:
            return
        if ch == "–" and before:
            return  # an en dash is a pause only between spaces ("10–20" is a range)
        self._cand = _Candidate(end=p + 1, punct=ch, token=before, words=self._words)

    def _note_visible(self, ch: str) -> None:
        self._prev_space = False
        if len(self._token) < _TOKEN_CAP:
            self._token += ch

    def _record_space(self, p: int) -> None:
        if p > self._protect_until:
            self._lapse()
        if not self._prev_space and not self._protected() and p > self._start:
            self._spos.append(p)
            self._swords.append(self._words)
            self._last_split = p
            self._force_at = p + MAX_RUN_CHARS
            # spaces only matter to an overlong chunk, or to one capped at a number of words
            if p > self._start + self.max_chunk_chars or (
                    0 < self._cap() <= self._words - self._start_words):
                self._changed = True
        self._prev_space = True
        self._token = ""

    def _advance_candidate(self, cand: _Candidate, ch: str, p: int, is_space: bool) -> bool:
        """Feed the character after a candidate; True when it belongs to the candidate."""
        if cand.waiting is not _Await.NOTHING:
            if is_space:
                return False
            if cand.waiting is _Await.ELLIPSIS:
                self._add_boundary(cand, _Kind.CLAUSE if ch.islower() else _Kind.SENTENCE)
            elif ch not in "0123456789":
                self._add_boundary(cand, _Kind.SENTENCE)
            self._cand = None
            return False
        if ch in _PUNCT and ch not in "—–" and not self._ticks:
            cand.punct = (cand.punct + ch)[-8:]  # "?!", "...": one run
            cand.end = p + 1
            self._note_visible(ch)
            return True
        if ch in _CLOSERS:
            cand.end = p + 1  # 'He said "no." Then' ends after the quote
            self._note_visible(ch)
            return True
        if is_space:
            self._confirm(cand, line_end=False)
            return False
        self._cand = None
        if cand.punct[-1] in _NO_SPACE_NEEDED:
            self._add_boundary(cand, _kind_of(cand.punct))
        return False

    def _confirm(self, cand: _Candidate, line_end: bool) -> None:
        """Whitespace (or the end of the line) came after the candidate: is it a boundary?"""
        self._cand = None
        punct = cand.punct
        if punct == ";" and _ENTITY_RE.fullmatch(cand.token):
            return  # "&amp; " is an HTML entity, read as "&"
        if punct[-1] in _CLAUSE_PUNCT or any(c in "!?！？。" for c in punct):
            self._add_boundary(cand, _kind_of(punct))
            return
        if "…" in punct or len(punct) > 1:  # an ellipsis
            if line_end:
                self._add_boundary(cand, _Kind.SENTENCE)
            else:
                cand.waiting = _Await.ELLIPSIS
                self._cand = cand
            return
        word = cand.token.lstrip(_OPENERS)
        low = word.lower()
        if low in _ABBREVIATIONS or _DOTTED_RE.fullmatch(word):
            return
        if len(word) == 1 and word.isupper():
            return  # an initial: "J. R. R. Tolkien"
        if low == "no" and not line_end:
            cand.waiting = _Await.NUMBER_SIGN
            self._cand = cand
            return
        self._add_boundary(cand, _Kind.SENTENCE)

    def _end_line(self, p: int) -> None:
        cand = self._cand
        if cand is not None:
            if cand.waiting is _Await.NOTHING:
                self._confirm(cand, line_end=True)
            else:
                self._cand = None
                self._add_boundary(cand, _Kind.SENTENCE)
        self._ticks = self._code = self._bracket = self._paren = self._tag = 0
        self._after_bracket = False
        if self._line_kind in STRUCTURAL:
            self._push_boundary(p, _Kind.HARD, self._words, self._last_visible)
        self._record_space(p)
        self._nl_pos, self._nl_words, self._nl_visible = p, self._words, self._last_visible
        self._mode = _Mode.PREFIX
        self._line_kind = LineKind.PLAIN
        self._prefix = ""

    def _hard_at_line_break(self) -> None:
        """The line just classified starts a new block: the line break before it is a cut."""
        if self._nl_pos >= 0:
            self._push_boundary(self._nl_pos, _Kind.HARD, self._nl_words, self._nl_visible)

    def _add_boundary(self, cand: _Candidate, kind: _Kind) -> None:
        self._push_boundary(cand.end, kind, cand.words, cand.end)

    def _push_boundary(self, pos: int, kind: _Kind, words: int, visible_end: int) -> None:
        if pos <= self._start:
            return
        if pos <= self._last_bpos or visible_end <= max(self._last_bpos, self._start):
            # nothing to say since the previous boundary: strengthen it instead
            pending = bool(self._bpos) and self._bpos[-1] == self._last_bpos > self._start
            if pending and kind > self._bkind[-1]:
                self._bkind[-1] = kind
                self._bscan = min(self._bscan, len(self._bpos) - 1)
                self._changed = True
            return
        self._bpos.append(pos)
        self._bkind.append(kind)
        self._bwords.append(words)
        self._last_bpos = pos
        if pos > self._last_split:
            self._last_split = pos
            self._force_at = pos + MAX_RUN_CHARS
        self._changed = True

    def _finish_scan(self) -> None:
        if self._mode is _Mode.PREFIX and self._prefix:
            decided = classify_line(self._prefix, final=True)
            assert decided is not None
            self._apply_line_kind(*decided)
        cand = self._cand
        if cand is not None:
            if cand.waiting is _Await.NOTHING:
                self._confirm(cand, line_end=True)
            else:
                self._cand = None
                self._add_boundary(cand, _Kind.SENTENCE)

    # --- choosing cuts --------------------------------------------------------------------

    def _settled(self) -> int:
        """Every decision about positions before this one is final."""
        if self._final:
            return self._pos
        settled = self._pos
        if self._cand is not None:
            settled = min(settled, self._cand.end)
        if self._mode is _Mode.PREFIX:
            settled = min(settled, max(self._nl_pos, 0))
        return settled

    def _cap(self) -> int:
        """The most words the next chunk may have before it is cut at a space (0: none)."""
        return self._ramp[self._emitted] if self._emitted < len(self._ramp) else 0

    def _next_cut(self) -> _Cut | None:
        cap = self._cap()
        if cap:
            threshold, min_kind = self.first_chunk_min_words, _Kind.CLAUSE
        else:
            threshold, min_kind = self.min_chunk_words, _Kind.SENTENCE
        bpos, count = self._bpos, len(self._bpos)
        i = self._bscan
        while i < count and (
            self._bkind[i] < min_kind or self._bwords[i] - self._start_words < threshold
        ):
            i += 1
        self._bscan = i
        limit = self._start + self.max_chunk_chars
        if i < count and bpos[i] <= limit and (
                not cap or self._bwords[i] - self._start_words <= cap):
            return _Cut(bpos[i], self._bwords[i])
        settled = self._settled()
        if cap:
            k = self._si
            while (k < len(self._spos)
                   and self._swords[k] - self._start_words < cap):
                k += 1
            if k < len(self._spos) and self._spos[k] < settled and self._spos[k] <= limit:
                if self._final or self._words - self._start_words > cap:
                    return _Cut(self._spos[k], self._swords[k])
                if settled <= limit:
                    # a clause boundary may still end the chunk here ("one two three four
                    # —"): decide when the next word starts
                    self._wake_at = self._pos + 1
                    return None
        if settled <= limit:
            self._wake_at = limit + 1
            return None
        # Too long for one chunk: last clause boundary in reach, else last space in reach.
        j = bisect.bisect_right(bpos, limit, self._bi) - 1
        if j >= self._bi:
            return _Cut(bpos[j], self._bwords[j])
        k = bisect.bisect_right(self._spos, limit, self._si) - 1
        if k >= self._si:
            return _Cut(self._spos[k], self._swords[k])
        # Nothing in reach (a long URL, a word with no spaces): the first split point after it.
        options: list[_Cut] = []
        if self._bi < count and bpos[self._bi] < settled:
            options.append(_Cut(bpos[self._bi], self._bwords[self._bi]))
        if self._si < len(self._spos) and self._spos[self._si] < settled:
            options.append(_Cut(self._spos[self._si], self._swords[self._si]))
        if not options:
            later = [pos[idx] for pos, idx in ((bpos, self._bi), (self._spos, self._si))
                     if idx < len(pos)]
            self._wake_at = min(later) + 1 if later else 1 << 62
            return None
        return min(options, key=lambda cut: cut.pos)

    def _drain(self) -> list[str]:
        out: list[str] = []
        self._changed = False
        text: str | None = None
        while (cut := self._next_cut()) is not None:
            if text is None:
                text = "".join(self._pieces)
            self._emit(text[self._start - self._base:cut.pos - self._base], out)
            self._advance(cut)
        if text is not None:
            self._pieces = [text[self._start - self._base:]]
            self._base = self._start
        return out

    def _emit(self, chunk: str, out: list[str]) -> None:
        # only the reply's first chunk starts at the beginning of a line: a cut is never
        # placed right after a line break
        spoken = speakable_fragment(chunk, at_line_start=self._start == 0)
        if spoken:
            out.append(spoken)
            self._emitted += 1

    def _advance(self, cut: _Cut) -> None:
        self._start, self._start_words = cut.pos, cut.words
        self._bi = bisect.bisect_right(self._bpos, cut.pos, self._bi)
        self._si = bisect.bisect_right(self._spos, cut.pos, self._si)
        self._bscan = self._bi
        if self._bi > 256 and self._bi * 2 > len(self._bpos):  # drop what is behind us
            del self._bpos[: self._bi], self._bkind[: self._bi], self._bwords[: self._bi]
            self._bi = self._bscan = 0
        if self._si > 256 and self._si * 2 > len(self._spos):
            del self._spos[: self._si], self._swords[: self._si]
            self._si = 0


def _kind_of(punct: str) -> _Kind:
    return _Kind.CLAUSE if punct[-1] in _CLAUSE_PUNCT else _Kind.SENTENCE


def split_for_speech(text: str) -> list[str]:
    """Chunks for a whole text, as the streaming chunker would produce them."""
    chunker = ClauseChunker()
    return chunker.feed(text) + chunker.flush()
