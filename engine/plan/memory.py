"""Predicted peak VRAM of one training step on one GPU, with a breakdown.

An analytic sum of weights, LoRA state, activations and logits; the per-token activation
coefficients, fragmentation and fixed overheads live in `COEFFICIENTS` and are calibrated
against GPU measurements of LoRA / QLoRA (benchmarks/backends.py, docs/BENCHMARKS.md).
Full fine-tuning adds every weight's gradient and optimizer state; a preference objective's
second sequence, logits and reference are objective.py's. Several processes: each GPU's
share is engine/plan/sharding.py's. Errs on the safe side.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..inspect.hardware import GIB
from ..inspect.library_tables import liger_fused_expert_types
from ..inspect.models import ModelInfo
from ..settings.options import OPTIMIZERS
from ..settings.schema import TrainSettings
from .attention_bytes import masked_attention_bytes, packing_mask_bytes, scores_bytes
from .every_expert_bytes import (
    ROUTED_EXTRA_BYTES,
    cached_block_bytes,
    every_expert_bytes_per_token,
    routed_width,
)
from .hybrid_bytes import attention_layers, hybrid_bytes_per_token
from .kinded_bytes import kinded_bytes_per_token
from .lora_dropout import dropout_bytes_per_token
from .objective import (
    full_logits_bytes,
    reference_bytes,
    step_tokens,
)
from .recompute import recompute_extra_h

COEFFICIENTS = {
    # bytes per token per layer, in units of hidden size (h) and MLP width (i), bf16
    "act_h": 18.0,  # norms, q/k/v/o inputs and outputs, residuals, attention output
    "act_i": 8.0,  # gate, up, activation, down input
    "ckpt_h": 2.0,  # checkpointed: only each layer's input stays
    "unsloth_ckpt_h": 0.25,  # Unsloth offloads the layer inputs to CPU
    "act_i_16bit_extra": 2.0,  # 16-bit base weights keep one more MLP-wide copy (measured)
    "liger_act_i": 5.0,  # Liger's SwiGLU recomputes the activation instead of storing it
    "unsloth_act_i": 6.5,  # Unsloth's fused LoRA MLP keeps less per MLP width (fit: 8B, 7B)…
    "unsloth_act_h_extra": 4.0,  # …and its offloading leaves more blocks reserved per token
    "head_bytes_per_token_h": 8.0,  # fused chunked LM head: fp32 hidden + its gradient
    # of the head's tile buffer (HEAD_TILE_*), what the reserved peak keeps: the forward's
    # tile is freed before the backward and its segment lent to other blocks (fit: the
    # families' NF4 b4 x 1,024 rows, which the 0.125 GiB it replaced was fitted on)
    "head_tile_share": 0.5,
    "unsloth_head_gib": 0.125,  # Unsloth's own fused loss, not TRL's head (fit: its rows)
    "fragmentation": 0.04,  # reserved / allocated - 1 (measured 0.5-4 %)
    "workspace_gib": 0.10,  # cuBLAS / bitsandbytes workspaces
    "int8_bytes_per_param": 1.92,  # LLM.int8 training keeps more than the int8 weights
    "gemma_uncheckpointed_embedding_copies": 0.75,  # measured: a transient embedding copy
    # 4-/8-bit weights under checkpointing, MLP of two linears (no gate): one more layer of
    # activations than the gated families (fit: StarCoder2 NF4 b1/b4/b8; Pythia held out)
    "quantized_ungated_ckpt_layers": 1.0,
    # 4-/8-bit weights with one fused gate_up_proj (Phi-3, Phi-4): more per MLP width per
    # token than separate gate and up projections (fit: Phi-3-mini NF4; Phi-4 held out)
    "quantized_fused_gate_up_act_i": 5.5,
}
# Families measured to need more than the analytic model (benchmarks/results/moe-*.jsonl):
# DeepSeek-V2's latent attention + expert loop keep 177 x hidden bytes more per token and
# layer (fit on one uncheckpointed 6-layer V2-Lite row). Its full-logits term went once
# "auto" stopped adapting the routed experts (2026-12-05 rows: TRL's chunked head applies;
# without that term hf is planned +15 %, liger +3 %).
# Under Liger's fused experts the loop is gone and the term does not apply (H200
# 2026-12-05: DeepSeek-V2-Lite 4-layer liger rows within 2 % without it, with the gradient
# term below).
# OLMo-3 norms its queries and keys over the whole projections and its attention's and MLP's
# outputs, in fp32: 20 x hidden bytes a token and layer beyond a Llama layer of its widths
# (82,440 bytes at h = 4096, read with benchmarks/layer_trace.py from transformers' code,
# not fitted; the family matrix's rows were 1.8-8.7 % low without it).
EXTRA_ACT_H = {"deepseek_v2": 177.0, "deepseek_v3": 177.0, "olmo3": 20.0}
# Norms a layer has beyond a Llama layer's two: Gemma-2 and Gemma-3 also norm the attention's
# and the MLP's outputs before the residual adds. Liger's RMSNorm keeps its 16-bit input for
# the backward (LigerRMSNormFunction.forward: save_for_backward(X, W, RSTD)), so under Liger
# each keeps 2 x hidden bytes a token that a Llama layer does not (H100 / H200, Gemma-2-2B
# Liger without checkpointing: the plan was 6.3 % low at b32 x 512, 8 % under the measured
# per-token slope). HF's own norms keep fp32 copies, folded into its fitted Gemma terms.
SANDWICH_NORMS = {"gemma2": 2, "gemma3": 2, "gemma3_text": 2, "gemma4": 2, "gemma4_text": 2}
LIGER_NORM_INPUT_H = 2.0
# TRL's fused, chunked LM head scores the logits through one tile buffer of
# min(tokens, TOKEN_CHUNK_SIZE) x _CHUNKED_LOGPROB_CHUNK_SIZE entries in the compute dtype
# (trl.kernels.chunked_logprob: mm_buf; the vocabulary chunk whatever the vocabulary): a
# step of few tokens keeps a small one (traced: 64 MiB at b1 x 1,024, 256 MiB from b4).
# Copied here so a plan never imports TRL; tests check them against the installed TRL.
HEAD_TILE_TOKENS = 4096  # trl.kernels.chunked_logprob.TOKEN_CHUNK_SIZE
HEAD_TILE_VOCAB = 32768  # trl.trainer.utils._CHUNKED_LOGPROB_CHUNK_SIZE
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4, "auto": 2}
# The CUDA context nvidia-smi shows beside torch's pool: 1.82 GiB measured on an H100
# (CUDA 13); consumer cards load far less (not measured here: no such card was lent).
DATACENTER_GIB = 40  # cards this large (A100, H100, L40S...) load the large context
CONTEXT_GIB = {"datacenter": 1.85, "consumer": 0.6}
# Full fine-tuning trains the 16-bit weights in place: the recipe loads them in the compute
# dtype and the Trainer's bf16 autocast keeps no fp32 master copy (on one GPU or under DDP),
# so gradients come in the weights' dtype too. torch's AdamW creates its two moments with
# zeros_like(param): a bf16 weight has 2 x 2 bytes of state, not the table's 8, which holds
# for fp32 parameters (LoRA's adapters, FSDP's and ZeRO-3's fp32 shards). bitsandbytes keeps
# 32-bit state in fp32 and 8-bit state in uint8 whatever the weights' dtype (Optimizer2State.
# init_state), and the Trainer gives nn.Embedding 32-bit state under 8-bit optimizers
# (Trainer.create_optimizer). None of this is measured on a GPU yet.
STATE_IN_WEIGHT_DTYPE = {"adamw_torch"}
MOMENTS = 2  # AdamW's exp_avg and exp_avg_sq
EMBEDDING_STATE_BYTES = 8.0  # two fp32 moments: bitsandbytes' 32-bit override for embeddings


def cuda_context_gib(total_gib: float | None) -> float:
    """The CUDA context of a card of this size (an H100's when the card is unknown)."""
    if total_gib is None:
        return CONTEXT_GIB["datacenter"]
    return CONTEXT_GIB["datacenter" if total_gib >= DATACENTER_GIB else "consumer"]


@dataclass
class MemoryBreakdown:
    base_weights_gib: float
    lora_gib: float  # LoRA weights + gradients + optimizer state
    activations_gib: float
    logits_gib: float
    overhead_gib: float  # fragmentation, workspaces, CUDA context
    allocated_gib: float  # torch.cuda.max_memory_allocated()
    reserved_gib: float  # torch.cuda.max_memory_reserved()
    nvidia_smi_gib: float  # what nvidia-smi shows: reserved + context (+ paged state)
    gradients_optimizer_gib: float = 0.0  # full fine-tuning: every weight's gradient + state
    distributed_gib: float = 0.0  # several GPUs: DDP buckets, gathered FSDP / ZeRO-3 layers
    cpu_ram_gib: float = 0.0  # state offloaded to CPU memory, per node (all its processes)

    def as_dict(self) -> dict:
        return {k: round(v, 3) for k, v in asdict(self).items()}


@dataclass
class StepBytes:
    """What one GPU holds at its peak, in bytes, before fragmentation and the context."""

    weights: float
    lora: float = 0.0  # LoRA adapters + gradients + optimizer state on the GPU
    trained: float = 0.0  # full fine-tuning: gradients + optimizer state on the GPU
    activations: float = 0.0
    logits: float = 0.0
    distributed: float = 0.0
    paged: float = 0.0  # optimizer state that pages to CPU memory (nvidia-smi only)
    step: float = 0.0  # the optimizer step's temporaries, once activations are freed
    loading: float = 0.0  # a loading peak that training may stay under
    cpu_ram: float = 0.0
    cached: float = 0.0  # a block the allocator keeps cached beside the peak (reserved only)


def linear_bytes_per_param(settings: TrainSettings) -> float:
    """Stored bytes of one block nn.Linear weight: what 4-/8-bit quantisation shrinks."""
    q = settings.quantization
    return {
        "none": DTYPE_BYTES[q.compute_dtype],
        "8bit": COEFFICIENTS["int8_bytes_per_param"],
        "nf4": 0.5 + (0.127 if q.double_quant else 0.5) / 8,
        "fp4": 0.5 + (0.127 if q.double_quant else 0.5) / 8,
    }[q.mode]


def base_weight_bytes(model: ModelInfo, settings: TrainSettings) -> float:
    """Frozen weights: block linears quantised or not; embeddings, head, norms in 16-bit."""
    word = DTYPE_BYTES[settings.quantization.compute_dtype]
    linear, other = model.params_quantised, model.params_total - model.params_quantised
    return linear * linear_bytes_per_param(settings) + other * word


def trained_params(model: ModelInfo, settings: TrainSettings) -> int:
    """Parameters that get gradients: LoRA's adapters, or every weight."""
    if settings.training.method == "full":
        return model.params_total
    targets = None if settings.lora.target_modules == "auto" else settings.lora.target_modules
    return model.lora_params(settings.lora.r, targets)


def optimizer_state_bytes(
    model: ModelInfo, settings: TrainSettings, weight_bytes: float, share: float = 1.0
) -> float:
    """State of the trained parameters (`share` of them: one shard), held in `weight_bytes`
    each (see STATE_IN_WEIGHT_DTYPE)."""
    params = trained_params(model, settings) * share
    name = settings.training.optimizer
    if name in STATE_IN_WEIGHT_DTYPE:
        return MOMENTS * weight_bytes * params
    state = OPTIMIZERS[name].state_bytes
    full = settings.training.method == "full"
    embedding = model.vocab_size * model.hidden_size * share if full else 0.0
    return state * params + max(0.0, EMBEDDING_STATE_BYTES - state) * embedding


def optimizer_step_bytes(settings: TrainSettings, params: float, weight_bytes: float) -> float:
    """torch's foreach AdamW takes the square root of every second moment at once: one
    weight-sized temporary at the step (full fine-tuning; LoRA's is in the calibration)."""
    t = settings.training
    if t.method != "full" or t.optimizer not in STATE_IN_WEIGHT_DTYPE:
        return 0.0
    return weight_bytes * params


def adapter_word(settings: TrainSettings) -> int:
    """Bytes of one adapter weight (and of its gradient, and in the saved adapter): PEFT makes
    them fp32, every TRL trainer then casts a quantised model's to bf16 (traced: Pythia-1B's
    8.4 M adapter weights held 16 MiB), and accelerate upcasts FSDP's trainable parameters
    to fp32 again for mixed precision (sharding.SHARD_WEIGHT_BYTES)."""
    sharded = settings.distributed.strategy in ("fsdp", "deepspeed")
    return 2 if settings.quantization.mode != "none" and not sharded else 4


def lora_state_bytes(model: ModelInfo, settings: TrainSettings) -> tuple[float, float]:
    """(on-device bytes, paged bytes): adapters + their gradients + optimizer state."""
    if settings.training.method == "full":
        return 0.0, 0.0
    params = trained_params(model, settings)
    word = adapter_word(settings)
    optimizer = optimizer_state_bytes(model, settings, word)
    paged = OPTIMIZERS[settings.training.optimizer].paged
    return 2.0 * word * params + (0 if paged else optimizer), optimizer if paged else 0.0


def full_state_bytes(model: ModelInfo, settings: TrainSettings) -> tuple[float, float]:
    """(on-device bytes, paged bytes): full fine-tuning's gradients + optimizer state of every
    weight, in the weights' own dtype (the weights are base_weight_bytes)."""
    if settings.training.method != "full":
        return 0.0, 0.0
    word = DTYPE_BYTES[settings.quantization.compute_dtype]
    state = optimizer_state_bytes(model, settings, word)
    paged = OPTIMIZERS[settings.training.optimizer].paged
    return word * model.params_total + (0 if paged else state), state if paged else 0.0


def activation_bytes(
    model: ModelInfo, settings: TrainSettings, padded: bool | None = None
) -> float:
    """A step's activations (`padded`: see masked_attention_bytes)."""
    c = COEFFICIENTS
    tokens = step_tokens(settings)
    h, i, layers = model.hidden_size, model.intermediate_size, model.num_layers
    backend = settings.memory.backend
    act_i = {"liger": c["liger_act_i"], "unsloth": c["unsloth_act_i"]}.get(backend, c["act_i"])
    act_h = c["act_h"] + (c["unsloth_act_h_extra"] if backend == "unsloth" else 0.0)
    if not fused_experts(model, settings):
        act_h += EXTRA_ACT_H.get(model.model_type, 0.0)
    if backend == "liger":
        act_h += LIGER_NORM_INPUT_H * SANDWICH_NORMS.get(model.model_type, 0)
    if settings.quantization.mode == "none":
        act_i += c["act_i_16bit_extra"]
    elif any(linear.name == "gate_up_proj" for linear in model.linears):
        act_i += c["quantized_fused_gate_up_act_i"]
    word = DTYPE_BYTES[settings.quantization.compute_dtype]
    routed = routed_width(model)  # Llama-4's every-expert matmuls: neither term reaches them
    one_layer = tokens * (
        act_h * h
        + act_i * (i - routed)
        + (c["act_i"] + ROUTED_EXTRA_BYTES) * routed
        + dropout_bytes_per_token(model, settings, word)
        + every_expert_bytes_per_token(model)
    )
    scores = scores_bytes(model, settings) + masked_attention_bytes(model, settings, word, padded)
    mode = settings.memory.gradient_checkpointing
    transient = fused_experts_grad_bytes(model, settings)  # one layer's backward at a time
    hybrid, largest = hybrid_bytes_per_token(model)  # linear-attention layers: 0 elsewhere
    kinded, largest_kind, outside = kinded_bytes_per_token(model)  # Gemma-4: 0 elsewhere
    hybrid, largest, outside = hybrid + kinded, largest + largest_kind, tokens * outside
    if mode == "off":
        kept = layers * one_layer + attention_layers(model) * scores + tokens * hybrid
        return kept + _gemma_extra(model, settings) + transient + outside
    per_layer = c["unsloth_ckpt_h"] if mode == "unsloth" else c["ckpt_h"]
    recomputed = one_layer * (1 + _ungated_extra_layers(model, settings)) + scores + transient
    recomputed += tokens * (recompute_extra_h(model, settings) * h + largest)
    return layers * tokens * per_layer * h + recomputed + outside  # saved inputs, recomputed


def fused_experts(model: ModelInfo, settings: TrainSettings) -> bool:
    """Whether the run's routed experts are Liger's fused `LigerExperts` (the families the
    installed liger-kernel gives them to, read from its table)."""
    return (
        settings.memory.backend == "liger"
        and model.is_moe
        and model.model_type in liger_fused_expert_types()
    )


def fused_experts_grad_bytes(model: ModelInfo, settings: TrainSettings) -> float:
    """Liger's fused MoE backward writes the gradient of a layer's whole expert weights
    (`zeros_like(gate_up_proj)`, `zeros_like(down_proj)` in LigerFusedMoEFunction.backward)
    even when they are frozen, as under LoRA: one layer's experts in their 16-bit dtype,
    held while that layer's backward runs. Read from the code; Mixtral 2-layer rows on an
    H200 (2026-12-05) measured 2.64-2.88 GiB above the plan without it, and a layer's
    experts are 2.62 GiB."""
    if not fused_experts(model, settings):
        return 0.0
    word = DTYPE_BYTES[settings.quantization.compute_dtype]
    return model.params_experts / max(model.moe.sparse_layers, 1) * word


def _ungated_extra_layers(model: ModelInfo, settings: TrainSettings) -> float:
    """Quantised weights with a two-linear MLP (GPT-NeoX, StarCoder2, Falcon) keep one more
    layer's activations under checkpointing than the gated families (measured)."""
    gated = model.is_moe or any("gate" in linear.name for linear in model.linears)
    if gated or settings.quantization.mode == "none":
        return 0.0
    return COEFFICIENTS["quantized_ungated_ckpt_layers"]


def _gemma_extra(model: ModelInfo, settings: TrainSettings) -> float:
    """Gemma-2 without checkpointing (and without Liger) peaks with an extra copy the size
    of part of its 256k-vocabulary embedding (measured on gemma-2-2b, independent of tokens)."""
    if model.model_type != "gemma2" or settings.memory.backend == "liger":
        return 0.0
    copies = COEFFICIENTS["gemma_uncheckpointed_embedding_copies"]
    return copies * model.vocab_size * model.hidden_size * 2


def logits_bytes(model: ModelInfo, settings: TrainSettings) -> float:
    """TRL's fused, chunked LM head never holds batch × seq × vocab logits (an objective
    whose trainer takes them whole is objective.py's)."""
    tokens = step_tokens(settings)
    c = COEFFICIENTS
    whole = full_logits_bytes(model, settings)
    if whole is not None:
        return whole
    return tokens * model.hidden_size * c["head_bytes_per_token_h"] + head_tile_bytes(settings)


def head_tile_bytes(settings: TrainSettings) -> float:
    """The chunked head's tile buffer as the reserved peak keeps it: it grows with the
    step's tokens up to TRL's token chunk, so a micro-batch of one short sample keeps less.
    Unsloth computes the loss with its own kernel (a fixed term, fitted)."""
    if settings.memory.backend == "unsloth":
        return COEFFICIENTS["unsloth_head_gib"] * GIB
    tokens = min(step_tokens(settings), HEAD_TILE_TOKENS)
    word = DTYPE_BYTES[settings.quantization.compute_dtype]
    return COEFFICIENTS["head_tile_share"] * tokens * HEAD_TILE_VOCAB * word


def loading_peak_bytes(model: ModelInfo, settings: TrainSettings) -> float:
    """Quantised loading of a mixture of experts: transformers stacks each layer's saved
    experts into fused 16-bit tensors on the GPU, and the allocator keeps the blocks that
    stacking used. Traced (the segments torch holds, by the line that made them): beside
    the finished weights, one layer's experts from 4 sparse layers on (Mixtral, Qwen3-MoE,
    OLMoE at 4, 8 and 16 layers), half of that with 2 (Phi-3.5-MoE: later layers reuse
    what earlier ones left)."""
    if not model.is_moe or settings.quantization.mode == "none":
        return 0.0
    word = DTYPE_BYTES[settings.quantization.compute_dtype]
    layers = max(model.moe.sparse_layers, 1)
    kept = min(1.0, (layers - 1) / 2)  # of one layer's experts
    return base_weight_bytes(model, settings) + model.params_experts / layers * word * kept


def one_gpu_bytes(
    model: ModelInfo, settings: TrainSettings, padded: bool | None = None
) -> StepBytes:
    """The whole step on one GPU (also each DDP process's copy); `padded`: whether its
    micro-batches carry padding (None: as real data gives, masked_attention_bytes)."""
    lora, lora_paged = lora_state_bytes(model, settings)
    trained, trained_paged = full_state_bytes(model, settings)
    word = DTYPE_BYTES[settings.quantization.compute_dtype]
    step = optimizer_step_bytes(settings, trained_params(model, settings), word)
    return StepBytes(
        weights=base_weight_bytes(model, settings) + reference_bytes(model, settings, word),
        lora=lora,
        trained=trained,
        activations=activation_bytes(model, settings, padded) + packing_mask_bytes(model, settings),
        logits=logits_bytes(model, settings),
        paged=lora_paged + trained_paged,
        step=step,
        loading=loading_peak_bytes(model, settings),
        cached=cached_block_bytes(model, step_tokens(settings), word),
    )


def breakdown_of(b: StepBytes, settings: TrainSettings, hardware=None) -> MemoryBreakdown:
    """Bytes held → what torch reserves and nvidia-smi shows. The optimizer step runs after
    the activations and logits are freed: its temporaries count only beyond them."""
    c = COEFFICIENTS
    trained = b.trained + max(0.0, b.step - b.activations - b.logits)
    allocated = b.weights + b.lora + trained + b.activations + b.logits + b.distributed
    held = max(allocated, b.loading)
    reserved = held * (1 + c["fragmentation"]) + c["workspace_gib"] * GIB + b.cached
    gpu = hardware.primary if hardware is not None else None
    smi = reserved + cuda_context_gib(gpu.total_gib if gpu else None) * GIB + b.paged
    lora_paged = b.paged if settings.training.method != "full" else 0.0
    return MemoryBreakdown(
        base_weights_gib=b.weights / GIB,
        lora_gib=(b.lora + lora_paged) / GIB,
        activations_gib=b.activations / GIB,
        logits_gib=b.logits / GIB,
        overhead_gib=(smi - allocated - b.paged) / GIB,
        allocated_gib=allocated / GIB,
        reserved_gib=reserved / GIB,
        nvidia_smi_gib=smi / GIB,
        gradients_optimizer_gib=(trained + b.paged - lora_paged) / GIB,
        distributed_gib=b.distributed / GIB,
        cpu_ram_gib=b.cpu_ram / GIB,
    )
