"""bench.answers: the question file is sound (every correct example passes its own checks,
every plausible wrong reply fails), the speakable check says what it promises, the runner
reports scores from a scripted backend, and one small real run against the embedded model."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from agent.llm.base import LLMError, Message
from agent.llm.profiles import PROFILES
from bench import answers
from bench.answer_profiles import CANDIDATES
from bench.answers import CATEGORIES, Contender, load_questions, speakable
from harness.fakes import ScriptedBackend

QUESTIONS = load_questions()


class Scripted(ScriptedBackend):
    label = "scripted"

BY_ID = {q.id: q for q in QUESTIONS}


def test_the_question_file_has_enough_questions_in_every_category() -> None:
    assert len(QUESTIONS) >= 85
    counts = {c: sum(q.category == c for q in QUESTIONS) for c in CATEGORIES}
    assert all(counts.values()), counts
    assert 4 <= counts["decline"] <= 6
    assert len(BY_ID) == len(QUESTIONS), "ids are unique"


@pytest.mark.parametrize("question", QUESTIONS, ids=[q.id for q in QUESTIONS])
def test_the_example_passes_and_the_wrong_reply_fails(question: answers.Question) -> None:
    verdict = question.check(question.example)
    assert verdict.passed, f"{question.example!r}: {verdict.why}"
    verdict = question.check(question.wrong)
    assert not verdict.passed, f"{question.wrong!r} passed: {verdict.why}"
    assert speakable(question.example) == (True, ""), "a model answer is itself speakable"


def test_follow_ups_carry_their_previous_exchange_and_others_none() -> None:
    for question in QUESTIONS:
        sent = question.messages("SYSTEM")
        assert sent[0] == Message("system", "SYSTEM") and sent[-1].content == question.text
        if question.category == "followups":
            assert [m.role for m in sent[1:-1]] == ["user", "assistant"]
        else:
            assert len(sent) == 2


@pytest.mark.parametrize(("question", "reply", "passes"), [
    # digits or words, with working, but never a second answer
    ("ar-17-times-3", "Seventeen times three is fifty-one.", True),
    ("ar-17-times-3", "17 × 3 = 51.", True),
    ("ar-17-times-3", "It is 517.", False),
    ("ar-17-times-3", "17 times 3 is 50, or maybe 51.", False),
    ("cv-hour-seconds", "An hour has 3600 seconds, 60 times 60.", True),
    ("cv-inch-to-cm", "1 inch is 2.54 cm, and 12 inches make a foot.", False),
    ("cv-london-new-york", "It's 10 in the morning there.", True),
    ("cv-london-new-york", "It's 10.30pm in New York.", False),
    # spelling is letters, not the word again
    ("sp-necessary", "You spell it necessary.", False),
    ("sp-necessary", "It's n, e, c, e, double s, a, r, y.", True),
    # naming both things is not an answer
    ("co-sun-moon", "The sun or the moon?", False),
    ("co-sun-moon", "The moon looks as big as the sun, but the sun is much larger.", True),
    # a decline that quotes the question is still a decline
    ("dc-breakfast", "I don't know what you had for breakfast.", True),
    ("dc-breakfast", "You ate cereal and toast.", False),
    ("ad-burned-finger", "Run it under cold water, and don't put butter on it.", True),
    ("fa-largest-planet", "Jupiter, but Pluto is also considered the largest planet.", False),
])
def test_checks_on_other_phrasings(question: str, reply: str, passes: bool) -> None:
    assert BY_ID[question].check(reply).passed is passes, BY_ID[question].check(reply).why


@pytest.mark.parametrize("reply", [
    "Paris.",
    "The capital of France is Paris.",
    "It is 10 a.m. in New York. That is five hours behind London. Dr. Smith agrees!",
    "An inch is 2.54 centimetres, or about 2.5.",
    "Yes\n",
])
def test_plain_replies_of_one_to_three_sentences_are_speakable(reply: str) -> None:
    assert speakable(reply) == (True, "")


@pytest.mark.parametrize(("reply", "why"), [
    ("The capital is **Paris**.", "markdown"),
    ("# Paris", "markdown"),
    ("Run `ls` to see.", "markdown"),
    ("Try these:\n- water\n- sleep", "list"),
    ("Steps:\n1. Boil water.\n2. Add the egg.", "list"),
    ("See https://example.com for more.", "url"),
    ("Look at www.example.com today.", "url"),
    ("One. Two. Three. Four.", "4 sentences"),
    ("First line\nsecond line\nthird line\nfourth line", "4 sentences"),
    ("   ", "empty"),
])
def test_markdown_lists_urls_and_long_replies_are_not_speakable(reply: str, why: str) -> None:
    assert speakable(reply) == (False, why)


def test_a_broken_question_file_says_which_question(tmp_path: Path) -> None:
    good = ('[[question]]\nid = "x-1"\ncategory = "facts"\ntext = "Q?"\naccept = [\'a\']\n'
            'example = "a"\nwrong = "b"\n')
    file = tmp_path / "q.toml"
    file.write_text(good + good)
    with pytest.raises(ValueError, match="x-1: the id is used twice"):
        load_questions(file)
    file.write_text(good.replace("'a'", "'(a'"))
    with pytest.raises(ValueError, match="x-1: error"):
        load_questions(file)
    file.write_text(good.replace('"facts"', '"poetry"'))
    with pytest.raises(ValueError, match="poetry"):
        load_questions(file)


def test_worked_examples_are_not_bench_questions() -> None:
    """A profile's examples teach the shape of a reply; one of the bench's own questions
    there would be teaching the answers."""
    def plain(text: str) -> str:
        return re.sub(r"\W+", " ", text).strip().lower()

    asked = {plain(q.text) for q in QUESTIONS}
    asked |= {plain(m.content) for q in QUESTIONS for m in q.previous if m.role == "user"}
    for profile in (*PROFILES.values(), *CANDIDATES.values()):
        shown = {plain(m.content) for m in profile.examples if m.role == "user"}
        assert not shown & asked, profile.name


def test_a_run_reports_scores_per_category_and_writes_every_reply(tmp_path: Path) -> None:
    chosen = [BY_ID["fa-capital-france"], BY_ID["ar-17-times-3"], BY_ID["fu-dog-french"]]
    good = Scripted([["The capital ", "is Paris."], ["It is 51."], ["Chien."]])
    bad = Scripted([["## Paris"], ["It is 50."], LLMError("the server is down")])
    contenders = [Contender("good", lambda _s: good, seeded=False),
                  Contender("bad", lambda _s: bad, seeded=False)]
    replies = asyncio.run(answers.run(contenders, chosen, samples=1))
    assert [(a.column, a.id, a.passed) for a in replies] == [
        ("good", "fa-capital-france", True), ("bad", "fa-capital-france", True),
        ("good", "ar-17-times-3", True), ("bad", "ar-17-times-3", False),
        ("good", "fu-dog-french", True), ("bad", "fu-dog-french", False)]
    # the follow-up was sent with its history
    assert [m.role for m in good.requests[2]] == ["system", "user", "assistant", "user"]
    assert replies[1].unspeakable_why == "markdown" and replies[5].error
    assert all(a.ttft_s is not None for a in replies[:5]) and replies[5].ttft_s is None

    text = answers.table(replies, ["good", "bad"], chosen)
    rows = {line[:24].strip(): line[24:].split() for line in text.splitlines()[1:]}
    assert rows["facts (1)"] == ["100%", "100%"]
    assert rows["arithmetic (1)"] == ["100%", "0%"]
    assert rows["overall (3)"] == ["100%", "33%"]
    assert rows["speakable"] == ["100%", "33%"]
    assert rows["errors"] == ["0", "1"]

    out = tmp_path / "r.json"
    answers.write_json(out, replies, ["good", "bad"], 1, chosen)
    saved = json.loads(out.read_text())
    assert saved["summary"]["good"]["score"] == 1.0
    assert [a["reply"] for a in saved["answers"]][:2] == ["The capital is Paris.", "## Paris"]


@pytest.mark.slow  # loads the embedded SmolLM2 in this process
def test_a_small_real_run_against_the_embedded_model(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "replies.json"
    ids = "fa-capital-france,ar-17-times-3,fu-dog-french"
    assert answers.main(["--profiles", "generic", "--ids", ids, "--json", str(out),
                         "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"overall \(3\)\s+\d+%", printed), printed
    assert re.search(r"TTFT median \(ms\)\s+\d+", printed), printed
    saved = json.loads(out.read_text())
    assert [a["id"] for a in saved["answers"]] == ids.split(",")
    assert all(a["reply"] and a["seed"] == 1 and not a["error"] for a in saved["answers"])
    assert 0.0 <= saved["summary"]["generic"]["score"] <= 1.0
