"""Names from outside (a model folder, an output folder, a dataset path) are shown as they
are: Rich markup in them neither styles the screen nor breaks it, and control characters
are escaped as the headless lines escape them."""

from __future__ import annotations

from conftest import DEMO_PRESET
from textual.widgets import Static

from finetune_tui.engine.settings.preset import load_preset
from finetune_tui.tui.app import FinetuneApp

HOSTILE = "[/b][red]x\x1b[31m"


async def test_markup_and_control_characters_in_names_are_shown_literally(tmp_path):
    output = tmp_path / f"out{HOSTILE}"
    model = tmp_path / f"model{HOSTILE}"
    # no such folder: the Model screen's error names it
    settings = load_preset(DEMO_PRESET, [f"output.dir={output}", f"model.name_or_path={model}"])
    app = FinetuneApp(settings)
    async with app.run_test(size=(120, 50)) as pilot:
        await pilot.pause()
        app.switch_mode("model")
        await pilot.pause()
        info = str(app.screen.query_one("#model-info", Static).render())
        app.switch_mode("review")
        await pilot.pause()
        review = str(app.screen.query_one("#review-yaml", Static).render())
        changed = str(app.screen.query_one("#review-diff", Static).render())
    assert app._exception is None
    shown = "[/b][red]x\\x1b[31m"  # the brackets as typed, ESC as \x1b
    assert "out[/b][red]x" in review and "model[/b][red]x" in review  # YAML writes ESC as \e
    assert f"out{shown}" in changed
    assert f"model{shown}" in info
    assert "\x1b" not in review + changed + info
