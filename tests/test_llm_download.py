"""Better LLMs on demand: the catalogue, and download_gguf against a loopback stand-in for the
Hugging Face hub (harness.fake_hub, HF_ENDPOINT) serving the real packaged SmolLM2 GGUF under a
repository layout, the way huggingface.co serves LFS files (HEAD 302 + X-Linked-Etag/Size,
storage on another origin honouring Range)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from agent.files import sha256
from agent.llm import catalog
from agent.llm import hub as hub_module
from agent.llm.base import LLMError, Message
from agent.llm.catalog import RecommendedModel
from agent.llm.embedded import MODEL_FILE, EmbeddedBackend, locate_model
from agent.llm.hub import DownloadStopped, ModelDownloadError, download_gguf
from harness.fake_hub import FakeHub

REPO = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
PAIR = (REPO, MODEL_FILE)


@pytest.fixture(scope="module")
def gguf() -> Path:
    return locate_model()


@pytest.fixture(scope="module")
def gguf_sha256(gguf: Path) -> str:
    return sha256(gguf)


@pytest.fixture
def smol(gguf: Path) -> RecommendedModel:
    size = gguf.stat().st_size
    return RecommendedModel(key="smollm2-135m", title="SmolLM2 135M Instruct", repo_id=REPO,
                            filename=MODEL_FILE, size_bytes=size, memory_bytes=2 * size,
                            speed="estimated: fast", licence="Apache-2.0", why="the test peer")


@pytest.fixture
def hub(gguf: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with FakeHub() as fake:
        fake.add(REPO, MODEL_FILE, gguf)
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # conftest turns the hub off for the session
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # a developer's proxy is not in the way
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.setattr(hub_module, "RETRY_PAUSES_S", (0.0, 0.0, 0.0))  # no waiting
        yield fake


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "models" / "llm"


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []

    def __call__(self, what: str, done: int, total: int) -> None:
        self.calls.append((what, done, total))

    def downloading(self) -> list[int]:
        return [done for what, done, _ in self.calls if what.startswith("downloading")]


def closed_port() -> int:
    """A loopback port nothing listens on (just freed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- the catalogue ------------------------------------------------------------------------

def test_catalogue_keys_are_unique_and_entries_are_complete() -> None:
    keys = [model.key for model in catalog.RECOMMENDED]
    assert len(keys) == len(set(keys)) == 4
    assert {"qwen2.5-1.5b", "llama-3.2-1b", "gemma-3-1b", "qwen2.5-0.5b"} == set(keys)
    for model in catalog.RECOMMENDED:
        assert model.key == model.key.lower() and " " not in model.key
        assert model.filename.endswith(".gguf") and "Q4_K_M" in model.filename.upper()
        assert model.repo_id.count("/") == 1 and model.repo_id.endswith("GGUF")
        assert 400_000_000 < model.size_bytes < model.memory_bytes < 2_000_000_000
        assert "estimated" in model.speed
        assert model.licence and model.why and model.title
        assert len(model.sha256) == 64
        assert model.page == f"https://huggingface.co/{model.repo_id}"
    gemma = catalog.find("gemma-3-1b")
    assert "Gemma Terms of Use" in gemma.licence and "ai.google.dev/gemma/terms" in \
        gemma.licence_note
    assert catalog.find("qwen2.5-0.5b").size_text == "491 MB"
    assert catalog.find("qwen2.5-1.5b").size_text == "1.12 GB"


def test_find_ignores_case_and_spaces() -> None:
    assert catalog.find("QWEN2.5-1.5B").key == "qwen2.5-1.5b"
    assert catalog.find("  Llama-3.2-1B ").repo_id == "bartowski/Llama-3.2-1B-Instruct-GGUF"


def test_an_unknown_name_lists_the_keys_and_suggests_the_nearest() -> None:
    with pytest.raises(catalog.UnknownModelError) as raised:
        catalog.find("gemma3-1b")
    message = str(raised.value)
    assert isinstance(raised.value, LLMError)
    assert "did you mean gemma-3-1b?" in message
    for key in catalog.all_keys():
        assert key in message
    with pytest.raises(LLMError, match="choose one of") as far:
        catalog.find("mistral-large")
    assert "did you mean" not in str(far.value)


# --- downloading --------------------------------------------------------------------------

def test_full_download_is_verified_identical_and_reports_progress(
        hub: FakeHub, dest: Path, smol: RecommendedModel, gguf: Path,
        gguf_sha256: str) -> None:
    progress = Recorder()
    start = time.perf_counter()
    path = download_gguf(smol, dest, progress=progress)
    elapsed = time.perf_counter() - start
    size = gguf.stat().st_size
    assert path == dest / MODEL_FILE
    assert sha256(path) == gguf_sha256 and path.stat().st_size == size
    assert sorted(os.listdir(dest)) == [MODEL_FILE]  # no .part left
    done = progress.downloading()
    assert done == sorted(done) and done[-1] == size and len(done) > 10
    assert {total for _, _, total in progress.calls} == {size}
    # The hub's own protocol: a HEAD not followed (the 302 carries the digest), then the GET
    # follows the redirect to the storage, which sends the bytes.
    seen = [(r.server, r.method, r.status) for r in hub.requests]
    assert seen == [("hub", "HEAD", 302), ("hub", "GET", 302), ("storage", "GET", 200)]
    assert hub.bytes_served() == size
    print(f"\n98 MB over loopback, checked: {elapsed:.2f} s")


def test_a_complete_file_already_there_is_checked_not_fetched(
        hub: FakeHub, dest: Path) -> None:
    first = download_gguf(PAIR, dest)
    hub.clear()
    progress = Recorder()
    again = download_gguf(PAIR, dest, progress=progress)
    assert again == first
    assert [r.method for r in hub.requests] == ["HEAD"]
    assert progress.calls and all(what.startswith("checking") for what, _, _ in progress.calls)


def test_a_cut_download_resumes_from_the_cut_by_itself(hub: FakeHub, dest: Path, gguf: Path,
                                                       gguf_sha256: str) -> None:
    size = gguf.stat().st_size
    cut = size // 2 + 12_345  # not on a block boundary
    hub.cut_after(cut)
    path = download_gguf(PAIR, dest)
    assert sha256(path) == gguf_sha256
    first, second = hub.downloads()
    assert first.range is None and first.sent == cut
    assert second.range == f"bytes={cut}-" and second.status == 206
    assert hub.bytes_served() == size  # resumed, not restarted: every byte sent once


def test_a_download_cut_for_good_keeps_the_part_and_the_next_one_resumes(
        hub: FakeHub, dest: Path, gguf: Path, gguf_sha256: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_module, "RETRY_PAUSES_S", ())  # no second try within the call
    size = gguf.stat().st_size
    cut = size // 3 + 7
    hub.cut_after(cut)
    with pytest.raises(ModelDownloadError) as raised:
        download_gguf(PAIR, dest)
    message = str(raised.value)
    assert "broke off" in message and "resumes" in message and "stays in use" in message
    part = dest / f"{MODEL_FILE}.part"
    assert part.stat().st_size == cut and not (dest / MODEL_FILE).exists()

    hub.clear()
    path = download_gguf(PAIR, dest)
    assert sha256(path) == gguf_sha256 and not part.exists()
    (resumed,) = hub.downloads()
    assert resumed.range == f"bytes={cut}-" and resumed.sent == size - cut


def test_a_server_that_ignores_range_gets_a_fresh_start(
        hub: FakeHub, dest: Path, gguf: Path, gguf_sha256: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_module, "RETRY_PAUSES_S", ())
    hub.cut_after(1_000_000)
    with pytest.raises(ModelDownloadError):
        download_gguf(PAIR, dest)
    hub.clear()
    hub.ignore_range = True
    path = download_gguf(PAIR, dest)
    assert sha256(path) == gguf_sha256
    (whole,) = hub.downloads()
    assert whole.range == "bytes=1000000-" and whole.status == 200
    assert whole.sent == gguf.stat().st_size


def test_a_wrong_checksum_leaves_nothing_behind(hub: FakeHub, dest: Path) -> None:
    advertised = hub.wrong_sha256(REPO, MODEL_FILE)
    with pytest.raises(ModelDownloadError) as raised:
        download_gguf(PAIR, dest)
    message = str(raised.value)
    assert "damaged" in message and "deleted" in message and advertised[:16] in message
    assert os.listdir(dest) == []  # neither the file nor the .part


def test_no_network_fails_fast_and_clearly(monkeypatch: pytest.MonkeyPatch,
                                           dest: Path) -> None:
    port = closed_port()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    start = time.perf_counter()
    with pytest.raises(ModelDownloadError) as raised:
        download_gguf(PAIR, dest)
    elapsed = time.perf_counter() - start
    message = str(raised.value)
    assert message.startswith(f"could not reach 127.0.0.1:{port}")
    assert "check the network connection" in message and "stays in use" in message
    assert "Traceback" not in message and raised.value.__cause__ is None
    assert elapsed < 5.0
    assert not dest.exists()  # nothing new on disk


@pytest.mark.parametrize("setting", ["1", "true", "ON"])
def test_offline_says_so_without_any_request(hub: FakeHub, dest: Path, setting: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", setting)
    with pytest.raises(ModelDownloadError, match="HF_HUB_OFFLINE") as raised:
        download_gguf(PAIR, dest)
    assert "switched off" in str(raised.value)
    assert hub.requests == [] and not dest.exists()


def test_offline_still_gives_a_model_downloaded_before(hub: FakeHub, dest: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = download_gguf(PAIR, dest)
    hub.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert download_gguf(PAIR, dest) == path
    assert hub.requests == []


class _Usage(NamedTuple):
    total: int
    used: int
    free: int


def test_not_enough_disk_space_is_said_before_any_download(
        hub: FakeHub, dest: Path, gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    free = gguf.stat().st_size // 2
    asked: list[Path] = []

    def small_disk(path: str | os.PathLike[str]) -> _Usage:
        asked.append(Path(path))
        return _Usage(total=10 * free, used=9 * free, free=free)

    monkeypatch.setattr(shutil, "disk_usage", small_disk)
    with pytest.raises(ModelDownloadError) as raised:
        download_gguf(PAIR, dest)
    message = str(raised.value)
    assert "not enough free disk space" in message
    assert f"{catalog.format_size(free)} is free" in message
    needed = gguf.stat().st_size + hub_module.DISK_MARGIN_BYTES
    assert f"needs {catalog.format_size(needed)}" in message
    assert asked == [dest]
    assert hub.downloads() == [] and [r.method for r in hub.requests] == ["HEAD"]
    assert os.listdir(dest) == []


def test_stop_keeps_the_part_and_a_later_download_resumes(
        hub: FakeHub, dest: Path, gguf: Path, gguf_sha256: str) -> None:
    size = gguf.stat().st_size
    stop = threading.Event()

    def stop_at_a_third(what: str, done: int, total: int) -> None:
        if done >= total // 3:
            stop.set()

    with pytest.raises(DownloadStopped) as raised:
        download_gguf(PAIR, dest, progress=stop_at_a_third, stop=stop)
    assert isinstance(raised.value, ModelDownloadError)
    assert "stopped" in str(raised.value) and "resumes" in str(raised.value)
    part = dest / f"{MODEL_FILE}.part"
    kept = part.stat().st_size
    assert size // 3 <= kept < size // 3 + hub_module.CHUNK_BYTES
    assert not (dest / MODEL_FILE).exists()

    hub.clear()
    progress = Recorder()
    path = download_gguf(PAIR, dest, progress=progress)
    assert sha256(path) == gguf_sha256 and not part.exists()
    (resumed,) = hub.downloads()
    assert resumed.range == f"bytes={kept}-" and resumed.sent == size - kept
    assert progress.downloading()[0] > kept  # counted from the start of the file


@pytest.mark.parametrize("repo, expected", [
    (REPO, "gated or private"),  # deny()ed: GatedRepo
    ("someone/private-GGUF", "gated or private"),  # unknown: the hub says 401 RepoNotFound
])
def test_a_gated_or_private_repository_says_so(hub: FakeHub, dest: Path, repo: str,
                                               expected: str) -> None:
    hub.deny(REPO)
    with pytest.raises(ModelDownloadError) as raised:
        download_gguf((repo, MODEL_FILE), dest)
    message = str(raised.value)
    assert expected in message and "HTTP 401" in message
    assert f"{hub.url}/{repo}" in message and "HF_TOKEN" in message
    assert not dest.exists()


def test_a_renamed_repository_is_followed_on_the_hub(hub: FakeHub, dest: Path,
                                                      gguf_sha256: str) -> None:
    hub.rename("HuggingFaceTB/old-name-GGUF", REPO)
    path = download_gguf(("HuggingFaceTB/old-name-GGUF", MODEL_FILE), dest)
    assert sha256(path) == gguf_sha256
    seen = [(r.server, r.method, r.status) for r in hub.requests]
    assert seen[:2] == [("hub", "HEAD", 307), ("hub", "HEAD", 302)]  # the storage is not asked
    assert seen[-1] == ("storage", "GET", 200)


def test_a_missing_file_says_where_the_files_are(hub: FakeHub, dest: Path) -> None:
    with pytest.raises(ModelDownloadError) as raised:
        download_gguf((REPO, "smollm2-135m-q9.gguf"), dest)
    message = str(raised.value)
    assert "is not in" in message and f"{hub.url}/{REPO}/tree/main" in message


def test_names_that_are_not_a_repository_and_a_gguf_are_refused(dest: Path) -> None:
    for bad in [("not-a-repo", MODEL_FILE), (REPO, "../../etc/passwd.gguf"),
                (REPO, "model.safetensors")]:
        with pytest.raises(ModelDownloadError):
            download_gguf(bad, dest)


def test_models_live_in_the_user_data_dir() -> None:
    from agent import paths

    assert catalog.llm_models_dir() == paths.data_dir() / "models" / "llm"
    assert hub_module.local_path(catalog.find("qwen2.5-0.5b")) == \
        paths.data_dir() / "models" / "llm" / "qwen2.5-0.5b-instruct-q4_k_m.gguf"


@pytest.mark.slow  # loads the downloaded model into llama.cpp
def test_the_downloaded_model_loads_and_answers(hub: FakeHub, dest: Path,
                                                smol: RecommendedModel) -> None:
    path = download_gguf(smol, dest)
    backend = EmbeddedBackend(model_path=path, temperature=0.0, max_tokens=24)
    assert backend.model_path == path

    async def reply() -> list[str]:
        texts = []
        async for delta in backend.stream([Message("user", "What is the capital of France?")]):
            texts.append(delta.text)
        await backend.aclose()
        return texts

    texts = asyncio.run(asyncio.wait_for(reply(), timeout=60))
    assert "".join(texts).strip() and sum(1 for text in texts if text) >= 3
    print(f"\nthe downloaded model says: {''.join(texts)!r}")
