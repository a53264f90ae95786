"""The tray's LLM menu, built by the real Tray from what the app knows (the settings, the
servers found running, the models downloaded, a download under way) and read back through
pystray's own menu objects; each item posts the command that writes the choice."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import config
from agent.desktop import commands as cmd
from agent.desktop.llm_menu import DownloadState, MenuEntry, llm_entries
from agent.desktop.tray import Tray, TrayModel
from agent.llm import catalog
from agent.llm.choice import auto_pick, llm_settings
from agent.llm.scan import FoundServer, ScanResult
from harness.fake_hub import FakeHub

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
    gguf.write_bytes(b"GGUF")  # the menu only looks that it is there
    cfg = settings(f'[llm]\nbackend = "openai"\nbase_url = "http://10.1.2.3:8080/v1"\n'
                   f'model = "big"\nuse_embedded = true\nmodel_path = "{gguf}"\n', tmp_path)
    lines, _items = llm_menu(pystray, cfg, ScanResult((), 0.0), {"qwen2.5-1.5b": gguf})
    assert "(•) Embedded: Qwen2.5 1.5B Instruct" in lines
    assert "( ) openai: big at http://10.1.2.3:8080/v1" in lines
    offered = lines[lines.index("Download a better model ▸") + 1:]
    assert not any("Qwen2.5 1.5B" in line for line in offered)  # downloaded already
    gguf.unlink()  # gone: the packaged model answers, and the menu says which does
    lines, _items = llm_menu(pystray, cfg, ScanResult((), 0.0))
    assert lines[0] == "(•) Embedded: SmolLM2-135M (packaged, offline)"
    assert not any(line.endswith("Embedded: Qwen2.5 1.5B Instruct") for line in lines)


def test_the_server_in_the_settings_is_listed_once_when_it_is_found_too(
        pystray: Any, tmp_path: Path) -> None:
    cfg = settings('[llm]\nbackend = "openai"\nbase_url = "http://127.0.0.1:8080/v1"\n'
                   'model = "smollm2"\n', tmp_path)
    lines, _items = llm_menu(pystray, cfg, ScanResult((LLAMA_CPP, OLLAMA), 0.0))
    assert sum("(•)" in line for line in lines) == 1, lines
    assert "(•) openai: smollm2 at http://127.0.0.1:8080/v1" in lines
    assert not any("llama.cpp server on port 8080" in line for line in lines)
    assert "Ollama on port 11434 ▸" in lines


def test_while_downloading_the_menu_shows_progress_and_a_stop(pystray: Any,
                                                              tmp_path: Path) -> None:
    state = DownloadState("qwen2.5-0.5b", "Qwen2.5 0.5B Instruct", 123, 1000)
    lines, _items = llm_menu(pystray, settings("", tmp_path), ScanResult((), 0.0),
                             download=state)
    assert "~Downloading Qwen2.5 0.5B Instruct: 12%" in lines
    assert "Stop the download" in lines
    assert "Download a better model ▸" not in lines


# --- the app carrying the menu's commands out (the real DesktopApp, its Tk thread here) ------

@pytest.fixture
def app(xdisplay: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A DesktopApp whose core has not loaded its models (none are needed to choose one)."""
    from agent.desktop.app import DesktopApp

    monkeypatch.setenv("VOICE_AGENT_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("VOICE_AGENT_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "config").mkdir()
    path = tmp_path / "config" / "config.toml"
    # A mistake elsewhere in the file (it stops a reload) must not stop the menu's choices.
    path.write_text('# my settings\n[tts]\nspeed = 1.1  # a little quicker\nvoise = "af_sky"\n')
    holder = [DesktopApp(config.load(path))]
    yield holder[0]
    shown = holder.pop()
    shown.mailbox.close()
    shown.root.destroy()
    # Tk objects must be freed on the thread that made them (see test_interrupt).
    del shown
    gc.collect()


def pump(app: Any, until: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Run the app's mailbox on this (its Tk) thread until `until()` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        app.mailbox.drain()
        if until():
            return True
        time.sleep(0.02)
    return False


def entry(app: Any, label: str) -> MenuEntry:
    def flat(entries: tuple[MenuEntry, ...]) -> Iterator[MenuEntry]:
        for each in entries:
            yield each
            yield from flat(each.submenu)

    found = [e for e in flat(app.model.llm) if e.label.startswith(label)]
    assert found, f"no {label!r} in {[e.label for e in flat(app.model.llm)]}"
    return found[0]


def test_choosing_a_found_server_writes_it_and_the_core_follows(app: Any) -> None:
    app.assistant.local_servers = ScanResult((LLAMA_CPP,), 0.0)
    app._mirror_llm_menu()
    server = entry(app, "llama.cpp server on port 8080")
    assert server.command is not None
    app.handle(server.command)
    text = app.cfg.path.read_text()
    assert "# a little quicker" in text  # comments kept
    assert 'backend = "openai"' in text and 'model = "smollm2"' in text
    assert app.assistant.backend_label == "smollm2 at http://127.0.0.1:8080/v1"
    # Now the server in the settings: listed once, checked.
    assert entry(app, "openai: smollm2 at http://127.0.0.1:8080/v1").checked is True
    assert entry(app, "Embedded: SmolLM2-135M").checked is False
    packaged = entry(app, "Embedded: SmolLM2-135M").command
    assert packaged is not None
    app.handle(packaged)  # and back
    assert app.assistant.backend_label.startswith("SmolLM2-135M")
    assert entry(app, "Embedded: SmolLM2-135M").checked is True


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    from agent.llm import hub as hub_module
    from agent.llm.embedded import locate_model

    model = catalog.find("qwen2.5-0.5b")
    with FakeHub() as fake:
        fake.add(model.repo_id, model.filename, locate_model())  # SmolLM2's bytes stand in
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        monkeypatch.setattr(hub_module, "RETRY_PAUSES_S", (0.0, 0.0, 0.0))
        yield fake


def test_a_download_from_the_menu_shows_progress_then_answers_with_the_model(
        app: Any, hub: FakeHub) -> None:
    notices: list[str] = []
    app.overlay.on_event = lambda event: notices.append(getattr(event, "message", ""))
    offer = entry(app, "Qwen2.5 0.5B Instruct")
    assert offer.command == cmd.DownloadModel("qwen2.5-0.5b")
    app.handle(offer.command)
    assert entry(app, "Stop the download").command == cmd.StopDownload()
    assert pump(app, lambda: app._download is None), "the download did not finish"
    path = Path(app.cfg.llm.model_path)
    assert path.name == "qwen2.5-0.5b-instruct-q4_k_m.gguf" and path.is_file()
    assert 'backend = "embedded"' in app.cfg.path.read_text()
    assert app.assistant.backend_label == "qwen2.5-0.5b-instruct-q4_k_m (embedded)"
    assert entry(app, "Embedded: Qwen2.5 0.5B Instruct").checked is True
    assert any("Downloading Qwen2.5 0.5B Instruct" in n for n in notices)
    assert any("checksum verified" in n for n in notices)


def test_a_stopped_download_keeps_the_model_in_use_and_resumes_later(
        app: Any, hub: FakeHub) -> None:
    notices: list[str] = []
    app.overlay.on_event = lambda event: notices.append(getattr(event, "message", ""))
    app.handle(cmd.DownloadModel("qwen2.5-0.5b"))
    app.handle(cmd.StopDownload())  # at once: it stops at its next chunk at the latest
    assert pump(app, lambda: app._download is None), "the download did not stop"
    assert not app.cfg.llm.model_path  # the packaged model stays
    assert any("stopped" in n and "current model stays in use" in n for n in notices), notices
    assert entry(app, "Download a better model").submenu  # offered again
    app.handle(cmd.DownloadModel("qwen2.5-0.5b"))
    assert pump(app, lambda: app._download is None)
    assert Path(app.cfg.llm.model_path).is_file()
