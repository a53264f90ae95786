"""The speech pipeline: order, look-ahead, turns and interrupts; then the real thing, Kokoro
through the real PortAudio stream, checked at the ALSA tap."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from agent.audio.events import PlaybackKind
from agent.audio.sinks import MemorySink
from agent.speech import SpeechPipeline
from harness.fakes import PlaybackRecorder, RecordingPlayer, SlowSink, ToneSynth
from harness.services import read_tap, wait_for

SR = 24_000


def test_clauses_reach_the_sink_in_order_with_several_workers() -> None:
    sink = MemorySink()
    synth = ToneSynth(delay=0.01)
    with SpeechPipeline(synth, sink, voice="v", workers=3, lookahead=4) as pipeline:
        pipeline.say("One, two three four. Five six seven eight. Nine ten eleven twelve. "
                     "Thirteen fourteen fifteen sixteen.")
        assert pipeline.wait_until_done(10)
    assert [c.seq for c in sink.chunks] == sorted(c.seq for c in sink.chunks)
    spoken = " ".join(c.text for c in sink.chunks)
    assert spoken.split()[0] == "One," and spoken.split()[-1] == "sixteen."
    assert synth.max_running >= 2  # the pool really ran in parallel


def test_add_dialogue_remembers_each_speakers_voice() -> None:
    sink = MemorySink()
    synth = ToneSynth()
    with SpeechPipeline(synth, sink, voice="narrator") as pipeline:
        pipeline.add_dialogue("Alice", "Hello Bob.", "af_bella")
        pipeline.add_dialogue("Bob", "Hi Alice.", "am_adam")
        pipeline.add_dialogue("Alice", "How are you?")
        pipeline.add_dialogue("Carol", "I have no voice of my own.")
        assert pipeline.wait_until_done(10)
    assert [(c.speaker, v) for c, (_t, v) in zip(sink.chunks, synth.calls, strict=True)] == [
        ("Alice", "af_bella"), ("Bob", "am_adam"), ("Alice", "af_bella"), ("Carol", "narrator")]


def test_lookahead_bounds_synthesis_ahead_of_playback() -> None:
    sink = SlowSink()
    synth = ToneSynth()
    with SpeechPipeline(synth, sink, voice="v", lookahead=2) as pipeline:
        for i in range(6):
            pipeline.say_clause(f"Clause number {i}.")
        assert wait_for(lambda: len(synth.calls) == 2, 5)
        time.sleep(0.2)  # give a wrongly unbounded worker the chance to run ahead
        assert len(synth.calls) == 2
        sink.play_one()
        assert wait_for(lambda: len(synth.calls) == 3, 5)
        while len(sink.chunks) < 6:
            assert wait_for(lambda: bool(sink.waiting), 5)
            sink.play_one()
        assert pipeline.wait_until_done(5)


def test_interrupt_drops_queued_work_and_the_next_turn_speaks() -> None:
    sink = SlowSink()
    synth = ToneSynth(delay=0.05)
    with SpeechPipeline(synth, sink, voice="v", lookahead=2) as pipeline:
        for i in range(5):
            pipeline.say_clause(f"Old clause {i}.")
        assert wait_for(lambda: bool(sink.waiting), 5)
        new_turn = pipeline.interrupt()
        pipeline.say_clause("New turn.")
        while not pipeline.wait_until_done(0.05):
            if sink.waiting:
                sink.play_one()
    played = [c for c in sink.chunks if c.turn == new_turn]
    assert [c.text for c in played] == ["New turn."]
    assert all(c.turn == new_turn for c in sink.chunks), "a stale chunk was played"
    assert len(synth.calls) < 5 + 1, "stale clauses were synthesised anyway"


def test_interrupt_sound_is_queued_in_the_new_turn() -> None:
    sink = MemorySink()
    with SpeechPipeline(ToneSynth(), sink, voice="v", interrupt_sound=True) as pipeline:
        turn = pipeline.interrupt()
    assert len(sink.chunks) == 1 and sink.chunks[0].turn == turn
    assert 0 < np.abs(sink.chunks[0].samples).max() <= 0.2


# -- real parts ----------------------------------------------------------------------------

@pytest.mark.audio
def test_kokoro_through_the_stream_is_played_exactly_as_synthesised(
        audio_tap: Path, engine) -> None:  # type: ignore[no-untyped-def]
    player = RecordingPlayer()
    recorder = PlaybackRecorder()
    with SpeechPipeline(engine, player, voice="jm_kumo") as pipeline:
        pipeline.add_listener(recorder)
        pipeline.say("Hello there, this is the speaking core. It plays every clause in order.")
        assert pipeline.wait_until_done(120)
        expected = np.concatenate([c.samples for c in player.given])
        assert wait_for(lambda: read_tap(audio_tap).size > expected.size, 5)
        underflows = player.underflows
    assert len(player.given) >= 2
    captured = read_tap(audio_tap)
    # Each chunk is in the tap exactly as synthesised (trimmed, with its clause pause), in
    # order. Between chunks the stream plays zeros only while the next one is still being
    # synthesised (the player's own test shows ready chunks join without a gap).
    position, gaps = 0, []
    for chunk in player.given:
        lead = int(np.flatnonzero(chunk.samples)[0])
        start = position + int(np.flatnonzero(captured[position:])[0]) - lead
        assert start >= position
        assert np.array_equal(captured[start:start + chunk.samples.size], chunk.samples)
        gaps.append(start - position)
        position = start + chunk.samples.size
    assert not np.any(captured[position:])
    print(f"zeros before each chunk: {gaps} samples; underflows: {underflows}")
    finished = recorder.of(PlaybackKind.FINISHED)
    assert [e.seq for e in finished] == [c.seq for c in player.given]


@pytest.mark.audio
def test_interrupt_silences_kokoro_and_stale_clauses_never_play(
        audio_tap: Path, engine) -> None:  # type: ignore[no-untyped-def]
    player = RecordingPlayer(blocksize=256)
    recorder = PlaybackRecorder()
    with SpeechPipeline(engine, player, voice="jm_kumo", lookahead=3) as pipeline:
        pipeline.add_listener(recorder)
        pipeline.say("This first sentence is long enough to be cut in the middle of a word. "
                     "This second sentence must never be heard. Nor this third one.")
        recorder.wait(PlaybackKind.STARTED, timeout=120)
        assert wait_for(lambda: read_tap(audio_tap).size > SR, 10)  # mid-speech
        cut_started = time.monotonic()
        new_turn = pipeline.interrupt()
        assert pipeline.wait_until_done(10)
        cut = recorder.wait(PlaybackKind.CUT)[0]
        assert player.last_cut is not None
        seen_at, _dac, cut_frame = player.last_cut
        fade = player.fade_samples
        assert wait_for(lambda: read_tap(audio_tap).size > cut_frame + fade + 2 * 256, 5)
        captured = read_tap(audio_tap)
        assert not np.any(captured[cut_frame + fade - 1:]), "sound after the fade"
        assert seen_at - cut_started < 256 / SR + 0.02
        # Everything heard is the cut chunk's first `played` samples (and earlier chunks).
        heard = sum(e.played for e in recorder.events
                    if e.kind in (PlaybackKind.FINISHED, PlaybackKind.CUT))
        start = int(np.flatnonzero(captured)[0])
        assert cut_frame + fade - start >= heard - 1
        stale_given = [c for c in player.given if c.turn < new_turn and c.seq > cut.seq]
        for chunk in stale_given:
            assert chunk.seq in {e.seq for e in recorder.of(PlaybackKind.DROPPED)}
        # The next turn speaks normally.
        pipeline.say("Ready again.")
        assert pipeline.wait_until_done(60)
        assert recorder.of(PlaybackKind.FINISHED)[-1].turn == new_turn

