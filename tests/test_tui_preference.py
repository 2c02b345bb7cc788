"""Preference tuning in the wizard, driven through Pilot: preference data on the Dataset
screen, the objective on the Strategy screen, a short DPO run's accuracy on the panel."""

from __future__ import annotations

import json

from conftest import DEMO_PRESET, FEW_RECORDS, REPO
from textual.widgets import Input, Select, Static, Switch

from finetune_tui.engine.settings.preset import load_preset
from finetune_tui.tui.app import FinetuneApp
from finetune_tui.tui.planning import dataset_stats
from finetune_tui.tui.screens.train import TrainScreen
from finetune_tui.tui.widgets.settings_form import SettingsForm, field_id

SIZE = (100, 40)


def text_of(app, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def pairs_file(tmp_path):
    rows = [{"prompt": "Capital of France?", "chosen": "Paris", "rejected": "Rome"}]
    rows += [{"prompt": "2 + 2 =", "chosen": " 4", "rejected": " 5"}] * 39
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


async def test_preference_data_is_shown_and_the_objective_set_on_the_strategy_screen(tmp_path):
    """Pairs picked on the Dataset screen are shown as pairs, with what trains them; on the
    Strategy screen dpo is chosen, what stands in its way (and the user did not set) goes
    back to its default, and the screen says what dpo does and how its memory is planned."""
    data = pairs_file(tmp_path)
    app = FinetuneApp(load_preset(DEMO_PRESET, []))  # SFT, 220 exact-match prompts
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await app.workers.wait_for_complete()
        app.screen.query_one("#dataset-path", Input).value = str(data)
        await pilot.click("#check-dataset")
        await app.workers.wait_for_complete()
        await pilot.pause()
        info, sample = text_of(app, "#dataset-info"), text_of(app, "#dataset-sample")
        assert "40 records, format preference" in info and "preference data: 40 pairs" in info
        assert "train training.objective dpo or orpo or kto; it is sft now" in info
        assert f"First record as trained ({data}:1)" in sample
        assert "prompt: Capital of France?" in sample
        assert "chosen: Paris" in sample and "rejected: Rome" in sample

        await pilot.press("4")
        await pilot.pause()
        form = app.screen.query_one(SettingsForm)
        form.query_one(f"#{field_id('training.objective')}", Select).value = "dpo"
        await pilot.pause()
        training = app.state.settings.training
        assert training.objective == "dpo" and training.exact_match_samples == 0
        status = text_of(app, "#strategy-status")
        assert "training.exact_match_samples back to 0, as training.objective needs" in status
        objective = text_of(app, "#strategy-objective")
        assert "objective dpo: raises the chosen answer's likelihood" in objective
        assert "dpo: memory planned from how TRL runs it" in objective
        exact = form.query_one(f"#{field_id('training.exact_match_samples')}", Input)
        assert exact.value == "0"  # the form shows what changed
        assert dataset_stats(app.state.settings).count == 40  # the planner reads the pairs

        form.query_one(f"#{field_id('memory.packing')}", Switch).value = True
        await pilot.pause()  # the user's own change is refused, never undone for them
        assert "memory.packing: TRL's preference trainers do not pack" in text_of(
            app, "#strategy-status"
        )
        assert app.state.settings.memory.packing is False
        assert app.state.settings.training.objective == "dpo"


async def test_a_short_dpo_run_shows_preference_accuracy_on_the_panel(tmp_path):
    """The panel shows the training pairs' accuracy and margin at each logged step, the
    held-out pairs' at an evaluation and, at the end, before -> after as summary.json has
    them."""
    settings = load_preset(
        REPO / "presets" / "demo-dpo.yaml",
        [
            *("training.max_steps=6", "training.logging_steps=2", "training.eval_steps=3"),
            *("dataset.eval_fraction=0.02", FEW_RECORDS, f"output.dir={tmp_path / 'run'}"),
        ],
    )
    app = FinetuneApp(settings)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("6")
        await pilot.pause()
        assert not app.screen.query_one("#preference", Static).display  # nothing yet
        await pilot.press("s")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, TrainScreen)
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert screen.steps_seen == 4  # steps 1 (always logged), 2, 4 and 6
        lines = text_of(app, "#preference").splitlines()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    before, after = summary["preference_accuracy_before"], summary["preference_accuracy_after"]
    events = [json.loads(e) for e in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [e for e in events if e["kind"] == "step"]
    evals = [e for e in events if e["kind"] == "eval"]
    assert evals[0]["step"] == 3 and evals[0]["reward_accuracy"] is not None  # mid-run
    assert lines[0] == (
        f"training pairs: chosen ahead {steps[-1]['reward_accuracy']:.1%}, "
        f"reward margin {steps[-1]['reward_margin']:+.3f}"
    )
    assert lines[1] == (
        f"held-out pairs: accuracy {before:.1%} → {after:.1%}, "
        f"reward margin {summary['reward_margin']:+.3f}"
    )
