"""The real PortAudio stream, captured sample for sample at the ALSA tap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.audio.events import AudioChunk, PlaybackKind
from agent.audio.player import AudioPlayer
from harness.fakes import PlaybackRecorder
from harness.services import read_tap, wait_for

pytestmark = pytest.mark.audio
SR = 24_000


def tone(seconds: float, freq: float, seed: int) -> np.ndarray:
    """A tone with a little noise: no sample is exactly zero, so any gap or loss shows."""
    n = np.arange(int(seconds * SR))
    rng = np.random.default_rng(seed)
    signal = 0.4 * np.sin(2 * np.pi * freq * n / SR) + 0.05 + 0.01 * rng.standard_normal(n.size)
    return signal.astype(np.float32)


def first_nonzero(samples: np.ndarray) -> int:
    return int(np.flatnonzero(samples)[0])


def test_chunks_play_exactly_and_without_gaps(audio_tap: Path) -> None:
    chunks = [tone(0.3, 440, 1), tone(0.2, 660, 2), tone(0.25, 550, 3)]
    expected = np.concatenate(chunks)
    recorder = PlaybackRecorder()
    with AudioPlayer(blocksize=256) as player:
        player.add_listener(recorder)
        for seq, samples in enumerate(chunks):
            player.enqueue(AudioChunk(samples, turn=0, seq=seq))
        recorder.wait(PlaybackKind.DRAINED)
        assert wait_for(lambda: np.count_nonzero(read_tap(audio_tap)) >= expected.size, 5)
        underflows = player.underflows
    captured = read_tap(audio_tap)
    start = first_nonzero(captured)
    assert np.array_equal(captured[start:start + expected.size], expected)
    assert not np.any(captured[start + expected.size:])
    finished = recorder.of(PlaybackKind.FINISHED)
    assert [(e.seq, e.played, e.total) for e in finished] == [
        (i, c.size, c.size) for i, c in enumerate(chunks)]
    assert [e.seq for e in recorder.of(PlaybackKind.STARTED)] == [0, 1, 2]
    assert underflows == 0


@pytest.mark.parametrize("blocksize", [256, 512])
def test_cut_fades_to_exact_zeros_within_one_block(audio_tap: Path, blocksize: int) -> None:
    long = tone(3.0, 440, 4)
    recorder = PlaybackRecorder()
    with AudioPlayer(blocksize=blocksize, fade_ms=5.0) as player:
        player.add_listener(recorder)
        player.enqueue(AudioChunk(long, turn=0, seq=0))
        player.enqueue(AudioChunk(tone(1.0, 300, 5), turn=0, seq=1))  # queued: must never play
        recorder.wait(PlaybackKind.STARTED)
        assert wait_for(lambda: read_tap(audio_tap).size > SR // 2, 5)
        import time

        commanded = time.monotonic()
        player.cut(drop_below_turn=1)
        cut = recorder.wait(PlaybackKind.CUT)[0]
        recorder.wait(PlaybackKind.DROPPED)
        assert player.last_cut is not None
        seen_at, _dac, cut_frame = player.last_cut
        fade = player.fade_samples
        assert wait_for(lambda: read_tap(audio_tap).size >= cut_frame + fade + blocksize, 5)
    captured = read_tap(audio_tap)
    start = first_nonzero(captured)
    played_before_cut = cut_frame - start
    # Everything up to the cut is the chunk, sample for sample.
    assert np.array_equal(captured[start:cut_frame], long[:played_before_cut])
    # Then a linear fade whose last sample is exactly zero, then exact zeros to the end.
    ramp = 1 - (np.arange(fade, dtype=np.float32) + 1) / fade
    segment = long[played_before_cut:played_before_cut + fade]
    np.testing.assert_allclose(captured[cut_frame:cut_frame + fade], segment * ramp, atol=1e-7)
    assert not np.any(captured[cut_frame + fade - 1:])
    assert cut.played == played_before_cut + fade
    # The callback saw the cut within one block period (plus scheduling slack).
    assert seen_at - commanded < blocksize / SR + 0.02


def test_new_turn_plays_after_the_fade_and_stale_chunks_never(audio_tap: Path) -> None:
    old = tone(2.0, 440, 6)
    stale = tone(1.0, 300, 7)
    new = tone(0.3, 700, 8)
    recorder = PlaybackRecorder()
    with AudioPlayer(blocksize=256) as player:
        player.add_listener(recorder)
        player.enqueue(AudioChunk(old, turn=0, seq=0))
        player.enqueue(AudioChunk(stale, turn=0, seq=1))
        recorder.wait(PlaybackKind.STARTED)
        player.cut(drop_below_turn=1)
        player.enqueue(AudioChunk(new, turn=1, seq=2))
        recorder.wait(PlaybackKind.FINISHED)
        recorder.wait(PlaybackKind.DRAINED)
        assert player.last_cut is not None
        cut_frame = player.last_cut[2]
        fade = player.fade_samples
        assert wait_for(lambda: read_tap(audio_tap).size >= cut_frame + fade + new.size, 5)
    captured = read_tap(audio_tap)
    after_fade = captured[cut_frame + fade:]
    begin = first_nonzero(after_fade)
    assert np.array_equal(after_fade[begin:begin + new.size], new)
    assert not np.any(after_fade[begin + new.size:])
    kinds = {e.seq: e.kind for e in recorder.events if e.seq >= 0 and e.kind is not
             PlaybackKind.STARTED}
    assert kinds == {0: PlaybackKind.CUT, 1: PlaybackKind.DROPPED, 2: PlaybackKind.FINISHED}


def test_device_is_chosen_by_name_or_index_and_a_wrong_one_is_explained(
        audio_tap: Path) -> None:
    from agent.audio.devices import NoAudioDevice, list_devices, resolve_output

    outputs = [d for d in list_devices() if d.outputs > 0]
    default = next(d for d in outputs if d.name == "default")
    assert resolve_output("default") == default.index
    assert resolve_output(str(default.index)) == default.index
    assert resolve_output("") is None
    with pytest.raises(NoAudioDevice, match=r"no output device matches 'no such card'; "
                                            r"choices: .*default"):
        resolve_output("no such card")
    with pytest.raises(NoAudioDevice, match="no output device with index 999"):
        resolve_output(999)
    recorder = PlaybackRecorder()
    with AudioPlayer(device="default") as player:
        player.add_listener(recorder)
        player.enqueue(AudioChunk(tone(0.1, 440, 9), turn=0, seq=0))
        recorder.wait(PlaybackKind.DRAINED)


def test_resampling_fallback_keeps_duration_and_pitch() -> None:
    from agent.audio.player import resample

    source = tone(0.5, 440, 10)
    doubled = resample(source, 24_000, 48_000)
    assert doubled.size == 2 * source.size
    spectrum = np.abs(np.fft.rfft(doubled - doubled.mean()))
    peak_hz = np.argmax(spectrum) * 48_000 / doubled.size
    assert abs(peak_hz - 440) < 5


def test_an_idle_stream_pauses_and_the_next_chunk_starts_it_again(audio_tap: Path) -> None:
    """Quiet when idle: no callbacks while there is nothing to play; nothing is lost after."""
    recorder = PlaybackRecorder()
    with AudioPlayer(blocksize=256, idle_stop_s=0.3) as player:
        player.add_listener(recorder)
        assert player.running
        assert wait_for(lambda: not player.running, timeout=5), "the idle stream kept running"
        paused_at = player.frames_written
        assert not wait_for(lambda: player.frames_written != paused_at, timeout=0.3)
        samples = tone(0.3, 440, 7)
        player.enqueue(AudioChunk(samples, turn=0, seq=0))
        assert player.running
        recorder.wait(PlaybackKind.FINISHED)
        recorder.wait(PlaybackKind.DRAINED)
        assert wait_for(lambda: not player.running, timeout=5)
        assert not player.failed and not recorder.of(PlaybackKind.ERROR)
    played = read_tap(audio_tap)
    start = first_nonzero(played)
    np.testing.assert_array_equal(played[start:start + samples.size], samples)


def test_a_stream_that_dies_is_reported_and_the_next_words_open_a_new_one(
        audio_tap: Path) -> None:
    """A device unplugged or a sound server restarted ends the stream under us (simulated
    by aborting it): an ERROR event says so, and the next chunk plays on a new stream."""
    recorder = PlaybackRecorder()
    with AudioPlayer(blocksize=256) as player:
        player.add_listener(recorder)
        dead = player._stream
        dead.abort()  # what PortAudio does when the device goes away
        recorder.wait(PlaybackKind.ERROR)
        assert player.failed
        audio_tap.unlink(missing_ok=True)  # the new stream writes a new tap file
        samples = tone(0.3, 440, 11)
        player.enqueue(AudioChunk(samples, turn=0, seq=0))
        assert not player.failed and player._stream is not dead
        recorder.wait(PlaybackKind.FINISHED)
    played = read_tap(audio_tap)
    start = first_nonzero(played)
    np.testing.assert_array_equal(played[start:start + samples.size], samples)


def test_hold_fades_to_silence_keeps_the_place_and_release_goes_on(audio_tap: Path) -> None:
    """Talk-over's hold: the reply goes silent within a block, nothing is skipped or dropped,
    and after release it carries on from where it stopped; a cut while held ends it."""
    long = tone(3.0, 440, 4)
    recorder = PlaybackRecorder()
    with AudioPlayer(blocksize=256, fade_ms=5.0) as player:
        player.add_listener(recorder)
        tap = player.playback_tap()  # what the echo canceller is given: the same samples
        player.enqueue(AudioChunk(long, turn=0, seq=0))
        recorder.wait(PlaybackKind.STARTED)
        assert wait_for(lambda: read_tap(audio_tap).size > SR // 2, 5)
        player.hold()
        assert wait_for(lambda: player.held and player.last_hold is not None, 2)
        assert player.last_hold is not None
        hold_frame = player.last_hold[2]
        fade = player.fade_samples
        assert wait_for(lambda: read_tap(audio_tap).size >= hold_frame + fade + SR // 4, 5)
        held = read_tap(audio_tap)[hold_frame + fade:hold_frame + fade + SR // 4]
        assert held.size == SR // 4 and not np.any(held)  # a quarter second of silence
        player.release()
        recorder.wait(PlaybackKind.FINISHED)
        samples, written, _ = tap.read_since(0)
    captured = read_tap(audio_tap)
    start = first_nonzero(captured)
    played = captured[start:]
    voiced = played[np.flatnonzero(played)]
    # Every sample of the chunk played once, in order, but for the few faded into the hold.
    assert long.size - fade <= voiced.size <= long.size
    ramp = 1 - (np.arange(fade, dtype=np.float32) + 1) / fade
    before = hold_frame - start
    np.testing.assert_allclose(captured[hold_frame:hold_frame + fade],
                               long[before:before + fade] * ramp, atol=1e-7)
    resumed = first_nonzero(captured[hold_frame + fade:]) + hold_frame + fade
    np.testing.assert_array_equal(captured[resumed:resumed + 1000],
                                  long[before + fade:before + fade + 1000])
    # The tap holds the last second and a half the device was given, exactly (the ALSA file
    # may start with a few blocks PortAudio primed the device with: find where it is).
    key = samples[first_nonzero(samples):][:256]
    windows = np.lib.stride_tricks.sliding_window_view(captured, key.size)
    at = int(np.flatnonzero(np.all(windows == key, axis=1))[0]) - first_nonzero(samples)
    assert np.array_equal(samples, captured[at:at + samples.size])
    assert written >= samples.size


def test_a_cut_while_held_ends_the_reply_and_the_next_turn_plays(audio_tap: Path) -> None:
    recorder = PlaybackRecorder()
    with AudioPlayer(blocksize=256, fade_ms=5.0) as player:
        player.add_listener(recorder)
        player.enqueue(AudioChunk(tone(3.0, 440, 4), turn=0, seq=0))
        recorder.wait(PlaybackKind.STARTED)
        player.hold()
        assert wait_for(lambda: player.held, 2)
        player.cut(drop_below_turn=1)
        recorder.wait(PlaybackKind.CUT)
        assert not player.held
        player.enqueue(AudioChunk(tone(0.3, 300, 5), turn=1, seq=1))
        assert recorder.wait(PlaybackKind.FINISHED)[0].turn == 1


def test_a_pause_and_a_talk_over_hold_are_released_each_on_its_own(audio_tap: Path) -> None:
    """A cough judged while the reading is paused lets talk-over go; the pause stays."""
    recorder = PlaybackRecorder()
    with AudioPlayer(blocksize=256, fade_ms=5.0) as player:
        player.add_listener(recorder)
        player.enqueue(AudioChunk(tone(2.0, 440, 6), turn=0, seq=0))
        recorder.wait(PlaybackKind.STARTED)
        player.hold("pause")
        player.hold("talk-over")
        assert wait_for(lambda: player.held, 2)
        player.release("talk-over")
        assert player.holding == {"pause"}
        written = player.frames_written
        assert wait_for(lambda: player.frames_written > written + SR // 4, 5)
        assert player.held  # still silent: the pause holds
        player.release("pause")
        assert wait_for(lambda: not player.held, 2)
        recorder.wait(PlaybackKind.FINISHED)


def test_hold_after_a_chunk_holds_before_the_next_one_starts(audio_tap: Path) -> None:
    """A reading whose speed changed: the sentence playing ends whole, then silence until the
    rest is said again (here: released), and no sample of the next chunk slips out."""
    recorder = PlaybackRecorder()
    first, second = tone(0.4, 440, 7), tone(0.4, 660, 8)
    with AudioPlayer(blocksize=256) as player:
        player.add_listener(recorder)
        player.hold_after(0)
        player.enqueue(AudioChunk(first, turn=0, seq=0))
        player.enqueue(AudioChunk(second, turn=0, seq=1))
        recorder.wait(PlaybackKind.FINISHED)
        assert wait_for(lambda: player.held, 2) and player.holding == {"boundary"}
        written = player.frames_written
        assert wait_for(lambda: player.frames_written > written + SR // 4, 5)
        assert len(recorder.of(PlaybackKind.STARTED)) == 1  # the next one waits
        player.release("boundary")
        recorder.wait(PlaybackKind.FINISHED, count=2)
    played = read_tap(audio_tap)
    start = first_nonzero(played)
    np.testing.assert_array_equal(played[start:start + first.size], first)
    gap = played[start + first.size:]
    resumed = first_nonzero(gap)
    assert resumed >= SR // 4  # a quarter second of exact silence at least
    np.testing.assert_array_equal(gap[resumed:resumed + second.size], second)


def test_a_cue_never_holds_the_player(audio_tap: Path) -> None:
    """Cues (the interrupt blip, the wake chime) have sequence -1: no hold waits for them,
    so whatever follows a cue plays, with or without a reading's hold before."""
    recorder = PlaybackRecorder()
    with AudioPlayer(blocksize=256) as player:
        player.add_listener(recorder)
        player.enqueue(AudioChunk(tone(0.1, 880, 1), turn=0, seq=-1))
        player.enqueue(AudioChunk(tone(0.2, 440, 2), turn=0, seq=0))
        recorder.wait(PlaybackKind.FINISHED, count=2)
        assert not player.holding
        player.hold_after(1)  # a reading's hold, once; then a cue and more
        player.enqueue(AudioChunk(tone(0.2, 440, 3), turn=0, seq=1))
        recorder.wait(PlaybackKind.FINISHED, count=3)
        assert wait_for(lambda: player.held, 2)
        player.release("boundary")
        player.enqueue(AudioChunk(tone(0.1, 880, 4), turn=0, seq=-1))
        player.enqueue(AudioChunk(tone(0.2, 440, 5), turn=0, seq=2))
        recorder.wait(PlaybackKind.FINISHED, count=5)
        assert not player.holding
