"""`voice-agent llm`: which model answers, the local servers running here, and choosing one.

    voice-agent llm list                 the model in use, and every one there is to choose
    voice-agent llm scan                 look for local LLM servers on their usual ports
    voice-agent llm use TARGET [--model M]
        TARGET: embedded (the packaged SmolLM2), a downloaded model's name (models llm), a
        .gguf file, or a server found running: its product (ollama, "lm studio", llama.cpp,
        vllm, jan, localai) or its port (11434)

`use` writes [llm] in the settings file (comments kept); a running agent follows the file.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from agent.cli.common import load_config
from agent.config import Config, ConfigError, save_settings
from agent.config.writer import Value
from agent.llm import catalog, hub
from agent.llm.base import LLMError
from agent.llm.catalog import llm_models_dir
from agent.llm.choice import (
    BETTER_MODEL_HINT,
    answers_from_tiny_model,
    auto_pick,
    model_file_choice,
    server_choice,
    servers_running,
)
from agent.llm.scan import FoundServer, ScanResult, scan

log = logging.getLogger("agent")

EXIT_OK, EXIT_FAILED, EXIT_REFUSED = 0, 1, 2


def add_llm_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("llm", help="the LLM in use; local servers found running; "
                            "choose one (llm use)")
    parser.add_argument("action", nargs="?", choices=["list", "scan", "use"], default="list")
    parser.add_argument("target", nargs="?", help="for use: embedded, a downloaded model, a "
                        ".gguf file, or a server found running (ollama, lm studio, 11434...)")
    parser.add_argument("--model", help="for use with a server: the model to ask for "
                        "(default: the first chat model it lists)")
    parser.set_defaults(func=cmd_llm)


def cmd_llm(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if args.action == "scan":
        found = scan()
        print(describe_scan(found))
        return EXIT_OK
    if args.action == "use":
        return _use(cfg, args.target, args.model)
    found = servers_running(cfg)
    print(describe_choices(cfg, found))
    return EXIT_OK


def describe_scan(found: ScanResult) -> str:
    lines = [f"Looked for local LLM servers on 127.0.0.1 in {found.elapsed_s * 1000:.0f} ms."]
    if not found.servers:
        lines.append("None is running (Ollama, LM Studio, llama.cpp, vLLM, Jan or LocalAI, on "
                     "their usual ports).")
    for server in found.servers:
        lines.append(f"  {server.label}: {server.base_url} ({server.backend} API)")
        if not server.models:
            lines.append("      no chat models: load or pull one in it")
        for model in server.models:
            lines.append(f"      {model}")
    if found.servers:
        lines.append("Use one: voice-agent llm use PRODUCT|PORT [--model NAME], or the tray's "
                     "LLM menu.")
    return "\n".join(lines)


def describe_choices(cfg: Config, found: ScanResult) -> str:
    llm = cfg.llm
    picked = auto_pick(cfg, found)
    if picked is not None:
        in_use = f"{picked.model} from {picked.server.label} (found running; [llm] names no " \
                 "backend)"
    elif llm.backend in ("openai", "ollama") and not llm.use_embedded:
        in_use = f"{llm.backend} server at {llm.base_url or 'its default URL'} (model " \
                 f"{llm.model or 'the first listed'})"
    else:
        in_use = f"embedded: {Path(llm.model_path).name if llm.model_path else 'SmolLM2-135M'}"
    lines = [f"In use: {in_use}", "", "Embedded (in-process, offline):",
             "  embedded              SmolLM2-135M-Instruct (packaged)"]
    for model in catalog.RECOMMENDED:
        path = llm_models_dir() / model.filename
        if path.is_file():
            lines.append(f"  {model.key:<21} {model.title} ({path})")
    if llm.model_path and not any(Path(llm.model_path).name == m.filename
                                  for m in catalog.RECOMMENDED):
        lines.append(f"  {llm.model_path}")
    lines.append("  more to download: voice-agent models llm")
    if llm.backend in ("openai", "ollama"):
        lines += ["", f"In the settings: {llm.backend} server at "
                      f"{llm.base_url or 'its default URL'} (model {llm.model or 'first listed'})"]
    lines += ["", describe_scan(found) if cfg.llm.find_servers else
              "Looking for local servers is off ([llm] find_servers = false)."]
    if answers_from_tiny_model(cfg) and picked is None:
        lines += ["", BETTER_MODEL_HINT]
    return "\n".join(lines)


def _use(cfg: Config, target: str | None, model: str | None) -> int:
    if not target:
        log.error("llm use needs a target: embedded, a downloaded model (voice-agent models "
                  "llm), a .gguf file, or a server found running (voice-agent llm scan)")
        return EXIT_REFUSED
    keys: dict[str, Value]
    wanted = target.strip()
    if wanted.lower() in ("embedded", "packaged", "smollm2"):
        keys, what = model_file_choice(cfg, None), "the packaged SmolLM2-135M"
    elif wanted.lower().endswith(".gguf"):
        path = Path(wanted).expanduser().resolve()
        if not path.is_file():
            log.error("%s: no such file", path)
            return EXIT_REFUSED
        keys, what = model_file_choice(cfg, path), str(path)
    elif (recommended := _recommended(wanted)) is not None:
        path = llm_models_dir() / recommended.filename
        if not path.is_file():
            log.error("%s is not downloaded yet: voice-agent models download llm %s",
                      recommended.title, recommended.key)
            return EXIT_REFUSED
        keys, what = model_file_choice(cfg, path), recommended.title
    else:
        server = _found_server(wanted)
        if server is None:
            return EXIT_REFUSED
        chosen = model or (server.models[0] if server.models else "")
        if not chosen:
            log.error("%s has no chat model: load or pull one in it first", server.label)
            return EXIT_REFUSED
        if chosen not in server.models:
            log.error("%s has no model %r; it has: %s", server.label, chosen,
                      ", ".join(server.models))
            return EXIT_REFUSED
        keys, what = server_choice(server, chosen), f"{chosen} from {server.label}"
    assert cfg.path is not None
    try:
        save_settings(cfg.path, "llm", keys)
    except (ConfigError, OSError) as error:
        log.error("%s", error)
        return EXIT_FAILED
    written = ", ".join(f"{key} = {value!r}" for key, value in keys.items())
    print(f"Answers now come from {what}.\nWrote [llm] {written} to {cfg.path} (a running "
          "agent follows the file).")
    return EXIT_OK


def _recommended(name: str) -> catalog.RecommendedModel | None:
    try:
        return catalog.find(name)
    except LLMError:
        return None


def _found_server(wanted: str) -> FoundServer | None:
    found = scan()
    key = _squashed(wanted)
    matches = [s for s in found.servers
               if key in (_squashed(s.product), str(_port(s)), _squashed(s.label))
               or (key and key in _squashed(s.product))]
    if len(matches) == 1:
        return matches[0]
    running = ", ".join(s.label for s in found.servers) or "none is running"
    if not matches:
        log.error("%r is not embedded, a downloaded model, a .gguf file or a server running "
                  "here (found: %s)", wanted, running)
    else:
        log.error("%r matches more than one server (%s): name its port", wanted, running)
    return None


def _squashed(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def _port(server: FoundServer) -> int:
    from urllib.parse import urlsplit

    return urlsplit(server.base_url).port or 0


def list_recommended(cfg: Config) -> str:
    """`voice-agent models llm`: the models worth downloading for this kind of machine."""
    folder = llm_models_dir()
    lines = ["Better LLMs for the embedded backend (instruct GGUF models from the Hugging Face "
             "hub; the packaged SmolLM2-135M stays as the offline default):", ""]
    for model in catalog.RECOMMENDED:
        path = folder / model.filename
        state = ("  <- in use" if cfg.llm.model_path == str(path) else "  (downloaded)") \
            if path.is_file() else ""
        lines += [f"  {model.key:<16} {model.title}{state}",
                  f"  {'':<16} download {model.size_text}, memory {model.memory_text}, "
                  f"{model.speed}; licence {model.licence}",
                  f"  {'':<16} {model.why}"]
        if model.licence_note:
            lines.append(f"  {'':<16} Note: {model.licence_note}")
    lines += ["", "Download one: voice-agent models download llm NAME (or the tray's LLM ▸ "
              "Download a better model); it is used once it is complete.",
              f"Models are kept in {folder}."]
    return "\n".join(lines)


def download_llm(cfg: Config, name: str | None) -> int:
    """`voice-agent models download llm NAME`: fetch, verify, and use it."""
    from agent.cli.common import ProgressBar

    if not name:
        log.error("models download llm needs a model: %s (voice-agent models llm)",
                  ", ".join(model.key for model in catalog.RECOMMENDED))
        return EXIT_REFUSED
    try:
        model = catalog.find(name)
    except LLMError as error:
        log.error("%s", error)
        return EXIT_REFUSED
    print(f"Downloading {model.title} ({model.size_text}) from {hub.endpoint()}; an "
          "interrupted download resumes when run again.", flush=True)
    try:
        path = hub.download_gguf(model, llm_models_dir(), progress=ProgressBar())
    except KeyboardInterrupt:
        print("Stopped; run the same command again to resume.")
        return EXIT_FAILED
    except LLMError as error:
        log.error("%s", error)
        return EXIT_FAILED
    assert cfg.path is not None
    try:
        save_settings(cfg.path, "llm", model_file_choice(cfg, path))
    except (ConfigError, OSError) as error:
        log.error("downloaded %s, but could not set [llm] model_path: %s", path, error)
        return EXIT_FAILED
    print(f"{model.title} is in {path} (sha256 verified); answers now come from it "
          f"([llm] model_path in {cfg.path}; a running agent follows the file).")
    return EXIT_OK
