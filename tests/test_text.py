"""Tests for agent.text: markdown/emoji cleanup (to_speakable) and the streaming chunker."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.text import ClauseChunker, split_for_speech, to_speakable
from agent.text.speakable import CODE_BLOCK_PHRASE, LONG_CODE_PHRASE

WORD_RE = re.compile(r"[^\W_]+")  # a spoken word: a run of letters/digits in any script


def words(text: str) -> list[str]:
    return WORD_RE.findall(text)


def feed_in_pieces(text: str, cuts: list[int], **limits: int) -> list[str]:
    """Stream `text` split at the positions in `cuts`, then flush."""
    chunker = ClauseChunker(**limits)
    out: list[str] = []
    previous = 0
    for cut in [*cuts, len(text)]:
        out += chunker.feed(text[previous:cut])
        previous = cut
    return out + chunker.flush()


def feed_char_by_char(text: str, **limits: int) -> list[str]:
    return feed_in_pieces(text, list(range(1, len(text))), **limits)


# --- to_speakable ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("Some **bold**, *italic*, __strong__, _em_ and ~~gone~~ text",
         "Some bold, italic, strong, em and gone text"),
        ("# Title\nBody text", "Title. Body text"),
        ("## Section ##", "Section."),
        ("Intro:\n- apples\n* pears\n+ plums", "Intro: apples. pears. plums"),
        ("1. first\n2) second\n10. tenth", "first. second. tenth"),
        ("> a quoted line\n> > nested", "a quoted line. nested"),
        ("| Name | Age |\n|------|:---:|\n| Bob | 42 |", "Name, Age. Bob, 42"),
        ("Above\n\n---\n\nBelow", "Above. Below"),
        ("* * *", ""),
        ("Line one\nline two", "Line one line two"),
        ("Para one\n\nPara two", "Para one. Para two"),
    ],
)
def test_markdown_becomes_plain_text(text: str, spoken: str) -> None:
    assert to_speakable(text) == spoken


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("See [the docs](https://docs.python.org/3/) now.", "See the docs now."),
        ("An image ![a cat](cat.png) and [ref text][1].", "An image a cat and ref text."),
        ("Go to https://www.example.com/a/b?c=1&d=2.", "Go to example.com."),
        ("Try www.python.org, it helps.", "Try python.org, it helps."),
        ("Autolink <https://example.org/x>.", "Autolink example.org."),
        ("(https://example.com/path)", "(example.com)"),
        ("Mail bob.smith@example.co.uk today.", "Mail bob.smith at example.co.uk today."),
        ("Write to <mailto:ann@example.com>.", "Write to ann at example.com."),
    ],
)
def test_links_urls_and_email(text: str, spoken: str) -> None:
    assert to_speakable(text) == spoken


def test_fenced_code_is_replaced_by_a_phrase() -> None:
    text = "Here it is:\n```python\nprint('hello, world')\nx = 3.14\n```\nRun it."
    assert to_speakable(text) == f"Here it is: {CODE_BLOCK_PHRASE} Run it."
    assert to_speakable("~~~\ncode\n~~~") == CODE_BLOCK_PHRASE
    # an unclosed fence (reply cut off) hides everything after it
    assert to_speakable("Look:\n```\nsecret = 1") == f"Look: {CODE_BLOCK_PHRASE}"
    # a longer closing fence closes; a shorter one does not
    assert to_speakable("````\na\n```\nb\n`````\nAfter") == f"{CODE_BLOCK_PHRASE} After"


def test_inline_code_short_kept_long_replaced() -> None:
    assert to_speakable("Run `ls -la` here.") == "Run ls -la here."
    assert to_speakable("Use ``a `tick` b`` ok") == "Use a `tick` b ok"
    long_code = "`pip install --upgrade --no-cache-dir -r requirements-dev.txt`"
    assert to_speakable(f"Then {long_code} runs.") == f"Then {LONG_CODE_PHRASE} runs."
    # markdown inside code is left alone: the listener hears the identifier
    assert to_speakable("Call `my_func(*args)`.") == "Call my_func(*args)."


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("Great job 🎉🎉!", "Great job!"),
        ("I ❤️ it", "I it"),
        ("Family 👨\u200d👩\u200d👧 time 👍🏽 ok", "Family time ok"),
        ("Flags 🇫🇷🇯🇵 done ✅ ★ → next", "Flags done next"),
        ("Keycap 1️⃣ first", "Keycap 1 first"),
        ("It is 25°C ©2024", "It is 25°C 2024"),
        ("🤖", ""),
    ],
)
def test_emoji_and_pictographs_are_dropped(text: str, spoken: str) -> None:
    assert to_speakable(text) == spoken


@pytest.mark.parametrize(
    "text",
    ["Привет, мир.", "你好，世界。", "مرحبا بالعالم", "नमस्ते दुनिया", "Ελληνικά κείμενα",
     "한국어 문장", "café naïve résumé", "क्षत्रिय", "می\u200cخواهم"],
)
def test_letters_of_all_scripts_are_kept(text: str) -> None:
    assert to_speakable(text) == text


def test_html_is_stripped_and_entities_unescaped() -> None:
    assert to_speakable("<b>Bold</b> &amp; <i>it</i><br/>next") == "Bold & it next"
    assert to_speakable("Tom &amp; Jerry &lt;3 &quot;hi&quot;") == 'Tom & Jerry <3 "hi"'
    assert to_speakable("a <!-- hidden --> b") == "a b"
    assert to_speakable("if a < b and c > d") == "if a < b and c > d"


def test_whitespace_is_collapsed_and_empty_input_is_empty() -> None:
    assert to_speakable("  many   spaces\t\tand\u00a0tabs  ") == "many spaces and tabs"
    assert to_speakable("") == ""
    assert to_speakable("   \n\n  ") == ""
    assert to_speakable("--- ** __ ?!") == ""


# --- chunker: where chunks end ----------------------------------------------------------


def test_first_chunk_leaves_at_first_clause_boundary_with_enough_words() -> None:
    chunker = ClauseChunker()
    assert chunker.feed("Sure, ") == []  # one word: too short for the first chunk
    assert chunker.feed("here is the thing") == []
    assert chunker.feed(",") == []  # the boundary needs the character after it
    assert chunker.feed(" and") == ["Sure, here is the thing,"]
    # later chunks are sentences of at least six words
    assert chunker.feed(" more. Then the rest") == []
    assert chunker.feed(" follows here. Ok") == ["and more. Then the rest follows here."]
    assert chunker.flush() == ["Ok"]


@pytest.mark.parametrize(
    "text",
    [
        "Okay, so here is how it works, step by step.",
        "Well; that one is tricky: let me think about it.",
        "The answer is simple — use a dictionary instead.",
        "It is done! Now the next part is longer.",
    ],
)
def test_first_chunk_returned_by_the_feed_that_completes_the_boundary(text: str) -> None:
    chunker = ClauseChunker()
    end = next(m.end() for m in re.finditer(r"[,;:—.!?](?= )", text)
               if len(words(text[:m.end()])) >= 3)
    for i, ch in enumerate(text):
        out = chunker.feed(ch)
        if i < end:  # the character after the punctuation is at index `end`
            assert out == [], (i, out)
        elif i == end:
            assert out == [to_speakable(text[:end])]
            break


def test_later_chunks_are_sentences_with_short_ones_merged() -> None:
    text = ("Hello there, my friend. Yes. No. Maybe so. This sentence is long enough alone. "
            "Ok. Bye.")
    assert split_for_speech(text) == [
        "Hello there, my friend.",
        "Yes. No. Maybe so. This sentence is long enough alone.",
        "Ok. Bye.",
    ]


def test_long_sentence_is_split_at_a_clause_then_at_a_space() -> None:
    clauses = ", ".join(["one two three four five"] * 20) + "."
    chunks = split_for_speech(clauses)
    assert len(chunks) > 1
    assert all(len(chunk) <= 300 for chunk in chunks)
    assert all(chunk.endswith((",", ".")) for chunk in chunks)
    spaces_only = " ".join(["word"] * 200)
    chunks = split_for_speech(spaces_only)
    assert len(chunks) > 1 and all(len(chunk) <= 300 for chunk in chunks)
    assert words(" ".join(chunks)) == words(spaces_only)


@pytest.mark.parametrize(
    "text",
    [
        "Pi is about 3.14159 and e is 2.71828 today.",
        "It cost 1,000,000 dollars in total.",
        "We meet at 10:30 tomorrow morning.",
        "Dr. Smith met Mr. Jones and Mrs. Brown.",
        "Ms. Lee and Prof. Xu live on Baker St. in town.",
        "Cats vs. dogs, apples etc. are common examples here.",
        "Bring fruit, e.g. apples, i.e. something sweet.",
        "The U.S. and the U.K. signed it at 9 a.m. or 5 p.m. sharp.",
        "Acme Inc. and Foo Ltd. hired Bob Jr. and Tom Sr. last year.",
        "Room No. 5 is on the left side.",
        "J. R. R. Tolkien wrote it.",
        "Version v1.2.3 is out now.",
        "Visit https://example.com/a.b/c.html today.",
        "Write to first.last@example.co.uk soon.",
        "Wait... what is that thing over there?",
    ],
)
def test_never_splits_inside_numbers_abbreviations_urls(text: str) -> None:
    # after the first chunk only sentence ends count; even one-word sentences would be cut
    chunker = ClauseChunker(first_chunk_min_words=1, min_chunk_words=1)
    assert chunker.feed("Go. ") == ["Go."]
    assert chunker.feed(text + " X") == [to_speakable(text)]
    assert chunker.flush() == ["X"]


def test_split_number_across_deltas() -> None:
    chunker = ClauseChunker(first_chunk_min_words=1, min_chunk_words=1)
    assert chunker.feed("The value is 3.") == []
    assert chunker.feed("14 exactly. Next") == ["The value is 3.14 exactly."]
    assert chunker.flush() == ["Next"]


def test_ellipsis_before_capital_can_end_a_sentence() -> None:
    chunks = split_for_speech("I was thinking about it... Then it hit me, of course.")
    assert chunks == ["I was thinking about it...", "Then it hit me, of course."]
    limits = {"first_chunk_min_words": 1, "min_chunk_words": 1}
    chunker = ClauseChunker(**limits)
    chunker.feed("Fine. Wait... what was it? ")
    assert chunker.flush() == []
    assert feed_in_pieces("Fine. Wait... what was it? Ok.", [], **limits) == [
        "Fine.", "Wait... what was it?", "Ok."]


def test_no_is_a_sentence_unless_a_number_follows() -> None:
    limits = {"first_chunk_min_words": 1, "min_chunk_words": 1}
    assert feed_in_pieces("No. I will not. It is No. 7 now.", [], **limits) == [
        "No.", "I will not.", "It is No. 7 now."]


def test_code_fence_is_never_split_and_text_before_it_is_not_held() -> None:
    text = ("Here is the script you asked for:\n```python\nimport os, sys\n"
            "print('a. B, c; d')\n\nx = 1\n```\nRun it with Python, then check the output.")
    chunker = ClauseChunker()
    emitted: list[tuple[int, str]] = []
    for i, ch in enumerate(text):
        emitted += [(i, chunk) for chunk in chunker.feed(ch)]
    emitted += [(len(text), chunk) for chunk in chunker.flush()]
    fence_close = text.index("```\nRun") + 3
    assert [chunk for _, chunk in emitted] == [
        "Here is the script you asked for:", CODE_BLOCK_PHRASE,
        "Run it with Python, then check the output."]
    assert emitted[0][0] < text.index("import")  # spoken while the code still streams
    assert emitted[1][0] == fence_close  # nothing comes out while the fence is open


def test_inline_code_and_links_are_not_split() -> None:
    limits = {"first_chunk_min_words": 1, "min_chunk_words": 1}
    text = "Use `a, b. C` here. See [this one, please. Now](https://x.org) ok."
    assert feed_in_pieces(text, [], **limits) == [
        "Use a, b. C here.", "See this one, please. Now ok."]


def test_newline_boundaries_blank_line_list_and_heading() -> None:
    limits = {"first_chunk_min_words": 1, "min_chunk_words": 1}
    text = "Intro text\n\nSecond paragraph\n- item one\n- item two\n# Heading\nBody"
    assert feed_in_pieces(text, [], **limits) == [
        "Intro text", "Second paragraph", "item one", "item two", "Heading.", "Body"]
    # a single line break inside a paragraph is not a boundary
    assert feed_in_pieces("one two\nthree four", [], **limits) == ["one two three four"]


def test_numbered_list_marker_is_not_a_sentence_end() -> None:
    limits = {"first_chunk_min_words": 1, "min_chunk_words": 1}
    assert feed_in_pieces("Steps:\n1. Open it\n2. Close it", [], **limits) == [
        "Steps:", "Open it", "Close it"]


def test_chunks_are_speakable_and_non_empty() -> None:
    text = "**Note:** 🎉 see <b>this</b> &amp; [that](http://x.y).\n\n🎉🎉\n\n---\n\nDone!"
    chunks = split_for_speech(text)
    assert chunks == ["Note: see this & that.", "Done!"]
    assert all(chunk and to_speakable(chunk) == chunk for chunk in chunks)


def test_reset_drops_buffered_text_and_restarts_first_chunk_rule() -> None:
    chunker = ClauseChunker()
    chunker.feed("This text is interrupted before")
    chunker.reset()
    assert chunker.feed("A new reply starts, ") == ["A new reply starts,"]
    assert chunker.flush() == []
    assert chunker.feed("After flush we start, ") == ["After flush we start,"]


def test_invalid_limits_rejected() -> None:
    with pytest.raises(ValueError):
        ClauseChunker(max_chunk_chars=0)


# --- chunker: streaming gives the same chunks however the text is split ------------------

SAMPLE_REPLIES = [
    "Sure! Here's a quick summary: Dr. Smith paid $3.14, i.e. about 1,000 cents, at 10:30 a.m. "
    "Wait... really? Yes. See https://example.com/docs/v1.2.3 or mail help@example.com.",
    "## Steps\n1. Install it with `pip install agent`.\n2. Run **it**.\n\n"
    "```bash\nagent --run, now. Yes\n```\nThat's all — enjoy! 🎉",
    "| Col A | Col B |\n|---|---|\n| 1.5 | two, three |\n\n> Quote: J. R. R. Tolkien, "
    "writer.\n\n你好，世界。这是一个测试。 Done [link, text](http://a.b/c) now.",
]


@pytest.mark.parametrize("text", SAMPLE_REPLIES)
def test_every_split_position_gives_the_same_chunks(text: str) -> None:
    whole = split_for_speech(text)
    assert whole
    for cut in range(len(text) + 1):
        assert feed_in_pieces(text, [cut]) == whole, cut
    assert feed_char_by_char(text) == whole
    small = {"first_chunk_min_words": 2, "min_chunk_words": 3, "max_chunk_chars": 40}
    assert feed_char_by_char(text, **small) == feed_in_pieces(text, [], **small)


def test_large_reply_fed_one_character_at_a_time_is_fast() -> None:
    paragraph = ("Sure, here is the plan. Dr. Smith said the value is 3.14, roughly; see "
                 "https://example.com/a/b. It works **well** and `ls -la` shows it. "
                 "Wait... what? 你好，世界。\n\n- item one\n- item two\n")
    text = (paragraph * (100_000 // len(paragraph) + 1))[:100_000]
    chunker = ClauseChunker()
    started = time.process_time()
    count = 0
    for ch in text:
        count += len(chunker.feed(ch))
    count += len(chunker.flush())
    elapsed = time.process_time() - started
    assert count > 1000
    assert elapsed < 1.0, f"{elapsed:.2f} s"
    # a reply that is one long code block or one long word is linear too
    for text in ("```\n" + "x = 1, 2. Y\n" * 8000, "a" * 100_000):
        started = time.process_time()
        for ch in text:
            chunker.feed(ch)
        chunker.flush()
        assert time.process_time() - started < 1.0


# --- properties --------------------------------------------------------------------------

TOKENS = [
    "word", "Other", "x1", "3.14", "1,000", "10:30", "Dr.", "e.g.", "U.S.", "No.", "J.", "...",
    "…", ".", ",", ";", ":", "!", "?", "—", "–", "-", " ", " ", " ", "\n", "\n\n", "\t", "*",
    "**", "_", "~~", "`", "```", "#", "# ", "- ", "1. ", "> ", "|", "[", "]", "(", ")", "<b>",
    "</b>", "<", ">", "&amp;", "[a](http://b.c/d)", "https://ex.com/a.b", "www.ex.org",
    "a@b.co", "🎉", "👍🏽", "\u200d", "\ufe0f", "你好", "。", "，", "é", "\u0301", '"', "'",
]
markdown_soup = st.lists(
    st.one_of(st.sampled_from(TOKENS), st.characters()), max_size=80
).map("".join)
limits_strategy = st.fixed_dictionaries({
    "first_chunk_min_words": st.integers(1, 4),
    "min_chunk_words": st.integers(1, 8),
    "max_chunk_chars": st.integers(8, 300),
})
PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(st.text(max_size=300))
def test_any_unicode_never_raises(text: str) -> None:
    spoken = to_speakable(text)
    assert spoken == spoken.strip()
    assert "  " not in spoken
    for chunk in split_for_speech(text):
        assert chunk and chunk == chunk.strip()


@PROPERTY_SETTINGS
@given(st.one_of(markdown_soup, st.text(max_size=150)), limits_strategy)
def test_chunks_keep_every_spoken_word_in_order(text: str, limits: dict[str, int]) -> None:
    chunks = feed_in_pieces(text, [], **limits)
    assert all(chunks)
    assert words(" ".join(chunks)) == words(to_speakable(text))


@PROPERTY_SETTINGS
@given(markdown_soup, st.lists(st.integers(0, 80), max_size=6), limits_strategy)
def test_chunks_do_not_depend_on_delta_boundaries(
    text: str, cuts: list[int], limits: dict[str, int]
) -> None:
    positions = sorted({min(cut, len(text)) for cut in cuts})
    assert feed_in_pieces(text, positions, **limits) == feed_in_pieces(text, [], **limits)


plain_word = st.from_regex(r"[A-Za-zÀ-ÿА-я][A-Za-z0-9À-ÿА-я']{0,8}", fullmatch=True)
separator = st.sampled_from([" ", ", ", ". ", "; ", ": ", "! ", "? ", " — ", "... ", "\n",
                             "\n\n", "?! ", '." '])


@PROPERTY_SETTINGS
@given(st.lists(st.tuples(plain_word, separator), min_size=1, max_size=60), limits_strategy)
def test_plain_prose_keeps_all_input_words(
    pairs: list[tuple[str, str]], limits: dict[str, int]
) -> None:
    text = "".join(word + sep for word, sep in pairs)
    chunks = feed_char_by_char(text, **limits)
    assert words(" ".join(chunks)) == words(text)
    assert all(len(chunk) <= limits["max_chunk_chars"] + 12 for chunk in chunks)


def test_a_long_first_clause_is_cut_after_a_few_words_so_speech_starts_early() -> None:
    text = ("The sky is blue because of a process called Rayleigh scattering, which is a "
            "natural phenomenon. It happens every day.")
    chunker = ClauseChunker(first_chunk_max_words=7)
    streamed: list[str] = []
    for character in text:
        streamed += chunker.feed(character)
    streamed += chunker.flush()
    assert streamed[0] == "The sky is blue because of a"
    assert streamed == split_for_speech(text)
    assert " ".join(streamed).split() == text.split()
    # A clause boundary within the limit still wins.
    first = split_for_speech("Sure, here it is. And more words follow here.")[0]
    assert first == "Sure, here it is."


def test_a_ramp_caps_the_second_chunk_too_then_sentences_follow() -> None:
    chunker = ClauseChunker(first_chunk_min_words=2, first_chunk_max_words=4,
                            second_chunk_max_words=6)
    text = ("The sky is blue because of a process called scattering that happens in the air "
            "all day long. The next sentence is spoken whole however long it turns out.")
    chunks = [*chunker.feed(text), *chunker.flush()]
    assert chunks == ["The sky is blue", "because of a process called scattering",
                      "that happens in the air all day long.",
                      "The next sentence is spoken whole however long it turns out."]


def test_a_longer_ramp_caps_each_chunk_in_turn_then_sentences_follow() -> None:
    chunker = ClauseChunker(first_chunk_min_words=2, first_chunk_max_words=3,
                            second_chunk_max_words=4, later_chunk_max_words=(6,))
    text = ("One two three four five six seven, eight nine ten eleven twelve thirteen "
            "fourteen fifteen sixteen. The next sentence is spoken whole.")
    chunks = [*chunker.feed(text), *chunker.flush()]
    assert chunks == ["One two three", "four five six seven,",
                      "eight nine ten eleven twelve thirteen",
                      "fourteen fifteen sixteen. The next sentence is spoken whole."]
