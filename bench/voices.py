"""The English default voice against the old one, and what fetching the voices costs.

1. Speed: af_bella (from npm) beside jm_kumo (the packaged pack) in the same process,
   alternating: say -> first audio for a 40-word paragraph through the real PortAudio stream
   (bench.first_audio's pipeline), and seconds per sentence of bare synthesis. The voice is
   only a style vector, so they should be equal.
2. Memory: peak RSS of a process that loads the model and speaks with one voice, with only
   the packaged pack indexed and with all 54 npm voices indexed (packs load lazily).
3. Setup: `voice-agent voices fetch` into an empty cache dir, with npm's own cache warm (a
   user who has npm packages cached, and every later machine setup) and cold (a first fetch
   from the registry).

    python -m bench.voices [--rounds 3] [--skip-fetch]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.speech_samples import SENTENCES

VOICES = ("af_bella", "jm_kumo")


def speed(rounds: int) -> None:
    from agent.tts import kokoro, models, npm_voices
    from bench.first_audio import first_audio_pipeline
    from bench.harness import start_audio

    npm_voices.fetch()
    start_audio()
    engine = kokoro.load_engine(models.resolve("packaged"))
    first: dict[str, list[float]] = {v: [] for v in VOICES}
    per_sentence: dict[str, list[float]] = {v: [] for v in VOICES}
    for voice in VOICES:
        engine.warm_up(voice)
    for round_ in range(rounds):  # alternate, so drifting machine load hits both alike
        for voice in VOICES if round_ % 2 == 0 else VOICES[::-1]:
            first[voice].append(first_audio_pipeline(engine, voice)[0])
            started = time.perf_counter()
            for sentence in SENTENCES:
                engine.synthesize(sentence, voice)
            per_sentence[voice].append((time.perf_counter() - started) / len(SENTENCES))
    print(f"Speed, {rounds} rounds, median (min-max) seconds")
    print(f"{'':28}" + "".join(f"{v:>22}" for v in VOICES))
    for label, values in (("say -> first audio", first), ("synthesis per sentence",
                                                          per_sentence)):
        cells = "".join(f"{statistics.median(values[v]):8.3f} ({min(values[v]):.2f}-"
                        f"{max(values[v]):.2f})" for v in VOICES)
        print(f"{label:28}{cells}")
    ratio = statistics.median(first["af_bella"]) / statistics.median(first["jm_kumo"])
    print(f"first audio af_bella / jm_kumo: {ratio:.2f}")


def memory_child(with_npm: bool) -> None:
    from agent.tts import kokoro, models
    from agent.tts.voices import VoiceLibrary

    files = models.resolve("packaged")
    if not with_npm:
        files = models.ModelFiles("packaged", files.model, (models.packaged_voices(),))
    engine = kokoro.load_engine(files)
    voice = "af_bella" if with_npm else "jm_kumo"
    for sentence in SENTENCES[:3]:
        engine.synthesize(sentence, voice)
    print(json.dumps({"indexed": len(VoiceLibrary(files.voices).names()),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def memory() -> None:
    print("Memory: load the model, speak 3 sentences with one voice")
    for with_npm in (False, True):
        out = subprocess.run([sys.executable, "-m", "bench.voices", "--memory-child",
                              "npm" if with_npm else "packaged"],
                             capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  {result['indexed']:2d} voices indexed: peak RSS {result['peak_rss_mb']:.0f} MB")


def fetch_time(cold: bool) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-voices-") as scratch:
        env = dict(os.environ, VOICE_AGENT_CACHE_DIR=str(Path(scratch) / "cache"))
        if cold:
            env["npm_config_cache"] = str(Path(scratch) / "npm-cache")
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "agent", "voices", "fetch"], env=env, check=True,
                       capture_output=True, stdin=subprocess.DEVNULL)
        return time.monotonic() - started


def setup_time(rounds: int) -> None:
    if shutil.which("npm") is None:
        print("Setup: npm is not installed; nothing to measure")
        return
    warm = [fetch_time(cold=False) for _ in range(rounds)]
    cold = [fetch_time(cold=True) for _ in range(rounds)]
    print("Setup: `voice-agent voices fetch` into an empty cache, median (min-max) seconds")
    for label, values in (("npm cache warm", warm), ("npm cache cold (download)", cold)):
        print(f"  {label:28}{statistics.median(values):6.2f} ({min(values):.2f}-"
              f"{max(values):.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-fetch", action="store_true")
    parser.add_argument("--memory-child", choices=["npm", "packaged"])
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child == "npm")
        return
    if not args.skip_fetch:
        setup_time(args.rounds)
    memory()
    speed(args.rounds)


if __name__ == "__main__":
    main()
