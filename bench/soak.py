"""Soak: a day of use and abuse in minutes, through the core the tray agent runs (the soak
itself is harness/soak.py, shared with the short version in tests/test_soak.py).

    python -m bench.soak [--turns 300] [--seed 1]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.harness import start_audio_and_microphone
from harness import soak
from harness.soak import Soak, describe


def main() -> None:
    parser = argparse.ArgumentParser(description=soak.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    tap, microphone = start_audio_and_microphone()
    workdir = Path(tempfile.mkdtemp(prefix="voice-agent-soak-"))
    report = Soak(microphone, tap, args.seed, workdir).run(args.turns)
    print(describe(report))
    problems = report.problems(turn_bound_s=60.0, interrupt_bound_s=1.0)
    print("PASS" if not problems else "FAIL:\n  " + "\n  ".join(problems))
    raise SystemExit(1 if problems else 0)


if __name__ == "__main__":
    main()
