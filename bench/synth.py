"""(c) The synthesiser's real-time factor and peak memory, against the engine called directly.

Ours: OnnxKokoro.synthesize (phonemes, style, model, silence trim). Baseline: the same model
in a bare onnxruntime session fed misaki's espeak phonemes: what a minimal script does. Each
runs in its own process (peak RSS is per process), warmed up, on the same sentences.

    python -m bench.synth [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

from harness.speech_samples import SENTENCES


def run_ours(repeats: int) -> dict[str, float]:
    from agent.tts import kokoro, models

    engine = kokoro.load_engine(models.resolve("packaged"))
    engine.warm_up("jm_kumo")
    spent = audio = 0.0
    for _ in range(repeats):
        for sentence in SENTENCES:
            started = time.perf_counter()
            samples = engine.synthesize(sentence, "jm_kumo")
            spent += time.perf_counter() - started
            audio += samples.size / 24_000
    return {"seconds": spent, "audio": audio}


def run_raw(repeats: int) -> dict[str, float]:
    import json as json_module
    import os

    import numpy as np
    import onnxruntime as ort
    from misaki.espeak import EspeakG2P

    from agent.tts import models

    files = models.resolve("packaged")
    vocab = json_module.loads(models.packaged_vocab().read_text())["vocab"]
    pack = np.load(files.voices[0])["jm_kumo"]
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    session = ort.InferenceSession(str(files.model), options, providers=["CPUExecutionProvider"])
    g2p = EspeakG2P("en-us")

    def synthesize(text: str) -> np.ndarray:
        phonemes = g2p(text)[0]
        tokens = [vocab[p] for p in phonemes if p in vocab]
        return session.run(None, {"tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
                                  "style": pack[len(phonemes) - 1],
                                  "speed": np.array([1.0], dtype=np.float32)})[0]

    synthesize("Hello.")
    spent = audio = 0.0
    for _ in range(repeats):
        for sentence in SENTENCES:
            started = time.perf_counter()
            samples = synthesize(sentence)
            spent += time.perf_counter() - started
            audio += samples.size / 24_000  # untrimmed: Kokoro's own silence included
    return {"seconds": spent, "audio": audio}


def child(kind: str, repeats: int) -> None:
    result = (run_ours if kind == "ours" else run_raw)(repeats)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def measure(kind: str, repeats: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-m", "bench.synth", "--child", kind,
                          "--repeats", str(repeats)], capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each")
    parser.add_argument("--child", choices=["ours", "raw"])
    args = parser.parse_args()
    if args.child:
        child(args.child, args.repeats)
        return
    runs: dict[str, list[dict[str, float]]] = {"ours": [], "raw": []}
    for _ in range(args.rounds):  # alternate, so drifting machine load hits both alike
        for kind in ("raw", "ours"):
            runs[kind].append(measure(kind, args.repeats))
    # Time per sentence is the fair comparison: ours trims silence, so its audio is shorter.
    n = args.repeats * len(SENTENCES)
    per = {k: statistics.median(r["seconds"] for r in v) / n for k, v in runs.items()}
    rtf = {k: statistics.median(r["seconds"] / r["audio"] for r in v) for k, v in runs.items()}
    rss = {k: max(r["peak_rss_mb"] for r in v) for k, v in runs.items()}
    print(f"{'':24}{'ours':>10}{'baseline':>10}{'overhead':>10}")
    print(f"{'seconds per sentence':24}{per['ours']:10.3f}{per['raw']:10.3f}"
          f"{100 * (per['ours'] / per['raw'] - 1):9.1f}%")
    print(f"{'real-time factor':24}{rtf['ours']:10.3f}{rtf['raw']:10.3f}"
          "   (ours on trimmed audio)")
    print(f"{'peak RSS (MB)':24}{rss['ours']:10.0f}{rss['raw']:10.0f}"
          f"{100 * (rss['ours'] / rss['raw'] - 1):9.1f}%")


if __name__ == "__main__":
    main()
