"""The LLM's `doctor` probe: the backend the agent would use, and the embedded model where it
stands in for a server. A server is asked for its models (GET, 3 s at most); the embedded
model is found and its llama.cpp binding imported."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
from typing import TYPE_CHECKING, Any

from agent.checks import Area, Check, Progress, Status, fail, ok, warn
from agent.llm.base import LLMError
from agent.llm.choice import (
    BETTER_MODEL_WAYS,
    AutoPick,
    answers_from_tiny_model,
    auto_pick,
    servers_running,
)
from agent.llm.embedded import INSTALL_RUNTIME, model_file, require_runtime
from agent.llm.ollama import OllamaBackend
from agent.llm.openai_compat import OpenAICompatBackend, public_url
from agent.llm.scan import ScanResult

if TYPE_CHECKING:
    from agent.config import Config, LLMConfig

PROBE_TIMEOUT_S = 3.0  # the LLM server: reaching it is quick or hopeless


def check_llm(cfg: Config, progress: Progress | None = None) -> list[Check]:
    """The local servers running here, the LLM the agent would use (a server found running
    when the settings name none), the embedded model where it stands in for a server, and
    how to get better answers than the packaged 135M model gives."""
    found = servers_running(cfg)
    picked = auto_pick(cfg, found)
    checks = [check_found(found, picked)] if cfg.llm.find_servers else []
    checks += check_answering(picked.settings(cfg.llm) if picked else cfg.llm,
                              env_key=picked is None)
    if picked is None and answers_from_tiny_model(cfg):
        checks.append(warn("Answer quality", "answers come from SmolLM2-135M, a tiny model "
                           "that is often wrong", BETTER_MODEL_WAYS))
    return checks


def check_found(found: ScanResult, picked: AutoPick | None) -> Check:
    looked = f"looked on 127.0.0.1 in {found.elapsed_s * 1000:.0f} ms"
    if not found.servers:
        return ok("Local LLM servers", f"none running ({looked})")
    listed = "; ".join(f"{server.label} ({', '.join(server.models[:4]) or 'no chat model'}"
                       f"{', …' if len(server.models) > 4 else ''})" for server in found.servers)
    use = (f"; {picked.model} answers, as the settings name no backend" if picked else
           "; choose one in the tray's LLM menu or with `voice-agent llm use`")
    return ok("Local LLM servers", f"{listed} ({looked}){use}")


def check_answering(llm: LLMConfig, env_key: bool = True) -> list[Check]:
    """The LLM the agent would use, and the embedded model where it stands in for a server
    (the tray's LLM menu chose it, llm.fallback = "embedded", or the server settings are
    unusable). The agent can answer when one of them passes; if none does, each FAIL says
    so (Area.ANSWERS). A server that fails while the embedded model stands in is a warning."""
    kind = llm.backend.strip().lower()
    if kind == "embedded":
        return [check_embedded(model_path=llm.model_path)]
    if kind not in ("openai", "ollama"):
        return [warn("LLM", f"llm.backend = {llm.backend!r} is not known; the embedded model "
                     "answers instead", "use \"embedded\", \"openai\" or \"ollama\""),
                check_embedded("LLM (embedded)", llm.model_path)]
    server = check_server(llm, env_key)
    if llm.use_embedded:
        embedded = check_embedded("LLM (embedded, chosen in the tray's LLM menu)",
                                  llm.model_path)
        if server.status is Status.FAIL and embedded.status is not Status.FAIL:
            server = dataclasses.replace(server, status=Status.WARN, area=Area.OTHER)
        return [embedded, server]
    if server.status is not Status.FAIL:
        return [server]
    if llm.fallback.strip().lower() != "embedded":
        return [server]
    embedded = check_embedded("LLM fallback (embedded)", llm.model_path)
    if embedded.status is Status.FAIL:
        return [server, embedded]
    return [dataclasses.replace(server, status=Status.WARN, area=Area.OTHER,
                                detail=f"{server.detail} The embedded model answers meanwhile"),
            embedded]


def check_embedded(name: str = "LLM", model_path: str = "") -> Check:
    if model_path:
        try:
            model_file(model_path)
        except LLMError as error:  # the agent answers with the packaged model instead
            packaged = check_embedded(name)
            if packaged.status is Status.FAIL:
                return packaged
            return warn(name, f"{error} The packaged model answers instead: "
                        f"{packaged.detail}", "download the model again (voice-agent models "
                        "llm) or empty llm.model_path", Area.ANSWERS)
    try:
        model = model_file(model_path)
        require_runtime()
    except LLMError as error:
        return fail(name, f"embedded model: {error}", "reinstall as the message says, or set "
                    "llm.backend to a server", Area.ANSWERS)
    try:
        llama_cpp = importlib.import_module("llama_cpp")
    except Exception as error:  # a binding built for another CPU or library raises anything
        return fail(name, f"embedded model: llama_cpp does not import ({type(error).__name__}: "
                    f"{error})", f"`{INSTALL_RUNTIME} --force-reinstall`", Area.ANSWERS)
    size_mb = model.stat().st_size / 1e6
    version = getattr(llama_cpp, "__version__", "?")
    return ok(name, f"embedded {model.name} ({size_mb:.0f} MB), llama.cpp binding {version}",
              Area.ANSWERS)


def check_server(llm: LLMConfig, env_key: bool = True) -> Check:
    """Ask the server for its models (GET, 3 s at most) and look for llm.model there."""
    kind = llm.backend.strip().lower()
    name = f"LLM server ({kind})"
    fix = ("start the server, or correct llm.base_url; llm.fallback = \"embedded\" answers "
           "with the embedded model while it is down")
    backend: OpenAICompatBackend | OllamaBackend
    try:
        if kind == "ollama":
            backend = OllamaBackend(llm.base_url, llm.model, llm.api_key,
                                    timeout_s=PROBE_TIMEOUT_S)
            path = "/api/tags"
            hint = "is llm.base_url Ollama's root URL (e.g. http://127.0.0.1:11434)?"
        else:
            if not llm.base_url.strip():
                return fail(name, "llm.base_url is empty", "set it to the server's "
                            "OpenAI-compatible URL, e.g. http://127.0.0.1:11434/v1 (Ollama) "
                            "or https://api.openai.com/v1", Area.ANSWERS)
            backend = OpenAICompatBackend(llm.base_url, llm.model, llm.api_key,
                                          timeout_s=PROBE_TIMEOUT_S, env_key=env_key)
            path = "/models"
            hint = "check that llm.base_url is the server's OpenAI-compatible root (/v1)."
    except LLMError as error:
        return fail(name, str(error), "correct llm.base_url", Area.ANSWERS)
    url = public_url(backend.base_url)
    try:
        listing = asyncio.run(_get_json(backend, path, hint))
    except LLMError as error:
        return fail(name, str(error), fix, Area.ANSWERS)
    if kind == "ollama":
        entries = listing.get("models") if isinstance(listing, dict) else None
        names = [n for m in entries or [] if isinstance(m, dict)
                 for n in [m.get("model") or m.get("name")] if isinstance(n, str) and n]
    else:
        entries = listing.get("data") if isinstance(listing, dict) else None
        names = [m["id"] for m in entries or [] if isinstance(m, dict)
                 and isinstance(m.get("id"), str)]
    keyed = "" if kind == "ollama" else (
        ", with an API key" if backend.http.api_key else ", without an API key")
    model = llm.model.strip()
    if not names:
        pull = "`ollama pull llama3.2` and " if kind == "ollama" else ""
        return warn(name, f"{url} answers{keyed} but lists no models",
                    f"{pull}set llm.model", Area.ANSWERS)
    listed = ", ".join(names[:6]) + (", …" if len(names) > 6 else "")
    if not model:
        return ok(name, f"{url} answers{keyed}; llm.model is empty, so {names[0]} (the first "
                  f"listed) answers", Area.ANSWERS)
    if model in names or (kind == "ollama" and f"{model}:latest" in names):
        return ok(name, f"{url} answers{keyed}; model {model} is listed", Area.ANSWERS)
    pull = f"`ollama pull {model}`, or " if kind == "ollama" else ""
    return warn(name, f"{url} answers{keyed}, but model {model} is not listed (it lists "
                f"{listed})", f"{pull}set llm.model to a listed model", Area.ANSWERS)


async def _get_json(backend: OpenAICompatBackend | OllamaBackend, path: str, hint: str) -> Any:
    try:
        return await backend.http.get_json(path, hint)
    finally:
        await backend.http.aclose()
