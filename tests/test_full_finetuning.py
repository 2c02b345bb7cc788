"""Full fine-tuning (training.method: full): every weight trains, no adapter."""

from __future__ import annotations

import json

from conftest import DEMO_PRESET, run_cli, set_args

from finetune_tui.engine.run_dir.summary import read_summary


def test_full_fine_tuning_trains_every_weight_and_saves_the_whole_model(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(
        tmp_path,
        "--preset",
        str(DEMO_PRESET),
        "--output",
        str(run_dir),
        *set_args(
            "training.method=full",
            "training.max_steps=8",
            "training.learning_rate=0.0005",
            "training.exact_match_samples=0",
            "training.logging_steps=1",
        ),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    started = next(e for e in events if e["kind"] == "started")
    assert started["trainable_params"] == started["total_params"] > 500_000
    steps = [e["loss"] for e in events if e["kind"] == "step"]
    assert steps[-1] < steps[0]
    summary = read_summary(run_dir)
    assert summary.method == "full" and summary.lora_target_modules == []
    saved = {p.name for p in (run_dir / "adapter").iterdir()}
    assert "model.safetensors" in saved and "adapter_config.json" not in saved
    assert 'METHOD = "full"' in (run_dir / "export" / "train.py").read_text()
