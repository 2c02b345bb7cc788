"""Micro-batch filling: packing keeps samples apart without flash-attention, the padding
estimates behind the advisor's choice, and the switches reaching TRL."""

from __future__ import annotations

import json
import random
import threading

import pytest
import torch
from conftest import DEMO_PRESET

from finetune_tui.engine.data.lengths import stats_from_lengths
from finetune_tui.engine.inspect.hardware import simulated_hardware
from finetune_tui.engine.inspect.models import inspect_model
from finetune_tui.engine.plan import batching
from finetune_tui.engine.plan.advisor import advise
from finetune_tui.engine.settings.preset import load_preset, settings_from_overrides
from finetune_tui.engine.train import trainer_build
from finetune_tui.engine.train.loading import choose_device
from finetune_tui.engine.train.trainer_config import sft_config_kwargs


def packed_trainer(tmp_path, attn: str):
    """The runner's own trainer for the demo with packing on (LoRA dropout off)."""
    settings = load_preset(
        DEMO_PRESET,
        [
            "memory.packing=true",
            f"model.attn_implementation={attn}",
            "training.micro_batch_size=4",
            "training.max_seq_length=256",
            "lora.dropout=0.0",
            f"output.dir={tmp_path / 'run'}",
        ],
    )
    notices = []
    inputs = trainer_build.prepare_inputs(settings, notices.append)
    assert inputs.attn == attn, notices
    trainer, *_ = trainer_build.build_trainer(
        settings, inputs, tmp_path, notices.append, threading.Event()
    )
    return trainer


def segments(batch: dict) -> list[slice]:
    """Where each packed sample sits in the flattened row: its positions restart at 0."""
    starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist()
    ends = [*starts[1:], batch["input_ids"].shape[1]]
    return [slice(a, b) for a, b in zip(starts, ends, strict=True)]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_a_packed_batch_loses_what_its_samples_lose_apart(tmp_path, attn):
    trainer = packed_trainer(tmp_path, attn)
    batch = next(iter(trainer.get_train_dataloader()))
    assert "attention_mask" not in batch  # padding-free: one row, positions restart
    parts = segments(batch)
    assert len(parts) >= 4
    model = trainer.model.eval()

    def summed_loss(**inputs) -> tuple[float, int]:
        counted = int((inputs["labels"][:, 1:] != -100).sum())
        with torch.no_grad():
            loss = trainer.compute_loss(model, dict(inputs))
        return float(loss) * counted, counted

    packed, tokens = summed_loss(**batch)
    apart = [
        summed_loss(
            input_ids=batch["input_ids"][:, part],
            labels=batch["labels"][:, part],
            position_ids=batch["position_ids"][:, part],
        )
        for part in parts
    ]
    assert tokens == sum(n for _, n in apart)
    assert packed == pytest.approx(sum(loss for loss, _ in apart), rel=1e-4)
    # The check has teeth: counting positions on through the row lets samples see each other.
    leaked, _ = summed_loss(
        input_ids=batch["input_ids"],
        labels=batch["labels"],
        position_ids=torch.arange(batch["input_ids"].shape[1])[None],
    )
    assert abs(leaked - packed) > 1e-3 * abs(packed)


def test_padding_estimates():
    assert batching.clipped_mean([10, 100, 1000], 100) == pytest.approx(70)
    # bins of 384 hold one 300-token sample each; short samples fill bins to PACKED_FILL
    assert batching.packed_fill([300] * 512, 384) == pytest.approx(300 / 384)
    rng = random.Random(0)
    short = [int(rng.lognormvariate(4.73, 0.648)) + 8 for _ in range(512)]  # Alpaca-like
    assert batching.packed_fill(short, 1024) == batching.PACKED_FILL
    # Unsloth's measured curve is U-shaped: its compile of each new shape weighs on small
    # micro-batches, the mask's square on large
    cost = [batching.unsloth_packed_cost(b) for b in (4, 16, 32)]
    assert cost[0] > cost[1] < cost[2]


@pytest.mark.parametrize(
    ("lengths", "length"),
    [([300] * 512, 384), ([30 + k % 9 for k in range(512)], 64), ("alpaca", 1024)],
)
def test_packed_bins_fill_as_trls_best_fit_decreasing_fills_them(lengths, length):
    """batching.packed_fill against TRL's own packing of the same lengths."""
    from datasets import Dataset
    from trl.data_utils import pack_dataset

    if lengths == "alpaca":
        rng = random.Random(1)
        lengths = [int(rng.lognormvariate(4.73, 0.648)) + 8 for _ in range(512)]
    rows = pack_dataset(Dataset.from_dict({"input_ids": [[1] * n for n in lengths]}), length)
    trl_fill = sum(min(n, length) for n in lengths) / (len(rows) * length)
    assert batching.packed_fill(lengths, length) == pytest.approx(
        min(trl_fill, batching.PACKED_FILL), abs=0.01
    )


def test_a_packed_step_costs_its_rows_square_without_flash():
    """One row of micro-batch x length tokens under a block mask: attention over the whole
    row, from the model's own widths; with flash attention each sample keeps its own."""
    from finetune_tui.engine.plan.throughput import flops_per_token, packed_cost

    model = inspect_model("Qwen/Qwen3-8B")

    def settings(*pairs):
        return settings_from_overrides(["memory.backend=liger", "memory.packing=true", *pairs])

    costs = [
        packed_cost(
            model, settings(f"training.micro_batch_size={b}", "training.max_seq_length=2048")
        )
        for b in (1, 4, 16)
    ]
    assert costs[0] == 1.0 and 1.0 < costs[1] < costs[2]
    b4 = settings("training.micro_batch_size=4", "training.max_seq_length=2048")
    assert costs[1] == pytest.approx(flops_per_token(model, b4, 8192) / flops_per_token(model, b4))
    assert 1.25 < costs[1] < 1.40  # the whole run measured 1.16x the full step planned
    flash = settings("model.attn_implementation=flash_attention_2", "training.micro_batch_size=4")
    assert packed_cost(model, flash) == 1.0


def lengths_stats(lengths: list[int]):
    return stats_from_lengths(lengths, 4096)


def test_the_advisor_stops_padding_a_skewed_dataset_and_keeps_a_uniform_one_padded():
    model = inspect_model("meta-llama/Llama-3.1-8B")
    rng = random.Random(0)
    skewed = [min(int(rng.lognormvariate(5.0, 1.0)) + 8, 4000) for _ in range(2000)]
    card = simulated_hardware(gpu="RTX 4090")
    base = settings_from_overrides([])
    plan = advise(card, model, base, dataset_stats=lengths_stats(skewed))
    assert plan.settings.memory.packing or plan.settings.memory.group_by_length
    reason = plan.reasons["memory.packing"]
    assert "padded" in reason and "packed" in reason and "grouped" in reason
    uniform = advise(card, model, base, dataset_stats=lengths_stats([300] * 2000))
    assert not uniform.settings.memory.packing and not uniform.settings.memory.group_by_length
    assert uniform.reasons["memory.packing"].startswith("padded")
    # one sample per micro-batch has no padding to win back: grouping never helps there,
    # and packing only when its measured step cost pays (at b1 it does not)
    small = advise(
        simulated_hardware(vram_gib=8),
        model,
        settings_from_overrides(["training.micro_batch_size=1"]),
        fixed={"training.micro_batch_size"},
        dataset_stats=lengths_stats(skewed),
    )
    assert not small.settings.memory.group_by_length
    assert "packed" in small.reasons["memory.packing"]


def test_the_switches_reach_trl():
    device = choose_device(settings_from_overrides([]))
    grouped = settings_from_overrides(["memory.group_by_length=true"])
    kwargs = sft_config_kwargs(grouped, device, has_eval=False)
    assert kwargs["train_sampling_strategy"] == "group_by_length"
    grouped_and_packed = settings_from_overrides(
        ["memory.group_by_length=true", "memory.packing=true"]
    )
    packed = sft_config_kwargs(grouped_and_packed, device, has_eval=False)
    assert packed["packing"] and packed["train_sampling_strategy"] == "random"
    assert json.dumps(kwargs)  # plain values: the exporter writes them
