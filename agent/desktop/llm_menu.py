"""The tray's LLM menu: every model there is to choose (the embedded ones, the server in the
settings, the local servers found running), looking for servers again, and downloading a
better model in the background.

`llm_entries` works the menu out from plain data (built on the Tk thread, drawn by pystray's
thread); `ModelDownload` runs one download on a thread of its own and reports through the
app's mailbox.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.config import Config, LLMConfig
from agent.config.writer import Value
from agent.desktop import commands as cmd
from agent.llm import catalog
from agent.llm.choice import SERVER_KINDS, model_file_choice, server_choice
from agent.llm.scan import FoundServer, ScanResult

log = logging.getLogger(__name__)

PACKAGED_LABEL = "SmolLM2-135M (packaged, offline)"


@dataclass(frozen=True)
class MenuEntry:
    label: str  # "-": a separator
    command: cmd.Command | None = None  # None: a line that cannot be clicked
    checked: bool | None = None  # a radio item when not None
    submenu: tuple[MenuEntry, ...] = ()


SEPARATOR = MenuEntry("-")


@dataclass(frozen=True)
class DownloadState:
    key: str
    title: str
    done: int = 0
    total: int = 0

    @property
    def label(self) -> str:
        percent = f": {100 * self.done // self.total}%" if self.total else "…"
        return f"Downloading {self.title}{percent}"


def in_use_key(llm: LLMConfig) -> str:
    """What answers, as the menu's items name it."""
    if llm.backend in SERVER_KINDS:
        return f"server:{llm.base_url.rstrip('/')}|{llm.model}"
    missing = llm.model_path and not Path(llm.model_path).is_file()
    return "embedded:" if missing else f"embedded:{llm.model_path}"  # missing: the packaged


def downloaded_models() -> dict[str, Path]:
    """The catalogue's models already downloaded, by key."""
    folder = catalog.llm_models_dir()
    return {model.key: folder / model.filename for model in catalog.RECOMMENDED
            if (folder / model.filename).is_file()}


def llm_entries(cfg: Config, in_use: LLMConfig, found: ScanResult,
                downloaded: dict[str, Path], download: DownloadState | None
                ) -> tuple[MenuEntry, ...]:
    current = in_use_key(in_use)

    def use(keys: dict[str, Value], what: str, key: str, label: str) -> MenuEntry:
        return MenuEntry(label, cmd.UseLLM(tuple(keys.items()), what), current == key)

    entries = [use(model_file_choice(cfg, None), "the packaged SmolLM2-135M", "embedded:",
                   f"Embedded: {PACKAGED_LABEL}")]
    titles = {model.key: model.title for model in catalog.RECOMMENDED}
    paths = dict(downloaded)
    if cfg.llm.model_path and cfg.llm.model_path not in {str(p) for p in paths.values()} \
            and Path(cfg.llm.model_path).is_file():  # a missing one: the packaged model answers
        paths[cfg.llm.model_path] = Path(cfg.llm.model_path)
    for key, path in paths.items():
        title = titles.get(key, path.stem)
        entries.append(use(model_file_choice(cfg, path), title, f"embedded:{path}",
                           f"Embedded: {title}"))
    listed: set[str] = set()  # the server in the settings: not listed again below
    if cfg.llm.backend in SERVER_KINDS:  # the server in the settings (the tray's old item)
        configured = in_use_key(cfg.llm)
        listed.add(configured)
        entries.append(MenuEntry(f"{cfg.llm.backend}: {cfg.llm.model or 'default model'} at "
                                 f"{cfg.llm.base_url or 'default URL'}",
                                 cmd.SetBackend(True), current == configured))
    servers = [_server_entry(server, current, listed) for server in found.servers
               if not _listed(server, listed)]
    if servers:
        entries += [SEPARATOR, MenuEntry("Found running here:"), *servers]
    entries += [SEPARATOR, MenuEntry("Look for local servers again", cmd.ScanServers())]
    if download is not None:
        entries += [MenuEntry(download.label), MenuEntry("Stop the download", cmd.StopDownload())]
    else:
        offers = tuple(MenuEntry(f"{model.title} ({model.size_text}, {model.licence})",
                                 cmd.DownloadModel(model.key))
                       for model in catalog.RECOMMENDED if model.key not in downloaded)
        if offers:
            entries.append(MenuEntry("Download a better model", submenu=offers))
    return tuple(entries)


def _listed(server: FoundServer, listed: set[str]) -> bool:
    """The server in the settings is this one, with its only model: shown once, above."""
    return len(server.models) == 1 and \
        f"server:{server.base_url.rstrip('/')}|{server.models[0]}" in listed


def _server_entry(server: FoundServer, current: str, listed: set[str]) -> MenuEntry:
    if not server.models:
        return MenuEntry(f"{server.label}: no chat model loaded")

    def model_entry(model: str, label: str) -> MenuEntry:
        key = f"server:{server.base_url.rstrip('/')}|{model}"
        return MenuEntry(label, cmd.UseLLM(tuple(server_choice(server, model).items()),
                                           f"{model} from {server.label}"),
                         current == key and key not in listed)

    if len(server.models) == 1:
        return model_entry(server.models[0], f"{server.label}: {server.models[0]}")
    return MenuEntry(server.label, submenu=tuple(model_entry(m, m) for m in server.models))


class ModelDownload:
    """One model download on a thread of its own; progress and the end go to `report` (the
    app's mailbox). `stop()` ends it at the next chunk and keeps the part fetched, so the next
    download of the same model resumes."""

    def __init__(self, model: catalog.RecommendedModel,
                 report: Callable[[cmd.Command], None]) -> None:
        self.model = model
        self._report = report
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llm-download", daemon=True)
        self._last_percent = -1

    def start(self) -> ModelDownload:
        self._thread.start()
        return self

    def stop(self, wait_s: float = 0.0) -> None:
        self._stop.set()
        if wait_s and self._thread.is_alive():
            self._thread.join(wait_s)

    def _progress(self, _what: str, done: int, total: int) -> None:
        percent = 100 * done // total if total else 0
        if percent != self._last_percent:  # a menu redraw per percent, not per chunk
            self._last_percent = percent
            self._report(cmd.DownloadProgress(done, total))

    def _run(self) -> None:
        from agent.llm import hub

        key = self.model.key
        try:
            path = hub.download_gguf(self.model, catalog.llm_models_dir(), progress=self._progress,
                                     stop=self._stop)
        except hub.DownloadStopped:
            self._report(cmd.DownloadFinished(
                key, None, f"The download of {self.model.title} was stopped; starting it again "
                "resumes it, and the current model stays in use."))
        except Exception as error:  # ModelDownloadError says what to do; report anything
            log.exception("the download of %s failed", self.model.title)
            self._report(cmd.DownloadFinished(key, None, str(error) or type(error).__name__))
        else:
            self._report(cmd.DownloadFinished(key, path))
