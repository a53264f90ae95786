"""Kokoro-82M engines: the packaged int8 ONNX model on onnxruntime, and hexgrad's KModel on
torch for the official weights. They share everything but the model call."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np

from agent.tts import g2p, kokoro_graph, voices
from agent.tts.base import (
    SAMPLE_RATE,
    CancelToken,
    Samples,
    SynthesisCancelled,
    SynthesisError,
    VoiceInfo,
    trim_silence,
)
from agent.tts.models import OFFICIAL_REPO, ModelFiles, packaged_vocab, voice_origin

log = logging.getLogger(__name__)

GraphOrigin = Literal["cached", "patched", "plain"]

_notices_shown: set[str] = set()


def notice_once(message: str) -> None:
    """Say a thing once per process, however often a voice falls back."""
    if message not in _notices_shown:
        _notices_shown.add(message)
        log.warning("%s", message)


class KokoroEngine:
    """Phonemes, style vector, model, trim: the steps every Kokoro engine shares."""

    sample_rate = SAMPLE_RATE

    def __init__(self, files: ModelFiles, language: str = "auto") -> None:
        self.files = files
        self.source = files.source
        self.language = language
        self.library = voices.VoiceLibrary(files.voices, voice_origin)
        self._blends: dict[str, voices.VoicePack] = {}
        self._lock = threading.Lock()  # one model call at a time per engine

    def _run(self, phonemes: str, style: np.ndarray, speed: float,
             cancel: CancelToken | None) -> Samples:
        raise NotImplementedError

    def phonemes(self, text: str, voice: str) -> str:
        return g2p.phonemizer(g2p.language_for(voice, self.language, text))(text)

    def pack(self, voice: str) -> voices.VoicePack:
        if voice not in self._blends:
            self._blends[voice] = voices.blend(voice, self.library.load)
        return self._blends[voice]

    def synthesize(self, text: str, voice: str, speed: float = 1.0,
                   cancel: CancelToken | None = None) -> Samples:
        pack = self.pack(voice)
        pieces = []
        for phonemes in g2p.split_phonemes(self.phonemes(text, voice)):
            with self._lock:
                if cancel is not None and cancel.cancelled:
                    raise SynthesisCancelled(text)
                audio = self._run(phonemes, voices.style_for(pack, len(phonemes)), speed,
                                  cancel)
            pieces.append(trim_silence(audio))
        if not pieces:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(pieces).astype(np.float32, copy=False)

    def voices(self) -> list[VoiceInfo]:
        names = sorted(set(voices.OFFICIAL_VOICES) | set(self.library.names()))
        return [VoiceInfo(n, voices.language_of(n), voices.gender_of(n), n in self.library,
                          self.library.origin(n) or "") for n in names]

    def default_voice(self, wanted: str) -> str:
        try:
            missing = [p.voice for p in voices.parse_blend(wanted) if p.voice not in self.library]
        except SynthesisError:
            missing = [wanted]
        if not missing:
            return wanted
        fallback = (voices.PACKAGED_ENGLISH_VOICE
                    if voices.PACKAGED_ENGLISH_VOICE in self.library else self.library.names()[0])
        from agent.tts.npm_voices import HOW_TO_GET_THEM_SENTENCE

        notice_once(f"Voice {', '.join(missing)} is not on this machine; speaking with "
                    f"{fallback} instead. {HOW_TO_GET_THEM_SENTENCE}.")
        return fallback

    def warm_up(self, voice: str) -> None:
        """One short synthesis, so the first real chunk is as fast as the tenth."""
        self.synthesize("Hello.", voice)


def _vocab(files: ModelFiles) -> dict[str, int]:
    source = files.config if files.config and files.config.exists() else packaged_vocab()
    vocab: dict[str, int] = json.loads(source.read_text(encoding="utf-8"))["vocab"]
    return vocab


class OnnxKokoro(KokoroEngine):
    def __init__(self, files: ModelFiles, language: str = "auto", threads: int = 0,
                 slice_silence: bool = True, cache_graph: bool = True) -> None:
        super().__init__(files, language)
        import onnxruntime as ort

        self._ort = ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or (os.cpu_count() or 1)
        options.log_severity_level = 3  # its warnings are about graph internals, not ours
        self._options = options
        self._cache_graph = cache_graph
        self._cache_entry: Path | None = None
        # Where the session's graph came from: "cached" (the patched graph kept on disk),
        # "patched" (patched at this start) or "plain" (the model as it is).
        self.graph: GraphOrigin = "plain"
        self.session, self.sliced = self._session(files, options, slice_silence)
        self.vocab = _vocab(files)

    def _new_session(self, model: str | bytes, options: Any) -> Any:
        return self._ort.InferenceSession(model, sess_options=options,
                                          providers=["CPUExecutionProvider"])

    def _session(self, files: ModelFiles, options: Any,
                 slice_silence: bool) -> tuple[Any, bool]:
        """The model with its generator cut to the frames that can sound (kokoro_graph), or
        as it is when that is turned off or the graph is not the one the patch knows."""
        if slice_silence:
            try:
                session, self.graph = self._patched_session(files.model, options)
                return session, True
            except kokoro_graph.UnknownGraph as error:
                log.info("%s: rendering every frame (%s)", files.model, error)
            except Exception as error:  # the patched graph failed to load: the plain one may
                log.warning("%s: the silence-slicing patch did not load (%s); rendering every "
                            "frame", files.model, error)
        self.graph = "plain"
        return self._new_session(str(files.model), options), False

    def _patched_session(self, model: Path, options: Any) -> tuple[Any, GraphOrigin]:
        """The patched model's session: from the cache when it holds this model's graph, else
        patched now and cached for the next start. Loading from a file is also what makes a
        cold start quicker than patching in memory was (onnxruntime takes 0.2 s longer over a
        92 MB bytes object than over the same file)."""
        if not self._cache_graph:
            return self._new_session(kokoro_graph.generator_slice_patch(model.read_bytes()),
                                     options), "patched"
        entry = self._cache_entry = kokoro_graph.cache_entry(model)
        if entry.is_file():
            try:
                session = self._new_session(str(entry), options)
                if kokoro_graph.CAP_INPUT not in {i.name for i in session.get_inputs()}:
                    raise kokoro_graph.UnknownGraph("not a patched graph")
                kokoro_graph.mark_used(entry)
                log.debug("%s: the patched graph from %s", model, entry)
                return session, "cached"
            except Exception as error:  # damaged: patch again, and replace it
                log.debug("%s: the cached patched graph did not load (%s); patching %s again",
                          entry, error, model)
        patched = kokoro_graph.generator_slice_patch(model.read_bytes())
        if not kokoro_graph.store(entry, patched):
            return self._new_session(patched, options), "patched"
        del patched  # 92 MB or more, not needed while onnxruntime reads the file
        try:
            session = self._new_session(str(entry), options)
        except Exception:
            kokoro_graph.discard(entry)  # a graph that does not load is not kept
            raise
        log.debug("%s: patched, and kept in %s", model, entry)
        return session, "patched"

    def feed(self, phonemes: str, style: np.ndarray, speed: float) -> dict[str, np.ndarray]:
        """The model's inputs for one piece of phonemes: [pad, tokens, pad], and the frame
        caps when the model is sliced."""
        tokens = [self.vocab[p] for p in phonemes if p in self.vocab]
        feed = {"tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
                "style": style, "speed": np.array([speed], dtype=np.float32)}
        if self.sliced:
            feed[kokoro_graph.CAP_INPUT] = kokoro_graph.frame_caps(phonemes, self.vocab)
        return feed

    def _run(self, phonemes: str, style: np.ndarray, speed: float,
             cancel: CancelToken | None) -> Samples:
        # onnxruntime checks this flag between graph nodes: an interrupted turn's synthesis
        # stops within milliseconds instead of holding the worker for seconds.
        options = self._ort.RunOptions()
        if cancel is not None:
            cancel.on_cancel(lambda: setattr(options, "terminate", True))
        try:
            audio: Any = self.session.run(None, self.feed(phonemes, style, speed), options)[0]
        except Exception as error:
            if cancel is not None and cancel.cancelled:
                raise SynthesisCancelled(phonemes) from error
            if not self.sliced:
                raise
            # The patched graph loaded but does not run: speak with the model as it is.
            log.warning("%s: the silence-slicing patch failed to run (%s); rendering every "
                        "frame from now on", self.files.model, error)
            if self._cache_entry is not None:  # not kept: the next start patches it again
                kokoro_graph.discard(self._cache_entry)
            self.session, self.sliced = self._session(self.files, self._options, False)
            audio = self.session.run(None, self.feed(phonemes, style, speed), options)[0]
        return np.asarray(audio, dtype=np.float32).reshape(-1)


class TorchKokoro(KokoroEngine):
    """hexgrad's own model code, used for the official .pth weights."""

    def __init__(self, files: ModelFiles, language: str = "auto") -> None:
        super().__init__(files, language)
        if files.config is None:
            raise SynthesisError(
                f"{files.model} needs hexgrad's config.json beside it (or in the Hugging Face "
                "cache); download it with `voice-agent models download`")
        import torch
        from kokoro import KModel

        self._torch = torch
        self.model = KModel(repo_id=OFFICIAL_REPO, config=str(files.config),
                            model=str(files.model)).eval()

    def _run(self, phonemes: str, style: np.ndarray, speed: float,
             cancel: CancelToken | None) -> Samples:
        # KModel has no way to stop part way: a cancel takes effect between pieces.
        torch = self._torch
        with torch.inference_mode():
            audio = self.model(phonemes, torch.from_numpy(style), speed)
        return np.asarray(audio.numpy(), dtype=np.float32).reshape(-1)


def load_engine(files: ModelFiles, language: str = "auto") -> KokoroEngine:
    if files.engine == "onnx":
        return OnnxKokoro(files, language)
    return TorchKokoro(files, language)


