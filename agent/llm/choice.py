"""Which model answers: the first start's pick of a local server found running, the settings
a choice writes (the tray's LLM menu and `voice-agent llm use` both go through here), and the
one hint that says how to get a better model than the packaged 135M one.

A choice is written to the settings file in one write (agent.config.save_settings, comments
kept), and the running agent follows the file as it does for any edit.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from agent.config import Config, LLMConfig
from agent.config.writer import Value
from agent.llm.scan import FoundServer, ScanResult, scan

SERVER_KINDS = ("openai", "ollama")

# How to get better answers than the packaged 135M model's: the first run and doctor say it.
BETTER_MODEL_WAYS = (
    "start a local LLM server (Ollama, LM Studio, llama.cpp, vLLM, Jan or LocalAI: the tray's "
    "LLM menu and `voice-agent llm scan` find it), or download a 1-2 B model: `voice-agent "
    "models llm` lists them, or the tray's LLM ▸ Download a better model")
BETTER_MODEL_HINT = ("Answers come from SmolLM2-135M, a tiny offline model that is often "
                     f"wrong. For better answers, {BETTER_MODEL_WAYS}.")


def servers_running(cfg: Config) -> ScanResult:
    """The local LLM servers running here; nothing is probed when [llm] find_servers is off."""
    return scan() if cfg.llm.find_servers else ScanResult((), 0.0)


@dataclass(frozen=True)
class AutoPick:
    """A local server the agent uses by itself (while the settings name no backend), and what
    the overlay says about it."""

    server: FoundServer
    model: str

    @property
    def notice(self) -> str:
        return (f"Answering with {self.model} from {self.server.label}, found running (the "
                f"settings name no LLM). Choose another in the tray's LLM menu or with "
                f"`voice-agent llm use`.")

    def settings(self, llm: LLMConfig) -> LLMConfig:
        """`llm` (the [llm] settings as they are now) pointed at the server. No API key: the
        OPENAI_API_KEY meant for the user's own service is not sent to whatever answers on a
        local port (make_backend(env_key=False))."""
        # If it goes away later, the embedded model answers (and says so) unless the user
        # chose "none".
        fallback = llm.fallback or "embedded"
        return dataclasses.replace(llm, backend=self.server.backend,
                                   base_url=self.server.base_url, model=self.model,
                                   fallback=fallback, api_key="")


def auto_pick(cfg: Config, scan: ScanResult) -> AutoPick | None:
    """The server to use when the settings name no backend and exactly one local server with
    a chat model is running; None otherwise (the embedded model answers, and the LLM menu
    offers what was found). A model written in [llm] model is asked for if it has it."""
    if "llm.backend" in cfg.from_file or cfg.llm.use_embedded:
        return None
    servers = scan.with_chat_models()
    if len(servers) != 1:
        return None
    server = servers[0]
    written = cfg.llm.model.strip()
    return AutoPick(server, written if written in server.models else server.models[0])


def found_server_in_use(cfg: Config, picked: AutoPick | None) -> bool:
    """The settings in use point at a server found running rather than one the user set."""
    return picked is not None and "llm.backend" not in cfg.from_file


def server_choice(server: FoundServer, model: str) -> dict[str, Value]:
    """The [llm] keys that make `model` on `server` answer."""
    return {"backend": server.backend, "base_url": server.base_url, "model": model,
            "use_embedded": False}


def model_file_choice(cfg: Config, gguf: Path | None) -> dict[str, Value]:
    """The [llm] keys that make the embedded backend run `gguf` (None: the packaged model).
    A server the user set up stays in the file, with the embedded model chosen over it (as
    the tray's LLM menu does); otherwise backend = "embedded" is written, so a server found
    running later is not picked over a model the user asked for."""
    keys: dict[str, Value] = {"model_path": str(gguf) if gguf else ""}
    if cfg.llm.backend in SERVER_KINDS and "llm.backend" in cfg.from_file:
        keys["use_embedded"] = True
    else:
        keys["backend"] = "embedded"
        keys["use_embedded"] = False
    return keys


def answers_from_tiny_model(cfg: Config) -> bool:
    """True when replies come from the packaged 135M model: no server in use, no GGUF."""
    llm = cfg.llm
    embedded = llm.backend not in SERVER_KINDS or llm.use_embedded
    return embedded and not llm.model_path


def how_to_answer_better(cfg: Config, found: ScanResult) -> str:
    """What the first start says about the model that answers: nothing when a server was
    picked by itself (the agent says so as it loads) or the user chose a model; the servers
    found when there are several; else how to get better answers than the 135M model's."""
    if auto_pick(cfg, found) is not None or not answers_from_tiny_model(cfg):
        return ""
    servers = found.with_chat_models()
    if servers:
        listed = ", ".join(server.label for server in servers)
        return (f"Found running: {listed}. Choose one in the tray's LLM menu (or `voice-agent "
                f"llm use`); until then the tiny embedded model answers.")
    return BETTER_MODEL_HINT


def settings_to_use(cfg: Config) -> tuple[LLMConfig, AutoPick | None]:
    """The [llm] settings a front end answers with: the file's (the embedded model while the
    tray's choice says so), or a local server found running while the file names no backend
    (the scan is skipped when it could not matter)."""
    picked = None
    if "llm.backend" not in cfg.from_file and not cfg.llm.use_embedded \
            and cfg.llm.find_servers:
        picked = auto_pick(cfg, servers_running(cfg))
    return llm_settings(cfg, not cfg.llm.use_embedded, picked), picked


def llm_settings(cfg: Config, use_server: bool, picked: AutoPick | None = None) -> LLMConfig:
    """The [llm] settings (with the local server the agent picked by itself, while the file
    names no backend), or the same with the embedded model when `use_server` is off."""
    llm = picked.settings(cfg.llm) if picked is not None and found_server_in_use(cfg, picked) \
        else cfg.llm
    if use_server or llm.backend == "embedded":
        return llm
    return dataclasses.replace(llm, backend="embedded", fallback="")
