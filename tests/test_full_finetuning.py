"""Full fine-tuning (training.method: full): every weight trains, no adapter."""

from __future__ import annotations

import json

import pytest
from conftest import DEMO_PRESET, FEW_RECORDS, call_main, set_args

from finetune_tui.engine.runs.summary import read_summary


def planned_checkpoint(run_dir) -> float:
    """The disk plan's checkpoint of this CPU run (fp32 weights and moments), less its
    allowance for the small files."""
    from finetune_tui.engine.inspect.models import inspect_model
    from finetune_tui.engine.plan import disk
    from finetune_tui.engine.settings.preset import load_preset

    settings = load_preset(run_dir / "settings.yaml")
    model = inspect_model(settings.model.name_or_path)
    return disk.checkpoint_bytes(model, settings, 4.0) - disk.small_files_bytes(model)


def test_full_fine_tuning_trains_every_weight_and_saves_the_whole_model(tmp_path):
    run_dir = tmp_path / "run"
    result = call_main(
        "--preset",
        str(DEMO_PRESET),
        "--output",
        str(run_dir),
        *set_args(
            "training.method=full",
            "training.max_steps=8",
            FEW_RECORDS,
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


def test_interrupted_full_fine_tuning_resumes_from_its_checkpoint(tmp_path):
    """A whole-model checkpoint (no adapter files) is one a resume continues from."""
    import signal

    from conftest import read_until, start_cli

    from finetune_tui.engine.runs.checkpoints import last_complete_checkpoint

    run_dir = tmp_path / "run"
    settings = set_args(
        "training.method=full",
        "training.max_steps=6",
        FEW_RECORDS,
        "training.save_steps=2",
        "training.exact_match_samples=0",
        "training.logging_steps=1",
    )
    proc = start_cli(tmp_path, "--preset", str(DEMO_PRESET), "--output", str(run_dir), *settings)
    read_until(proc, lambda line: line.startswith("checkpoint") and "checkpoint-2" in line)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    checkpoint = last_complete_checkpoint(run_dir)
    assert checkpoint is not None and (checkpoint / "model.safetensors").is_file()
    weighed = sum((checkpoint / f).stat().st_size for f in ("model.safetensors", "optimizer.pt"))
    assert weighed == pytest.approx(planned_checkpoint(run_dir), rel=0.05)
    resumed = call_main("--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming from {checkpoint}" in resumed.stdout
    assert "starting again from step 0" not in resumed.stdout
    assert read_summary(run_dir).step == 6
