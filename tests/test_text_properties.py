"""Bad input for agent.text: properties over any Unicode (control characters, right-to-left
scripts, combining marks, emoji floods with ZWJ sequences, NUL, words with no spaces), with the
chunker set up as the conversation uses it and fed in any pieces.

What "a word" means here: a maximal run of characters for which `str.isalnum()` is true
(the regex `[^\\W_]+`), counted in the speakable text. That is what the TTS says, and what the
chunker counts for its caps. The contracts checked:

- `to_speakable` never raises, and says only clean text: no control or format characters
  (a ZWJ/ZWNJ only between letters), no emoji or pictographs, no line breaks, no double
  spaces, stripped, and something with a letter or digit or nothing at all.
- It is idempotent on prose without markup, in any script and with any noise. It is not in
  general, by design: inline code is read as written (its markers stay), and a character
  dropped at the start of a line can uncover a marker ("🎉# x" gives "# x").
- The conversation's chunker gives the same chunks however the reply is split into deltas,
  and they hold exactly the words of `to_speakable(reply)`, in order. It may cut where the
  whole text would not in two places only: in code, a link or a tag still open after
  PROTECTED_MAX_CHARS (a stray "`", "[" or "<"), and in a run of MAX_RUN_CHARS with no place
  to split (a word is then cut in two; for markup-free text the letters are all kept).
- Its caps: the first chunk ends at the first space after 4 words, the second after 10, and
  later ones have at most max_chunk_chars characters unless they are one unbroken run; no
  chunk is ever longer than a bound set by MAX_RUN_CHARS, and a capped chunk leaves as soon
  as the word after its cap starts.
"""

from __future__ import annotations

import itertools
import re
import time
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.conversation import REPLY_CHUNKING
from agent.text import ChunkLimits, ClauseChunker, to_speakable
from agent.text.chunker import MAX_RUN_CHARS, PROTECTED_MAX_CHARS
from agent.text.speakable import _PICTOGRAPH_RANGES

WORD_RE = re.compile(r"[^\W_]+")
CONVERSATION_LIMITS = REPLY_CHUNKING
# the most words each of the conversation's first chunks may have, in order
RAMP = (REPLY_CHUNKING["first_chunk_max_words"], REPLY_CHUNKING["second_chunk_max_words"],
        *REPLY_CHUNKING["later_chunk_max_words"])
MAX_CHUNK_CHARS = REPLY_CHUNKING["max_chunk_chars"]
# A forced cut waits a few characters rather than part a letter from its combining mark.
RUN_SLACK = 32
# A chunk's raw text is at most this long (or a code block, read as one phrase); the filter
# can at most double it ("|" is read as ", ").
SPOKEN_CHUNK_BOUND = 2 * (MAX_RUN_CHARS + RUN_SLACK)


def words(text: str) -> list[str]:
    return WORD_RE.findall(text)


def letters(chunks: list[str]) -> str:
    return "".join(words(" ".join(chunks)))


def words_before_last_token(chunk: str) -> int:
    """Words in all but the chunk's last space-separated token that has one. A cap cuts at
    the first space after that many words, and a token can hold several ("שָׁלוֹם": the
    vowel points are marks, not letters)."""
    tokens = [token for token in chunk.split() if words(token)]
    return sum(len(words(token)) for token in tokens[:-1])


def chunks_of(text: str, cuts: list[int] | None = None,
              limits: ChunkLimits | None = None) -> list[str]:
    """The chunks of `text` fed in pieces cut at `cuts`, then flushed."""
    chunker = ClauseChunker(**(limits or CONVERSATION_LIMITS))
    out: list[str] = []
    previous = 0
    for cut in [*sorted({min(max(c, 0), len(text)) for c in cuts or []}), len(text)]:
        out += chunker.feed(text[previous:cut])
        previous = cut
    return out + chunker.flush()


def chunks_by_feed(text: str, step: int) -> tuple[list[str], int]:
    """Chunks of `text` fed `step` characters at a time, and how much had been fed when the
    first chunk came out (len(text) + 1 if only flush gave one)."""
    chunker = ClauseChunker(**CONVERSATION_LIMITS)
    out: list[str] = []
    first_at = len(text) + 1
    for start in range(0, len(text), step):
        out += chunker.feed(text[start:start + step])
        if out and first_at > len(text):
            first_at = start + step
    return out + chunker.flush(), first_at


# --- strategies ----------------------------------------------------------------------------

CONTROLS = ["\x00", "\x01", "\x07", "\x08", "\x0b", "\x0c", "\r", "\r\n", "\x1b", "\x7f",
            "\x85", "\x9f", "\u2028", "\u2029", "\ufeff", "\u200b", "\u00ad", "\U000e0001"]
BIDI = ["\u200e", "\u200f", "\u061c", "\u202a", "\u202b", "\u202d", "\u202e", "\u202c",
        "\u2066", "\u2067", "\u2068", "\u2069"]
RTL = ["مرحبا بالعالم", "السلام عليكم", "שָׁלוֹם עוֹלָם", "עברית", "١٢٣", "فارسی\u200cها",
       "ܫܠܡܐ", "ދިވެހި"]
MARKS = ["e\u0301", "\u0301\u0302\u0303", "a\u0336\u0336\u0336", "\u20dd", "क्ष", "\u0e33",
         "Z\u0351\u0352\u0357\u035b\u0346\u033d\u0313\u0310\u034b\u0300"]
EMOJI = ["🎉", "👍🏽", "👨\u200d👩\u200d👧\u200d👦", "🏳️\u200d🌈", "🇫🇷🇯🇵", "❤️", "1️⃣",
         "🧑🏿\u200d🚀", "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
         "🎉" * 30, "\U0001faff", "☃\ufe0e"]
MARKUP = ["`", "```", "[", "](", ")", "(", "<", "<b>", "</b>", ">", "&amp;", "&#",
          "https://ex.com/a b", "www.ex.org", "a@b.co", "# ", "- ", "1. ", "> ", "|", "*", "_",
          "~~", "\\", "[a](http://b.c/d)", "`x y`", "<!-- c -->", "\x1b[31m"]
PROSE = ["word", "Other", "x1", "3.14", "Dr.", "No.", "I", "ok", "a" * 60]
SEPARATORS = [" ", "  ", ". ", ", ", "; ", ": ", "! ", "? ", "... ", "… ", " — ", "\n", "\n\n",
              "\t", "\u3000", "\u00a0", "。", "，", "！"]
NASTY = CONTROLS + BIDI + RTL + MARKS + EMOJI + MARKUP + PROSE + SEPARATORS

# Any text no longer than PROTECTED_MAX_CHARS: no construct can outlast its protection and no
# run can be force-cut, so the exact word contract applies. st.text() draws from the whole
# range of code points but surrogates.
any_text = st.one_of(
    st.text(max_size=PROTECTED_MAX_CHARS),
    st.lists(st.one_of(st.sampled_from(NASTY), st.characters(), st.text(max_size=6)),
             max_size=60).map("".join),
).map(lambda text: text[:PROTECTED_MAX_CHARS])
delta_cuts = st.lists(st.integers(0, PROTECTED_MAX_CHARS), max_size=10)
# the conversation's limits, and others with caps, small chunks and a quick first chunk
limits = st.one_of(st.just(CONVERSATION_LIMITS), st.fixed_dictionaries({
    "first_chunk_min_words": st.integers(1, 4), "first_chunk_max_words": st.integers(1, 8),
    "second_chunk_max_words": st.integers(0, 12), "min_chunk_words": st.integers(1, 8),
    "later_chunk_max_words": st.lists(st.integers(1, 14), max_size=3).map(tuple),
    "max_chunk_chars": st.integers(8, 300)}).map(  # later caps continue a second one
        lambda limits: {**limits, "later_chunk_max_words": limits["later_chunk_max_words"]
                        if limits["second_chunk_max_words"] else ()}))

# Prose without markup, in any script, with noise between the words. Words start with a
# letter, so that no line starts with a list number, and hold no variation selector (with
# one, the character before it is an emoji) and no enclosed alphanumeric ("①" is a picture).
PICTURED = "".join(chr(cp) for lo, hi in _PICTOGRAPH_RANGES for cp in range(lo, hi + 1)
                   if unicodedata.category(chr(cp))[0] in "LMN")
letter = st.characters(categories=["L"])
prose_word = st.one_of(
    st.tuples(letter, st.text(st.characters(categories=["L", "M", "N"],
                                            exclude_characters="\ufe0e\ufe0f" + PICTURED),
                              max_size=12))
    .map("".join),
    st.sampled_from([w for w in RTL + MARKS + PROSE if w[0].isalpha()]),
)
noise = st.one_of(st.just(""), st.sampled_from(CONTROLS + BIDI + EMOJI))


def prose_with(separators: list[str]) -> st.SearchStrategy[str]:
    parts = st.tuples(noise, prose_word, noise, st.sampled_from(separators))
    return st.lists(parts, max_size=60).map(lambda ps: "".join("".join(p) for p in ps))


prose = prose_with(SEPARATORS)
# Noise turns into a space where it stands, so for the caps every separator has one: a cap
# cuts at a space of the reply, and "word\x00。word" is one token there but two when spoken.
spaced_prose = prose_with([sep for sep in SEPARATORS if any(ch.isspace() for ch in sep)])

SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def is_clean(text: str) -> bool:
    """Only what a TTS can say: printable, no emoji, no invisible format characters."""
    for i, ch in enumerate(text):
        if " " <= ch < "\x7f":
            continue
        if ch in "\u200c\u200d":  # joiners stay only inside a word of some scripts
            if not (0 < i < len(text) - 1 and unicodedata.category(text[i - 1])[0] in "LM"
                    and unicodedata.category(text[i + 1])[0] in "LM"):
                return False
            continue
        if any(lo <= ord(ch) <= hi for lo, hi in _PICTOGRAPH_RANGES):
            return False
        category = unicodedata.category(ch)
        if not (category[0] in "LNP" or category in ("Mn", "Mc", "Sm", "Sc") or ch in "°℃℉"):
            return False
    return True


def assert_spoken_text(text: str) -> None:
    assert is_clean(text), ascii(text)
    assert text == text.strip() and "  " not in text
    assert not text or any(ch.isalnum() for ch in text)


# --- the filter ----------------------------------------------------------------------------


@SETTINGS
@given(st.one_of(any_text, prose))
def test_any_unicode_gives_clean_speakable_text(text: str) -> None:
    assert_spoken_text(to_speakable(text))


@SETTINGS
@given(prose)
def test_the_filter_is_idempotent_on_prose_of_any_script_with_noise(text: str) -> None:
    spoken = to_speakable(text)
    assert to_speakable(spoken) == spoken
    # no letter or digit is lost, and they keep their (logical, also RTL) order; a dropped
    # emoji may join two words ("1️⃣word" reads "1word")
    assert letters([spoken]) == letters([text])


def test_control_bidi_and_emoji_floods_say_nothing_and_are_fast() -> None:
    invisible = "".join(ch for ch in "".join(CONTROLS + BIDI) if not ch.isprintable())
    pictures = "".join(e for e in EMOJI if not any(ch.isalnum() for ch in e))  # no keycap
    for flood in [invisible * 3000, pictures * 500, "\x00" * 100_000,
                  "\u0301" * 100_000, "👨\u200d👩\u200d👧\u200d👦" * 10_000]:
        started = time.process_time()
        assert to_speakable(flood) == ""
        assert chunks_of(flood) == []
        assert time.process_time() - started < 2.0


def test_right_to_left_text_keeps_its_logical_order_without_bidi_controls() -> None:
    text = "\u202bמשפט ראשון, \u2067مرحبا بالعالم\u2069. עוד\u200f משפט\u202c"
    assert to_speakable(text) == "משפט ראשון, مرحبا بالعالم. עוד משפט"
    assert " ".join(chunks_of(text)) == "משפט ראשון, مرحبا بالعالم. עוד משפט"


# --- the conversation's chunker ------------------------------------------------------------


@SETTINGS
@given(any_text, delta_cuts, limits)
def test_chunks_hold_exactly_the_spoken_words_however_the_reply_is_split(
        text: str, cuts: list[int], limits: ChunkLimits) -> None:
    whole = chunks_of(text, limits=limits)
    assert chunks_of(text, cuts, limits) == whole
    assert words(" ".join(whole)) == words(to_speakable(text))
    for chunk in whole:
        assert chunk
        assert_spoken_text(chunk)


@SETTINGS
@given(spaced_prose, delta_cuts)
def test_chunk_caps_hold_for_prose_of_any_script(text: str, cuts: list[int]) -> None:
    chunks = chunks_of(text, cuts)
    assert chunks == chunks_of(text)
    assert words(" ".join(chunks)) == words(to_speakable(text))
    for chunk, cap in zip(chunks, RAMP, strict=False):
        assert words_before_last_token(chunk) < cap
    for chunk in chunks:
        assert len(chunk) <= MAX_CHUNK_CHARS or " " not in chunk, chunk
        assert len(chunk) <= MAX_RUN_CHARS + RUN_SLACK


@SETTINGS
@given(st.lists(st.text(letter, min_size=1, max_size=10), min_size=15, max_size=60))
def test_capped_chunks_leave_as_soon_as_their_cap_is_reached(parts: list[str]) -> None:
    # A first clause with no punctuation must not wait for max_chunk_chars of reply: the
    # user hears nothing until the first chunk is synthesised. It leaves with the first
    # letter of the word after the cap: until then a clause boundary could still end it
    # ("one two —"), and the chunks must not depend on where deltas end.
    text = " ".join(parts) + " "
    after_space = [i + 1 for i, ch in enumerate(text) if ch == " "]
    chunker = ClauseChunker(**CONVERSATION_LIMITS)
    emitted = [(i, chunk) for i, ch in enumerate(text) for chunk in chunker.feed(ch)]
    ends = list(itertools.accumulate(RAMP))
    assert emitted[:len(RAMP)] == [
        (after_space[end - 1], " ".join(parts[end - cap:end]))
        for end, cap in zip(ends, RAMP, strict=True) if end <= len(parts) - 1]


@pytest.mark.parametrize("cut", range(1, 30))
def test_a_clause_boundary_right_after_the_cap_does_not_depend_on_deltas(cut: int) -> None:
    assert RAMP[:2] == (2, 3)
    text = "One, two — three four five six"
    assert chunks_of(text, [cut]) == chunks_of(text) == ["One, two —", "three four five",
                                                         "six"]


LONG = 100_000
SENTENCES = "Some words here, and more words follow. Then a longer sentence comes along. "


def long_reply(head: str, body: str) -> str:
    return head + (body * (LONG // len(body) + 1))[:LONG]


@pytest.mark.parametrize(
    ("name", "text", "markup_free"),
    [
        ("stray link bracket", long_reply("Here it is: [", SENTENCES), False),
        ("stray backtick", long_reply("`", SENTENCES), False),
        ("stray tag", long_reply("Look <a ", SENTENCES), False),
        ("stray link target", long_reply("See [x](", SENTENCES), False),
        ("a word with no spaces", long_reply("The key is ", "aGVsbG8gd29ybGQ"), True),
        ("one letter", long_reply("", "a"), True),
        ("CJK without punctuation", long_reply("你好", "世界和平"), True),
        ("Arabic without spaces", long_reply("", "مرحبا"), True),
        ("combining marks", long_reply("Zalgo ", "e\u0301\u0302"), True),
        ("emoji then words", long_reply("🎉" * 5000, "Then words. "), True),
        ("control characters", long_reply("Start. ", "\x00\x1b\x07 a\u202e"), True),
        ("unclosed code block", long_reply("Code:\n```\n", "x = [1, 2]\n"), False),
    ],
)
def test_a_100k_reply_gives_bounded_chunks_and_speech_starts_early(
        name: str, text: str, markup_free: bool) -> None:
    started = time.process_time()
    chunks, first_at = chunks_by_feed(text, 7)
    assert time.process_time() - started < 5.0, name
    assert chunks == chunks_of(text), name
    longest = max(map(len, chunks))
    assert longest <= SPOKEN_CHUNK_BOUND, (name, longest)
    if markup_free:
        assert letters(chunks) == letters([to_speakable(text)]), name
    if name == "unclosed code block":  # one phrase, said when the block ends
        assert chunks == ["Code:", "Here is some code."]
        return
    # speech starts before the nasty part is over, and goes on to the reply's last word
    head = len(text) - LONG
    assert first_at <= head + MAX_RUN_CHARS + RUN_SLACK + 7, (name, first_at)
    assert letters([to_speakable(text)]).endswith(words(chunks[-1])[-1]), name


@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.one_of(st.sampled_from(NASTY), st.text(max_size=8),
                          st.tuples(st.text(min_size=1, max_size=4), st.integers(1, 800))
                          .map(lambda unit: unit[0] * unit[1])), max_size=20).map("".join),
       st.lists(st.integers(0, 20 * 4 * 800), max_size=10))
def test_long_nasty_text_gives_bounded_chunks_however_it_is_split(
        text: str, cuts: list[int]) -> None:
    chunks = chunks_of(text, cuts)
    assert chunks == chunks_of(text)
    assert all(chunk and len(chunk) <= SPOKEN_CHUNK_BOUND for chunk in chunks)
    for chunk in chunks:
        assert_spoken_text(chunk)
