"""Time from launching `finetune-tui` to its first screen drawn, on a pseudo-terminal.

    python benchmarks/first_screen.py --repeats 5     # prints one JSON line

The clock stops when the Hardware screen shows the (simulated) card's VRAM; the
app is then quit with `q`. Python's bytecode cache is warm after the first launch, so the
first repeat is reported apart (a fresh install pays it once).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pty
import select
import statistics
import sys
import time

CLI = [sys.executable, "-m", "finetune_tui", "--gpu", "RTX 4090"]
MARK = b"24.0 GiB"  # the simulated card's VRAM: the screen's content, not just its title


def launch_once(timeout: float = 30.0) -> float:
    start = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:
        os.environ.update(COLUMNS="100", LINES="32", TERM="xterm-256color")
        os.execvp(CLI[0], CLI)
    seen = b""
    elapsed = None
    while elapsed is None and time.perf_counter() - start < timeout:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            seen += os.read(fd, 65536)
            if MARK in seen:
                elapsed = time.perf_counter() - start
    os.write(fd, b"q")
    end = time.monotonic() + 5
    while time.monotonic() < end and os.waitpid(pid, os.WNOHANG) == (0, 0):
        if select.select([fd], [], [], 0.1)[0]:
            try:
                os.read(fd, 65536)
            except OSError:
                break
    if elapsed is None:
        raise TimeoutError("the first screen did not appear")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    times = [launch_once() for _ in range(args.repeats + 1)]
    print(
        json.dumps(
            {
                "first_launch_s": round(times[0], 3),
                "median_s": round(statistics.median(times[1:]), 3),
                "max_s": round(max(times[1:]), 3),
                "repeats": args.repeats,
                "cpu": platform.processor() or platform.machine(),
                "cores": os.cpu_count(),
                "date": time.strftime("%Y-%m-%d"),
            }
        )
    )


if __name__ == "__main__":
    main()
