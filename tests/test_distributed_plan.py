"""Full fine-tuning and several GPUs in the planner: each GPU's share and CPU offload —
all on CPU, none of it measured on a GPU yet."""

from __future__ import annotations

import pytest

from finetune_tui.engine.hardware import simulated_hardware
from finetune_tui.engine.memory import GIB, predict_memory
from finetune_tui.engine.models import inspect_model
from finetune_tui.engine.preset import settings_from_overrides
from finetune_tui.engine.sharding import NCCL_GIB, gathered_bytes
from finetune_tui.engine.strategy import advise

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
    assert kept.cpu_ram_gib == 0 and moved.gradients_optimizer_gib == 0
    # fp32 masters, gradients and AdamW state of a quarter each, four processes on the node
    assert moved.cpu_ram_gib == pytest.approx((4 + 4 + 8) * params / GIB)
    assert moved.reserved_gib < kept.reserved_gib - 20
    fsdp = settings_from_overrides([*FULL, *on(4, "fsdp", "distributed.cpu_offload=1")])
    assert predict_memory(llama8b, fsdp).base_weights_gib == 0  # FSDP offloads the shards


def test_qlora_under_fsdp_splits_the_four_bit_weights():
    model = inspect_model("meta-llama/Llama-2-70b-hf")
    one = predict_memory(model, settings_from_overrides(QLORA))
    for gpus in (2, 4):
        split = predict_memory(model, settings_from_overrides([*QLORA, *on(gpus, "fsdp")]))
        assert split.base_weights_gib == pytest.approx(one.base_weights_gib / gpus)
        assert split.lora_gib == pytest.approx(one.lora_gib / gpus)
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
