"""The whole run's predicted wall time: steps and real tokens from the data, starting up
from committed GPU runs, evaluation and saves (engine/plan/run_time.py)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from conftest import DEMO_PRESET

from finetune_tui.engine.data.dataset import dataset_stats
from finetune_tui.engine.plan import run_time as rt
from finetune_tui.engine.settings.preset import load_preset

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


def demo(*pairs: str):
    settings = load_preset(DEMO_PRESET, list(pairs))
    return settings, dataset_stats(settings)


def test_startup_is_what_the_committed_gpu_runs_spent_outside_their_steps():
    """Each benchmark run's wall time less its steps at its own tokens/s: the median per
    backend is the constant (so a changed constant or a new row shows here)."""
    spent: dict[str, list[float]] = {}
    for path in sorted(RESULTS.glob("backends*.jsonl")):
        for row in map(json.loads, path.read_text().splitlines()):
            s = row.get("settings", {})
            if not row.get("ok") or s.get("memory.packing"):
                continue
            tokens = s["training.micro_batch_size"] * s["training.max_seq_length"]
            tokens *= s.get("training.gradient_accumulation_steps", 1)
            steps = row.get("steps") or s["training.max_steps"]
            spent.setdefault(s["memory.backend"], []).append(
                row["wall_s"] - steps * tokens / row["tokens_per_s"]
            )
    assert set(spent) == set(rt.STARTUP_S)
    for backend, seconds in spent.items():
        assert len(seconds) >= 9
        assert statistics.median(seconds) == pytest.approx(rt.STARTUP_S[backend], abs=0.06)


def test_the_demo_takes_its_372_steps_over_the_training_records():
    """2,200 records, 10 % held out, micro-batch 32, 6 epochs: 62 steps an epoch."""
    settings, stats = demo()
    timing = rt.run_time(settings, stats, 800_000, tokens_per_s=10_000.0, basis="b")
    assert timing.steps == 372
    mean = sum(min(n, 64) for n in stats.sample) / len(stats.sample)
    assert timing.real_tokens == pytest.approx(1980 * 6 * mean, rel=0.01)
    assert timing.train_s == pytest.approx(timing.real_tokens / 10_000.0)
    assert timing.eval_s > 0  # the held-out 220 are evaluated once, at the end
    parts = timing.train_s + timing.startup_s + timing.eval_s + timing.save_s
    assert timing.total_s == pytest.approx(parts)


def test_max_steps_fixes_the_run_and_no_data_without_it_is_no_answer():
    settings, stats = demo("training.max_steps=10")
    assert rt.run_time(settings, stats, 800_000, 1000.0, "b").steps == 10
    assert rt.run_time(settings, None, 800_000, 1000.0, "b").steps == 10
    settings, _ = demo()
    assert rt.run_time(settings, None, 800_000, 1000.0, "b") is None


def test_packing_and_more_processes_take_fewer_steps_for_the_same_tokens():
    settings, stats = demo()
    padded = rt.run_time(settings, stats, 8e9, 1000.0, "b")
    packed = rt.run_time(*demo("memory.packing=true"), 8e9, 1000.0, "b")
    assert packed.steps < padded.steps / 1.5
    assert packed.real_tokens == pytest.approx(padded.real_tokens, rel=0.02)
    two = rt.run_time(
        *demo("distributed.strategy=ddp", "distributed.processes=2"), 8e9, 1000.0, "b"
    )
    assert two.steps == 31 * 6  # 1,980 records / (2 x 32) per step, 6 epochs


def test_saves_and_evaluations_follow_their_settings():
    settings, stats = demo("training.save_steps=100", "training.eval_steps=50")
    timing = rt.run_time(settings, stats, 8e9, 1000.0, "b")
    assert rt._saves(settings, timing.steps, 62) == 1 + 3
    assert rt._eval_passes(settings, timing.steps, 62) == 8  # 50, 100, ... 350, and 372
    full = rt.run_time(*demo("training.method=full"), 8e9, 1000.0, "b")
    lora = rt.run_time(*demo(), 8e9, 1000.0, "b")
    assert full.save_s > 50 * lora.save_s  # a whole 8 B model and its optimizer, not an adapter


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(44.6, "45 s"), (600, "10 min"), (11_400, "3 h 10 min"), (3 * 86_400 + 7_200, "3 d 2 h")],
)
def test_a_time_reads_as_precisely_as_it_is_known(seconds, text):
    assert rt.clock(seconds) == text


def test_a_run_records_its_real_tokens_per_second_after_the_first_step(finished_template):
    """summary.json's tokens_per_s leaves the first step out (its compiling and patching
    is start-up, which the plan counts apart), as the Step events show it."""
    summary = json.loads((finished_template / "summary.json").read_text())
    steps = [
        e
        for e in map(json.loads, (finished_template / "metrics.jsonl").read_text().splitlines())
        if e["kind"] == "step"
    ]
    first, last = steps[0], steps[-1]
    assert first["step"] == 1 and last["step"] == 4
    expected = (last["tokens_seen"] - first["tokens_seen"]) / (
        last["elapsed_s"] - first["elapsed_s"]
    )
    assert summary["tokens_per_s"] == pytest.approx(expected, rel=0.25)
    assert "predicted_tokens_per_s" not in summary  # a CPU run: no card to predict for
