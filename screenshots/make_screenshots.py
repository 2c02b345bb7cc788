"""Regenerate the SVG captures of every screen: python screenshots/make_screenshots.py

Drives the real app with Textual's Pilot at 100×32; the Train screen is captured mid-run
of the embedded demo as shipped, the Try screen once that run has finished.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from finetune_tui.engine.settings.preset import load_preset, preset_fields
from finetune_tui.tui.app import ORDER, FinetuneApp

HERE = Path(__file__).resolve().parent
PRESET = HERE.parent / "presets" / "demo.yaml"


async def main() -> None:
    out = Path(tempfile.mkdtemp()) / "run"
    settings = load_preset(PRESET, [f"output.dir={out}"])
    app = FinetuneApp(settings, pinned=preset_fields(PRESET))  # as `--tui --preset` opens
    async with app.run_test(size=(100, 32)) as pilot:
        for index, name in enumerate(ORDER, start=1):
            await pilot.press(f"f{index}")  # F-keys work even while a field has the focus
            await pilot.pause(0.5)
            if name == "dataset":
                await app.workers.wait_for_complete()
                await pilot.pause()
            if name == "train":
                await pilot.press("s")
                while app.screen.steps_seen < 12:  # the charts redraw every 5 s: a few points
                    await pilot.pause(0.5)
                app.save_screenshot(str(HERE / f"{index}-{name}.svg"))
                await app.workers.wait_for_complete()  # to the end: Try shows what it learned
                continue
            if name == "try":
                await pilot.press("a")  # the first held-out prompt, tuned beside base
                await pilot.pause(1.0)
                await app.workers.wait_for_complete()
                await pilot.pause(0.5)
            app.save_screenshot(str(HERE / f"{index}-{name}.svg"))


if __name__ == "__main__":
    asyncio.run(main())
