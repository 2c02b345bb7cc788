"""OOM back-off: an injected CUDA-style OOM halves the micro-batch and training goes on."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import DEMO_PRESET, FEW_RECORDS, REPO
from transformers import TrainerCallback

from finetune_tui.engine.common.errors import TrainingError
from finetune_tui.engine.plan.oom_policy import back_off
from finetune_tui.engine.runs.events import Notice
from finetune_tui.engine.settings.preset import load_preset
from finetune_tui.engine.train import runner
from finetune_tui.engine.train.runner import run_training


def test_back_off_keeps_effective_batch_then_turns_on_checkpointing():
    settings = load_preset(
        DEMO_PRESET, ["training.micro_batch_size=4", "training.gradient_accumulation_steps=2"]
    )
    halved, change = back_off(settings)
    assert (halved.training.micro_batch_size, halved.training.gradient_accumulation_steps) == (2, 4)
    assert halved.effective_batch_size == settings.effective_batch_size
    assert "micro-batch 4 -> 2" in change

    one = load_preset(DEMO_PRESET, ["training.micro_batch_size=1"])
    checkpointed, change = back_off(one)
    assert checkpointed.memory.gradient_checkpointing == "on"
    assert change == "gradient checkpointing on"
    with pytest.raises(TrainingError, match="micro-batch 1 with gradient checkpointing on"):
        back_off(checkpointed)


def test_kto_never_backs_off_below_the_micro_batch_it_trains_at():
    """KTOTrainer refuses a micro-batch of 1 (its KL reference point pairs completions in
    one): an OOM at 2 or 3 turns checkpointing on instead of failing the run at restart."""
    kto = REPO / "presets" / "demo-kto.yaml"
    for batch in (2, 3):
        settings = load_preset(kto, [f"training.micro_batch_size={batch}"])
        after, change = back_off(settings)
        assert after.training.micro_batch_size == batch and change == "gradient checkpointing on"
    halved, _ = back_off(load_preset(kto, ["training.micro_batch_size=4"]))
    assert halved.training.micro_batch_size == 2


class OutOfMemoryAt(TrainerCallback):
    """Raise the error CUDA raises when memory runs out, at a given step."""

    def __init__(self, step: int):
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step + 1 >= self.step:
            raise torch.OutOfMemoryError("CUDA out of memory (raised by the test)")


def test_injected_oom_backs_off_and_finishes(tmp_path, monkeypatch):
    build = runner.build_trainer
    built = []

    def build_then_run_out_of_memory_once(*args, **kwargs):
        trainer, *rest = build(*args, **kwargs)
        if not built:
            trainer.add_callback(OutOfMemoryAt(3))
        built.append(trainer)
        return (trainer, *rest)

    monkeypatch.setattr(runner, "build_trainer", build_then_run_out_of_memory_once)
    settings = load_preset(
        DEMO_PRESET,
        [
            "training.max_steps=6",
            FEW_RECORDS,
            "training.micro_batch_size=8",
            "training.exact_match_samples=0",
            f"output.dir={tmp_path / 'run'}",
        ],
    )
    events = []
    finished = run_training(settings, events.append)

    notices = [e.message for e in events if isinstance(e, Notice) and e.level == "warning"]
    assert any("out of memory: micro-batch 8 -> 4" in m for m in notices)
    assert finished.status == "finished" and finished.step == 6
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["oom_backoffs"] == [
        "micro-batch 8 -> 4, gradient accumulation "
        f"{settings.training.gradient_accumulation_steps} -> "
        f"{settings.training.gradient_accumulation_steps * 2}"
    ]
    assert summary["micro_batch_size"] == 4
    # a resume after the back-off keeps the smaller batch
    assert load_preset(tmp_path / "run" / "settings.yaml").training.micro_batch_size == 4
