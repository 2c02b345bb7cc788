"""The end of a run: the adapter is renamed in whole, a stop during the evaluation after
training skips that evaluation and keeps the summary, a failed save keeps what was there."""

from __future__ import annotations

import errno
import json
import threading

import pytest
from conftest import DEMO_PRESET, FEW_RECORDS

from finetune_tui.engine.common.errors import TrainingError
from finetune_tui.engine.runs.adapter_save import restore_adapter
from finetune_tui.engine.runs.layout import ADAPTER_REPLACED, ADAPTER_STAGING
from finetune_tui.engine.settings.preset import load_preset
from finetune_tui.engine.train.runner import run_training

SHORT = ["training.max_steps=2", "training.logging_steps=1", FEW_RECORDS]


def test_a_stop_during_the_evaluation_after_training_skips_it_and_keeps_the_summary(tmp_path):
    """Ctrl-C once the last step had run used to wait out the whole evaluation; a second
    Ctrl-C then exited before summary.json and the script were written."""
    settings = load_preset(DEMO_PRESET, [*SHORT, "training.exact_match_samples=8"])
    stop, events = threading.Event(), []

    def sink(event):
        events.append(event)
        if event.kind == "step" and event.step == 2:  # logged after the last step's stop check
            stop.set()

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    finished = run_training(settings, sink, stop, run_dir=run_dir)
    assert finished.status == "finished" and finished.step == 2
    notices = [e.message for e in events if e.kind == "notice"]
    assert "stopped during the evaluation after training: evaluation skipped" in notices
    assert not [e for e in events if e.kind == "eval"]  # neither loss nor exact match
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["eval_loss"] is None
    assert summary["exact_match_after"] is None and summary["exact_match_before"] is not None
    assert (run_dir / "export" / "train.py").is_file()
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert not (run_dir / ADAPTER_STAGING).exists() and not (run_dir / ADAPTER_REPLACED).exists()


def test_a_final_save_that_fails_keeps_the_adapter_the_run_had(tmp_path, monkeypatch):
    """The adapter was written in place: a save that failed (a full disk) or was killed
    half way left a torn adapter where the stopped run's had been."""
    from transformers import PreTrainedTokenizerBase

    settings = load_preset(DEMO_PRESET, [*SHORT, "training.exact_match_samples=0"])
    run_dir = tmp_path / "run"
    (run_dir / "adapter").mkdir(parents=True)
    (run_dir / "adapter" / "adapter_model.safetensors").write_bytes(b"the stopped run's")

    def full_disk(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "tokenizer.json")

    monkeypatch.setattr(PreTrainedTokenizerBase, "save_pretrained", full_disk)
    with pytest.raises(TrainingError, match="no space left on device"):
        run_training(settings, lambda event: None, threading.Event(), run_dir=run_dir)
    kept = run_dir / "adapter" / "adapter_model.safetensors"
    assert kept.read_bytes() == b"the stopped run's"
    half = run_dir / ADAPTER_STAGING  # the new weights, written before the tokenizer failed
    assert (half / "adapter_model.safetensors").is_file()
    restore_adapter(run_dir)  # what reopening the folder for --resume does first
    assert not half.exists() and kept.read_bytes() == b"the stopped run's"


def test_an_adapter_caught_between_the_two_renames_is_put_back(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / ADAPTER_REPLACED).mkdir(parents=True)
    (run_dir / ADAPTER_REPLACED / "adapter_config.json").write_text("{}")
    (run_dir / ADAPTER_STAGING).mkdir()
    restore_adapter(run_dir)
    assert (run_dir / "adapter" / "adapter_config.json").read_text() == "{}"
    assert sorted(p.name for p in run_dir.iterdir()) == ["adapter"]


def test_a_link_planted_at_the_staging_name_is_removed_not_followed(tmp_path):
    from finetune_tui.engine.runs.adapter_save import staging_dir

    elsewhere = tmp_path / "users-folder"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("mine")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ADAPTER_STAGING).symlink_to(elsewhere)
    staging = staging_dir(run_dir)
    assert staging.is_dir() and not staging.is_symlink()
    assert (elsewhere / "keep.txt").read_text() == "mine"


def test_fsdp_gathers_whole_weights_for_the_final_save(tmp_path):
    """Under FSDP with sharded checkpoints (the default) the Trainer's save_model writes
    nothing: the final save switches the state dict to a full one first. (FSDP itself needs
    GPUs; this checks the order of the two calls the runner and the script make.)"""
    from types import SimpleNamespace

    from finetune_tui.engine.recipe.trainer import save_whole

    calls = []
    plugin = SimpleNamespace(set_state_dict_type=lambda kind: calls.append(("type", kind)))
    trainer = SimpleNamespace(
        is_fsdp_enabled=True,
        accelerator=SimpleNamespace(state=SimpleNamespace(fsdp_plugin=plugin)),
        save_model=lambda folder: calls.append(("save", folder)),
    )
    save_whole(trainer, tmp_path / "adapter")
    assert calls == [("type", "FULL_STATE_DICT"), ("save", str(tmp_path / "adapter"))]
    trainer.is_fsdp_enabled, calls[:] = False, []
    save_whole(trainer, tmp_path / "adapter")
    assert calls == [("save", str(tmp_path / "adapter"))]
