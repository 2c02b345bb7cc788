"""Predicted peak VRAM of one LoRA / QLoRA SFT step, with a breakdown.

An analytic sum of weights, LoRA state, activations and logits; the per-token activation
coefficients, fragmentation and fixed overheads live in `COEFFICIENTS` and are calibrated
against GPU measurements (benchmarks/backends.py, docs/BENCHMARKS.md). Errs on the safe side.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .batching import mask_bytes, planned_attention
from .models import ModelInfo
from .options import OPTIMIZERS
from .settings import TrainSettings

GIB = 2**30

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
    "head_fixed_gib": 0.125,  # the loss kernel's tile buffers
    "fragmentation": 0.04,  # reserved / allocated - 1 (measured 0.5-4 %)
    "workspace_gib": 0.10,  # cuBLAS / bitsandbytes workspaces
    "int8_bytes_per_param": 1.92,  # LLM.int8 training keeps more than the int8 weights
    "gemma_uncheckpointed_embedding_copies": 0.75,  # measured: a transient embedding copy
}
# Families measured to need more than the analytic model (benchmarks/results/moe-*.jsonl):
# DeepSeek-V2's loss is computed from full logits (TRL's chunked head does not apply: the
# 1.95 GiB gap at checkpointing matches 10 bytes x vocabulary per token), and its latent
# attention + expert loop keep 177 x hidden bytes more per token and layer (fit on one
# uncheckpointed 6-layer V2-Lite row; the other DeepSeek rows check it).
FULL_LOGITS_TYPES = {"deepseek_v2", "deepseek_v3"}
EXTRA_ACT_H = {"deepseek_v2": 177.0, "deepseek_v3": 177.0}
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4, "auto": 2}
# The CUDA context nvidia-smi shows beside torch's pool: 1.82 GiB measured on an H100
# (CUDA 13); consumer cards load far less (not measured here: no such card was lent).
DATACENTER_GIB = 40  # cards this large (A100, H100, L40S...) load the large context
CONTEXT_GIB = {"datacenter": 1.85, "consumer": 0.6}


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

    @property
    def peak_gib(self) -> float:
        return self.nvidia_smi_gib

    def as_dict(self) -> dict:
        return {k: round(v, 3) for k, v in asdict(self).items()}


def base_weight_bytes(model: ModelInfo, settings: TrainSettings) -> float:
    """Frozen weights: block linears quantised or not; embeddings, head, norms in 16-bit."""
    q = settings.quantization
    word = DTYPE_BYTES[q.compute_dtype]
    linear, other = model.params_linear, model.params_total - model.params_linear
    per_linear = {
        "none": word,
        "8bit": COEFFICIENTS["int8_bytes_per_param"],
        "nf4": 0.5 + (0.127 if q.double_quant else 0.5) / 8,
        "fp4": 0.5 + (0.127 if q.double_quant else 0.5) / 8,
    }[q.mode]
    return linear * per_linear + other * word


def lora_state_bytes(model: ModelInfo, settings: TrainSettings) -> tuple[float, float]:
    """(on-device bytes, paged bytes): fp32 adapters + gradients + optimizer state."""
    targets = None if settings.lora.target_modules == "auto" else settings.lora.target_modules
    params = model.lora_params(settings.lora.r, targets)
    info = OPTIMIZERS[settings.training.optimizer]
    optimizer, paged = info.state_bytes * params, info.paged
    return 8.0 * params + (0 if paged else optimizer), optimizer if paged else 0.0


def activation_bytes(model: ModelInfo, settings: TrainSettings) -> float:
    c = COEFFICIENTS
    tokens = settings.training.micro_batch_size * settings.training.max_seq_length
    h, i, layers = model.hidden_size, model.intermediate_size, model.num_layers
    backend = settings.memory.backend
    act_i = {"liger": c["liger_act_i"], "unsloth": c["unsloth_act_i"]}.get(backend, c["act_i"])
    act_h = c["act_h"] + (c["unsloth_act_h_extra"] if backend == "unsloth" else 0.0)
    act_h += EXTRA_ACT_H.get(model.model_type, 0.0)
    if settings.quantization.mode == "none":
        act_i += c["act_i_16bit_extra"]
    one_layer = tokens * (act_h * h + act_i * i)
    mode = settings.memory.gradient_checkpointing
    if mode == "off":
        return layers * one_layer + _gemma_extra(model, settings)
    per_layer = c["unsloth_ckpt_h"] if mode == "unsloth" else c["ckpt_h"]
    return layers * tokens * per_layer * h + one_layer  # saved inputs + one recomputed layer


def packing_mask_bytes(model: ModelInfo, settings: TrainSettings) -> float:
    """A packed micro-batch's block mask ('auto' attention is planned as sdpa)."""
    if not settings.memory.packing:
        return 0.0
    t, memory = settings.training, settings.memory
    kept = model.num_layers if memory.gradient_checkpointing == "off" else 1
    return mask_bytes(
        t.micro_batch_size,
        t.max_seq_length,
        planned_attention(settings.model.attn_implementation),
        memory.backend,
        kept,
    )


def _gemma_extra(model: ModelInfo, settings: TrainSettings) -> float:
    """Gemma-2 without checkpointing (and without Liger) peaks with an extra copy the size
    of part of its 256k-vocabulary embedding (measured on gemma-2-2b, independent of tokens)."""
    if model.model_type != "gemma2" or settings.memory.backend == "liger":
        return 0.0
    copies = COEFFICIENTS["gemma_uncheckpointed_embedding_copies"]
    return copies * model.vocab_size * model.hidden_size * 2


def logits_bytes(model: ModelInfo, settings: TrainSettings) -> float:
    """TRL's fused, chunked LM head never holds batch × seq × vocab logits."""
    tokens = settings.training.micro_batch_size * settings.training.max_seq_length
    c = COEFFICIENTS
    if model.model_type in FULL_LOGITS_TYPES and settings.memory.backend == "hf":
        return tokens * model.vocab_size * 10.0  # bf16 logits + fp32 upcast + fp32 gradient
    return tokens * model.hidden_size * c["head_bytes_per_token_h"] + c["head_fixed_gib"] * GIB


def loading_peak_bytes(model: ModelInfo, settings: TrainSettings) -> float:
    """Quantised loading of a mixture of experts holds one layer's fused experts in 16-bit
    beside the finished weights (measured: Mixtral, Qwen3-MoE, OLMoE reserve this much
    even when training needs less)."""
    if not model.is_moe or settings.quantization.mode == "none":
        return 0.0
    word = DTYPE_BYTES[settings.quantization.compute_dtype]
    per_layer = model.params_experts / max(model.moe.sparse_layers, 1) * word
    return base_weight_bytes(model, settings) + per_layer


def predict_memory(model: ModelInfo, settings: TrainSettings, hardware=None) -> MemoryBreakdown:
    c = COEFFICIENTS
    weights = base_weight_bytes(model, settings)
    lora, paged = lora_state_bytes(model, settings)
    activations = activation_bytes(model, settings) + packing_mask_bytes(model, settings)
    logits = logits_bytes(model, settings)
    allocated = weights + lora + activations + logits
    held = max(allocated, loading_peak_bytes(model, settings))
    reserved = held * (1 + c["fragmentation"]) + c["workspace_gib"] * GIB
    gpu = hardware.primary if hardware is not None else None
    smi = reserved + cuda_context_gib(gpu.total_gib if gpu else None) * GIB + paged
    return MemoryBreakdown(
        base_weights_gib=weights / GIB,
        lora_gib=(lora + paged) / GIB,
        activations_gib=activations / GIB,
        logits_gib=logits / GIB,
        overhead_gib=(smi - allocated - paged) / GIB,
        allocated_gib=allocated / GIB,
        reserved_gib=reserved / GIB,
        nvidia_smi_gib=smi / GIB,
    )
