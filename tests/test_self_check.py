"""The plan checks itself: measured peak beyond the planner's error band with a projected
peak that would not fit backs off (same effective batch) before an out-of-memory error."""

from __future__ import annotations

import json
import re

import pytest
from conftest import DEMO_PRESET, FEW_RECORDS

from finetune_tui.engine.inspect.models import inspect_model
from finetune_tui.engine.plan.headroom import WORST_UNDERPREDICTION
from finetune_tui.engine.plan.peak import predict_memory
from finetune_tui.engine.plan.self_check import decide
from finetune_tui.engine.runs.event_text import describe
from finetune_tui.engine.runs.events import Checkpoint, MemoryCheck, Notice, Started
from finetune_tui.engine.settings.preset import load_preset, settings_from_overrides, with_changes
from finetune_tui.engine.train import callbacks
from finetune_tui.engine.train.runner import run_training


def batch(micro: int, accumulation: int = 1, checkpointing: str = "off"):
    return settings_from_overrides(
        [
            f"training.micro_batch_size={micro}",
            f"training.gradient_accumulation_steps={accumulation}",
            f"memory.gradient_checkpointing={checkpointing}",
        ]
    )


def test_within_the_band_or_fitting_keeps_the_plan():
    within = decide(batch(8), measured_gib=10.6, predicted_gib=10.0, usable_gib=10.5)
    assert not within.backs_off and within.settings == batch(8)  # +6 %: the planner's error
    fits = decide(batch(8), measured_gib=12.0, predicted_gib=10.0, usable_gib=20.0)
    assert not fits.backs_off and fits.over == pytest.approx(0.2)
    assert fits.projected_gib == pytest.approx(12.0)


def test_over_the_band_and_not_fitting_backs_off_keeping_the_effective_batch():
    d = decide(batch(8, 2), measured_gib=12.0, predicted_gib=10.0, usable_gib=11.0)
    assert d.backs_off and d.changes == ("micro-batch 8 -> 4, gradient accumulation 2 -> 4",)
    t = d.settings.training
    assert (t.micro_batch_size, t.gradient_accumulation_steps) == (4, 4)
    assert d.settings.effective_batch_size == batch(8, 2).effective_batch_size
    # the band is the planner's own: just inside it nothing changes, even on a full card
    edge = 10.0 * (1 + WORST_UNDERPREDICTION)
    assert not decide(batch(8), edge, 10.0, usable_gib=1.0).backs_off
    assert decide(batch(8), edge + 0.01, 10.0, usable_gib=1.0).backs_off


def test_the_projection_to_the_longest_batch_decides_how_far():
    """Measured 20 % over a plan of 4 GiB for the short batches seen; at the longest batch
    the plan is 2 + micro-batch / 2 GiB: 6 GiB at 8 (7.2 projected), 4 at 4 (4.8), 3 at 2."""

    def planned(s):
        return 2 + s.training.micro_batch_size / 2

    d = decide(batch(8), 4.8, 4.0, usable_gib=4.0, planned=planned)
    assert d.projected_gib == pytest.approx(7.2)
    assert d.settings.training.micro_batch_size == 2 and len(d.changes) == 2
    assert d.after_gib == pytest.approx(3.6) and d.settings.effective_batch_size == 8
    # the same measurement on a card where the longest batch still fits: no change
    assert not decide(batch(8), 4.8, 4.0, usable_gib=8.0, planned=planned).backs_off


def test_nothing_left_to_back_off_to_is_said():
    d = decide(batch(1, 8, "on"), measured_gib=12.0, predicted_gib=10.0, usable_gib=11.0)
    assert not d.backs_off
    assert d.stuck.startswith("projected not to fit even at micro-batch 1")
    last = decide(batch(2, 4, "on"), 12.0, 6.0, usable_gib=7.0, planned=lambda s: 6.0)
    assert last.changes == ("micro-batch 2 -> 1, gradient accumulation 4 -> 8",)
    assert last.settings.training.micro_batch_size == 1 and "lower" in last.stuck


def test_the_check_says_measured_beside_predicted():
    event = MemoryCheck(
        step=1,
        measured_gib=12.0,
        predicted_gib=10.0,
        usable_gib=11.0,
        projected_gib=12.5,
        band=0.065,
        change="micro-batch 8 -> 4, gradient accumulation 1 -> 2",
        level="warning",
    )
    assert describe(event) == (
        "memory check at step 1: measured 12.00 GiB, +20% against the plan's 10.00 GiB "
        "(beyond its 6.5% error band); projected peak 12.50 GiB would not fit 11.00 GiB "
        "usable: backing off before running out of memory, micro-batch 8 -> 4, gradient "
        "accumulation 1 -> 2 (same effective batch)"
    )
    quiet = MemoryCheck(1, 10.2, 10.0, 11.0, 10.2, 0.065)
    assert describe(quiet).endswith("+2% against the plan's 10.00 GiB (within its 6.5% error band)")


def test_a_run_whose_gpu_measures_too_much_backs_off_and_says_so(tmp_path, monkeypatch):
    """The demo on CPU, the one reader of CUDA memory reporting a peak 50 % over the plan on
    a card where micro-batch 8 would not fit and 4 would: after step 1 the run backs off
    once, continues from its checkpoint, and its events, summary.json and settings.yaml
    say so. Samples are cut to 32 tokens: every batch is the longest."""
    settings = load_preset(
        DEMO_PRESET,
        [
            "training.max_steps=3",
            FEW_RECORDS,
            "training.max_seq_length=32",
            "dataset.eval_fraction=0",
            "training.micro_batch_size=8",
            "training.gradient_accumulation_steps=2",
            "training.logging_steps=1",
            "training.exact_match_samples=0",
            f"output.dir={tmp_path / 'run'}",
        ],
    )
    demo = inspect_model("demo")
    planned = {
        b: predict_memory(demo, with_changes(settings, {"training.micro_batch_size": b}))
        for b in (8, 4)
    }
    usable = 1.5 * (planned[8].reserved_gib + planned[4].reserved_gib) / 2
    peak = {"now": 1.5 * planned[8].reserved_gib}

    def fake_cuda_memory() -> dict:
        return {
            "memory_allocated_gib": peak["now"],
            "memory_reserved_gib": peak["now"],
            "memory_peak_gib": peak["now"],
            "memory_peak_allocated_gib": peak["now"],
            "usable_gib": usable,
            "card": "RTX 4090",
        }

    monkeypatch.setattr(callbacks, "cuda_memory", fake_cuda_memory)
    events = []

    def sink(event):
        events.append(event)
        if isinstance(event, MemoryCheck) and event.change:
            peak["now"] = planned[4].reserved_gib  # the smaller batch measures as planned

    finished = run_training(settings, sink)

    checks = [e for e in events if isinstance(e, MemoryCheck)]
    backed = checks[0]
    assert backed.step == 1 and backed.level == "warning"
    assert backed.change == "micro-batch 8 -> 4, gradient accumulation 2 -> 4"
    assert backed.projected_gib == pytest.approx(1.5 * planned[8].reserved_gib, abs=0.002)
    line = describe(backed)
    # against the plan at the longest batch trained (a little below max_seq_length)
    over = re.search(r"\+(\d+)% against the plan's", line)
    assert over and 49 <= int(over.group(1)) <= 52 and "beyond its 6.5% error band" in line
    assert "would not fit" in line and "backing off before running out of memory" in line
    saved = [e for e in events if isinstance(e, Checkpoint)]
    assert saved[0].reason == "memory check" and saved[0].step == 1
    notices = [e.message for e in events if isinstance(e, Notice)]
    assert f"memory check: {backed.change}; continuing from checkpoint-1" in notices
    assert sum(isinstance(e, Started) for e in events) == 2
    assert [c.change for c in checks[1:]] == [None]  # checked again: as planned now
    assert finished.status == "finished" and finished.step == 3
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["oom_backoffs"] == [f"memory check at step 1: {backed.change}"]
    assert (summary["micro_batch_size"], summary["gradient_accumulation_steps"]) == (4, 4)
    assert load_preset(tmp_path / "run" / "settings.yaml").training.micro_batch_size == 4
