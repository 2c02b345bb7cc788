"""Capture the Train panel mid-run on a real GPU: measured VRAM against the predicted line.

    python screenshots/gpu_train.py --arch llama-3.1-8b --steps 30 --out screenshots/
Runs on the GPU machine (benchmarks/gpu_run.sh sets up the packages): the preset is
benchmarks/backends.py's QLoRA base on a random-weight model of `--arch`, and the app is
driven with Textual's Pilot at 100×32, as screenshots/make_screenshots.py does.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "benchmarks"))

from panel_overhead import arch_preset  # noqa: E402  (the sibling script's preset builder)

from finetune_tui.engine.settings.preset import load_preset, preset_fields  # noqa: E402
from finetune_tui.tui.app import FinetuneApp  # noqa: E402


async def capture(preset: str, overrides: list[str], steps: int, out: Path, timeout: float):
    settings = load_preset(preset, overrides)
    app = FinetuneApp(settings, pinned=preset_fields(preset) | {o.split("=")[0] for o in overrides})
    async with app.run_test(size=(100, 32)) as pilot:
        await pilot.press("f6")
        await pilot.pause(0.5)
        await pilot.press("s")
        deadline = time.monotonic() + timeout
        while app.screen.running and app.screen.steps_seen < steps:
            if time.monotonic() > deadline:
                break
            await pilot.pause(0.5)
        await pilot.pause(1.2)  # one more redraw of the panel
        app.save_screenshot(str(out / "6-train-gpu.svg"))
        await pilot.press("x")
        await app.workers.wait_for_complete()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", default="llama-3.1-8b")
    parser.add_argument("--steps", type=int, default=30, help="capture after this many steps")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--work", default="/tmp/ftshot")
    parser.add_argument("--out", default=str(HERE))
    parser.add_argument("--timeout", type=float, default=400)
    args = parser.parse_args()
    Path(args.work).mkdir(parents=True, exist_ok=True)
    preset = arch_preset(args.arch, Path(args.work))
    overrides = [
        f"training.max_steps={args.steps + 20}",
        f"output.dir={args.work}/run-{time.strftime('%H%M%S')}",  # a warm machine keeps old runs
        *args.overrides,
    ]
    asyncio.run(capture(preset, overrides, args.steps, Path(args.out), args.timeout))


if __name__ == "__main__":
    main()
