"""Kokoro's generator sliced to the frames that can sound (agent/tts/kokoro_graph.py), on the
real packaged model: the same model when nothing is capped, less rendered when the pads are,
the same speech either way, and the plain model when the patch does not fit."""

from __future__ import annotations

import logging

import numpy as np
import onnxruntime as ort
import pytest

from agent.tts import kokoro, kokoro_graph, models, voices
from agent.tts.base import trim_silence
from agent.tts.kokoro_graph import CAP_INPUT, NO_CAP, UnknownGraph, frame_caps

VOICE = "jm_kumo"


def feeds(engine, text: str) -> tuple[dict[str, np.ndarray], str]:  # type: ignore[no-untyped-def]
    """The plain model's inputs for `text`, and its phonemes."""
    phonemes = engine.phonemes(text, VOICE)
    feed = engine.feed(phonemes, voices.style_for(engine.pack(VOICE), len(phonemes)), 1.0)
    del feed[CAP_INPUT]
    return feed, phonemes


@pytest.fixture(scope="module")
def plain_session(engine):  # type: ignore[no-untyped-def]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.log_severity_level = 3
    return ort.InferenceSession(str(engine.files.model), options,
                                providers=["CPUExecutionProvider"])


def test_the_packaged_model_is_sliced(engine) -> None:  # type: ignore[no-untyped-def]
    assert engine.sliced
    assert CAP_INPUT in {i.name for i in engine.session.get_inputs()}


@pytest.mark.parametrize("text", ["Sure,", "The capital of France is Paris."])
def test_with_no_caps_the_patched_model_is_the_original_bit_for_bit(
        engine, plain_session, text: str) -> None:  # type: ignore[no-untyped-def]
    feed, _ = feeds(engine, text)
    original = plain_session.run(None, feed)[0]
    uncapped = engine.session.run(None, {**feed, CAP_INPUT: np.full_like(feed["tokens"], NO_CAP)})
    assert np.array_equal(original, uncapped[0])


@pytest.mark.parametrize("text", ["Okay.", "Sure,", "The capital of France", "Yes, it is."])
def test_slicing_renders_less_and_keeps_the_speech(
        engine, plain_session, text: str) -> None:  # type: ignore[no-untyped-def]
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
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def refuse(model: bytes) -> bytes:
        raise UnknownGraph("not the Kokoro graph this patch knows (missing ['x'])")

    monkeypatch.setattr(kokoro_graph, "generator_slice_patch", refuse)
    with caplog.at_level(logging.INFO, logger="agent.tts.kokoro"):
        engine = kokoro.OnnxKokoro(models.resolve("packaged"))
    assert not engine.sliced
    assert "rendering every frame" in caplog.text
    assert trim_silence(engine.synthesize("Hello there.", VOICE)).size > 12_000


def test_a_patched_model_that_fails_to_run_falls_back_to_the_plain_one(
        caplog: pytest.LogCaptureFixture) -> None:
    engine = kokoro.OnnxKokoro(models.resolve("packaged"))
    assert engine.sliced

    class Broken:  # what a patched graph that loads but cannot run would do
        def run(self, *_: object) -> None:
            raise RuntimeError("Non-zero status code returned while running Slice node")

    engine.session = Broken()
    with caplog.at_level(logging.WARNING, logger="agent.tts.kokoro"):
        audio = engine.synthesize("Hello there.", VOICE)
    assert trim_silence(audio).size > 12_000 and not engine.sliced
    assert "failed to run" in caplog.text
    assert CAP_INPUT not in {i.name for i in engine.session.get_inputs()}
