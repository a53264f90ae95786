"""Better LLMs than the packaged SmolLM2-135M, to download on demand: small instruct GGUF
models (Q4_K_M) from the Hugging Face hub that the embedded backend (llama.cpp) runs on a
laptop CPU.

`voice-agent models llm` lists RECOMMENDED; `voice-agent models download llm KEY` fetches one
with agent.llm.hub.download_gguf, which checks the file against the hub's own size and sha256
(the sizes and digests here are what the hub published when this list was written, for display
and for a warning if a file changes upstream; the download always trusts the hub's values).

Speeds are estimates, not measurements: this machine has no network to fetch the models. They
scale the packaged SmolLM2-135M measured here (98 MB file, 140-160 tokens/s with the one
generation thread the embedded backend uses on two cores) by file size and parameter count,
and are rounded down. Speech needs about 3 tokens/s, so all four stay ahead of the voice; the
first words of a reply wait for the question to be read (a second or a few on two cores).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from agent import paths
from agent.llm.base import LLMError

HUB_PAGE = "https://huggingface.co"


def format_size(size_bytes: int) -> str:
    """Decimal units, as the hub shows them: "491 MB", "1.12 GB"."""
    if size_bytes >= 1_000_000_000:
        return f"{size_bytes / 1e9:.2f} GB"
    if size_bytes >= 1_000_000:
        return f"{size_bytes / 1e6:.0f} MB"
    if size_bytes >= 1_000:
        return f"{size_bytes / 1e3:.0f} kB"
    return f"{size_bytes} bytes"


@dataclass(frozen=True)
class RecommendedModel:
    key: str  # on the command line: `voice-agent models download llm qwen2.5-1.5b`
    title: str
    repo_id: str  # "owner/name" on the hub
    filename: str  # in the repo, and the local file's name
    size_bytes: int  # the download (the hub's own size is what the download checks)
    memory_bytes: int  # RAM with the embedded backend: the file, its 2048-token cache, buffers
    speed: str  # expected speed on a 2-core CPU, labelled as an estimate
    licence: str  # short: shown beside the title
    why: str  # one line: what it is good for
    licence_note: str = ""  # the terms' conditions worth knowing before use, when there are any
    sha256: str = ""  # the file's digest when catalogued (the hub's X-Linked-Etag)

    @property
    def page(self) -> str:
        """The model's page on the hub (model card, licence, files)."""
        return f"{HUB_PAGE}/{self.repo_id}"

    @property
    def size_text(self) -> str:
        return format_size(self.size_bytes)

    @property
    def memory_text(self) -> str:
        return f"about {self.memory_bytes / 1e9:.1f} GB"


RECOMMENDED: tuple[RecommendedModel, ...] = (
    RecommendedModel(
        key="qwen2.5-1.5b",
        title="Qwen2.5 1.5B Instruct",
        repo_id="Qwen/Qwen2.5-1.5B-Instruct-GGUF",
        filename="qwen2.5-1.5b-instruct-q4_k_m.gguf",
        size_bytes=1_117_320_736,
        memory_bytes=1_500_000_000,
        speed="estimated 6-10 tokens/s on 2 cores, first words in 1-3 s",
        licence="Apache-2.0",
        why="The strongest of the four on published benchmarks; many languages.",
        sha256="6a1a2eb6d15622bf3c96857206351ba97e1af16c30d7a74ee38970e434e9407e",
    ),
    RecommendedModel(
        key="llama-3.2-1b",
        title="Llama 3.2 1B Instruct",
        repo_id="bartowski/Llama-3.2-1B-Instruct-GGUF",
        filename="Llama-3.2-1B-Instruct-Q4_K_M.gguf",
        size_bytes=807_694_464,
        memory_bytes=1_100_000_000,
        speed="estimated 8-14 tokens/s on 2 cores, first words in 1-2 s",
        licence="Llama 3.2 Community License",
        why="Meta's small Llama: natural, friendly conversation in English.",
        licence_note=("Meta's licence: follow its acceptable use policy; products built on it "
                      "say \"Built with Llama\"; services with over 700 million monthly users "
                      "need Meta's permission."),
        sha256="6f85a640a97cf2bf5b8e764087b1e83da0fdb51d7c9fab7d0fece9385611df83",
    ),
    RecommendedModel(
        key="gemma-3-1b",
        title="Gemma 3 1B Instruct",
        repo_id="bartowski/google_gemma-3-1b-it-GGUF",
        filename="google_gemma-3-1b-it-Q4_K_M.gguf",
        size_bytes=806_058_496,
        memory_bytes=1_300_000_000,
        speed="estimated 7-12 tokens/s on 2 cores, first words in 1-2 s",
        licence="Gemma Terms of Use",
        why="Google's small Gemma 3: the same class as Llama 1B, another style of answer.",
        licence_note=("Not an open-source licence: Google's Gemma Terms of Use and Prohibited "
                      "Use Policy apply to any use and pass on with any copy "
                      "(https://ai.google.dev/gemma/terms). This copy is not gated; Google's "
                      "own repository asks you to accept the terms first."),
        sha256="12bf0fff8815d5f73a3c9b586bd8fee8e7b248c935de70dec367679873d0f29d",
    ),
    RecommendedModel(
        key="qwen2.5-0.5b",
        title="Qwen2.5 0.5B Instruct",
        repo_id="Qwen/Qwen2.5-0.5B-Instruct-GGUF",
        filename="qwen2.5-0.5b-instruct-q4_k_m.gguf",
        size_bytes=491_400_032,
        memory_bytes=800_000_000,
        speed="estimated 15-25 tokens/s on 2 cores, first words in about 1 s",
        licence="Apache-2.0",
        why="The smallest and quickest step up from SmolLM2-135M, for slow or small machines.",
        sha256="74a4da8c9fdbcd15bd1f6d01d621410d31c6fc00986f5eb687824e7b93d7a9db",
    ),
)


def llm_models_dir() -> Path:
    """Where downloaded LLMs live: <user data dir>/models/llm (created on first download)."""
    return paths.data_dir() / "models" / "llm"


class UnknownModelError(LLMError):
    """A name that is not a key of RECOMMENDED; the message lists the keys."""


def all_keys() -> list[str]:
    return [model.key for model in RECOMMENDED]


def find(name: str) -> RecommendedModel:
    """The recommended model whose key is `name` (any case, surrounding spaces ignored)."""
    wanted = name.strip().lower()
    for model in RECOMMENDED:
        if model.key.lower() == wanted:
            return model
    keys = all_keys()
    close = difflib.get_close_matches(wanted, keys, n=1, cutoff=0.5)  # the keys are lower case
    hint = f"did you mean {close[0]}? " if close else ""
    raise UnknownModelError(f"no recommended model is called {name.strip()!r}: {hint}choose one "
                            f"of {', '.join(keys)} (voice-agent models llm describes them).")
