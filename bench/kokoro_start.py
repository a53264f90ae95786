"""Kokoro engine start: the patched graph loaded from the cache, against patching it at every
start (agent/tts/kokoro_graph.py).

Each start runs in its own process (peak RSS is per process, and nothing stays warm inside
onnxruntime), on the packaged int8 model; only the engine's construction is timed, the
imports and the model files' resolution come before the clock:

    old    patched in memory at every start, loaded from bytes (what the agent did before
           the cache; OnnxKokoro(cache_graph=False))
    cold   nothing in the cache: patched, written to the cache, loaded from the file (the
           first start after an install, a model change or a patch change)
    warm   the patched graph loaded from the cache (every later start)

The model file is in the OS page cache in all three (as at every start but a machine's
first). The patched graphs go into a folder of the bench's own, removed at the end.

    python -m bench.kokoro_start [--rounds 5]
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

KINDS = ("old", "cold", "warm")
LABELS = {"old": "old: patch at every start", "cold": "cold: patch, then cache",
          "warm": "warm: from the cache"}


def child(kind: str, cache: str) -> None:
    import onnxruntime  # noqa: F401  (imported before the clock, like everything else)

    from agent.tts import kokoro, models

    files = models.resolve("packaged")  # the model where the agent keeps it
    os.environ["VOICE_AGENT_CACHE_DIR"] = cache  # the patched graph: the bench's folder
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    engine = kokoro.OnnxKokoro(files, cache_graph=kind != "old")  # what load_engine builds
    seconds = time.perf_counter() - started
    expected = "cached" if kind == "warm" else "patched"
    if engine.graph != expected or not engine.sliced:
        raise SystemExit(f"{kind}: the graph came {engine.graph}, not {expected}")
    print(json.dumps({"seconds": seconds, "rss_before_mb": before,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def measure(kind: str, cache: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-m", "bench.kokoro_start", "--child", kind,
                          "--cache", cache], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"the {kind} start failed:\n{out.stderr}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="starts of each kind")
    parser.add_argument("--child", choices=KINDS)
    parser.add_argument("--cache", default="")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.cache)
        return
    from agent import paths
    from agent.tts import kokoro_graph, models

    models.resolve("packaged")  # assembled once, if it is not yet
    paths.cache_dir().mkdir(parents=True, exist_ok=True)
    cache = tempfile.mkdtemp(prefix="bench-kokoro-start-", dir=paths.cache_dir())
    patched = os.path.join(cache, "kokoro", "patched")
    runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in KINDS}
    try:
        for round_ in range(args.rounds):
            # old first in one round, last in the next: drifting machine load hits all alike
            order = KINDS if round_ % 2 == 0 else ("cold", "warm", "old")
            for kind in order:
                if kind == "cold":
                    shutil.rmtree(patched, ignore_errors=True)
                runs[kind].append(measure(kind, cache))
        size = sum(os.path.getsize(os.path.join(patched, name)) for name in os.listdir(patched))
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    seconds = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    peak = {k: statistics.median(r["peak_rss_mb"] for r in v) for k, v in runs.items()}
    grown = {k: statistics.median(r["peak_rss_mb"] - r["rss_before_mb"] for r in v)
             for k, v in runs.items()}
    print(f"Kokoro engine start, packaged int8 model, median of {args.rounds} starts each "
          f"(patch version {kokoro_graph.PATCH_VERSION})")
    print(f"{'':28}{'seconds':>9}{'vs old':>9}{'peak RSS MB':>13}{'load adds':>11}")
    for kind in KINDS:
        change = ("" if kind == "old"
                  else f"{100 * (seconds[kind] / seconds['old'] - 1):+8.1f}%")
        print(f"{LABELS[kind]:28}{seconds[kind]:9.3f}{change:>9}{peak[kind]:13.0f}"
              f"{grown[kind]:11.0f}")
    print(f"saved at every warm start: {seconds['old'] - seconds['warm']:.3f} s; "
          f"the cache holds {size / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
