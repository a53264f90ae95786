"""The tray's LLM menu, built by the real Tray from what the app knows (the settings, the
servers found running, the models downloaded, a download under way) and read back through
pystray's own menu objects; each item posts the command that writes the choice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import config
from agent.desktop import commands as cmd
from agent.desktop.llm_menu import DownloadState, llm_entries
from agent.desktop.tray import Tray, TrayModel
from agent.llm import catalog
from agent.llm.choice import auto_pick, llm_settings
from agent.llm.scan import FoundServer, ScanResult

OLLAMA = FoundServer("Ollama", "ollama", "http://127.0.0.1:11434", ("llama3.2", "qwen2.5"))
LLAMA_CPP = FoundServer("llama.cpp server", "openai", "http://127.0.0.1:8080/v1", ("smollm2",))
EMPTY = FoundServer("LM Studio", "openai", "http://127.0.0.1:1234/v1", ())


@pytest.fixture(scope="module")
def pystray() -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYSTRAY_BACKEND", "dummy")  # only if this process has not imported it yet
        import pystray

    yield pystray


def settings(text: str, tmp_path: Path) -> config.Config:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return config.load(path)


def llm_menu(pystray: Any, cfg: config.Config, found: ScanResult,
             downloaded: dict[str, Path] | None = None,
             download: DownloadState | None = None) -> tuple[list[str], dict[str, Any]]:
    """The LLM menu as text lines ("(•)" checked, "( )" unchecked, "~" disabled, "▸" a
    submenu, "----" a separator) and its items by text (submenus' too)."""
    picked = auto_pick(cfg, found)
    in_use = llm_settings(cfg, not cfg.llm.use_embedded, picked)
    model = TrayModel(llm=llm_entries(cfg, in_use, found, downloaded or {}, download))
    tray = Tray(lambda _command: None, model)
    top = next(i for i in tray._menu(pystray) if i.text == "LLM")
    lines: list[str] = []
    items: dict[str, Any] = {}

    def walk(menu: Any, depth: int) -> None:
        for item in menu:
            if item is pystray.Menu.SEPARATOR:
                lines.append("    " * depth + "----")
                continue
            mark = "" if item.checked is None else "(•) " if item.checked else "( ) "
            lines.append("    " * depth + f"{mark}{'' if item.enabled else '~'}{item.text}"
                         f"{' ▸' if item.submenu else ''}")
            items[item.text] = item
            if item.submenu:
                walk(item.submenu, depth + 1)

    walk(top.submenu, 0)
    return lines, items


def test_with_nothing_found_the_packaged_model_is_checked_and_better_ones_are_offered(
        pystray: Any, tmp_path: Path) -> None:
    lines, _items = llm_menu(pystray, settings("", tmp_path), ScanResult((), 0.0))
    assert lines[0] == "(•) Embedded: SmolLM2-135M (packaged, offline)"
    assert "Look for local servers again" in lines
    assert "Download a better model ▸" in lines
    offers = lines[lines.index("Download a better model ▸") + 1:]
    assert len(offers) == len(catalog.RECOMMENDED)
    assert offers[0].strip().startswith("Qwen2.5 1.5B Instruct (1.12 GB, Apache-2.0)")


def test_found_servers_are_listed_with_their_models_and_a_lone_one_is_in_use(
        pystray: Any, tmp_path: Path) -> None:
    cfg = settings("", tmp_path)
    lines, _items = llm_menu(pystray, cfg, ScanResult((LLAMA_CPP, EMPTY), 0.0))
    assert "( ) Embedded: SmolLM2-135M (packaged, offline)" in lines
    assert "Found running here:" not in lines  # disabled header
    assert "~Found running here:" in lines
    assert "(•) llama.cpp server on port 8080: smollm2" in lines  # picked by itself
    assert "~LM Studio on port 1234: no chat model loaded" in lines
    two, _ = llm_menu(pystray, cfg, ScanResult((OLLAMA, LLAMA_CPP), 0.0))
    assert two[0].startswith("(•) Embedded")  # two servers: none is picked by itself
    assert "Ollama on port 11434 ▸" in two
    assert "    ( ) llama3.2" in two and "    ( ) qwen2.5" in two


def test_choosing_a_found_server_posts_the_keys_to_write(pystray: Any, tmp_path: Path) -> None:
    cfg = settings("", tmp_path)
    found = ScanResult((OLLAMA, LLAMA_CPP), 0.0)
    commands: list[cmd.Command] = []
    model = TrayModel(llm=llm_entries(cfg, cfg.llm, found, {}, None))
    tray = Tray(commands.append, model)
    top = next(i for i in tray._menu(pystray) if i.text == "LLM")
    ollama = next(i for i in top.submenu if i.text == "Ollama on port 11434")
    qwen = next(i for i in ollama.submenu if i.text == "qwen2.5")
    qwen(None)
    assert commands == [cmd.UseLLM((("backend", "ollama"), ("base_url", "http://127.0.0.1:11434"),
                                    ("model", "qwen2.5"), ("use_embedded", False)),
                                   "qwen2.5 from Ollama on port 11434")]


def test_a_configured_server_and_a_downloaded_model_are_choices_too(
        pystray: Any, tmp_path: Path) -> None:
    gguf = tmp_path / "qwen2.5-1.5b-instruct-q4_k_m.gguf"
    cfg = settings(f'[llm]\nbackend = "openai"\nbase_url = "http://10.1.2.3:8080/v1"\n'
                   f'model = "big"\nuse_embedded = true\nmodel_path = "{gguf}"\n', tmp_path)
    lines, _items = llm_menu(pystray, cfg, ScanResult((), 0.0), {"qwen2.5-1.5b": gguf})
    assert "(•) Embedded: Qwen2.5 1.5B Instruct" in lines
    assert "( ) openai: big at http://10.1.2.3:8080/v1" in lines
    offered = lines[lines.index("Download a better model ▸") + 1:]
    assert not any("Qwen2.5 1.5B" in line for line in offered)  # downloaded already


def test_while_downloading_the_menu_shows_progress_and_a_stop(pystray: Any,
                                                              tmp_path: Path) -> None:
    state = DownloadState("qwen2.5-0.5b", "Qwen2.5 0.5B Instruct", 123, 1000)
    lines, _items = llm_menu(pystray, settings("", tmp_path), ScanResult((), 0.0),
                             download=state)
    assert "~Downloading Qwen2.5 0.5B Instruct: 12%" in lines
    assert "Stop the download" in lines
    assert "Download a better model ▸" not in lines
