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
