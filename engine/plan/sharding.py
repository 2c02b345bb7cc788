"""Each GPU's share of a step under several processes: DDP, FSDP and DeepSpeed ZeRO-3.

Built on engine/plan/memory.py's one-GPU parts. Activations, logits and the overheads stay the
one-GPU model's (measured): every process computes its own micro-batch. What changes is
where the weights, gradients and optimizer state live, which follows what the libraries
allocate (each constant names its source). Measured so far on one H200, one process: ZeRO-3
with the optimizer offloaded (full fine-tuning) and without (LoRA); several GPUs are not.
"""

from __future__ import annotations

from dataclasses import replace

from ..inspect.models import ModelInfo
from ..settings.options import OPTIMIZERS
from ..settings.schema import TrainSettings
from .memory import (
    DTYPE_BYTES,
    GIB,
    MemoryBreakdown,
    StepBytes,
    adapter_word,
    base_weight_bytes,
    linear_bytes_per_param,
    one_gpu_bytes,
    optimizer_state_bytes,
    optimizer_step_bytes,
    trained_params,
)
from .objective import reference_bytes

# A trained parameter's shard is fp32 under both sharded strategies: accelerate upcasts
# trainable FSDP flat parameters to fp32 when mixed precision is on (Accelerator.
# prepare_model), and ZeRO-3 keeps fp32 partitions beside its 16-bit ones (2 + 2 bytes of
# 16-bit weight and gradient, 4 of fp32 master: the same 8). LoRA's adapters are fp32
# too (memory.adapter_word). The optimizer state is then that of fp32 parameters
# (OPTIMIZERS' state_bytes).
SHARD_WEIGHT_BYTES = 4.0
SHARD_GRADIENT_BYTES = 4.0
DEEPSPEED_OFFLOAD_GPU_BYTES = 2.0  # ZeRO-3 offloading the optimizer keeps the 16-bit shard
# ...and writes the CPU step's result back through a second 16-bit copy of it: measured on one
# H200 (Llama-3.2-1B, full fine-tuning, micro-batch 1 and 2 alike), the peak allocated was the
# 16-bit weights twice plus 0.6 GiB (benchmarks/results/launched-one-gpu-h200-2026-12-01.jsonl)
DEEPSPEED_OFFLOAD_STEP_BYTES = 2.0
# CPU memory of ZeRO-3's optimizer offload per trained parameter of a rank's shard: 16 bytes
# of fp32 master weight, moments and gradient, its pinned 16-bit copy, and what saving a
# checkpoint adds, or loading one when resuming (the larger: 24.6 measured, the same run),
# above each process's own CPU_PROCESS_GIB (torch, CUDA and the loaded libraries: 2.6 GiB
# measured without offload)
DEEPSPEED_OFFLOAD_CPU_BYTES = 24.6
CPU_PROCESS_GIB = 2.6
# Outside torch's pool, nvidia-smi saw 0.65 GiB more with the offload than without (pinned
# host memory mapped for the CPU step): counted with the distributed allowance per GPU
DEEPSPEED_OFFLOAD_DEVICE_GIB = 0.65
PREFETCH_LAYERS = 2  # the layer computing and the next, gathered ahead (backward_prefetch)
NCCL_GIB = 0.5  # an allowance for NCCL's communicators and buffers per GPU, not measured
NOT_MEASURED = "several-GPU memory is predicted from what the libraries allocate, not measured"


def shards(settings: TrainSettings) -> int:
    """How many GPUs split each tensor: all of them, or (hybrid_shard) one node's."""
    d = settings.distributed
    if d.strategy == "ddp":
        return 1
    if d.strategy == "fsdp" and d.sharding == "hybrid_shard":
        return d.processes
    return d.world_size


def per_gpu_bytes(
    model: ModelInfo, settings: TrainSettings, padded: bool | None = None
) -> StepBytes:
    """One process's peak under settings.distributed (world size above 1)."""
    if settings.distributed.strategy == "ddp":
        return _ddp(model, settings, padded)
    return _sharded(model, settings, padded)


def _ddp(model: ModelInfo, settings: TrainSettings, padded: bool | None) -> StepBytes:
    """A whole copy per GPU, plus DDP's gradient buckets: a flat copy of every gradient
    (gradient_as_bucket_view is off by default)."""
    one = one_gpu_bytes(model, settings, padded)
    full = settings.training.method == "full"
    gradient = DTYPE_BYTES[settings.quantization.compute_dtype] if full else adapter_word(settings)
    buckets = trained_params(model, settings) * gradient
    return replace(one, distributed=buckets + NCCL_GIB * GIB)


def _sharded(model: ModelInfo, settings: TrainSettings, padded: bool | None) -> StepBytes:
    """FSDP or ZeRO-3: trained weights, gradients and optimizer state split `shards` ways,
    frozen weights too (at their stored size: QLoRA's 4-bit weights sit in bf16 storage so
    FSDP can split them); a few layers gathered whole while they compute."""
    d, n = settings.distributed, shards(settings)
    full = settings.training.method == "full"
    word = DTYPE_BYTES[settings.quantization.compute_dtype]
    params = trained_params(model, settings)
    frozen = 0.0 if full else base_weight_bytes(model, settings) / n
    frozen += reference_bytes(model, settings, word) / n  # TRL shards the reference too
    weights = SHARD_WEIGHT_BYTES * params / n
    gradients = SHARD_GRADIENT_BYTES * params / n
    state = optimizer_state_bytes(model, settings, SHARD_WEIGHT_BYTES, 1 / n)
    step = optimizer_step_bytes(settings, params / n, SHARD_WEIGHT_BYTES)
    cpu = 0.0
    if d.cpu_offload and d.strategy == "deepspeed":  # offload_optimizer: fp32 master + state
        cpu = DEEPSPEED_OFFLOAD_CPU_BYTES * params / n + CPU_PROCESS_GIB * GIB
        weights, gradients, state = DEEPSPEED_OFFLOAD_GPU_BYTES * params / n, 0, 0
        step = DEEPSPEED_OFFLOAD_STEP_BYTES * params / n
    elif d.cpu_offload:  # FSDP's offload_params: every shard, frozen ones too, and the step
        cpu = frozen + weights + gradients + state + CPU_PROCESS_GIB * GIB
        frozen, weights, gradients, state, step = 0, 0, 0, 0, 0
    outside_pool = (
        DEEPSPEED_OFFLOAD_DEVICE_GIB * GIB if d.cpu_offload and d.strategy == "deepspeed" else 0.0
    )
    paged = state if OPTIMIZERS[settings.training.optimizer].paged else 0.0
    state -= paged
    whole = 0.0
    if d.strategy == "fsdp" and d.sharding == "shard_grad_op":  # weights whole fwd to bwd
        whole = model.params_total * word if full else base_weight_bytes(model, settings)
        gathered = _layer_gradients(model, settings)
    else:
        gathered = gathered_bytes(model, settings)
    one = one_gpu_bytes(model, settings, padded)
    return StepBytes(
        weights=whole + frozen + (weights if full else 0.0),
        lora=0.0 if full else weights + gradients + state,
        trained=gradients + state if full else 0.0,
        activations=one.activations,
        logits=one.logits,
        distributed=gathered + NCCL_GIB * GIB + outside_pool,
        paged=paged,
        step=step,
        cpu_ram=cpu * d.processes,
    )


def largest_layer_params(model: ModelInfo) -> tuple[float, float]:
    """(nn.Linear, other) parameters of the largest decoder layer, the unit FSDP wraps:
    every distinct projection once (a dense and a shared-expert MLP both: the safe side),
    one sparse layer's fused experts, norms and routers spread evenly."""
    linear = sum(lin.in_features * lin.out_features for lin in model.linears)
    experts = model.params_experts / max(model.moe.sparse_layers, 1) if model.is_moe else 0
    small = model.params_total - model.params_linear - model.params_experts
    small -= model.params_embedding
    return linear, experts + small / model.num_layers


def _root_params(model: ModelInfo) -> int:
    """The root unit: embeddings, an untied LM head and the final norm."""
    return model.params_embedding + model.hidden_size


def gathered_bytes(model: ModelInfo, settings: TrainSettings) -> float:
    """Weights gathered whole while they compute, at their stored size: the root unit (FSDP
    keeps it gathered from forward to backward) and PREFETCH_LAYERS decoder layers; full
    fine-tuning adds their whole 16-bit gradients before the reduce-scatter splits them."""
    word = DTYPE_BYTES[settings.quantization.compute_dtype]
    linear, other = largest_layer_params(model)
    layer = linear * linear_bytes_per_param(settings) + other * word
    return _root_params(model) * word + PREFETCH_LAYERS * layer + _layer_gradients(model, settings)


def _layer_gradients(model: ModelInfo, settings: TrainSettings) -> float:
    """Full fine-tuning: the root's and one layer's whole 16-bit gradients before the
    reduce-scatter (the root's wait for the embedding, the last to get its gradient)."""
    if settings.training.method != "full":
        return 0.0
    word = DTYPE_BYTES[settings.quantization.compute_dtype]
    return (_root_params(model) + sum(largest_layer_params(model))) * word


def distributed_reason(settings: TrainSettings, breakdown: MemoryBreakdown) -> str:
    """What each GPU holds under this strategy, said plainly."""
    d = settings.distributed
    gpus = f"{d.world_size} GPUs" + (f" on {d.nodes} nodes" if d.nodes > 1 else "")
    if d.strategy == "ddp":
        what = "a whole copy per GPU plus its gradient buckets"
    elif d.strategy == "fsdp" and d.sharding == "shard_grad_op":
        what = f"gradients and optimizer state split {shards(settings)} ways, weights whole"
    else:
        name = "FSDP" if d.strategy == "fsdp" else "ZeRO-3"
        what = f"{name}: weights, gradients and optimizer state split {shards(settings)} ways"
    offload = ""
    if d.cpu_offload:
        offload = f"; {breakdown.cpu_ram_gib:.1f} GiB offloaded to CPU memory per node"
    moved = "gradient buckets" if d.strategy == "ddp" else "gathered layers"
    return (
        f"{d.strategy} over {gpus}, {what}; {breakdown.distributed_gib:.1f} GiB per GPU for "
        f"{moved} and NCCL{offload} ({NOT_MEASURED})"
    )
