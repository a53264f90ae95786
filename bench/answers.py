"""Answer quality: everyday questions a desktop voice assistant gets (bench/answer_questions.toml),
asked of one or more backends, each reply checked by the question's regexes.

Per profile or backend: the score (share of replies that pass) overall and per category; the
share of replies that are speakable (`speakable()`: no markdown, no list lines, no URLs, one
to three sentences); mean words per reply; the median time to the first token (the first
non-empty text delta); the share cut at max_tokens.

    python -m bench.answers                                  # generic vs smollm2-135m, embedded
    python -m bench.answers --profiles generic,short-t0.2 --samples 3
    python -m bench.answers --config ~/.config/voice-agent/config.toml
    python -m bench.answers --backend openai --base-url http://127.0.0.1:8080/v1 --model x
    python -m bench.answers --only arithmetic --show-failures --json replies.json

Several profiles (embedded: names from agent.llm.profiles.PROFILES or
bench/answer_profiles.py CANDIDATES) run in the same process, alternately, question by
question, so the baseline is measured beside the candidate under the same load. With
--samples N each question is asked N times, with seeds 1..N (Sampling.seed) for embedded
profiles, so two runs give the same replies and profiles are compared on the same draws.
A server (--config, --backend) answers with its own settings; seeds do not reach it.
See docs/answers.md.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import re
import statistics
import sys
import time
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config import DEFAULT_SYSTEM_PROMPT
from agent.llm.base import ChatBackend, LLMError, Message

QUESTIONS_FILE = Path(__file__).with_name("answer_questions.toml")
CATEGORIES = ("facts", "arithmetic", "conversions", "definitions", "spelling", "advice",
              "translation", "comparison", "followups", "decline")
PATTERN_FLAGS = re.IGNORECASE | re.DOTALL
DEFAULT_PROFILES = "generic,smollm2-135m"


# -- questions ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    passed: bool
    why: str  # the regex that decided: the accept that matched, the reject that fired, or none


@dataclass(frozen=True)
class Question:
    id: str
    category: str
    text: str
    accept: tuple[re.Pattern[str], ...]
    reject: tuple[re.Pattern[str], ...]
    example: str
    wrong: str
    previous: tuple[Message, ...] = ()

    def messages(self, system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> list[Message]:
        """What the conversation sends (agent/conversation.py): the system prompt, the
        history (a follow-up's scripted exchange), the question."""
        return [Message("system", system_prompt), *self.previous, Message("user", self.text)]

    def check(self, reply: str) -> Verdict:
        """Passed when an accept regex matches and no reject regex does."""
        for pattern in self.reject:
            found = pattern.search(reply)
            if found:
                return Verdict(False, f"reject /{pattern.pattern}/ matched {found.group()!r}")
        for pattern in self.accept:
            if pattern.search(reply):
                return Verdict(True, f"accept /{pattern.pattern}/")
        return Verdict(False, "no accept pattern matched")


def load_questions(path: Path = QUESTIONS_FILE) -> list[Question]:
    """The question file, checked: every field present and typed, regexes that compile,
    a known category, unique ids. A mistake is a ValueError naming the question."""
    with path.open("rb") as file:
        raw = tomllib.load(file).get("question", [])
    questions: list[Question] = []
    seen: set[str] = set()
    for number, entry in enumerate(raw, 1):
        name = entry.get("id", f"question #{number}")
        try:
            question = _question(entry)
        except (KeyError, TypeError, re.error) as error:
            raise ValueError(f"{path.name}: {name}: {type(error).__name__}: {error}") from None
        if question.category not in CATEGORIES:
            raise ValueError(f"{path.name}: {name}: category {question.category!r} is not one "
                             f"of {', '.join(CATEGORIES)}")
        if question.id in seen:
            raise ValueError(f"{path.name}: {name}: the id is used twice")
        seen.add(question.id)
        questions.append(question)
    return questions


def _question(entry: dict[str, Any]) -> Question:
    def text(key: str) -> str:
        value = entry[key]
        if not isinstance(value, str) or not value.strip():
            raise TypeError(f"{key} must be a non-empty string")
        return value

    def patterns(key: str, required: bool) -> tuple[re.Pattern[str], ...]:
        values = entry[key] if required else entry.get(key, [])
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise TypeError(f"{key} must be a list of strings")
        if required and not values:
            raise TypeError(f"{key} is empty")
        return tuple(re.compile(value, PATTERN_FLAGS) for value in values)

    previous: list[Message] = []
    for turn in entry.get("previous", []):
        previous += [Message("user", turn["user"]), Message("assistant", turn["assistant"])]
    unknown = set(entry) - {"id", "category", "text", "accept", "reject", "example", "wrong",
                            "previous"}
    if unknown:
        raise TypeError(f"unknown keys {sorted(unknown)}")
    return Question(text("id"), text("category"), text("text"), patterns("accept", True),
                    patterns("reject", False), text("example"), text("wrong"), tuple(previous))


# -- speakable ---------------------------------------------------------------------------------

MARKDOWN = re.compile(r"[*#`]")
LIST_LINE = re.compile(r"^[ \t]*(?:[-+•·]|\d+[.)])[ \t]+\S", re.MULTILINE)
URL = re.compile(r"\bhttps?://|\bwww\.\w", re.IGNORECASE)
# Full stops that do not end a sentence: "a.m.", "e.g.", "U.S.", "Dr.", "approx."
ABBREVIATION = re.compile(r"\b(?:[a-z]\.){2,}|\b(?:mr|mrs|ms|dr|st|mt|jr|sr|vs|etc|approx|no)\.",
                          re.IGNORECASE)
SENTENCE_BREAK = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+|\s*\n\s*")
MAX_SENTENCES = 3


def sentences(text: str) -> list[str]:
    """`text` cut into sentences: at ., ! or ? followed by a space (not inside "2.54", "a.m.",
    "Dr."), and at line breaks. Pieces without a letter or digit are not sentences."""
    flat = ABBREVIATION.sub(lambda found: found.group().replace(".", ""), text.strip())
    return [part for part in SENTENCE_BREAK.split(flat) if re.search(r"\w", part)]


def speakable(reply: str) -> tuple[bool, str]:
    """Whether `reply` can be read aloud as it is: no markdown (*, #, backticks), no list
    lines ("- x", "1. x"), no URLs, and one to three sentences. The reason when it is not."""
    if MARKDOWN.search(reply):
        return False, "markdown"
    if LIST_LINE.search(reply):
        return False, "list"
    if URL.search(reply):
        return False, "url"
    count = len(sentences(reply))
    if count == 0:
        return False, "empty"
    if count > MAX_SENTENCES:
        return False, f"{count} sentences"
    return True, ""


# -- contenders --------------------------------------------------------------------------------

@dataclass
class Contender:
    """One column of the table: a backend to ask, made per seed (embedded profiles) or once
    (a server, which keeps its own settings)."""

    name: str
    make: Callable[[int], ChatBackend]
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    seeded: bool = True
    _made: dict[int, ChatBackend] = field(default_factory=dict)

    def backend(self, seed: int) -> ChatBackend:
        key = seed if self.seeded else 0
        if key not in self._made:
            self._made[key] = self.make(seed)
        return self._made[key]

    async def aclose(self) -> None:
        for backend in self._made.values():
            await backend.aclose()


def known_profiles() -> dict[str, Any]:
    from agent.llm.profiles import PROFILES
    from bench.answer_profiles import CANDIDATES

    return {**PROFILES, **CANDIDATES}


def profile_contender(name: str, model_path: str | None = None,
                      threads: int | None = None) -> Contender:
    """An embedded profile; each seed gets its own backend (the model itself is shared)."""
    profiles = known_profiles()
    if name not in profiles:
        raise SystemExit(f"unknown profile {name!r}; known: {', '.join(profiles)}")
    profile = profiles[name]

    def make(seed: int) -> ChatBackend:
        from agent.llm.embedded import EmbeddedBackend

        seeded = dataclasses.replace(profile, sampling=dataclasses.replace(profile.sampling,
                                                                           seed=seed))
        return EmbeddedBackend(model_path, profile=seeded, threads=threads)

    return Contender(name, make)


def config_contender(path: Path) -> Contender:
    """Whatever backend the config file names, with its own settings and system prompt. The
    embedded model still gets the seeds."""
    from agent import config
    from agent.llm import make_backend
    from agent.llm.embedded import EmbeddedBackend

    cfg = config.load(path)
    for problem in getattr(cfg, "problems", []):
        print(f"{path}: {problem}", file=sys.stderr)
    first = make_backend(cfg.llm, cfg.from_file)
    if isinstance(first, EmbeddedBackend):
        def make(seed: int) -> ChatBackend:
            profile = first.profile
            return EmbeddedBackend(first.model_path, profile=dataclasses.replace(
                profile, sampling=dataclasses.replace(profile.sampling, seed=seed)))

        return Contender(f"{first.label}", make, cfg.llm.system_prompt)
    return Contender(first.label, lambda _seed: first, cfg.llm.system_prompt, seeded=False)


def server_contender(kind: str, base_url: str, model: str) -> Contender:
    from agent.config import LLMConfig
    from agent.llm import make_backend

    backend = make_backend(LLMConfig(backend=kind, base_url=base_url, model=model))
    return Contender(f"{kind}:{model or base_url}", lambda _seed: backend, seeded=False)


# -- running -----------------------------------------------------------------------------------

@dataclass
class Answer:
    column: str
    id: str
    category: str
    seed: int
    question: str
    reply: str
    passed: bool
    why: str
    speakable: bool
    unspeakable_why: str
    words: int
    ttft_s: float | None  # None: no text came
    total_s: float
    cut: bool  # stopped at max_tokens
    error: str = ""


async def ask(backend: ChatBackend, messages: Sequence[Message]) -> tuple[str, float | None,
                                                                           float, bool]:
    """The whole reply; seconds to its first text; seconds in all; cut at max_tokens."""
    begin = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    cut = False
    async for delta in backend.stream(messages):
        if delta.text:
            if first is None:
                first = time.perf_counter() - begin
            parts.append(delta.text)
        if "max_tokens" in delta.notice:
            cut = True
    return "".join(parts), first, time.perf_counter() - begin, cut


async def answer(contender: Contender, question: Question, seed: int) -> Answer:
    try:
        reply, ttft, total, cut = await ask(contender.backend(seed),
                                            question.messages(contender.system_prompt))
        error = ""
    except LLMError as failure:
        reply, ttft, total, cut, error = "", None, 0.0, False, str(failure)
    reply = reply.strip()
    verdict = question.check(reply) if not error else Verdict(False, "error")
    ok, why_not = speakable(reply)
    return Answer(contender.name, question.id, question.category, seed, question.text, reply,
                  verdict.passed, verdict.why, ok, why_not, len(reply.split()), ttft, total,
                  cut, error)


async def prepare(contender: Contender, seed: int) -> None:
    """Put an embedded model in the state the app keeps it in: its system prompt and worked
    examples already evaluated (warm_up at start, and every turn starts with them), the
    question not. Run before a contender's turn when another profile had the model last, so
    each column's time to first token counts the question, not the other profile's prompt,
    and none gains from a neighbour that sent the same prompt."""
    from agent.llm.embedded import EmbeddedBackend

    backend = contender.backend(seed)
    if isinstance(backend, EmbeddedBackend):
        await backend.warm_up(contender.system_prompt)


async def run(contenders: Sequence[Contender], questions: Sequence[Question], samples: int,
              progress: Callable[[int, int], None] | None = None) -> list[Answer]:
    """Every question `samples` times (seeds 1..samples) to every contender, alternating:
    for each seed, for each question, each contender in turn."""
    total = samples * len(questions) * len(contenders)
    answers: list[Answer] = []
    try:
        for contender in contenders:  # the model loaded before the first timed reply
            await prepare(contender, 1)
        for seed in range(1, samples + 1):
            for question in questions:
                for contender in contenders:
                    if len(contenders) > 1:
                        await prepare(contender, seed)
                    answers.append(await answer(contender, question, seed))
                    if progress:
                        progress(len(answers), total)
    finally:
        for contender in contenders:
            await contender.aclose()
    return answers


# -- reporting ---------------------------------------------------------------------------------

@dataclass
class Summary:
    replies: int
    score: float
    by_category: dict[str, float]
    category_mean: float
    speakable: float
    words: float
    ttft_ms: float | None
    cut: float
    errors: int


def summarise(answers: Iterable[Answer]) -> Summary:
    answers = list(answers)
    by_category: dict[str, list[bool]] = {}
    for a in answers:
        by_category.setdefault(a.category, []).append(a.passed)
    shares = {c: sum(v) / len(v) for c, v in by_category.items()}
    firsts = [a.ttft_s for a in answers if a.ttft_s is not None]
    n = max(len(answers), 1)
    return Summary(
        replies=len(answers),
        score=sum(a.passed for a in answers) / n,
        by_category=shares,
        category_mean=statistics.fmean(shares.values()) if shares else 0.0,
        speakable=sum(a.speakable for a in answers) / n,
        words=statistics.fmean(a.words for a in answers) if answers else 0.0,
        ttft_ms=1000 * statistics.median(firsts) if firsts else None,
        cut=sum(a.cut for a in answers) / n,
        errors=sum(bool(a.error) for a in answers))


def table(answers: Sequence[Answer], columns: Sequence[str],
          questions: Sequence[Question]) -> str:
    """Side by side: one column per profile/backend, a row per category, then the totals."""
    summaries = {c: summarise(a for a in answers if a.column == c) for c in columns}
    counts = {c: sum(q.category == c for q in questions) for c in CATEGORIES}
    width = max(9, *(len(c) + 2 for c in columns))
    lines = [f"{'':24}" + "".join(f"{c:>{width}}" for c in columns)]

    def row(label: str, cells: Iterable[str]) -> None:
        lines.append(f"{label:24}" + "".join(f"{cell:>{width}}" for cell in cells))

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.0f}%"

    for category in CATEGORIES:
        if counts[category]:
            row(f"{category} ({counts[category]})",
                (pct(summaries[c].by_category.get(category)) for c in columns))
    row(f"overall ({len(questions)})", (pct(summaries[c].score) for c in columns))
    row("category mean", (pct(summaries[c].category_mean) for c in columns))
    row("speakable", (pct(summaries[c].speakable) for c in columns))
    row("words/reply (mean)", (f"{summaries[c].words:.1f}" for c in columns))
    row("TTFT median (ms)", ("-" if summaries[c].ttft_ms is None
                             else f"{summaries[c].ttft_ms:.0f}" for c in columns))
    row("cut at max_tokens", (pct(summaries[c].cut) for c in columns))
    if any(s.errors for s in summaries.values()):
        row("errors", (str(summaries[c].errors) for c in columns))
    return "\n".join(lines)


def failures(answers: Sequence[Answer], width: int = 160) -> str:
    lines = []
    for a in answers:
        if a.passed:
            continue
        reply = " ".join(a.reply.split())
        reply = reply if len(reply) <= width else reply[:width - 3] + "..."
        lines.append(f"[{a.column}] {a.id} seed {a.seed}: {a.question}\n    {reply!r}\n"
                     f"    {a.error or a.why}")
    return "\n".join(lines)


def write_json(path: Path, answers: Sequence[Answer], columns: Sequence[str],
               samples: int, questions: Sequence[Question]) -> None:
    summaries = {c: dataclasses.asdict(summarise(a for a in answers if a.column == c))
                 for c in columns}
    path.write_text(json.dumps({
        "questions": len(questions), "samples": samples, "columns": list(columns),
        "summary": summaries, "answers": [dataclasses.asdict(a) for a in answers],
    }, indent=1, ensure_ascii=False) + "\n")


def _progress(done: int, total: int) -> None:
    step = max(1, total // 20)
    if done == total or done % step == 0:
        print(f"  {done}/{total} replies", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", default=None,
                        help=f"embedded profiles, comma-separated (default {DEFAULT_PROFILES} "
                             f"when no --config/--backend is given)")
    parser.add_argument("--samples", type=int, default=1,
                        help="ask each question N times, seeds 1..N (default 1)")
    parser.add_argument("--config", type=Path, action="append", default=[],
                        help="run the backend this config file names (repeatable)")
    parser.add_argument("--backend", choices=("openai", "ollama"),
                        help="a server, with --base-url and --model")
    parser.add_argument("--base-url", default="")
    parser.add_argument("--model", default="")
    parser.add_argument("--model-path", default=None,
                        help="the GGUF the embedded profiles run (default: the packaged one)")
    parser.add_argument("--threads", type=int, default=None,
                        help="llama.cpp threads for embedded profiles (default: cores - 1)")
    parser.add_argument("--only", default="", help="categories, comma-separated")
    parser.add_argument("--ids", default="", help="question ids, comma-separated")
    parser.add_argument("--questions", type=Path, default=QUESTIONS_FILE)
    parser.add_argument("--json", type=Path, help="write every reply and verdict here")
    parser.add_argument("--show-failures", action="store_true")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    if args.samples < 1:
        parser.error("--samples must be at least 1")

    questions = load_questions(args.questions)
    if args.only:
        wanted = {c.strip() for c in args.only.split(",") if c.strip()}
        unknown = wanted - set(CATEGORIES)
        if unknown:
            parser.error(f"unknown categories {sorted(unknown)}; known: {', '.join(CATEGORIES)}")
        questions = [q for q in questions if q.category in wanted]
    if args.ids:
        ids = [i.strip() for i in args.ids.split(",") if i.strip()]
        missing = set(ids) - {q.id for q in questions}
        if missing:
            parser.error(f"no such question ids: {', '.join(sorted(missing))}")
        questions = [q for q in questions if q.id in ids]

    contenders: list[Contender] = []
    profiles = args.profiles
    if profiles is None and not args.config and not args.backend:
        profiles = DEFAULT_PROFILES
    for name in (profiles or "").split(","):
        if name.strip():
            contenders.append(profile_contender(name.strip(), args.model_path, args.threads))
    try:
        contenders += [config_contender(path) for path in args.config]
        if args.backend:
            if not args.base_url and args.backend == "openai":
                parser.error("--backend openai needs --base-url")
            contenders.append(server_contender(args.backend, args.base_url, args.model))
    except LLMError as error:
        parser.error(str(error))
    names = [c.name for c in contenders]
    if len(set(names)) != len(names):
        parser.error(f"two columns have the same name: {names}")

    print(f"answers: {len(questions)} questions x {args.samples} sample(s) "
          f"(seeds 1..{args.samples}), {len(contenders)} column(s)", flush=True)
    began = time.monotonic()
    answers = asyncio.run(run(contenders, questions, args.samples,
                              None if args.quiet else _progress))
    print(table(answers, names, questions))
    print(f"({len(answers)} replies in {time.monotonic() - began:.0f} s)")
    if args.show_failures:
        print()
        print(failures(answers))
    if args.json:
        write_json(args.json, answers, names, args.samples, questions)
        print(f"replies and verdicts: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
