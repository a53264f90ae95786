"""The official path: hexgrad's KModel with files in the Hugging Face cache, and the download
from a hub, served here by a loopback stand-in (HF_ENDPOINT) so nothing leaves the machine.

The stand-in model has random weights (its sound is noise), built from hexgrad's real
config.json: the code path is the real one, only the numbers differ.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agent.audio.sinks import read_wav
from agent.tts import models
from harness.fake_hub import REVISION, FakeHub


def official_files(folder: Path) -> dict[str, bytes]:
    """config.json, a random-weight kokoro-v1_0.pth and two voices, as the hub has them."""
    import torch

    spec = importlib.util.find_spec("kokoro_onnx")
    assert spec and spec.submodule_search_locations
    config = Path(next(iter(spec.submodule_search_locations))) / "config.json"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({}, folder / "model.pth")
    packs = np.load(models.packaged_voices())
    files = {"config.json": config.read_bytes(),
             "kokoro-v1_0.pth": (folder / "model.pth").read_bytes()}
    for name, source in (("af_bella", "jm_kumo"), ("af_sky", "jf_alpha")):
        torch.save(torch.from_numpy(packs[source]), folder / f"{name}.pt")
        files[f"voices/{name}.pt"] = (folder / f"{name}.pt").read_bytes()
    return files


def hf_cache(home: Path, files: dict[str, bytes]) -> None:
    """The Hugging Face cache layout: refs/main names the snapshot holding the files."""
    repo = home / "hub" / "models--hexgrad--Kokoro-82M"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(REVISION)
    for name, data in files.items():
        path = repo / "snapshots" / REVISION / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def run_agent(*args: str, home: Path, extra_env: dict[str, str] | None = None,
              ) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HF_HOME=str(home), **(extra_env or {}))
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.mark.slow  # the official Kokoro (torch) in a child process
def test_official_files_in_the_cache_are_used_with_af_bella(tmp_path: Path) -> None:
    home = tmp_path / "hf"
    hf_cache(home, official_files(tmp_path / "build"))
    shown = run_agent("models", home=home)
    assert shown.returncode == 0, shown.stderr
    assert "source: official" in shown.stdout and "kokoro-v1_0.pth" in shown.stdout
    voices = run_agent("voices", home=home)
    lines = {line.split()[0]: line for line in voices.stdout.splitlines()
             if line.startswith("  ")}
    assert "from official" in lines["af_bella"] and "from official" in lines["af_sky"]
    assert "from npm" in lines["am_adam"]  # not downloaded from the hub: the npm pack
    out = tmp_path / "bella.wav"
    said = run_agent("say", "--out", str(out), "--voice", "af_bella:0.5,af_sky:0.5",
                     "Hello from the official model.", home=home)
    assert said.returncode == 0, said.stderr
    assert "is not on this machine" not in said.stderr  # no fallback: af_bella is here
    samples, rate = read_wav(out)
    assert rate == 24_000 and samples.size > 2_400


@pytest.fixture
def fake_hub(tmp_path: Path) -> Iterator[FakeHub]:
    """hexgrad/Kokoro-82M on a loopback stand-in for the hub: config.json a plain git file,
    the weights and voices LFS files (a 302 to the storage), as on huggingface.co."""
    with FakeHub() as hub:
        for name, data in official_files(tmp_path / "build").items():
            hub.add("hexgrad/Kokoro-82M", name, data, lfs=name != "config.json")
        yield hub


def test_models_download_fetches_the_official_files(tmp_path: Path, fake_hub: FakeHub) -> None:
    home = tmp_path / "hf"
    online = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": fake_hub.url}
    before = run_agent("models", home=home)
    assert "source: packaged" in before.stdout
    fetched = run_agent("models", "download", "--voice", "af_bella", home=home,
                        extra_env=online)
    assert fetched.returncode == 0, fetched.stderr
    assert any("kokoro-v1_0.pth" in r for r in fake_hub.request_lines())
    after = run_agent("models", home=home)  # offline again: the cache now has them
    assert "source: official" in after.stdout, after.stderr


@pytest.mark.slow  # huggingface_hub's retries: about 25 s
def test_download_failure_says_what_to_do(tmp_path: Path) -> None:
    dead = "http://127.0.0.1:9"  # the discard port: nothing listens
    result = run_agent("models", "download", home=tmp_path / "hf",
                       extra_env={"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": dead,
                                  "HF_HUB_ETAG_TIMEOUT": "2"})
    assert result.returncode == 2
    assert "could not download hexgrad/Kokoro-82M" in result.stderr
    assert "Traceback" not in result.stderr
    shutil.rmtree(tmp_path / "hf", ignore_errors=True)


@pytest.mark.slow  # the official Kokoro (torch) in a child process
def test_auto_download_fetches_once_and_an_offline_failure_falls_back(
        tmp_path: Path, fake_hub: FakeHub) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[tts]\nauto_download = true\nfetch_voices = false\n")
    out = tmp_path / "a.wav"
    home = tmp_path / "hf"
    online = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": fake_hub.url,
              "VOICE_AGENT_CACHE_DIR": str(tmp_path / "cache")}
    said = run_agent("--config", str(config), "say", "--out", str(out), "Hello.", home=home,
                     extra_env=online)
    assert said.returncode == 0, said.stderr
    assert "is not on this machine" not in said.stderr  # af_bella was fetched, then used
    assert any("voices/af_bella.pt" in r for r in fake_hub.request_lines())

    offline_home = tmp_path / "hf-offline"
    dead = dict(online, HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_ETAG_TIMEOUT="2")
    first = run_agent("--config", str(config), "say", "--out", str(out), "Hello.",
                      home=offline_home, extra_env=dead)
    assert first.returncode == 0, first.stderr
    assert "could not download" in first.stderr and "is not on this machine" in first.stderr
    second = run_agent("--config", str(config), "say", "--out", str(out), "Hello.",
                       home=offline_home, extra_env=dead)
    assert second.returncode == 0 and "could not download" not in second.stderr
