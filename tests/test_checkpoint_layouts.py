"""A checkpoint is resumable by what its writer saves: a LoRA adapter or a whole model, and
the optimizer state of one process, of FSDP's ranks or of DeepSpeed. Each layout below is
the file set the Trainer writes (transformers 5.17); each missing piece is named."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from finetune_tui.engine.runs.checkpoints import checkpoint_problem, last_complete_checkpoint


def _tensor_file(path):
    save_file({"w": torch.zeros(2)}, str(path))


def _torch_file(path):
    torch.save({"x": 1}, path)


def lora(folder):
    (folder / "adapter_config.json").write_text("{}")
    _tensor_file(folder / "adapter_model.safetensors")
    _torch_file(folder / "optimizer.pt")
    _torch_file(folder / "scheduler.pt")


def full(folder):
    (folder / "config.json").write_text("{}")
    _tensor_file(folder / "model.safetensors")
    _torch_file(folder / "optimizer.pt")
    _torch_file(folder / "scheduler.pt")


def deepspeed(folder):
    """ZeRO-3: the gathered 16-bit model, and DeepSpeed's own folder with optimizer,
    scheduler and partitioned model states (no optimizer.pt, no scheduler.pt)."""
    (folder / "config.json").write_text("{}")
    _tensor_file(folder / "model.safetensors")
    (folder / "latest").write_text("global_step8")
    states = folder / "global_step8"
    states.mkdir()
    _torch_file(states / "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt")
    _torch_file(states / "zero_pp_rank_0_mp_rank_00_model_states.pt")


def fsdp(folder):
    """SHARDED_STATE_DICT: a folder of model shards and one of optimizer shards."""
    (folder / "pytorch_model_fsdp_0").mkdir()
    (folder / "optimizer_0").mkdir()
    _torch_file(folder / "scheduler.pt")


def make(tmp_path, layout, step=8):
    folder = tmp_path / "checkpoints" / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    layout(folder)
    return folder


@pytest.mark.parametrize("layout", [lora, full, deepspeed, fsdp])
def test_every_writers_layout_is_resumable(tmp_path, layout):
    folder = make(tmp_path, layout)
    assert checkpoint_problem(folder) is None
    assert last_complete_checkpoint(tmp_path) == folder


@pytest.mark.parametrize(
    ("layout", "remove", "named"),
    [
        (lora, "adapter_config.json", "adapter_config.json: missing"),
        (lora, "adapter_model.safetensors", "missing the weights"),
        (full, "config.json", "config.json: missing"),
        (full, "optimizer.pt", "optimizer.pt: missing"),
        (full, "scheduler.pt", "scheduler.pt: missing"),
        (deepspeed, "global_step8", "latest: names no folder here"),
        (fsdp, "optimizer_0", "optimizer.pt: missing"),
    ],
)
def test_a_missing_piece_is_named_and_the_older_checkpoint_used(tmp_path, layout, remove, named):
    older = make(tmp_path, layout, step=4)
    newer = make(tmp_path, layout, step=8)
    target = newer / remove
    if target.is_dir():
        for child in target.iterdir():
            child.unlink()
        target.rmdir()
    else:
        target.unlink()
    skipped: list[str] = []
    assert last_complete_checkpoint(tmp_path, skipped) == older
    assert len(skipped) == 1 and named in skipped[0]


def test_deepspeed_states_are_checked_like_any_torch_archive(tmp_path):
    folder = make(tmp_path, deepspeed)
    states = folder / "global_step8" / "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt"
    states.write_bytes(states.read_bytes()[:10])
    assert "not a readable torch archive" in checkpoint_problem(folder)
    (folder / "latest").write_text("../../elsewhere")
    assert "names no folder here" in checkpoint_problem(folder)
