"""The Strategy screen's "Measure on this GPU": on a machine without one it says so."""

from __future__ import annotations

from conftest import DEMO_PRESET
from textual.widgets import Button, Static

from finetune_tui.engine.settings.preset import load_preset
from finetune_tui.engine.train.measure import NEEDS_GPU
from finetune_tui.tui.app import FinetuneApp


async def test_measure_on_a_machine_without_a_gpu_says_it_needs_one():
    app = FinetuneApp(load_preset(DEMO_PRESET))
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("4")
        await pilot.pause()
        before = app.state.settings
        assert app.screen.query_one("#measure", Button).label.plain == "Measure on this GPU"
        await pilot.click("#measure")
        await pilot.pause()
        status = str(app.screen.query_one("#strategy-status", Static).render())
        assert status == f"Measure on this GPU {NEEDS_GPU}"
        assert app.state.settings == before  # nothing measured, nothing changed
