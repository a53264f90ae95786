"""The agent's state has one writer: the core's loop thread.

Whatever changes the state (a reply's progress, a playback event, the microphone opening or
closing, `say` text starting or being cut) is a message to that thread; only there is the
state worked out and published. Every change carries a sequence number, so a listener that
receives changes from elsewhere (the tray, through its own queue) never applies an older one
after a newer one.

    any thread --post()--> core loop thread --> AgentStatus --> StateChanged(seq) --> bus
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from agent.events import AgentState, EventBus, StateChanged

log = logging.getLogger(__name__)

T = TypeVar("T")

WAITER_THREADS = 4
WAITER_THREAD_NAME = "conversation-wait"
LOOP_THREAD_NAME = "core-loop"


class DaemonThreadPool(ThreadPoolExecutor):
    """A pool of `size` named daemon threads for the loop's blocking waits and loads.

    The standard ThreadPoolExecutor's threads are joined when the interpreter exits, so a
    model still loading there (the embedded LLM's warm-up: seconds) held up every quit by
    that long; these threads are abandoned at exit, like the other daemon threads. It is a
    ThreadPoolExecutor only because asyncio's default executor must be one: none of the
    base class's machinery runs."""

    def __init__(self, size: int, name: str) -> None:
        self._size, self._name = size, name
        self._work: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...],
                                            dict[str, Any]] | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._idle_workers = 0
        self._lock = threading.Lock()
        self._shut = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._shut:
                raise RuntimeError("cannot schedule new work after shutdown")
            self._work.put((future, fn, args, kwargs))
            if self._idle_workers > 0:
                self._idle_workers -= 1  # a waiting thread takes it
            elif len(self._workers) < self._size:
                thread = threading.Thread(target=self._serve, daemon=True,
                                          name=f"{self._name}_{len(self._workers)}")
                self._workers.append(thread)
                thread.start()
        return future

    def _serve(self) -> None:
        while (item := self._work.get()) is not None:
            future, fn, args, kwargs = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as error:
                    future.set_exception(error)
            with self._lock:
                self._idle_workers += 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shut = True
            threads = list(self._workers)
        if cancel_futures:
            while True:
                try:
                    item = self._work.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        for _ in threads:
            self._work.put(None)
        if wait:
            for thread in threads:
                thread.join()


class CoreLoop:
    """One asyncio loop on a thread of its own: the core's single writer. Blocking waits
    (`asyncio.to_thread`) run on a named pool of a known size, shut down with the loop."""

    def __init__(self, name: str = LOOP_THREAD_NAME) -> None:
        self.loop = asyncio.new_event_loop()
        self._waiters = DaemonThreadPool(WAITER_THREADS, WAITER_THREAD_NAME)
        self.loop.set_default_executor(self._waiters)
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._stopped = False

    def start(self) -> CoreLoop:
        if not self._thread.is_alive() and not self._stopped:
            self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def call(self, callback: Callable[..., object], *args: object) -> None:
        """Run `callback(*args)` on the loop thread, soon (from any thread). Calls made before
        `start` run once it starts; after `stop`, they are dropped."""
        if self._stopped:
            return
        with contextlib.suppress(RuntimeError):  # closed meanwhile: we are quitting
            self.loop.call_soon_threadsafe(callback, *args)

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run `coroutine` on the loop and wait for its result (from another thread)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self, timeout: float = 1.0) -> None:
        """Cancel every task still on the loop, let them finish (their `finally` blocks run),
        stop the thread and close the loop: nothing is left pending at exit."""
        if self._stopped:
            return
        self._stopped = True
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(_cancel_all_tasks(), self.loop).result(timeout)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
        self._waiters.shutdown(wait=False, cancel_futures=True)
        if not self._thread.is_alive():
            self.loop.close()


async def _cancel_all_tasks() -> None:
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class _Facts:
    """What the state is worked out from (owned by the loop thread)."""

    phase: AgentState = AgentState.IDLE  # the conversation turn's own state
    turn: int = 0
    message: str = ""
    listening: bool = False  # the microphone is open
    transcribing: bool = False  # the microphone closed; its words are not in a turn yet
    saying: bool = False  # `say` text (outside a turn) is at the device


class AgentStatus:
    """The state the agent shows. `set_*` run on the core loop's thread only (the owner);
    `post` hands a change to it from any other thread; `shown` may be read anywhere."""

    def __init__(self, bus: EventBus, core: CoreLoop) -> None:
        self.bus = bus
        self.core = core
        self._facts = _Facts()
        self._seq = 0
        self._published: tuple[AgentState, int, str] = (AgentState.IDLE, 0, "")

    def post(self, change: Callable[..., object], *args: object) -> None:
        """Apply `change(*args)` on the owner thread (any thread may call this)."""
        if self.core.in_loop_thread():
            change(*args)
        else:
            self.core.call(change, *args)

    @property
    def shown(self) -> AgentState:
        """The state last published (one reference read: safe from any thread)."""
        return self._published[0]

    @property
    def phase(self) -> AgentState:
        return self._facts.phase

    # -- changes (loop thread only) ------------------------------------------------------------

    def set_phase(self, state: AgentState, turn: int, message: str = "") -> None:
        """The conversation turn's state; a turn starting means a transcript went in."""
        self._check_owner()
        facts = self._facts
        facts.phase, facts.turn, facts.message = state, turn, message
        if state is AgentState.THINKING:
            facts.transcribing = False
        # A reply's own states are each published, even a repeat (INTERRUPTED, then IDLE).
        self._publish(force=True)

    def set_listening(self, listening: bool, transcribing: bool = False) -> None:
        self._check_owner()
        self._facts.listening, self._facts.transcribing = listening, transcribing
        self._publish()

    def end_transcribing(self, error: str = "") -> None:
        """The microphone's words will not start a turn (nothing heard, or an error)."""
        self._check_owner()
        self._facts.transcribing = False
        if error:
            self.set_phase(AgentState.ERROR, 0, error)
        else:
            self._publish()

    def set_saying(self, saying: bool) -> None:
        self._check_owner()
        if self._facts.saying != saying:
            self._facts.saying = saying
            self._publish()

    def saying_interrupted(self) -> None:
        """`say` text was cut: shown as interrupted (the tray keeps it a moment), then idle."""
        self._check_owner()
        if not self._facts.saying or self._facts.phase is not AgentState.IDLE:
            return
        self._facts.saying = False
        turn = self._facts.turn
        self.set_phase(AgentState.INTERRUPTED, turn)
        self.set_phase(AgentState.IDLE, turn)

    # -- internals -------------------------------------------------------------------------------

    def _shown(self) -> tuple[AgentState, int, str]:
        facts = self._facts
        if facts.listening:
            return AgentState.LISTENING, facts.turn, ""
        if facts.transcribing:
            return AgentState.THINKING, facts.turn, ""
        if facts.phase is not AgentState.IDLE:
            return facts.phase, facts.turn, facts.message
        if facts.saying:
            return AgentState.SPEAKING, facts.turn, ""
        return AgentState.IDLE, facts.turn, ""

    def _publish(self, force: bool = False) -> None:
        shown = self._shown()
        if shown == self._published and not force:
            return
        self._published = shown
        self._seq += 1
        state, turn, message = shown
        self.bus.publish(StateChanged(state, turn, message, seq=self._seq))

    def _check_owner(self) -> None:
        # Only the owner writes; a call from elsewhere is a bug that would reorder states.
        if self.core.running and not self.core.in_loop_thread():
            raise RuntimeError("AgentStatus changed off the core loop thread; use post()")
