"""The conversation (the original design's chat dialogue system): one turn at a time.

    submit(text) -> input queue -> turn: history + question -> LLM stream
        -> reply text published at once (ReplyDelta)
        -> clauses -> speech pipeline (spoken while the rest streams in)

All turns run on the core's loop thread (agent.state.CoreLoop); a reply is a task, and
`interrupt()` cuts the audio at once and cancels the reply from any thread. New input waits
until the current speech completes, or, with barge-in, interrupts it. The loop thread is the
only writer of the agent's state: playback events are messages to it. An interrupted reply
goes into the history trimmed to what the user actually heard, once the audio output has
reported how much of the clause being spoken was played.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from agent.audio.events import PlaybackEvent, PlaybackKind
from agent.config import ConversationConfig
from agent.events import (
    AgentState,
    EventBus,
    Notice,
    ReplyDelta,
    ReplyDone,
    UserSaid,
)
from agent.history import History, HistoryEntry, HistoryNotSaved
from agent.llm.base import ChatBackend, LLMError, Message
from agent.llm.budget import attachment_budget, clip_to_budget
from agent.speech import SpeechPipeline
from agent.state import WAITER_THREAD_NAME, WAITER_THREADS, AgentStatus, CoreLoop
from agent.text import ChunkLimits, ClauseChunker

log = logging.getLogger(__name__)

__all__ = ["WAITER_THREADS", "WAITER_THREAD_NAME", "Conversation"]
# After an interrupt, how long the history entry waits for the audio output to report how
# much of the clause being spoken was played (one audio block, ~11-43 ms, in practice).
CUT_REPORT_TIMEOUT_S = 1.0
# How a reply is cut for speech. Kokoro takes ~0.65 s for two words on this 2-core CPU while
# the LLM writes (0.76 s for three) and short chunks synthesise at about real time: the first
# chunk is what the user waits for, so it is two words (Enter -> first audio 0.84 s against
# 0.97 s with three), and the caps of the next ones grow only as fast as each can be
# synthesised while the one before it plays (any clause boundary past 2 words also ends a
# chunk). After the ramp, sentences, cut at a clause boundary past 150 characters: a
# 300-character sentence takes ~10 s to synthesise, and the audio would stall meanwhile.
REPLY_CHUNKING: ChunkLimits = {"first_chunk_min_words": 2, "first_chunk_max_words": 2,
                                "second_chunk_max_words": 3,
                                "later_chunk_max_words": (5, 7, 9, 12, 16),
                                "max_chunk_chars": 150}


@dataclass(frozen=True)
class Attachment:
    """A text a question is about (the selection, what is being read): it goes to the LLM
    as far as the model's context allows; the history keeps a short note of it instead."""

    origin: str  # "the selection"
    text: str

    @property
    def words(self) -> int:
        return len(self.text.split())

    def summary(self) -> str:
        return f"about {self.origin}: {self.words} words"


@dataclass
class _Reply:
    """One reply in progress: its text, and which clauses were heard how far."""

    turn: int
    speech_turn: int
    text: str = ""
    clauses: dict[int, str] = field(default_factory=dict)  # seq -> clause, in order
    heard: dict[int, float] = field(default_factory=dict)  # seq -> fraction played
    error: str = ""
    spoken: bool = True  # False: shown as text only (no speech pipeline, or muted)

    def heard_text(self) -> str:
        """The clauses played in full, then the played share of the one cut part way."""
        words: list[str] = []
        for seq, clause in self.clauses.items():
            fraction = self.heard.get(seq, 0.0)
            clause_words = clause.split()
            words.extend(clause_words[:round(len(clause_words) * fraction)])
            if fraction < 1.0:
                break
        return " ".join(words)


class Conversation:
    def __init__(self, backend: ChatBackend, speech: SpeechPipeline | None, history: History,
                 settings: ConversationConfig, system_prompt: str,
                 bus: EventBus | None = None, status: AgentStatus | None = None) -> None:
        """`status` (with its core loop) is shared when a longer-lived owner (the Assistant)
        made it; else the conversation makes its own and stops it on close."""
        self.backend = backend
        self.speech = speech
        self.history = history
        self.settings = settings
        self.system_prompt = system_prompt
        self.bus = bus or EventBus()
        self.status = status or AgentStatus(self.bus, CoreLoop())
        self._owns_core = status is None
        self.core = self.status.core
        # Muted: replies are shown, not spoken (takes effect from the next reply).
        self.mute = False
        self._loop = self.core.loop
        self._inputs: asyncio.Queue[tuple[str, Attachment | None]] | None = None
        self._runner: asyncio.Task[None] | None = None
        self._reply_task: asyncio.Task[None] | None = None
        self._reply: _Reply | None = None
        self._warm_up: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self.warmed = threading.Event()  # the backend's warm-up is over (or there is none)
        self._turn = 0
        self._history_problem = ""  # why the history is not on disk now ("" when it is)
        self._done = threading.Condition()
        self._submitted = 0
        self._finished = 0
        if speech is not None:
            speech.add_listener(self._on_playback)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def state(self) -> AgentState:
        """The turn's state (written on the loop thread only)."""
        return self.status.phase

    def start(self) -> Conversation:
        self.core.start()
        self.core.run(self._begin(), timeout=5)
        return self

    async def _begin(self) -> None:
        self._inputs = asyncio.Queue()
        self._runner = asyncio.create_task(self._run_turns())
        warm_up = getattr(self.backend, "warm_up", None)
        if warm_up is not None:  # load the model now, so the first reply is as fast as the tenth
            self._warm_up = asyncio.create_task(self._warm(warm_up))
        else:
            self.warmed.set()

    async def _warm(self, warm_up: Callable[[str], Awaitable[None]]) -> None:
        try:
            await warm_up(self.system_prompt)  # the prompt every reply starts with
        except Exception as error:  # reported again, clearly, by the first real turn
            log.debug("LLM warm-up failed: %s", error)
        finally:
            self.warmed.set()

    def close(self, timeout: float = 2.0) -> None:
        """Cancel what is running, stop the loop thread, close the backend."""
        self.interrupt()
        if self.core.running:
            try:
                self.core.run(self._shutdown(), timeout)
            except Exception:
                log.exception("conversation shutdown")
        if self._owns_core:
            self.core.stop(timeout)
        try:
            self.history.save()  # a last try for what a full disk kept in memory
        except HistoryNotSaved as error:
            log.error("%s; they are lost as the agent exits", error)

    async def _shutdown(self) -> None:
        tasks = [t for t in (self._reply_task, self._runner, self._warm_up, *self._closing)
                 if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.backend.aclose()

    def __enter__(self) -> Conversation:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- what callers use (any thread) -------------------------------------------------------

    def submit(self, text: str, attachment: Attachment | None = None) -> None:
        """Queue the user's words; they wait for the current turn (or barge in).
        `attachment`: a text the question is about (the selection)."""
        text = text.strip()
        if not text:
            return
        with self._done:
            self._submitted += 1
        if self.settings.barge_in and self.state in (AgentState.THINKING, AgentState.SPEAKING):
            self.interrupt()
        self.core.call(self._put_input, text, attachment)

    def _put_input(self, text: str, attachment: Attachment | None) -> None:
        assert self._inputs is not None
        self._inputs.put_nowait((text, attachment))

    def interrupt(self) -> None:
        """Stop the reply now: cut the audio (a fade within one block), cancel the LLM
        request; the history keeps what was heard. Safe to call at any time."""
        if self.speech is not None:
            self.speech.interrupt()
        self.core.call(self._cancel_reply)

    def _cancel_reply(self) -> None:
        if self._reply_task is not None and not self._reply_task.done():
            self._reply_task.cancel()
        else:
            self.status.saying_interrupted()  # `say` text, outside a turn

    def set_backend(self, backend: ChatBackend) -> None:
        """Talk to `backend` from the next reply on; the old one closes once its reply (if
        any) is over."""
        self.core.call(self._swap_backend, backend)

    def _swap_backend(self, backend: ChatBackend) -> None:
        old, self.backend = self.backend, backend
        running = self._reply_task

        async def close_old() -> None:
            if running is not None:
                await asyncio.wait({running})
            await old.aclose()

        closing = self._loop.create_task(close_old())
        self._closing.add(closing)  # the loop keeps only weak references to tasks
        closing.add_done_callback(self._closing.discard)
        warm_up = getattr(backend, "warm_up", None)
        if warm_up is not None:
            self._warm_up = self._loop.create_task(self._warm(warm_up))

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every submitted input has had its turn."""
        with self._done:
            return self._done.wait_for(lambda: self._finished >= self._submitted, timeout)

    # -- the turn loop (on the loop thread) ----------------------------------------------------

    def _set_state(self, state: AgentState, turn: int, message: str = "") -> None:
        self.status.set_phase(state, turn, message)

    async def _run_turns(self) -> None:
        assert self._inputs is not None
        while True:
            text, attachment = await self._inputs.get()
            try:
                await self._take_turn(text, attachment)
            except Exception as error:  # a bug must not end the conversation
                log.exception("turn failed")
                self._set_state(AgentState.ERROR, self._turn, f"internal error: {error}")
            finally:
                with self._done:
                    self._finished += 1
                    self._done.notify_all()

    async def _take_turn(self, text: str, attachment: Attachment | None = None) -> None:
        speech = self.speech
        if speech is not None and speech.busy:
            # The original design's wait_for_speaking_complete: an interrupt ends it early.
            await asyncio.to_thread(speech.wait_until_done)
        self._turn += 1
        turn = self._turn
        self.bus.publish(UserSaid(text if attachment is None
                                  else f"{text} [{attachment.summary()}]", turn))
        self._record(HistoryEntry("user", text if attachment is None
                                  else f"{text} [{attachment.summary()}]"), turn)
        messages = [Message("system", self.system_prompt), *self.history.context(
            self.settings.history_turns, self.settings.history_chars)]
        if attachment is not None:  # the text itself goes to the LLM, not to the history
            asked = await self._with_attachment(text, attachment, messages, turn)
            if messages[-1].role == "user":
                messages[-1] = asked
            else:
                messages.append(asked)
        reply = _Reply(turn, speech.turn if speech is not None else 0,
                       spoken=speech is not None and not self.mute)
        self._reply = reply
        self._set_state(AgentState.THINKING, turn)
        self._reply_task = asyncio.create_task(self._stream_reply(reply, messages))
        await asyncio.wait({self._reply_task})
        interrupted = self._reply_task.cancelled()
        self._reply_task = None
        if interrupted and speech is not None and reply.spoken:
            # The CUT event with the samples really played comes up to an audio block after
            # the cancel: the history waits for it, so it keeps the played share of the clause.
            await asyncio.to_thread(speech.wait_turn_done, reply.speech_turn,
                                    CUT_REPORT_TIMEOUT_S)
        self._finish(reply, interrupted)

    async def _stream_reply(self, reply: _Reply, messages: list[Message]) -> None:
        chunker = ClauseChunker(**REPLY_CHUNKING)
        backend = self.backend  # a backend chosen meanwhile takes the next reply
        speech = self.speech if reply.spoken else None
        try:
            async for delta in backend.stream(messages):
                if delta.notice:
                    self.bus.publish(Notice(delta.notice, reply.turn))
                if delta.text or delta.reasoning:
                    self.bus.publish(ReplyDelta(reply.turn, delta.text, delta.reasoning))
                if not delta.text:
                    continue
                reply.text += delta.text
                if speech is None:
                    if self.state is AgentState.THINKING:
                        self._set_state(AgentState.SPEAKING, reply.turn)
                    continue
                for clause in chunker.feed(delta.text):
                    reply.clauses[speech.say_clause(clause, turn=reply.speech_turn)] = clause
            if speech is not None:
                for clause in chunker.flush():
                    reply.clauses[speech.say_clause(clause, turn=reply.speech_turn)] = clause
                await asyncio.to_thread(speech.wait_until_done)
        except LLMError as error:
            reply.error = str(error)

    def _finish(self, reply: _Reply, interrupted: bool) -> None:
        heard = reply.heard_text() if reply.spoken else reply.text
        if interrupted or reply.error:
            if reply.text:
                self._record(HistoryEntry("assistant", heard, interrupted=True,
                                          full=reply.text), reply.turn)
            self.bus.publish(ReplyDone(reply.turn, reply.text, heard, interrupted=True))
            if reply.error:
                self._set_state(AgentState.ERROR, reply.turn, reply.error)
            else:
                self._set_state(AgentState.INTERRUPTED, reply.turn)
                self._end_turn(reply.turn)
        else:
            self._record(HistoryEntry("assistant", reply.text), reply.turn)
            self.bus.publish(ReplyDone(reply.turn, reply.text, reply.text, interrupted=False))
            self._end_turn(reply.turn)
        self._reply = None

    def _end_turn(self, turn: int) -> None:
        """Idle, unless the history could not be saved: that stays in sight until it can."""
        if self._history_problem:
            self._set_state(AgentState.ERROR, turn, self._history_problem)
        else:
            self._set_state(AgentState.IDLE, turn)

    async def _with_attachment(self, question: str, attachment: Attachment,
                               messages: list[Message], turn: int) -> Message:
        """The question with as much of the attached text as the model's context holds."""
        budget = await attachment_budget(self.backend, messages, attachment.text)
        sent = clip_to_budget(attachment.text, budget.chars)
        log.info("asking about %s: %s", attachment.origin, budget.describe())
        if len(sent) < len(attachment.text):
            self.bus.publish(Notice(
                f"Only the first {len(sent.split())} of {attachment.words} words of "
                f"{attachment.origin} fit the model's context ({budget.window} tokens); the "
                "question is about those.", turn))
        return Message("user", f"{question}\n\nThe text ({attachment.origin}):\n"
                               f"\"\"\"\n{sent}\n\"\"\"")

    def _record(self, entry: HistoryEntry, turn: int) -> None:
        """Add to the history; a failed write (a full disk) is shown, and the turn goes on:
        the history keeps the entry in memory and writes it when it can."""
        try:
            self.history.append(entry)
        except HistoryNotSaved as error:
            if not self._history_problem:
                self.bus.publish(Notice(str(error), turn))
            self._history_problem = str(error)
            log.warning("%s", error)
        else:
            if self._history_problem:
                log.info("the chat history is saved again")
            self._history_problem = ""

    # -- audio events: from the audio events thread, handled on the loop thread ----------------

    def _on_playback(self, event: PlaybackEvent) -> None:
        self.core.call(self._on_playback_in_loop, event)

    def _on_playback_in_loop(self, event: PlaybackEvent) -> None:
        reply = self._reply
        if reply is None or event.turn != reply.speech_turn:
            # `say` text outside a turn (seq -1 is the interrupt blip, not speech).
            if event.kind is PlaybackKind.STARTED and event.seq >= 0 and reply is None:
                self.status.set_saying(True)
            elif event.kind is PlaybackKind.DRAINED:
                self.status.set_saying(False)
            return
        if event.kind is PlaybackKind.STARTED and self.state is AgentState.THINKING:
            self._set_state(AgentState.SPEAKING, reply.turn)
        elif event.kind in (PlaybackKind.FINISHED, PlaybackKind.CUT):
            reply.heard[event.seq] = min(1.0, event.played / max(event.total, 1))
        elif event.kind is PlaybackKind.ERROR and event.message:
            self.bus.publish(Notice(event.message, reply.turn))
