"""Candidate profiles for the embedded SmolLM2-135M-Instruct, compared with `bench.answers`
beside the generic one (docs/answers.md has the runs):

    python -m bench.answers --profiles generic,short-t0,short-t0-ex3 --samples 3

The worked examples are everyday questions that are NOT in bench/answer_questions.toml (the
test checks it): they show the model the length and tone of a good reply, and would be
cheating if they gave away the bench's own answers.
"""

from __future__ import annotations

from agent.config import DEFAULT_SYSTEM_PROMPT
from agent.llm.base import Message
from agent.llm.profiles import Profile, Sampling

SHORT_PROMPT = "You are a helpful assistant. Answer in one short sentence."
SPOKEN_PROMPT = ("You are a helpful voice assistant. Answer in one or two short, plain "
                 "sentences. If you cannot know something, say so.")


def _pairs(*turns: tuple[str, str]) -> tuple[Message, ...]:
    return tuple(m for user, assistant in turns
                 for m in (Message("user", user), Message("assistant", assistant)))


# Three short, correct, plain answers: a fact, a sum, a piece of advice.
EXAMPLES_3 = _pairs(
    ("Who wrote Pride and Prejudice?", "Jane Austen wrote Pride and Prejudice."),
    ("What is 6 times 4?", "6 times 4 is 24."),
    ("How can I make my phone battery last longer?",
     "Lower the screen brightness and close apps you are not using."),
)
# The same, and a question the assistant cannot answer, declined.
EXAMPLES_4 = (*EXAMPLES_3, *_pairs(
    ("When will my bus arrive?",
     "I can't see live bus times, so please check your transit app."),
))

# A short exchange and a follow-up on it: shows that "she" means the person just named.
EXAMPLES_FOLLOW = _pairs(
    ("Who wrote Pride and Prejudice?", "Jane Austen wrote Pride and Prejudice."),
    ("When was she born?", "Jane Austen was born in 1775."),
    ("What is 6 times 4?", "6 times 4 is 24."),
)
# The same idea with a follow-up further from the bench's own ("When was he born?"): in the
# same order, and with the follow-up last, right before the real conversation.
EXAMPLES_FOLLOW_ELSE = _pairs(
    ("Who wrote Pride and Prejudice?", "Jane Austen wrote Pride and Prejudice."),
    ("What else did she write?", "She also wrote Emma and Sense and Sensibility."),
    ("What is 6 times 4?", "6 times 4 is 24."),
)
EXAMPLES_FOLLOW_LAST = _pairs(
    ("What is 6 times 4?", "6 times 4 is 24."),
    ("Who wrote Pride and Prejudice?", "Jane Austen wrote Pride and Prejudice."),
    ("What else did she write?", "She also wrote Emma and Sense and Sensibility."),
)
# ... and a question it cannot answer, declined (first, or last).
DECLINE = _pairs(("When will my bus arrive?",
                  "I can't see live bus times, so please check your transit app."))
EXAMPLES_ELSE_DECLINE_LAST = (*EXAMPLES_FOLLOW_ELSE, *DECLINE)
EXAMPLES_ELSE_DECLINE_FIRST = (*DECLINE, *EXAMPLES_FOLLOW_ELSE)
SMOL_DEFAULT_PROMPT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
# Examples written into the system prompt instead of as turns of the conversation.
INLINE_PROMPT = (DEFAULT_SYSTEM_PROMPT + " For example: asked \"Who wrote Pride and "
                 "Prejudice?\", answer \"Jane Austen wrote Pride and Prejudice.\"; asked "
                 "\"What is 6 times 4?\", answer \"6 times 4 is 24.\"")


def candidate(name: str, prompt: str = SHORT_PROMPT, examples: tuple[Message, ...] = (),
              **sampling: object) -> Profile:
    settings: dict[str, object] = {"temperature": 0.0, "max_tokens": 96}
    settings.update(sampling)
    return Profile(name, Sampling(**settings), prompt, examples)  # type: ignore[arg-type]


_ALL = [
    # the generic prompt, only the sampling changed
    candidate("generic-t0", DEFAULT_SYSTEM_PROMPT, max_tokens=256),
    candidate("generic-t0.2-96", DEFAULT_SYSTEM_PROMPT, temperature=0.2),
    # the short prompt the first probe found
    candidate("short-t0"),
    candidate("short-t0.2", temperature=0.2),
    candidate("short-t0-stop", stop=("\n\n",)),
    candidate("short-t0-rp1.1", repeat_penalty=1.1),
    # with worked examples
    candidate("short-t0-ex3", examples=EXAMPLES_3),
    candidate("short-t0-ex4", examples=EXAMPLES_4),
    candidate("spoken-t0-ex4", SPOKEN_PROMPT, examples=EXAMPLES_4),
    candidate("short-t0.2-ex3", examples=EXAMPLES_3, temperature=0.2),
    # round 2: the generic prompt greedy was best; shorter, stopped, with examples
    candidate("generic-t0-128-stop", DEFAULT_SYSTEM_PROMPT, max_tokens=128, stop=("\n\n",)),
    candidate("generic-t0-96-rp1.1", DEFAULT_SYSTEM_PROMPT, repeat_penalty=1.1),
    candidate("generic-t0-ex3", DEFAULT_SYSTEM_PROMPT, EXAMPLES_3, max_tokens=128),
    candidate("generic-t0-exfu", DEFAULT_SYSTEM_PROMPT, EXAMPLES_FOLLOW, max_tokens=128),
    candidate("short-t0-exfu", examples=EXAMPLES_FOLLOW),
    candidate("inline-t0", INLINE_PROMPT, max_tokens=128),
    candidate("spoken-t0", SPOKEN_PROMPT),
    candidate("smol-t0", SMOL_DEFAULT_PROMPT),
    # round 3: around generic-t0-exfu, the best of round 2
    candidate("generic-t0-exelse", DEFAULT_SYSTEM_PROMPT, EXAMPLES_FOLLOW_ELSE, max_tokens=128),
    candidate("generic-t0-exlast", DEFAULT_SYSTEM_PROMPT, EXAMPLES_FOLLOW_LAST, max_tokens=128),
    candidate("generic-t0-exelse-96-stop", DEFAULT_SYSTEM_PROMPT, EXAMPLES_FOLLOW_ELSE,
              stop=("\n\n",)),
    candidate("spoken-t0-exelse", SPOKEN_PROMPT, EXAMPLES_FOLLOW_ELSE, max_tokens=128),
    candidate("generic-t0.2-exelse", DEFAULT_SYSTEM_PROMPT, EXAMPLES_FOLLOW_ELSE,
              temperature=0.2, max_tokens=128),
    # round 4: a declined question among the examples, for the decline category
    candidate("generic-t0-exelse-dclast-96-stop", DEFAULT_SYSTEM_PROMPT,
              EXAMPLES_ELSE_DECLINE_LAST, stop=("\n\n",)),
    candidate("generic-t0-exelse-dcfirst-96-stop", DEFAULT_SYSTEM_PROMPT,
              EXAMPLES_ELSE_DECLINE_FIRST, stop=("\n\n",)),
]
CANDIDATES: dict[str, Profile] = {profile.name: profile for profile in _ALL}
