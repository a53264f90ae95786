"""The tray agent at rest and at launch, under Xvfb with a real tray host and the real models
(Kokoro, the embedded LLM) and audio stream (ALSA tap), each beside a baseline in the same run.

- Launch -> icon visible: from spawning `python -m agent` until its icon is embedded in the
  tray. Baseline: launch -> models loaded (what a tray that loads the models first would show).
- Idle CPU over 60 s, models loaded, no polling loops. Baseline: the usual Tk + pystray
  pattern that polls a queue every 15 ms (the shape of most tray-and-Tk examples).
- Idle memory (RSS). Baseline: the same process right after the icon appeared (before the
  models were loaded).

    python -m bench.tray [--idle-seconds 60]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from bench.harness import start_audio, start_desktop

POLLING_TRAY = textwrap.dedent("""
    import queue, threading, tkinter as tk
    import pystray
    from PIL import Image
    root = tk.Tk(); root.withdraw(); inbox = queue.Queue()
    def poll():
        try:
            while True: inbox.get_nowait()()
        except queue.Empty: pass
        root.after(15, poll)
    icon = pystray.Icon("baseline", Image.new("RGBA", (64, 64), (200, 40, 40, 255)), "baseline")
    threading.Thread(target=icon.run, daemon=True).start()
    root.after(15, poll); root.mainloop()
""")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def tray_icons() -> list[str]:
    out = subprocess.run(["xdotool", "search", "--name", "."], capture_output=True,
                         text=True).stdout.split()
    icons = []
    for window in out:
        geometry = subprocess.run(["xdotool", "getwindowgeometry", "--shell", window],
                                  capture_output=True, text=True).stdout
        values = dict(line.split("=", 1) for line in geometry.splitlines() if "=" in line)
        name = subprocess.run(["xdotool", "getwindowname", window], capture_output=True,
                              text=True).stdout.strip()
        if (int(values.get("Y", 0)) > 700 and 16 <= int(values.get("WIDTH", 0)) <= 40
                and name != "panel"):
            icons.append(window)
    return icons


def wait_for_log(log: Path, text: str, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text(errors="replace"):
            return time.monotonic()
        time.sleep(0.02)
    raise TimeoutError(f"{text!r} not in {log}")


def idle_cpu_percent(pid: int, seconds: float) -> float:
    start_cpu, start = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)  # the measurement window itself
    return 100.0 * (cpu_seconds(pid) - start_cpu) / (time.monotonic() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    args = parser.parse_args()
    start_audio()
    start_desktop()
    home = Path(tempfile.mkdtemp(prefix="voice-agent-bench-tray-"))
    (home / "config").mkdir()
    (home / "config" / "config.toml").write_text('[tts]\nvoice = "jm_kumo"\n'
                                                 '[hotkeys]\nbackend = "pynput"\n')
    env = {**os.environ, "VOICE_AGENT_CONFIG_DIR": str(home / "config"),
           "VOICE_AGENT_DATA_DIR": str(home / "data"),
           "VOICE_AGENT_RUNTIME_DIR": str(home / "run"), "PYSTRAY_BACKEND": "gtk"}
    log = home / "agent.log"

    began = time.monotonic()
    with log.open("w") as out:
        agent = subprocess.Popen([sys.executable, "-m", "agent"], env=env, stdout=out,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        while not tray_icons():
            if agent.poll() is not None:
                raise SystemExit(f"the agent exited; see {log}")
            time.sleep(0.01)
        icon_at = time.monotonic() - began
        shell_rss = rss_mib(agent.pid)
        ready_at = wait_for_log(log, "models ready", 180) - began
        time.sleep(10)  # warm-ups finish, the audio stream goes idle
        agent_cpu = idle_cpu_percent(agent.pid, args.idle_seconds)
        agent_rss = rss_mib(agent.pid)
    finally:
        agent.terminate()
        agent.wait(10)

    baseline = subprocess.Popen([sys.executable, "-c", POLLING_TRAY], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)
        baseline_cpu = idle_cpu_percent(baseline.pid, args.idle_seconds)
    finally:
        baseline.terminate()
        baseline.wait(10)

    print(f"launch -> icon visible      {icon_at:6.2f} s   (target <= 1.5 s)")
    print(f"launch -> models loaded     {ready_at:6.2f} s   (baseline: a tray that loads first)")
    print(f"idle CPU, {args.idle_seconds:.0f} s, agent      {agent_cpu:6.3f} % of one core"
          "   (target <= 0.3 %)")
    print(f"idle CPU, polling Tk tray   {baseline_cpu:6.3f} % of one core   (baseline)")
    print(f"idle memory (RSS)           {agent_rss:6.0f} MiB  (models loaded)")
    print(f"memory with the icon up     {shell_rss:6.0f} MiB  (before the models)")


if __name__ == "__main__":
    main()
