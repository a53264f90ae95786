"""How long the scan for local LLM servers takes (agent.llm.scan): the full default scan of
the seven well-known candidates (six products) on 127.0.0.1, each scan as the agent runs it
(`scan()`: its own event loop and HTTP client), in three situations:

- nothing:  nothing of ours listening; whatever runs on this machine's default ports is
            scanned as it is (the table says what was found);
- silent:   LM Studio's candidate replaced by a loopback HTTP server that reads the request
            and never answers (harness.llm_servers.FaultServer): the probe timeout bounds it;
- llama:    the llama.cpp/LocalAI candidates (port 8080) moved onto the port of a real
            llama.cpp server (llama-cpp-python with the packaged SmolLM2): found, told apart
            from LocalAI (which costs a concurrent GET /version), its models listed.

Per situation: the first scan in it, then the median and max of the rest; the target is well
under a second, and the silent case about the probe timeout (agent.llm.scan.PROBE_TIMEOUT_S).
The very first scan of the process also pays for imports and the first event loop.

    python -m bench.llm_scan [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from agent.llm.scan import KNOWN_SERVERS, PROBE_TIMEOUT_S, Candidate, ScanResult, scan
from harness.llm_servers import FaultRequest, FaultServer, start_llama_server

TARGET_S = 1.0


@dataclass
class Situation:
    name: str
    candidates: tuple[Candidate, ...]
    check: Callable[[ScanResult], str]  # what was found, or why it is wrong


def moved(port: int, products: set[str], at_port: int | None = None) -> tuple[Candidate, ...]:
    """KNOWN_SERVERS with the named products (on `at_port`, if given) moved onto `port`."""
    return tuple(replace(c, port=port)
                 if c.product in products and (at_port is None or c.port == at_port) else c
                 for c in KNOWN_SERVERS)


def found(result: ScanResult) -> str:
    return ", ".join(f"{s.label} {list(s.models)}" for s in result.servers) or "none"


def measure(situation: Situation, repeats: int) -> tuple[float, list[float], str]:
    first = scan(situation.candidates)
    times = [first.elapsed_s]
    for _ in range(repeats - 1):
        times.append(scan(situation.candidates).elapsed_s)
    return times[0], times[1:], situation.check(first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    began = time.monotonic()
    process_first = scan()  # imports, the first event loop and client
    print(f"first scan of the process: {process_first.elapsed_s * 1000:.1f} ms "
          f"(found: {found(process_first)})", flush=True)

    faults = FaultServer()

    async def silent(request: FaultRequest) -> None:
        await request.until_client_leaves()

    faults.url("v1", silent)  # GET /v1/models reaches it and is never answered
    logs = Path(tempfile.mkdtemp(prefix="voice-agent-bench-scan-"))
    from agent.llm.embedded import locate_model

    llama = start_llama_server(locate_model(), logs, alias="smollm2")
    try:
        silent_candidates = moved(faults.port, {"LM Studio"})

        def silent_check(result: ScanResult) -> str:
            stray = [s for s in result.servers if s.port == faults.port]
            return "WRONG: the silent port was found" if stray else found(result)

        def llama_check(result: ScanResult) -> str:
            ours = [s for s in result.servers if s.port == llama.port]
            if [(s.product, s.models) for s in ours] != [("llama.cpp server", ("smollm2",))]:
                return f"WRONG: {found(result)}"
            return found(result)

        situations = [
            Situation("nothing", KNOWN_SERVERS, found),
            Situation("silent", silent_candidates, silent_check),
            Situation("llama", moved(llama.port, {"llama.cpp server", "LocalAI"}, 8080),
                      llama_check),
        ]
        rows = [(s.name, *measure(s, args.repeats)) for s in situations]
    finally:
        llama.stop()
        faults.stop()

    print()
    print(f"full default scan, {len(KNOWN_SERVERS)} candidates on 127.0.0.1 (probe timeout "
          f"{PROBE_TIMEOUT_S * 1000:.0f} ms, target under {TARGET_S * 1000:.0f} ms); "
          f"{args.repeats} scans each")
    print(f"{'situation':<10} {'first':>8} {'median':>8} {'max':>8}  found")
    for name, first, rest, what in rows:
        print(f"{name:<10} {first * 1000:6.1f}ms {statistics.median(rest) * 1000:6.1f}ms "
              f"{max(rest) * 1000:6.1f}ms  {what}")
    print(f"\ntotal {time.monotonic() - began:.1f} s; llama.cpp server log in {logs}")


if __name__ == "__main__":
    main()
