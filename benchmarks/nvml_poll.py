"""Cost of one live-panel GPU poll: a fresh NVML session per poll vs one kept open.

python benchmarks/nvml_poll.py --polls 50     # prints one JSON line
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from finetune_tui.engine.inspect.hardware import GpuTelemetry


def fresh_session_poll() -> None:
    """What the panel did before: init, read, shut down, every second."""
    telemetry = GpuTelemetry(0)
    telemetry.read()
    telemetry.close()


def timed_ms(fn, polls: int) -> dict:
    wall, cpu = [], []
    for _ in range(polls):
        w, c = time.perf_counter(), time.thread_time()
        fn()
        wall.append((time.perf_counter() - w) * 1e3)
        cpu.append((time.thread_time() - c) * 1e3)
    return {"median_wall_ms": round(statistics.median(wall), 3),
            "median_cpu_ms": round(statistics.median(cpu), 3)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--polls", type=int, default=50)
    args = parser.parse_args()
    kept = GpuTelemetry(0)
    if kept.read() is None:
        print(json.dumps({"error": "no NVIDIA GPU visible to NVML"}))
        return
    result = {
        "fresh_session": timed_ms(fresh_session_poll, args.polls),
        "kept_session": timed_ms(kept.read, args.polls),
        "polls": args.polls,
    }
    kept.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
