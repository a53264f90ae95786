"""How to get the best answers out of one model: its sampling settings and how its prompt is
dressed (system prompt, worked examples).

The packaged SmolLM2-135M has its own profile, tuned on `bench.answers`; any other model
(a GGUF named in [llm] model_path, a server's) starts from the generic one. Settings the user
wrote in the file ([llm] temperature, max_tokens, system_prompt) always win.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass

from agent.config import DEFAULT_SYSTEM_PROMPT, LLMConfig
from agent.llm.base import Message


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = None  # fixed only by benchmarks, for runs that can be compared


@dataclass(frozen=True)
class Profile:
    name: str
    sampling: Sampling
    system_prompt: str
    # Worked examples put between the system prompt and the conversation: a tiny model
    # copies their length and tone far better than it follows instructions.
    examples: tuple[Message, ...] = ()

    def dress(self, messages: list[Message]) -> list[Message]:
        """`messages` with this profile's system prompt and examples in front, in place of
        the system message the conversation sent."""
        rest = messages[1:] if messages and messages[0].role == "system" else messages
        return [Message("system", self.system_prompt), *self.examples, *rest]


# The settings every model had before tuning: what a server's model gets unless the user says
# otherwise, and the baseline `bench.answers` compares against.
GENERIC = Profile("generic", Sampling(temperature=0.7, max_tokens=256), DEFAULT_SYSTEM_PROMPT)

# SmolLM2-135M-Instruct, tuned on bench.answers (docs/answers.md has the runs): greedy
# decoding (at 0.7 it wandered: 32% against 42% of 106 questions, 3 samples each), short
# replies that stop at a blank line, and three worked examples, one a follow-up, which it
# copies for length and tone (replies 10 words on average instead of 27; speakable 96% against
# 84%). The examples are not questions of the benchmark.
SMOLLM2_135M = Profile(
    "smollm2-135m",
    Sampling(temperature=0.0, max_tokens=96, stop=("\n\n",)),
    DEFAULT_SYSTEM_PROMPT,
    (Message("user", "Who wrote Pride and Prejudice?"),
     Message("assistant", "Jane Austen wrote Pride and Prejudice."),
     Message("user", "What else did she write?"),
     Message("assistant", "She also wrote Emma and Sense and Sensibility."),
     Message("user", "What is 6 times 4?"),
     Message("assistant", "6 times 4 is 24.")),
)

PROFILES = {profile.name: profile for profile in (GENERIC, SMOLLM2_135M)}


def with_user_settings(profile: Profile, llm: LLMConfig, user_set: Collection[str]) -> Profile:
    """`profile`, with the [llm] settings the user wrote in the file in place of its own."""
    sampling = profile.sampling
    if "llm.temperature" in user_set:
        sampling = dataclasses.replace(sampling, temperature=llm.temperature)
    if "llm.max_tokens" in user_set:
        sampling = dataclasses.replace(sampling, max_tokens=llm.max_tokens)
    if "llm.system_prompt" in user_set:
        # Their own prompt, without examples written for another.
        return dataclasses.replace(profile, sampling=sampling, system_prompt=llm.system_prompt,
                                   examples=())
    return dataclasses.replace(profile, sampling=sampling)
