"""Full fine-tuning and several GPUs in the planner: each GPU's share, CPU offload, `plan
--gpus` and the fewest cards a run needs — all on CPU, none of it measured on a GPU yet."""

from __future__ import annotations

import json

import pytest
from conftest import run_python

from finetune_tui.engine.inspect.hardware import simulated_hardware
from finetune_tui.engine.inspect.models import inspect_model
from finetune_tui.engine.plan.advisor import advise
from finetune_tui.engine.plan.gpu_count import plans_per_strategy, smallest_count
from finetune_tui.engine.plan.memory import GIB
from finetune_tui.engine.plan.peak import predict_memory
from finetune_tui.engine.plan.sharding import (
    CPU_PROCESS_GIB,
    DEEPSPEED_OFFLOAD_CPU_BYTES,
    DEEPSPEED_OFFLOAD_STEP_BYTES,
    NCCL_GIB,
    gathered_bytes,
)
from finetune_tui.engine.settings.preset import settings_from_overrides
from finetune_tui.main import main

STEP = ["training.max_seq_length=1024", "training.micro_batch_size=2"]
FULL = [*STEP, "training.method=full", "memory.gradient_checkpointing=on"]
QLORA = [*STEP, "quantization.mode=nf4", "memory.gradient_checkpointing=on"]


def on(gpus: int, strategy: str, *more: str) -> list[str]:
    return [f"distributed.strategy={strategy}", f"distributed.processes={gpus}", *more]


@pytest.fixture(scope="module")
def llama8b():
    return inspect_model("meta-llama/Llama-3.1-8B")


def test_full_fine_tuning_is_weights_gradients_and_optimizer_state(llama8b):
    """16-bit weights trained in place: 2 bytes of weight, 2 of gradient and 8-bit AdamW's 2
    of state per parameter (the embedding's state in 32 bits), plus LoRA's activations."""
    params, embedding = llama8b.params_total, llama8b.vocab_size * llama8b.hidden_size
    lora = predict_memory(llama8b, settings_from_overrides([*FULL, "training.method=lora"]))
    full = predict_memory(
        llama8b, settings_from_overrides([*FULL, "training.optimizer=adamw_8bit"])
    )
    assert full.lora_gib == 0 and full.base_weights_gib == pytest.approx(2 * params / GIB)
    assert full.gradients_optimizer_gib == pytest.approx((4 * params + 6 * embedding) / GIB)
    assert full.reserved_gib > lora.reserved_gib + 25
    parts = full.base_weights_gib + full.gradients_optimizer_gib
    assert full.allocated_gib == pytest.approx(parts + full.activations_gib + full.logits_gib)


def test_torch_adamw_keeps_its_moments_in_the_weights_dtype(llama8b):
    """bf16 weights: 2 x 2 bytes of AdamW state, not 8; the foreach step's square root of
    every second moment (one more weight-sized copy) shows once the activations are freed."""
    params = llama8b.params_total
    full = predict_memory(llama8b, settings_from_overrides(FULL))
    step_extra = max(0.0, 2 * params / GIB - full.activations_gib - full.logits_gib)
    expected = (2 * params + 4 * params) / GIB + step_extra
    assert full.gradients_optimizer_gib == pytest.approx(expected)


def test_full_fine_tuning_says_it_is_not_measured(llama8b):
    plan = advise(simulated_hardware(vram_gib=80), llama8b, settings_from_overrides(FULL))
    assert "not measured on a GPU yet" in plan.reasons["training.method"]
    assert plan.settings.quantization.mode == "none"  # 4-bit is QLoRA, never offered here
    assert "gradients and optimizer state" in plan.reasons["training.optimizer"]


def test_fsdp_memory_per_gpu_falls_with_the_gpus_and_ddp_does_not(llama8b):
    def peak(gpus: int, strategy: str) -> float:
        settings = settings_from_overrides([*FULL, *on(gpus, strategy)])
        return predict_memory(llama8b, settings).reserved_gib

    one = predict_memory(llama8b, settings_from_overrides(FULL)).reserved_gib
    fsdp = [peak(n, "fsdp") for n in (2, 4, 8)]
    ddp = [peak(n, "ddp") for n in (2, 4, 8)]
    assert fsdp[0] > fsdp[1] > fsdp[2] and fsdp[2] < one / 2
    assert ddp[0] == ddp[1] == ddp[2] > one  # a whole copy plus the gradient buckets
    assert [peak(n, "deepspeed") for n in (2, 4, 8)] == pytest.approx(fsdp)  # ZeRO-3


def test_sharded_state_is_fp32_split_n_ways(llama8b):
    """FSDP upcasts trained shards to fp32 (ZeRO-3 keeps fp32 masters): 4 + 4 bytes plus
    fp32 AdamW's 8, over N GPUs, and the foreach step's fp32 temporary of a shard."""
    params = llama8b.params_total
    settings = settings_from_overrides([*FULL, *on(8, "fsdp")])
    b = predict_memory(llama8b, settings)
    assert b.base_weights_gib == pytest.approx(4 * params / 8 / GIB)
    step_extra = max(0.0, 4 * params / 8 / GIB - b.activations_gib - b.logits_gib)
    expected = (4 + 8) * params / 8 / GIB + step_extra
    assert b.gradients_optimizer_gib == pytest.approx(expected)
    gathered = gathered_bytes(llama8b, settings) / GIB + NCCL_GIB
    assert b.distributed_gib == pytest.approx(gathered)
    assert gathered < 10  # the root unit and two layers, not the model


def test_cpu_offload_moves_the_optimizer_state_to_cpu_memory(llama8b):
    params = llama8b.params_total
    kept = predict_memory(llama8b, settings_from_overrides([*FULL, *on(4, "deepspeed")]))
    offload = settings_from_overrides([*FULL, *on(4, "deepspeed", "distributed.cpu_offload=1")])
    moved = predict_memory(llama8b, offload)
    # on the GPU only the write-back copy of each 16-bit shard the CPU step updates
    assert kept.cpu_ram_gib == 0
    assert moved.gradients_optimizer_gib <= DEEPSPEED_OFFLOAD_STEP_BYTES * params / 4 / GIB
    # fp32 masters, gradients and AdamW state of a quarter each (and what ZeRO-3 adds,
    # measured), four processes on the node, each with its own libraries
    per_process = DEEPSPEED_OFFLOAD_CPU_BYTES * params / 4 / GIB + CPU_PROCESS_GIB
    assert moved.cpu_ram_gib == pytest.approx(4 * per_process)
    assert DEEPSPEED_OFFLOAD_CPU_BYTES > 4 + 4 + 8
    assert moved.reserved_gib < kept.reserved_gib - 20
    fsdp = settings_from_overrides([*FULL, *on(4, "fsdp", "distributed.cpu_offload=1")])
    assert predict_memory(llama8b, fsdp).base_weights_gib == 0  # FSDP offloads the shards


def test_qlora_under_fsdp_splits_the_four_bit_weights():
    """On one GPU TRL casts a quantised model's adapters to bf16; under FSDP accelerate
    upcasts trainable parameters to fp32 for mixed precision: 16-bit LoRA's adapter bytes,
    split."""
    model = inspect_model("meta-llama/Llama-2-70b-hf")
    one = predict_memory(model, settings_from_overrides(QLORA))
    fp32 = predict_memory(model, settings_from_overrides([*STEP, "quantization.mode=none"]))
    assert one.lora_gib < fp32.lora_gib
    for gpus in (2, 4):
        split = predict_memory(model, settings_from_overrides([*QLORA, *on(gpus, "fsdp")]))
        assert split.base_weights_gib == pytest.approx(one.base_weights_gib / gpus)
        assert split.lora_gib == pytest.approx(fp32.lora_gib / gpus)
        assert split.activations_gib == one.activations_gib


def test_shard_grad_op_keeps_weights_whole_and_hybrid_splits_within_a_node(llama8b):
    def b(*more):
        return predict_memory(llama8b, settings_from_overrides([*FULL, *more]))

    full_shard = b(*on(8, "fsdp"))
    grad_op = b(*on(8, "fsdp", "distributed.sharding=shard_grad_op"))
    assert grad_op.base_weights_gib > 2 * llama8b.params_total / GIB
    assert grad_op.gradients_optimizer_gib == pytest.approx(full_shard.gradients_optimizer_gib)
    hybrid = b(*on(4, "fsdp", "distributed.sharding=hybrid_shard", "distributed.nodes=2"))
    assert hybrid.reserved_gib == pytest.approx(b(*on(4, "fsdp")).reserved_gib)


def test_several_gpus_never_offer_unsloth(llama8b):
    plan = advise(simulated_hardware(vram_gib=24), llama8b, settings_from_overrides(on(2, "fsdp")))
    assert plan.settings.memory.backend != "unsloth"
    assert "not measured" in plan.reasons["distributed.strategy"]


def test_seventy_b_qlora_needs_two_24_gb_cards_with_fsdp():
    """The answer.ai case: Llama-2-70B QLoRA on 24 GB cards, FSDP with CPU offload."""
    count = smallest_count(
        simulated_hardware(gpu="RTX 4090"),
        inspect_model("meta-llama/Llama-2-70b-hf"),
        settings_from_overrides(["quantization.mode=nf4"]),
    )
    assert count.gpus == 2 and count.strategy == "fsdp"
    assert count.describe(simulated_hardware(gpu="RTX 4090").primary).startswith(
        "2 x RTX 4090 with fsdp"
    )
    fsdp_alone = smallest_count(
        simulated_hardware(vram_gib=24),
        inspect_model("meta-llama/Llama-2-70b-hf"),
        settings_from_overrides(["quantization.mode=nf4", "distributed.cpu_offload=false"]),
        fixed={"distributed.cpu_offload"},
    )
    assert fsdp_alone.strategy == "fsdp" and fsdp_alone.gpus in (2, 4)


def test_one_card_that_fits_needs_one_gpu(llama8b):
    count = smallest_count(simulated_hardware(vram_gib=24), llama8b, settings_from_overrides([]))
    assert count.gpus == 1 and count.command() == "plan"


def test_does_not_fit_names_the_multi_gpu_way_out(capsys):
    code = main(
        [
            "plan",
            "--model",
            "meta-llama/Llama-2-70b-hf",
            "--gpu",
            "RTX 4090",
            "--set",
            "quantization.mode=nf4",
            "--json",
        ]
    )
    data = json.loads(capsys.readouterr().out)
    assert code == 3 and data["fits"] is False
    assert "at least " in data["reasons"]["fits"]  # the one-card answer stays
    assert "or 2 x RTX 4090 with fsdp" in data["reasons"]["fits"]
    assert data["reasons"]["fits"].endswith("plan --gpus 2")
    assert data["gpus_needed"]["gpus"] == 2 and data["gpus_needed"]["strategy"] == "fsdp"


def test_plan_gpus_json_extends_the_plan(capsys):
    args = ["plan", "--model", "meta-llama/Llama-2-70b-hf", "--gpu", "RTX 4090", "--gpus", "2"]
    code = main([*args, "--set", "quantization.mode=nf4", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["fits"] is True
    assert {"peak_vram_gib", "breakdown", "settings", "reasons", "alternatives"} <= set(data)
    d = data["distributed"]
    assert (d["world_size"], d["card"]) == (2, "RTX 4090")
    labels = [s["label"] for s in d["strategies"]]
    assert labels == ["ddp", "fsdp", "fsdp + cpu offload", "deepspeed", "deepspeed + cpu offload"]
    ddp = d["strategies"][0]
    assert ddp["fits"] is False and ddp["peak_vram_gib"] > 24
    assert d["chosen"] in labels and data["settings"]["distributed"]["processes"] == 2
    assert data["breakdown"]["distributed_gib"] > 0
    assert data["gpus_needed"]["command"] == "plan --gpus 2"


def test_plan_gpus_text(capsys):
    args = ["plan", "--model", "meta-llama/Llama-3.1-8B", "--vram", "24", "--gpus", "4"]
    assert main([*args, "--set", "training.method=full"]) == 0
    out = capsys.readouterr().out
    assert "each GPU of 4 x 24 GiB" in out and "deepspeed + cpu offload" in out
    assert "GiB CPU RAM per node" in out and "needs at least: " in out
    assert "not measured on a GPU yet" in out


def test_plan_gpus_on_a_pinned_strategy_and_bad_counts(capsys):
    args = ["plan", "--model", "meta-llama/Llama-3.1-8B", "--vram", "80", "--gpus", "2"]
    assert main([*args, "--set", "distributed.strategy=ddp", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [s["label"] for s in data["distributed"]["strategies"]] == ["ddp"]
    with pytest.raises(SystemExit):
        main(["plan", "--model", "demo", "--vram", "8", "--gpus", "0"])
    assert main(["plan", "--model", "demo", "--gpus", "2"]) == 2  # no card to plan for here
    assert "--gpu NAME or --vram GIB" in capsys.readouterr().err


def test_plan_gpus_imports_neither_the_ui_nor_torch():
    args = ["plan", "--model", "meta-llama/Llama-2-70b-hf", "--gpu", "RTX 4090", "--gpus", "2"]
    code = (
        "import sys, io, contextlib\n"
        "from finetune_tui.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    rc = main({[*args, '--nodes', '2']!r})\n"
        "assert rc == 0, rc\n"
        "loaded = [m for m in ('textual', 'torch') if m in sys.modules]\n"
        "assert not loaded, f'imported {loaded}'\n"
    )
    run_python(code)


def test_full_fine_tuning_too_big_for_one_card_fits_it_with_zero3_offload():
    """Llama-3.2-3B trained whole with 32-bit AdamW does not fit a 24 GB card alone; ZeRO-3
    moves the optimizer step to CPU memory and it fits that one card (`plan --gpus 1`)."""
    hardware = simulated_hardware(gpu="RTX 4090")
    model = inspect_model("meta-llama/Llama-3.2-3B")
    settings = settings_from_overrides(
        ["training.method=full", "quantization.mode=none", "training.optimizer=adamw_torch"]
    )
    pinned = {"training.optimizer"}
    count = smallest_count(hardware, model, settings, pinned)
    assert (count.gpus, count.strategy, count.cpu_offload) == (1, "deepspeed", True)
    assert count.describe(hardware.primary) == "1 x RTX 4090 with deepspeed + cpu offload"
    assert count.command() == "plan --gpus 1"
    plans = {p.label: p.plan for p in plans_per_strategy(hardware, model, settings, 1, 1, pinned)}
    assert list(plans) == ["one process", "deepspeed + cpu offload"]
    assert not plans["one process"].fits and plans["deepspeed + cpu offload"].fits
    # fp32 master, moments and gradient (16 bytes) and more, measured: in CPU memory
    assert plans["deepspeed + cpu offload"].breakdown.cpu_ram_gib > 16 * model.params_total / GIB


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["plan", "--model", "demo", "--vram", "nan"], "--vram nan: must be a number of GiB"),
        (["plan", "--model", "demo", "--vram", "inf", "--json"], "--vram inf: must be"),
        (["export", "--preset", "PRESET", "-o", "OUT", "--gpus", "99999999999"], "--gpus: "),
        (
            ["export", "--preset", "PRESET", "-o", "OUT", "--gpus", "8", "--nodes", "99999999999"],
            "--nodes: 99999999999 is out of range",
        ),
    ],
)
def test_out_of_range_sizes_and_counts_are_one_line(cli, tmp_path, args, named):
    from conftest import DEMO_PRESET
    from test_nothing_lost import one_line_error

    out = tmp_path / "job" / "train.py"
    args = [str(DEMO_PRESET) if a == "PRESET" else str(out) if a == "OUT" else a for a in args]
    assert named in one_line_error(cli(*args))
    assert not out.parent.exists()
