"""SVG snapshots of every wizard screen (pytest-textual-snapshot's `snap_compare`).

Update the baselines after a deliberate UI change with
    python -m pytest -n 0 tests/test_snapshots.py --snapshot-update
and look at the new SVGs under tests/__snapshots__/test_snapshots/ before committing them.

What would differ from machine to machine is pinned here, in the test, not in the product:
  - the hardware: a simulated RTX 4090 (the app's own --gpu option), never this machine's;
  - the Train screen's header clock: a fixed time;
  - the demo dataset's location, which the Dataset screen prints, and the demo preset's,
    which the Review screen prints: relative paths to copies in the test's own working
    folder, so no checkout path lands in an SVG.
The config folder is already private to each test (conftest.isolated_dirs).
"""

from __future__ import annotations

import datetime as _dt
import shutil
from pathlib import Path

import pytest
import textual.widgets._header as textual_header
from conftest import DEMO_PRESET, gpu_run_events, write_run

from finetune_tui.engine.common import demo
from finetune_tui.engine.settings.preset import load_preset, preset_fields
from finetune_tui.tui import state as state_module
from finetune_tui.tui.app import ORDER, FinetuneApp

SIZE = (100, 32)  # as screenshots/make_screenshots.py
SIMULATED_GPU = "RTX 4090"


class _FixedDatetime(_dt.datetime):
    """`datetime` whose now() is always the same noon: the Header clock draws it."""

    @classmethod
    def now(cls, tz=None):
        return cls(2025, 1, 1, 12, 0, 0, tzinfo=tz)


@pytest.fixture(autouse=True)
def deterministic(tmp_path, monkeypatch):
    monkeypatch.setattr(textual_header, "datetime", _FixedDatetime)
    local_copy = tmp_path / "demo.jsonl"
    shutil.copyfile(demo.demo_dataset_path(), local_copy)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(demo, "demo_dataset_path", lambda objective="sft": Path(local_copy.name))
    shutil.copyfile(DEMO_PRESET, tmp_path / DEMO_PRESET.name)  # the Review screen prints it
    monkeypatch.setattr(state_module, "DEMO_PRESET", tmp_path / DEMO_PRESET.name)
    yield


def demo_app() -> FinetuneApp:
    """What `finetune-tui --tui --preset presets/demo.yaml` opens: the preset's fields pinned."""
    return FinetuneApp(
        load_preset(DEMO_PRESET),
        pinned=preset_fields(DEMO_PRESET),
        simulated_gpu=SIMULATED_GPU,
    )


def go_to(name: str):
    """A run_before that opens screen `name` by its digit and waits until it has settled."""

    async def run_before(pilot) -> None:
        app = pilot.app
        await pilot.pause()
        await pilot.press(str(ORDER.index(name) + 1))
        await pilot.pause()
        await app.workers.wait_for_complete()  # the Dataset screen inspects in a worker
        await pilot.pause()
        assert app.current_mode == name

    return run_before


@pytest.mark.parametrize("name", ORDER)
def test_screen(snap_compare, name):
    assert snap_compare(demo_app(), terminal_size=SIZE, run_before=go_to(name))


def test_train_panel_predicted_against_measured(snap_compare, tmp_path):
    """Attached to a GPU run's metrics: the VRAM chart with the predicted peak's line."""
    from finetune_tui.tui.app import AttachApp

    write_run(tmp_path / "run", gpu_run_events())

    async def settle(pilot) -> None:
        await pilot.app.workers.wait_for_complete()
        await pilot.pause(1.2)  # the panel drains its queue once a second

    assert snap_compare(AttachApp(Path("run")), terminal_size=SIZE, run_before=settle)
