"""Push-to-talk speech to text: key release -> transcript for a ~3 s utterance, the
microphone's open -> first sample, and memory, beside baselines measured in the same run.

Each utterance (Kokoro reading a sentence, and a person: the clone-test clip that ships in
moonshine-voice) is played into a virtual microphone (a PulseAudio null sink's monitor) while
`Recorder` records it, starting at the moment the "key" goes down. The clock for release ->
transcript starts when the key goes up, so it covers `Recorder.stop()` and the transcription.
Every configuration transcribes the same recordings. Baselines: faster-whisper's usual call
(the 30 s window, beam 5) and loading the model for each request.

    python -m bench.listen [--rounds 4]
"""

from __future__ import annotations

import argparse
import atexit
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.harness import start_audio, summary
from harness.microphone import MIC_RATE, VirtualMicrophone, clip_offset
from harness.services import Processes

KOKORO_TEXT = "The weather today is sunny with a light breeze from the west."
HUMAN_TEXT = "I do. I think that America do it very well."  # moonshine's clone-test.wav

SYNTHESISE = """
import sys, numpy as np
from agent.tts import kokoro, models
from agent.listen.whisper import resample
engine = kokoro.load_engine(models.resolve("packaged"))
speech = engine.synthesize(sys.argv[2], "jm_kumo")
np.save(sys.argv[1], resample(speech, engine.sample_rate, 16000))
"""


@dataclass
class Recording:
    text: str
    samples: np.ndarray
    sample_rate: int
    stop_s: float  # Recorder.stop() after the key release
    open_s: float
    first_block_s: float
    lost_s: float  # of the utterance, at its start (0: all of it was recorded)
    wall_s: float
    recorded_s: float


def rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM := VmRSS


def words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]", " ", text.lower()).split())


def record(mic: VirtualMicrophone, text: str, speech: np.ndarray) -> Recording:
    from agent.listen.microphone import Recorder

    recorder = Recorder(device=mic.device)
    pressed = time.monotonic()
    recorder.start()  # the key goes down and the speaker starts at once
    mic.say(speech)
    mic.wait_until_said()
    time.sleep(0.25)  # the last word reaches the source; the speaker lets go of the key
    released = time.monotonic()
    samples = recorder.stop()
    stop_s = time.monotonic() - released
    offset = clip_offset(samples, speech)
    return Recording(text, samples, recorder.sample_rate, stop_s, recorder.open_s,
                     recorder.first_block_s or float("nan"), max(0, -offset) / MIC_RATE,
                     released - pressed, samples.size / recorder.sample_rate)


def synthesise(text: str) -> np.ndarray:
    """Kokoro's reading, made in a child process so its memory is not counted here."""
    out = Path(tempfile.mkdtemp(prefix="bench-listen-")) / "speech.npy"
    subprocess.run([sys.executable, "-c", SYNTHESISE, str(out), text], check=True)
    return np.load(out)


def human_clip() -> np.ndarray:
    import importlib.util

    from faster_whisper import decode_audio

    spec = importlib.util.find_spec("moonshine_voice")
    assert spec and spec.submodule_search_locations, "pip install --no-deps moonshine-voice"
    folder = Path(next(iter(spec.submodule_search_locations)))
    return np.asarray(decode_audio(str(folder / "assets" / "clone-test.wav"),
                                   sampling_rate=MIC_RATE))


def measure(label: str, recordings: list[Recording], model: str, beam_size: int, window: str,
            load_per_request: bool = False) -> None:
    import jiwer

    from agent.listen.whisper import Transcriber

    transcriber = Transcriber(model, beam_size=beam_size, window=window)
    started = time.monotonic()
    transcriber.load()
    load_s = time.monotonic() - started
    latencies, heard = [], []
    for recording in recordings:
        if load_per_request:
            transcriber.unload()
        started = time.monotonic()
        heard.append(transcriber.transcribe(recording.samples, recording.sample_rate))
        latencies.append(recording.stop_s + time.monotonic() - started)
    error = jiwer.wer([words(r.text) for r in recordings], [words(h) for h in heard])
    refits = f"  refits {transcriber.refits}" if window == "fit" else ""
    print(f"{label:36} {summary(latencies)}   WER {100 * error:4.1f}%  load {load_s:.2f} s"
          + refits)
    transcriber.unload()


def memory(model: str, recording: Path, device: str) -> None:
    """In a fresh process: RSS with the model loaded and idle, the peak while the microphone
    records 2 s, and the peak while transcribing."""
    from agent.listen.microphone import Recorder
    from agent.listen.whisper import Transcriber

    bare = rss_mb()
    transcriber = Transcriber(model)
    transcriber.load()
    transcriber.transcribe(np.zeros(MIC_RATE, np.float32), MIC_RATE)  # loads the VAD too
    idle = rss_mb()
    reset_peak_rss()
    recorder = Recorder(device=device)
    recorder.start()
    time.sleep(2.0)
    recorder.stop()
    listening = rss_mb("VmHWM")
    samples = np.load(recording)
    reset_peak_rss()
    transcriber.transcribe(samples, MIC_RATE)
    print(f"{model:8} RSS: before loading {bare:.0f} MB, idle with the model {idle:.0f} MB, "
          f"peak while listening {listening:.0f} MB, peak while transcribing "
          f"{rss_mb('VmHWM'):.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=4, help="recordings per utterance")
    parser.add_argument("--memory", nargs=3, metavar=("MODEL", "RECORDING", "DEVICE"),
                        help=argparse.SUPPRESS)  # the child process of the memory figures
    args = parser.parse_args()
    if args.memory:
        memory(args.memory[0], Path(args.memory[1]), args.memory[2])
        return
    start_audio()
    procs = Processes(Path(tempfile.mkdtemp(prefix="bench-listen-mic-")))
    atexit.register(procs.stop)
    mic = VirtualMicrophone(procs)
    atexit.register(mic.close)
    from harness.services import reinitialise_portaudio

    reinitialise_portaudio()
    utterances = [(KOKORO_TEXT, synthesise(KOKORO_TEXT)), (HUMAN_TEXT, human_clip())]
    recordings = [record(mic, text, speech) for _ in range(args.rounds)
                  for text, speech in utterances]
    durations = ", ".join(f"{s.size / MIC_RATE:.1f} s" for _, s in utterances)
    print(f"utterances: Kokoro and a person ({durations}), {args.rounds} recordings each")
    print(f"microphone open (start() returns)  {summary([r.open_s for r in recordings])}")
    print(f"start() -> first block (32 ms)     {summary([r.first_block_s for r in recordings])}")
    print(f"Recorder.stop() after release      {summary([r.stop_s for r in recordings])}")
    print("speech lost at its start           "
          f"{summary([r.lost_s for r in recordings])}  (speech starts with start())")
    print("wall - recorded (key down..up)     "
          f"{summary([r.wall_s - r.recorded_s for r in recordings])}")
    print("\nkey release -> transcript (Recorder.stop() + transcription), same recordings:")
    measure("base, fitted window, greedy", recordings, "base", 1, "fit")
    measure("baseline: base, 30 s window, beam 5", recordings, "base", 5, "full")
    measure("base, 30 s window, greedy", recordings, "base", 1, "full")
    measure("tiny.en, fitted window, greedy", recordings, "tiny.en", 1, "fit")
    measure("baseline: tiny.en, 30 s, beam 5", recordings, "tiny.en", 5, "full")
    measure("baseline: base, load per request", recordings[:2], "base", 1, "fit",
            load_per_request=True)
    saved = Path(tempfile.mkdtemp(prefix="bench-listen-")) / "recording.npy"
    np.save(saved, recordings[0].samples)
    print()
    for model in ("base", "tiny.en"):
        subprocess.run([sys.executable, "-m", "bench.listen", "--memory", model, str(saved),
                        mic.device], check=True)
    print(f"\nmedian utterance {statistics.median(r.recorded_s for r in recordings):.1f} s "
          "as recorded (with the speaker's 0.25 s after the last word)")


if __name__ == "__main__":
    main()
