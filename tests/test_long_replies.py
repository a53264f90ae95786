"""Long and nasty LLM replies end to end: the loopback OpenAI-compatible fault server streams
them over real HTTP, the conversation chunks them as it does in the app, the real Kokoro
synthesises them through the real speech pipeline, and a sink stands in for the device
(playing a chunk at once, or holding it like a device still busy with earlier audio; it keeps
counts and texts, never the samples).

Checked: nothing raises, speech goes on after the nasty parts, memory stays bounded while a
100,000-character reply streams in (synthesis runs at most `lookahead` chunks ahead of
playback, whatever the reply's length), and an interrupt still works part way.
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time
import tracemalloc
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.audio.events import AudioChunk, PlaybackEvent, PlaybackKind
from agent.audio.sinks import MemorySink
from agent.config import ConversationConfig, LLMConfig
from agent.conversation import Conversation
from agent.events import AgentEvent, AgentState, Notice, ReplyDelta, ReplyDone, StateChanged
from agent.history import History
from agent.llm import make_backend
from agent.speech import DEFAULT_LOOKAHEAD, SpeechPipeline
from agent.text.chunker import MAX_RUN_CHARS
from agent.tts.base import CancelToken, Samples, SynthesisCancelled, VoiceInfo
from agent.tts.kokoro import KokoroEngine
from harness.llm_servers import FaultRequest, FaultServer, Script
from harness.services import wait_for

SR = 24_000
VOICE = "jm_kumo"  # the packaged voice
LOOKAHEAD = DEFAULT_LOOKAHEAD
LONG = 100_000
SPOKEN = ["First, the good news.", "Then the speech goes on.", "And it ends well."]


@pytest.fixture(scope="module")
def faults() -> Iterator[FaultServer]:
    server = FaultServer()
    yield server
    server.stop()


# --- the LLM side: replies streamed as an OpenAI-compatible server does ----------------------

def sse(payload: object, ensure_ascii: bool = True) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=ensure_ascii)}\n\n"


def delta(text: str) -> dict[str, object]:
    return {"object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


def stream_bytes(text: str, piece: int = 16, per_write: int = 64,
                 ensure_ascii: bool = True) -> list[bytes]:
    """The network writes of a reply in `piece`-character deltas (a few tokens each),
    `per_write` events at a time; made before a test measures memory."""
    events = [sse(delta(text[i:i + piece]), ensure_ascii) for i in range(0, len(text), piece)]
    writes = ["".join(events[i:i + per_write]) for i in range(0, len(events), per_write)]
    finish = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    writes.append(sse(finish) + "data: [DONE]\n\n")
    return [write.encode() for write in writes]


def replies(*texts: str, ensure_ascii: bool = True) -> Script:
    """A server that answers each request with the next text."""
    queue = [stream_bytes(text, ensure_ascii=ensure_ascii) for text in texts]

    async def script(request: FaultRequest) -> None:
        await request.start_stream()
        for write in queue.pop(0):
            await request.chunk(write)
        await request.end_stream()

    return script


# --- the speech side: the real pipeline and Kokoro, a thin device ---------------------------

class ThinSink(MemorySink):
    """Stands in for the audio device: plays each chunk at once, or (hold) keeps it queued
    until `play()`, like a device still playing earlier audio. Keeps no samples once played.
    The queue it holds is the audio queue whose bound is measured."""

    def __init__(self, hold: bool = False) -> None:
        super().__init__(SR)
        self.hold = hold
        self.waiting: list[AudioChunk] = []
        self.played: list[tuple[int, str, int]] = []  # (turn, text, samples)
        self.dropped = 0
        self.most_waiting = 0
        self.most_waiting_samples = 0
        self._lock = threading.Lock()

    @property
    def done(self) -> int:
        return len(self.played) + self.dropped

    def enqueue(self, chunk: AudioChunk) -> None:
        with self._lock:
            self.waiting.append(chunk)
            self.most_waiting = max(self.most_waiting, len(self.waiting))
            self.most_waiting_samples = max(self.most_waiting_samples,
                                            sum(c.samples.size for c in self.waiting))
        if not self.hold:
            self.play()

    def play(self) -> bool:
        """Play the first waiting chunk, if any."""
        with self._lock:
            if not self.waiting:
                return False
            chunk = self.waiting.pop(0)
        if chunk.turn < self._min_turn:
            self.dropped += 1
            self._emit(PlaybackKind.DROPPED, chunk)
            return True
        self.played.append((chunk.turn, chunk.text, chunk.samples.size))
        self._emit(PlaybackKind.STARTED, chunk)
        self._emit(PlaybackKind.FINISHED, chunk, chunk.samples.size)
        self._emit(PlaybackKind.DRAINED)
        return True

    def cut(self, drop_below_turn: int) -> None:
        self._min_turn = max(self._min_turn, drop_below_turn)
        with self._lock:
            stale = [c for c in self.waiting if c.turn < self._min_turn]
            self.waiting = [c for c in self.waiting if c.turn >= self._min_turn]
        for chunk in stale:
            self.dropped += 1
            self._emit(PlaybackKind.DROPPED, chunk)


class KokoroCalls:
    """The real Kokoro engine, noting what it is asked for: how far synthesis runs ahead of
    playback, the longest text, cancellations."""

    def __init__(self, engine: KokoroEngine, sink: ThinSink) -> None:
        self.engine = engine
        self.sample_rate = engine.sample_rate
        self.sink = sink
        self.texts: list[str] = []
        self.samples: list[int] = []
        self.empty = 0  # no phonemes: nothing for the sink
        self.most_ahead = 0
        self.cancelled = 0
        self.running = threading.Event()
        self._lock = threading.Lock()

    @property
    def source(self) -> str:
        return str(self.engine.source)

    def synthesize(self, text: str, voice: str, speed: float = 1.0,
                   cancel: CancelToken | None = None) -> Samples:
        with self._lock:
            self.texts.append(text)
            ahead = len(self.texts) - self.sink.done - self.empty
            self.most_ahead = max(self.most_ahead, ahead)
        self.running.set()
        try:
            audio: Samples = self.engine.synthesize(text, voice, speed, cancel)
        except SynthesisCancelled:
            self.cancelled += 1
            raise
        finally:
            self.running.clear()
        with self._lock:
            self.samples.append(audio.size)
            self.empty += audio.size == 0
        return audio

    def voices(self) -> list[VoiceInfo]:
        return list(self.engine.voices())

    def default_voice(self, wanted: str) -> str:
        return str(self.engine.default_voice(wanted))


class Pipeline(SpeechPipeline):
    """The real pipeline, noting the length of each clause it is given."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.clause_lengths: list[int] = []
        self.last_clause = ""

    def say_clause(self, clause: str, voice: str | None = None, speed: float | None = None,
                   speaker: str = "", turn: int | None = None) -> int:
        self.clause_lengths.append(len(clause))
        self.last_clause = clause
        return super().say_clause(clause, voice, speed, speaker, turn)


class Seen:
    """What the conversation tells the outside, counted rather than kept."""

    def __init__(self) -> None:
        self.chars = 0
        self.states: list[StateChanged] = []
        self.notices: list[str] = []
        self.done: list[ReplyDone] = []

    def __call__(self, event: AgentEvent) -> None:
        if isinstance(event, ReplyDelta):
            self.chars += len(event.text)
        elif isinstance(event, StateChanged):
            self.states.append(event)
        elif isinstance(event, Notice):
            self.notices.append(event.message)
        elif isinstance(event, ReplyDone):
            self.done.append(event)

    def errors(self) -> list[str]:
        return [s.message for s in self.states if s.state is AgentState.ERROR]


def talk(engine: KokoroEngine, faults: FaultServer, tmp_path: Path, name: str,
         script: Script, sink: ThinSink) -> tuple[Conversation, Pipeline, KokoroCalls, Seen]:
    synth = KokoroCalls(engine, sink)
    speech = Pipeline(synth, sink, voice=VOICE, lookahead=LOOKAHEAD)
    speech.start()
    backend = make_backend(LLMConfig(backend="openai", base_url=faults.url(name, script),
                                     model="fault-model", timeout_s=10.0))
    conversation = Conversation(backend, speech, History(tmp_path / "history.jsonl"),
                                ConversationConfig(), "Be brief.")
    seen = Seen()
    conversation.bus.subscribe(seen)
    return conversation.start(), speech, synth, seen


def rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def speakable_only(text: str) -> bool:
    """No control or format character (but a joiner inside a word) and no emoji."""
    return not any(
        (unicodedata.category(ch)[0] == "C" and ch not in "\u200c\u200d")
        or 0x1F000 <= ord(ch) <= 0x1FAFF for ch in text)


# --- a 100,000-character reply ----------------------------------------------------------------

PARAGRAPHS = [
    "Sure, here is the long answer. Read it with care and patience. ",
    "**Step one:** open the file, then read it. See [the docs](https://example.com/a?b=1).\n\n",
    "- a list item with `ls -la`, 🎉 and more\n- another item 👨\u200d👩\u200d👧\u200d👦 here\n\n",
    "Arabic مرحبا بالعالم and Hebrew שלום עולם sit in the middle of this sentence. ",
    "Controls \x00\x07\x1b and bidi \u202e marks \u2066 do not stop it. ",
    "A stray [ bracket, a stray ` backtick and a stray <b tag open nothing at all. ",
    "The key is " + "aGVsbG8gd29ybGQ" * 60 + " and it ends here. ",
]
ENDING = " This is the very end."


def test_a_100k_reply_streams_with_bounded_memory_and_can_be_interrupted(
        engine: KokoroEngine, faults: FaultServer, tmp_path: Path) -> None:
    body = "".join(PARAGRAPHS)
    reply = (body * (LONG // len(body) + 1))[:LONG - len(ENDING)] + ENDING
    sink = ThinSink(hold=True)  # the device plays only when the test says so
    conversation, speech, synth, seen = talk(
        engine, faults, tmp_path, "long", replies(reply, "Briefly: it works."), sink)
    engine.synthesize("Hello there.", VOICE)  # the model's first run is slow
    gc.collect()
    rss_before = rss()
    tracemalloc.start()
    try:
        started = time.monotonic()
        conversation.submit("Tell me everything.")
        # The whole reply arrives and is chunked while the device plays nothing: synthesis
        # stops `lookahead` chunks ahead, the rest waits as text.
        assert wait_for(lambda: speech.last_clause.endswith("very end."), 30)
        streamed_s = time.monotonic() - started
        assert seen.chars == LONG
        assert wait_for(lambda: len(sink.waiting) == LOOKAHEAD, 30)
        time.sleep(0.5)  # a worker that ran ahead would synthesise a third chunk now
        assert len(synth.texts) == LOOKAHEAD
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
        rss_growth = rss() - rss_before
        held = sum(c.samples.size for c in sink.waiting)
        print(f"\n100k reply streamed in {streamed_s:.1f} s as {len(speech.clause_lengths)} "
              f"clauses (longest {max(speech.clause_lengths)} chars); traced Python memory "
              f"{current / 2**20:.1f} MiB now, {peak / 2**20:.1f} MiB at peak; RSS "
              f"+{rss_growth / 2**20:.0f} MiB; audio queued {len(sink.waiting)} chunks, "
              f"{held} samples ({held * 4 / 2**10:.0f} KiB)")
        assert peak < 16 * 2**20
        assert rss_growth < 128 * 2**20
        assert max(speech.clause_lengths) <= 2 * MAX_RUN_CHARS + 64

        # The device plays: each chunk played lets one more be synthesised, never more.
        playing = time.monotonic()
        for _ in range(2):
            assert sink.play()
            assert wait_for(lambda: len(sink.waiting) == LOOKAHEAD, 60)
        print(f"2 more chunks synthesised in {time.monotonic() - playing:.1f} s")
        assert synth.most_ahead <= LOOKAHEAD and sink.most_waiting <= LOOKAHEAD
        assert len(synth.texts) == 2 + LOOKAHEAD
        assert all(size > SR // 4 for _, _, size in sink.played)  # real speech, not silence

        # Interrupt part way: the turn ends at once, the queued chunks are dropped, and the
        # history keeps what was heard.
        interrupted_at = time.monotonic()
        conversation.interrupt()
        assert conversation.wait_idle(5)
        assert time.monotonic() - interrupted_at < 2.0
        assert speech.wait_until_done(5) and not sink.waiting
        calls = len(synth.texts)
        time.sleep(0.3)
        assert len(synth.texts) == calls  # nothing of the old turn is synthesised any more
        current_after, _ = tracemalloc.get_traced_memory()
        assert current_after < 16 * 2**20
    finally:
        tracemalloc.stop()
    assert seen.done[-1].interrupted and not seen.errors() and not seen.notices
    assert [s.state for s in seen.states[-2:]] == [AgentState.INTERRUPTED, AgentState.IDLE]
    heard = " ".join(text for _, text, _ in sink.played)
    assert heard.startswith("Sure, here is the")
    entry = History(tmp_path / "history.jsonl").entries[-1]
    assert entry.interrupted and entry.content == heard and entry.full == reply

    # The next question is answered and spoken as usual.
    sink.hold = False
    asked = time.monotonic()
    conversation.submit("And briefly?")
    assert conversation.wait_idle(60)
    print(f"next answer spoken in {time.monotonic() - asked:.1f} s")
    conversation.close()
    speech.close()
    next_turn = sink.played[-1][0]
    assert next_turn > sink.played[0][0]
    assert " ".join(text for turn, text, _ in sink.played if turn == next_turn) == (
        "Briefly: it works.")
    assert not seen.done[-1].interrupted


# --- control characters, right-to-left text, an emoji flood ----------------------------------

CONTROLS = ("".join(chr(c) for c in range(0x20) if c != 0x0A) + "\x7f"
            + "".join(chr(c) for c in range(0x80, 0xA0))
            + "\u200b\u200c\u200d\u200e\u200f\u2028\u2029\u2060\ufeff\u00ad"
            + "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\U000e0001")
EMOJI = ("🎉👍🏽👨\u200d👩\u200d👧\u200d👦🏳️\u200d🌈🇫🇷🇯🇵❤️🧑🏿\u200d🚀😀🤖"
         "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f✅★→☃\ufe0e")
BIDI = "\u200f\u061c\u202e\u2067\u2069\u202b\u202c\u200e" * 1000
# Kokoro's English voice spells other scripts ("Hebrew letter shin, ..."): a word or two only.
RTL = "\u202bשלום\u202c, \u2067مرحبا\u2069. " + BIDI


def nasty(section: str, second: str | None = None) -> str:
    return f"{SPOKEN[0]} {section} {SPOKEN[1]} {section if second is None else second}{SPOKEN[2]}"


@pytest.mark.parametrize(
    ("name", "reply"),
    [
        ("control characters", nasty(CONTROLS * 400)),
        ("an emoji flood", nasty(EMOJI * 1000)),
        ("right-to-left text", nasty(RTL, BIDI)),
    ],
)
def test_nasty_replies_are_spoken_around_their_nasty_parts(
        engine: KokoroEngine, faults: FaultServer, tmp_path: Path, name: str,
        reply: str) -> None:
    sink = ThinSink()
    conversation, speech, synth, seen = talk(
        engine, faults, tmp_path, name.replace(" ", "-"), replies(reply), sink)
    conversation.submit("Say something nasty.")
    assert conversation.wait_idle(90), name
    conversation.close()
    speech.close()
    assert not seen.errors() and not seen.notices, name
    assert seen.done[-1].text == reply and not seen.done[-1].interrupted  # HTTP kept it all
    texts = [text for _, text, _ in sink.played]
    assert all(speakable_only(text) for text in texts), texts
    # every speakable sentence was spoken, in order, after each nasty part (the first ones
    # in a few short chunks: chunks are cut at spaces)
    spoken = " ".join(texts)
    where = [spoken.find(sentence) for sentence in SPOKEN]
    assert min(where) >= 0 and where == sorted(where), texts
    assert all(size > SR // 4 for _, _, size in sink.played)
    assert synth.empty == 0 and synth.most_ahead <= LOOKAHEAD
    if name == "right-to-left text":  # read in logical order, without the bidi controls
        assert "שלום, مرحبا." in " ".join(texts)


# --- what the Kokoro stage is given -----------------------------------------------------------

def test_a_clause_with_no_phonemes_is_skipped_and_the_next_one_plays(
        engine: KokoroEngine) -> None:
    sink = ThinSink()
    synth = KokoroCalls(engine, sink)
    errors: list[PlaybackEvent] = []
    with SpeechPipeline(synth, sink, voice=VOICE) as speech:
        speech.add_listener(lambda e: errors.append(e) if e.kind is PlaybackKind.ERROR else None)
        for clause in ["One.", "\u0301\u0302", "", "\u200d", " ", "Two."]:
            speech.say_clause(clause)
        assert speech.wait_until_done(60)
    assert [text for _, text, _ in sink.played] == ["One.", "Two."]
    assert synth.empty == 4 and not errors


def test_a_word_of_100k_characters_is_cut_and_its_synthesis_interrupted(
        engine: KokoroEngine, faults: FaultServer, tmp_path: Path) -> None:
    # A base64 blob: Kokoro spells it, about 0.2 s of speech a character. Whole, it would be
    # one synthesis job of hours of audio; cut, each job is at most MAX_RUN_CHARS.
    reply = "Here it comes. " + ("aGVsbG8gd29ybGQ" * 7000)[:LONG] + " Done."
    sink = ThinSink()
    conversation, speech, synth, seen = talk(
        engine, faults, tmp_path, "blob", replies(reply), sink)
    conversation.submit("Encode it.")
    assert wait_for(lambda: speech.last_clause.endswith("Done."), 30)
    assert max(speech.clause_lengths) <= MAX_RUN_CHARS + 32
    assert len(speech.clause_lengths) >= LONG // (MAX_RUN_CHARS + 32)
    # "Here it comes." is played (in the ramp's first two chunks), and a piece of the blob is
    # being synthesised
    assert wait_for(lambda: any(len(text) > 100 for text in synth.texts)
                    and synth.running.is_set(), 60)
    assert wait_for(lambda: len(sink.played) >= 2, 5)
    assert " ".join(text for _, text, _ in sink.played[:2]) == "Here it comes."
    time.sleep(0.5)  # well inside the synthesis of a 600-character clause
    interrupted_at = time.monotonic()
    conversation.interrupt()
    assert conversation.wait_idle(5)
    assert speech.wait_until_done(5)
    stopped_s = time.monotonic() - interrupted_at
    print(f"\nsynthesis of a {len(synth.texts[-1])}-character clause stopped "
          f"{stopped_s * 1000:.0f} ms after the interrupt")
    assert stopped_s < 2.0 and synth.cancelled >= 1
    assert wait_for(lambda: not synth.running.is_set(), 2)
    conversation.close()
    speech.close()
    assert seen.done[-1].interrupted and not seen.errors()


# --- a known bug, outside agent/text ------------------------------------------------------------

def test_raw_line_separators_in_a_reply_do_not_break_the_stream(
        faults: FaultServer, tmp_path: Path) -> None:
    reply = "One line\u2028and the next\u0085and a paragraph\u2029end."
    backend = make_backend(LLMConfig(
        backend="openai", base_url=faults.url("raw-utf8", replies(reply, ensure_ascii=False)),
        model="fault-model", timeout_s=5.0))
    seen = Seen()
    with Conversation(backend, None, History(tmp_path / "h.jsonl"), ConversationConfig(),
                      "Be brief.") as conversation:
        conversation.bus.subscribe(seen)
        conversation.submit("Go.")
        assert conversation.wait_idle(10)
    assert not seen.errors(), seen.errors()
    assert seen.done[-1].text == reply
