"""Predicted next to measured: the final line, summary.json and `runs` carry both peaks."""

from __future__ import annotations

import json

from conftest import copy_finished_run

from finetune_tui.engine.runs.event_text import describe
from finetune_tui.engine.runs.events import Finished


def finished(summary: dict) -> Finished:
    return Finished(
        status="finished",
        step=10,
        total_steps=10,
        final_loss=0.5,
        elapsed_s=12.0,
        adapter_path="/r/adapter",
        summary=summary,
    )


def test_final_line_shows_measured_and_predicted_peak():
    line = describe(
        finished({"peak_reserved_gib": 12.2, "predicted_peak_reserved_gib": 12.5, "first_loss": 1})
    )
    assert "peak VRAM measured 12.20 / predicted 12.50 GiB reserved" in line
    cpu = describe(finished({"first_loss": 1.0}))
    assert "peak VRAM" not in cpu  # a CPU run has no VRAM to report


def test_summary_and_runs_carry_both_peaks(cli, finished_template, tmp_path):
    run = copy_finished_run(finished_template, tmp_path / "data" / "runs" / "r1")
    summary = json.loads((run / "summary.json").read_text())
    assert "predicted_peak_reserved_gib" in summary  # None on this CPU
    # what a CUDA run writes: runs shows measured / predicted
    summary.update(peak_reserved_gib=7.42, predicted_peak_reserved_gib=7.76)
    (run / "summary.json").write_text(json.dumps(summary))
    listed = cli("runs")
    assert "7.42/7.76" in listed.stdout
    rows = json.loads(cli("runs", "--json").stdout)
    assert rows[0]["predicted_peak_reserved_gib"] == 7.76 and rows[0]["peak_reserved_gib"] == 7.42


def test_a_gpu_summary_names_the_allocator_its_peaks_were_reserved_under(monkeypatch):
    """Preference runs set expandable segments and the plan assumes it: the summary says
    which allocator the measured peak came from; a CPU run has neither key."""
    from finetune_tui.engine.runs.summary import RunSummary
    from finetune_tui.engine.train import callbacks, run_memory

    monkeypatch.setattr(callbacks, "cuda_memory", lambda: {})
    assert run_memory.peak_memory() == {}
    assert "cuda_allocator" not in RunSummary().to_json()
    reading = {"memory_peak_allocated_gib": 3.2, "memory_peak_gib": 3.4}
    monkeypatch.setattr(callbacks, "cuda_memory", lambda: reading)
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    peaks = run_memory.peak_memory()
    assert peaks == {
        "peak_allocated_gib": 3.2,
        "peak_reserved_gib": 3.4,
        "cuda_allocator": "expandable_segments:True",
    }
    assert RunSummary(**peaks).to_json()["cuda_allocator"] == "expandable_segments:True"
    monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF")
    assert RunSummary(**run_memory.peak_memory()).to_json()["cuda_allocator"] == ""


def test_a_run_whose_data_never_filled_the_length_is_read_against_its_longest_sample():
    """The H100 run of Qwen2.5-7B at b4 x 2,048 whose longest record was far shorter
    reserved 27.86 GiB: its step-1 check read the plan at the longest sample (28.05), the
    final line read the full length's 45.08 and looked 38 % over-planned. The line now
    gives the figure the run is compared with, and the full length's beside it."""
    from types import SimpleNamespace

    from finetune_tui.engine.inspect.models import inspect_model
    from finetune_tui.engine.plan.peak import predict_memory
    from finetune_tui.engine.settings.preset import settings_from_overrides
    from finetune_tui.engine.train.run_memory import planned_at_longest

    settings = settings_from_overrides(
        [
            "model.name_or_path=Qwen/Qwen2.5-7B",
            "memory.backend=liger",
            "training.micro_batch_size=4",
            "training.max_seq_length=2048",
        ]
    )
    full = predict_memory(inspect_model("Qwen/Qwen2.5-7B"), settings).reserved_gib
    shorter = planned_at_longest(settings, SimpleNamespace(longest=700))
    assert shorter < 0.9 * full
    assert planned_at_longest(settings, SimpleNamespace(longest=4096)) == round(full, 3)
    line = describe(
        finished(
            {
                "first_loss": 1.0,
                "peak_reserved_gib": 27.86,
                "predicted_peak_reserved_gib": 45.08,
                "predicted_peak_at_longest_gib": 28.05,
            }
        )
    )
    assert (
        "peak VRAM measured 27.86 / predicted 28.05 GiB reserved at the longest sample "
        "trained (45.08 at the full length)" in line
    )
    same = {"peak_reserved_gib": 12.2, "predicted_peak_reserved_gib": 12.5}
    line = describe(finished(same | {"first_loss": 1, "predicted_peak_at_longest_gib": 12.4}))
    assert "measured 12.20 / predicted 12.50 GiB reserved;" in line  # within 2 %: one figure


def test_the_store_keeps_the_peak_beside_the_plan_at_the_longest_sample(monkeypatch):
    """What a GPU run remembers is compared with the same plan its final line gives (the
    summary's plan at the longest sample), not the full length's."""
    from finetune_tui.engine.plan.measured import measurements
    from finetune_tui.engine.runs.summary import RunSummary
    from finetune_tui.engine.settings.preset import settings_from_overrides
    from finetune_tui.engine.train import callbacks, run_memory

    reading = {"memory_peak_gib": 27.86, "card": "NVIDIA H100 80GB HBM3"}
    monkeypatch.setattr(callbacks, "cuda_memory", lambda: reading)
    settings = settings_from_overrides(["model.name_or_path=Qwen/Qwen2.5-7B"])
    summary = RunSummary(
        step=5, predicted_peak_reserved_gib=45.08, predicted_peak_at_longest_gib=28.05
    )
    run_memory.remember(settings, summary, lambda event: None)
    (kept,) = measurements()
    assert (kept.family, kept.measured_gib, kept.predicted_gib) == ("qwen2", 27.86, 28.05)
