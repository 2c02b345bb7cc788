"""What one redraw of the Train panel costs on the CPU, in-process: the main thread's time
per update, which is time the training thread waits for the GIL.

    python benchmarks/panel_render.py --updates 200     # prints one JSON line

The Train screen is opened in Textual's headless test mode (120x40, as
panel_overhead.py's terminal) and fed a GPU run's events: Started with the planner's peak
and tokens/s, then one Step per update, reserved memory and tokens/s varying. Each update
is timed in two parts: `drain` (the screen turns the queued step into its widgets' data)
and `render` (every widget the update made dirty renders its lines, as the next frame
would). Updates after the first HISTORY fill the charts to their widest and are the ones
reported. One update stands for one refresh (REFRESH_S): `update_ms_mean` is the cost
averaged over refreshes with and without a chart redraw, `update_ms_max` one with, and
`cost_pct_at_refresh` the mean's share of the refresh interval.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time

from finetune_tui.engine.runs.events import Started, Step
from finetune_tui.engine.settings.preset import load_preset
from finetune_tui.tui.app import FinetuneApp
from finetune_tui.tui.screens import train
from finetune_tui.tui.state import DEMO_PRESET


def gpu_events(updates: int):
    started = Started("run", updates, 512, 0, "demo", "NVIDIA H100 80GB HBM3", 54, 9e9)
    started.predicted_peak_reserved_gib = 7.2
    for name, value in (("predicted_tokens_per_s", 1400.0), ("tokens_per_s_at_peak", 5000.0)):
        if hasattr(started, name):  # fields the panel reads once the charts show them
            setattr(started, name, value)
    steps = [
        Step(i, updates, i / updates, 2 - i / updates, 1e-4, 1.0, 1300 + i % 7 * 20, 1.1,
             5.0 * i, 5.0 * (updates - i), 6.7, 6.0 + i % 11 / 10, 7.1, 4800 * i)
        for i in range(1, updates + 1)
    ]  # fmt: skip
    return started, steps


async def measure(updates: int) -> dict:
    app = FinetuneApp(load_preset(DEMO_PRESET))
    started, steps = gpu_events(updates)
    drain, render = [], []
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("6")
        await pilot.pause()
        screen = app.screen
        screen.deliver(started)
        screen.drain_events()
        await pilot.pause()
        for step in steps:
            screen.deliver(step)
            t0 = time.perf_counter()
            screen.drain_events()
            t1 = time.perf_counter()
            for widget in screen.query("*"):
                if widget._dirty_regions and widget.display:
                    widget._render_content()  # what the next frame would call
            t2 = time.perf_counter()
            drain.append(t1 - t0)
            render.append(t2 - t1)
            await pilot.pause()  # let layout and the real frame happen outside the clock
    full = slice(train.HISTORY, None)
    per_update = [d + r for d, r in zip(drain[full], render[full], strict=True)]
    mean = statistics.fmean(per_update)
    return {
        "updates": len(per_update),
        "history": train.HISTORY,
        "chart_every": getattr(train, "CHART_EVERY", 1),  # refreshes between chart redraws
        "drain_ms_median": round(1e3 * statistics.median(drain[full]), 2),
        "render_ms_median": round(1e3 * statistics.median(render[full]), 2),
        "update_ms_median": round(1e3 * statistics.median(per_update), 2),
        "update_ms_max": round(1e3 * max(per_update), 2),
        "update_ms_mean": round(1e3 * mean, 2),
        "refresh_s": train.REFRESH_S,
        "cost_pct_at_refresh": round(100 * mean / train.REFRESH_S, 2),
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=220)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(max(args.updates, train.HISTORY + 10)))))


if __name__ == "__main__":
    main()
