"""Faults from the machine and the model folder: full disk, refused writes, remote code."""

from __future__ import annotations

import errno
import json
import os
import shutil
import textwrap
import threading

import pytest
from conftest import DEMO_PRESET, FEW_RECORDS, run_cli

from finetune_tui.engine.common import errors
from finetune_tui.engine.common.demo import ensure_demo_model
from finetune_tui.engine.common.errors import TrainingError, storage_failure
from finetune_tui.engine.settings.preset import load_preset
from finetune_tui.engine.train.runner import run_training

QUICK = ["--set", "training.max_steps=2", "--set", "training.exact_match_samples=0"]
QUICK += ["--set", FEW_RECORDS]


def test_full_disk_while_writing_the_summary_fails_in_one_line(tmp_path, monkeypatch):
    """A real ENOSPC (the summary is written to /dev/full) becomes one clear error.

    (A link planted at the temporary file's name is no longer written through.)"""
    from finetune_tui.engine.runs import summary

    def onto_a_full_disk(path, text):
        with open("/dev/full", "w") as file:
            file.write(text)

    monkeypatch.setattr(summary, "write_text_atomic", onto_a_full_disk)
    settings = load_preset(
        DEMO_PRESET, ["training.max_steps=2", "training.exact_match_samples=0", FEW_RECORDS]
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    events = []
    with pytest.raises(TrainingError) as caught:
        run_training(settings, events.append, threading.Event(), run_dir=run_dir)
    assert str(caught.value) == f"{run_dir}: no space left on device"  # write() names no file
    assert events[-1].kind == "error" and events[-1].message == str(caught.value)
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["kind"] == "error"


def test_torch_save_on_a_full_disk_is_named_by_the_free_space(tmp_path, monkeypatch):
    """torch.save reports ENOSPC as a bare RuntimeError; the free space decides."""
    import torch

    with pytest.raises(RuntimeError) as caught:
        torch.save({"weights": torch.zeros(4096)}, "/dev/full")
    assert storage_failure(caught.value, tmp_path) is None  # this disk has room

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(errors.shutil, "disk_usage", lambda _: usage._replace(free=10 * 2**20))
    error = storage_failure(caught.value, tmp_path)
    assert str(error) == f"{tmp_path}: no space left on device (10 MiB free)"


def test_refused_write_deep_in_a_library_is_named_with_its_file(tmp_path):
    try:
        try:
            raise PermissionError(errno.EACCES, "Permission denied", "/ro/adapter.safetensors")
        except PermissionError as exc:
            raise RuntimeError("safetensors: could not save") from exc
    except RuntimeError as wrapped:
        error = storage_failure(wrapped, tmp_path)
    assert str(error) == "/ro/adapter.safetensors: permission denied"
    assert error.exit_code == 1


@pytest.fixture
def model_with_own_code(tmp_path):
    """The demo model, declared as a custom architecture whose code leaves a marker file."""
    folder = tmp_path / "custom-model"
    shutil.copytree(ensure_demo_model(), folder)
    marker = tmp_path / "remote-code-ran"
    (folder / "modeling_marker.py").write_text(
        textwrap.dedent(f"""
        from pathlib import Path

        from transformers import LlamaConfig, LlamaForCausalLM

        Path({str(marker)!r}).write_text("ran")


        class MarkerConfig(LlamaConfig):
            model_type = "marker_llama"


        class MarkerForCausalLM(LlamaForCausalLM):
            config_class = MarkerConfig
        """)
    )
    config = json.loads((folder / "config.json").read_text())
    config.update(
        model_type="marker_llama",
        architectures=["MarkerForCausalLM"],
        auto_map={
            "AutoConfig": "modeling_marker.MarkerConfig",
            "AutoModelForCausalLM": "modeling_marker.MarkerForCausalLM",
        },
    )
    (folder / "config.json").write_text(json.dumps(config))
    return folder, marker


def test_model_code_never_runs_unless_trusted(cli, tmp_path, model_with_own_code):
    folder, marker = model_with_own_code
    args = ["--preset", str(DEMO_PRESET), "--set", f"model.name_or_path={folder}", *QUICK]
    refused = cli(*args, "--output", str(tmp_path / "refused"))
    assert refused.returncode == 2, refused.stderr[-2000:]
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "trust_remote_code" in lines[0], refused.stderr[-2000:]
    assert not marker.exists()

    trusted = run_cli(
        tmp_path, *args, "--set", "model.trust_remote_code=true",
        "--output", str(tmp_path / "trusted"), timeout=300,
    )  # fmt: skip
    assert trusted.returncode == 0, trusted.stderr[-2000:]
    assert "warning: model.trust_remote_code is on" in trusted.stdout
    assert "modeling_marker.py" in trusted.stdout
    assert marker.read_text() == "ran"
    assert os.path.isdir(tmp_path / "trusted" / "adapter")


def test_a_run_whose_weights_turn_nan_stops_there_saves_nothing_after_and_fails(tmp_path):
    """A diverged run (a learning rate far too high) logged "loss 0.0000", finished with
    exit 0 and offered its NaN adapter for merging; every checkpoint after the divergence
    held NaN weights. It now stops at the first non-finite loss, gradient or weight, keeps
    the checkpoint before it and fails naming the step."""
    settings = load_preset(
        DEMO_PRESET,
        [
            *("training.learning_rate=0.99", "lora.alpha=512", "training.warmup_ratio=0"),
            *("training.max_steps=12", "training.save_steps=2", "training.logging_steps=4"),
            *("training.exact_match_samples=0", "dataset.max_samples=64"),
        ],
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    events = []
    with pytest.raises(TrainingError, match=r"training diverged at step 4 \(") as caught:
        run_training(settings, events.append, threading.Event(), run_dir=run_dir)
    assert "the last good checkpoint is checkpoint-2" in str(caught.value)
    assert "lower training.learning_rate (now 0.99)" in str(caught.value)
    saved = sorted(p.name for p in (run_dir / "checkpoints").glob("checkpoint-*"))
    assert saved == ["checkpoint-2"] and not (run_dir / "adapter").exists()
    assert events[-1].kind == "error" and not any(e.kind == "finished" for e in events)


def test_a_nan_gradient_norm_in_a_log_stops_the_run_without_that_save():
    from transformers import TrainerControl, TrainerState

    from finetune_tui.engine.train.divergence import DivergenceCallback

    watch, control, state = DivergenceCallback(), TrainerControl(), TrainerState(global_step=9)
    control.should_save = True
    watch.on_log(None, state, control, logs={"loss": 5.05, "grad_norm": float("nan")})
    assert watch.found == "step 9 (grad_norm nan)"
    assert control.should_training_stop and not control.should_save
    fine = DivergenceCallback()
    fine.on_log(None, state, TrainerControl(), logs={"loss": 0.0, "grad_norm": 1.5})
    assert fine.found is None
