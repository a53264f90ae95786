"""Kokoro's generator sliced to the frames that can sound (agent/tts/kokoro_graph.py), on the
real packaged model: the same model when nothing is capped, less rendered when the pads are,
the same speech either way, and the plain model when the patch does not fit. The patched
graph is kept on disk: the next start loads it, and a damaged or unwritable cache only costs
patching again."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from agent.tts import kokoro, kokoro_graph, models, voices
from agent.tts.base import trim_silence
from agent.tts.kokoro_graph import CAP_INPUT, NO_CAP, UnknownGraph, frame_caps
from harness.services import read_only_mount

VOICE = "jm_kumo"
SPOKEN = "Sure, the capital of France is Paris."


@pytest.fixture
def cache(engine: kokoro.OnnxKokoro, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache dir from here on (the model files stay where the session put them:
    `engine.files`), and the folder where the patched graph goes in it."""
    monkeypatch.setenv("VOICE_AGENT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "kokoro" / "patched"


def start(files: models.ModelFiles) -> kokoro.OnnxKokoro:
    return kokoro.OnnxKokoro(files, threads=2)


def feeds(engine: kokoro.OnnxKokoro, text: str) -> tuple[dict[str, np.ndarray], str]:
    """The plain model's inputs for `text`, and its phonemes."""
    phonemes = engine.phonemes(text, VOICE)
    feed = engine.feed(phonemes, voices.style_for(engine.pack(VOICE), len(phonemes)), 1.0)
    del feed[CAP_INPUT]
    return feed, phonemes


@pytest.fixture(scope="module")
def plain_session(engine: kokoro.OnnxKokoro) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.log_severity_level = 3
    return ort.InferenceSession(str(engine.files.model), options,
                                providers=["CPUExecutionProvider"])


def test_the_packaged_model_is_sliced(engine: kokoro.OnnxKokoro) -> None:
    assert engine.sliced
    assert CAP_INPUT in {i.name for i in engine.session.get_inputs()}


@pytest.mark.parametrize("text", ["Sure,", "The capital of France is Paris."])
def test_with_no_caps_the_patched_model_is_the_original_bit_for_bit(
        engine: kokoro.OnnxKokoro, plain_session: ort.InferenceSession, text: str) -> None:
    feed, _ = feeds(engine, text)
    original = plain_session.run(None, feed)[0]
    uncapped = engine.session.run(None, {**feed, CAP_INPUT: np.full_like(feed["tokens"], NO_CAP)})
    assert np.array_equal(original, uncapped[0])


@pytest.mark.parametrize("text", ["Okay.", "Sure,", "The capital of France", "Yes, it is."])
def test_slicing_renders_less_and_keeps_the_speech(
        engine: kokoro.OnnxKokoro, plain_session: ort.InferenceSession, text: str) -> None:
    feed, phonemes = feeds(engine, text)
    plain = np.asarray(plain_session.run(None, feed)[0], np.float32).reshape(-1)
    sliced = np.asarray(engine.session.run(
        None, {**feed, CAP_INPUT: frame_caps(phonemes, engine.vocab)})[0],
        np.float32).reshape(-1)
    # the start pad alone gets 13-17 frames, of which 8 are kept
    assert sliced.size <= plain.size - 4 * kokoro_graph.FRAME_SAMPLES
    speech, speech_sliced = trim_silence(plain), trim_silence(sliced)
    # the same speech: as long within 130 ms (the faster fade), and as loud within 6 dB
    # (measured: -1 to -5 dB for short chunks, whose level then matches long ones)
    assert abs(speech.size - speech_sliced.size) <= int(0.13 * 24_000)
    level = 20 * np.log10(np.sqrt(np.mean(speech_sliced ** 2)) / np.sqrt(np.mean(speech ** 2)))
    assert -6.0 <= level <= 1.0, level


def test_frame_caps_cut_only_the_start_pad_and_what_follows_the_last_sound() -> None:
    vocab = {ch: i for i, ch in enumerate("abc ,.", start=1)}
    caps = frame_caps("ab c, .", vocab, lead=8, tail=2)
    # [pad, a, b, " ", c, ",", " ", ".", pad]: c is the last sound
    assert caps.tolist() == [[8, NO_CAP, NO_CAP, NO_CAP, NO_CAP, 2, 2, 2, 2]]
    assert frame_caps("xyz", vocab).shape == (1, 2)  # nothing the model knows: the pads
    assert frame_caps(".", vocab, lead=8, tail=2).tolist() == [[8, 2, 2]]


def test_a_model_the_patch_does_not_know_is_refused() -> None:
    from agent.listen.vad import model_path

    with pytest.raises(UnknownGraph, match="not the Kokoro graph"):
        kokoro_graph.generator_slice_patch(model_path().read_bytes())
    with pytest.raises(UnknownGraph, match="truncated"):
        kokoro_graph.generator_slice_patch(b"\x0a\xff\xff\xff\xff\x0f")
    with pytest.raises(UnknownGraph, match="truncated"):  # a download cut short
        kokoro_graph.generator_slice_patch(model_path().read_bytes()[:1000])


def test_kokoro_speaks_unsliced_when_the_patch_does_not_fit(
        engine: kokoro.OnnxKokoro, cache: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    files = engine.files
    def refuse(model: bytes) -> bytes:
        raise UnknownGraph("not the Kokoro graph this patch knows (missing ['x'])")

    monkeypatch.setattr(kokoro_graph, "generator_slice_patch", refuse)
    with caplog.at_level(logging.INFO, logger="agent.tts.kokoro"):
        engine = start(files)
    assert not engine.sliced and engine.graph == "plain"
    assert "rendering every frame" in caplog.text
    assert trim_silence(engine.synthesize("Hello there.", VOICE)).size > 12_000


def test_a_patched_model_that_fails_to_run_falls_back_to_the_plain_one(
        engine: kokoro.OnnxKokoro, cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    start(engine.files)
    engine = start(engine.files)
    assert engine.sliced and engine.graph == "cached"

    class Broken:  # what a patched graph that loads but cannot run would do
        def run(self, *_: object) -> None:
            raise RuntimeError("Non-zero status code returned while running Slice node")

    engine.session = Broken()
    with caplog.at_level(logging.WARNING, logger="agent.tts.kokoro"):
        audio = engine.synthesize("Hello there.", VOICE)
    assert trim_silence(audio).size > 12_000 and not engine.sliced
    assert "failed to run" in caplog.text
    assert CAP_INPUT not in {i.name for i in engine.session.get_inputs()}
    assert list(cache.iterdir()) == []  # not kept: the next start patches the model again


# -- the patched graph on disk ------------------------------------------------------------------

def test_the_next_start_loads_the_patched_graph_kept_on_disk(
        engine: kokoro.OnnxKokoro, cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = engine.files.model
    first = start(engine.files)
    assert first.sliced and first.graph == "patched"
    entry = kokoro_graph.cache_entry(model)
    assert list(cache.iterdir()) == [entry]
    assert entry.read_bytes() == kokoro_graph.generator_slice_patch(model.read_bytes())
    with caplog.at_level(logging.DEBUG, logger="agent.tts.kokoro"):
        second = start(engine.files)
    assert second.sliced and second.graph == "cached"
    assert f"the patched graph from {entry}" in caplog.text
    # the same audio as the graph patched in memory
    patched_now = kokoro.OnnxKokoro(engine.files, threads=2, cache_graph=False)
    assert patched_now.graph == "patched"
    audio = second.synthesize(SPOKEN, VOICE)
    assert trim_silence(audio).size > 24_000
    assert np.array_equal(audio, patched_now.synthesize(SPOKEN, VOICE))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "the plain model"])
def test_a_damaged_cache_file_is_patched_again_and_replaced(
        engine: kokoro.OnnxKokoro, cache: Path, damage: str,
        caplog: pytest.LogCaptureFixture) -> None:
    model = engine.files.model
    patched = kokoro_graph.generator_slice_patch(model.read_bytes())
    entry = kokoro_graph.cache_entry(model)
    entry.parent.mkdir(parents=True)
    entry.write_bytes({"garbage": b"\x00\xff" * 4096, "truncated": patched[:len(patched) // 2],
                       "the plain model": model.read_bytes()}[damage])
    with caplog.at_level(logging.DEBUG, logger="agent.tts.kokoro"):
        loaded = start(engine.files)
    assert loaded.sliced and loaded.graph == "patched"
    assert "the cached patched graph did not load" in caplog.text
    assert "WARNING" not in caplog.text  # nothing for the user to do
    assert entry.read_bytes() == patched
    assert list(cache.iterdir()) == [entry]


@pytest.mark.parametrize("how", ["read-only", "a file in its place"])
def test_a_cache_that_cannot_be_written_still_gives_the_sliced_model(
        engine: kokoro.OnnxKokoro, cache: Path, how: str, caplog: pytest.LogCaptureFixture) -> None:
    with contextlib.ExitStack() as undo:
        if how == "read-only" and os.name == "posix" and os.geteuid() == 0:
            undo.enter_context(read_only_mount(cache))  # chmod does not stop root
        elif how == "read-only":
            cache.mkdir(parents=True)
            cache.chmod(0o555)
            undo.callback(cache.chmod, 0o755)
        else:
            cache.parent.mkdir(parents=True)
            cache.write_text("")
        with caplog.at_level(logging.DEBUG, logger="agent.tts"):
            loaded = start(engine.files)
        assert loaded.sliced and loaded.graph == "patched"
        assert "could not keep the patched Kokoro graph" in caplog.text
        assert "WARNING" not in caplog.text
        assert trim_silence(loaded.synthesize("Hello there.", VOICE)).size > 12_000
        assert not cache.is_dir() or list(cache.iterdir()) == []


def test_the_cache_keeps_one_graph_per_model_and_drops_what_a_crash_left(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    model, other, oldest = (tmp_path / f"{name}.onnx" for name in ("model", "other", "oldest"))
    for path in (model, other, oldest):
        path.write_bytes(b"a model")
    before = kokoro_graph.cache_entry(model, cache)
    assert kokoro_graph.store(before, b"graph")
    assert kokoro_graph.store(kokoro_graph.cache_entry(oldest, cache), b"graph")
    kept = kokoro_graph.cache_entry(other, cache)
    assert kokoro_graph.store(kept, b"graph")
    hour_ago = time.time() - 3600
    os.utime(kokoro_graph.cache_entry(oldest, cache), (hour_ago, hour_ago))
    crashed, writing = cache / f"{before.name}.1.tmp", cache / f"{before.name}.2.tmp"
    crashed.write_bytes(b"half a gra")
    os.utime(crashed, (hour_ago, hour_ago))
    writing.write_bytes(b"half a gra")  # another agent's write, now

    # the model is rebuilt (a new mtime), or the patch changes: the entry is another one
    stat = model.stat()
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    rebuilt = kokoro_graph.cache_entry(model, cache)
    monkeypatch.setattr(kokoro_graph, "PATCH_VERSION", kokoro_graph.PATCH_VERSION + 1)
    repatched = kokoro_graph.cache_entry(model, cache)
    assert len({before, rebuilt, repatched}) == 3

    assert kokoro_graph.store(repatched, b"graph 2")
    # what it replaces goes, and so do a crash's leftovers and the least recently used model
    assert sorted(cache.iterdir()) == sorted([repatched, kept, writing])
    assert repatched.read_bytes() == b"graph 2"
