"""What attention keeps for the backward beyond a layer's fitted per-token terms: the
scores, where a family's code or eager attention materialises them, what a padding mask
costs under sdpa, and a packed micro-batch's block mask (memory.py adds them to the
layers that keep their activations)."""

from __future__ import annotations

from ..inspect.models import ModelInfo
from ..settings.attention import planned_attention
from ..settings.schema import TrainSettings
from .batching import mask_bytes
from .objective import sequences, step_tokens

# Families whose own attention code materialises the scores even under sdpa: Falcon calls
# scaled_dot_product_attention with one key head broadcast over 71 query heads and an
# explicit mask (math kernel). Bytes per batch x head x query x key of one layer (fit on
# the Falcon-7B 8-layer NF4 and 16-bit b4 rows, one run in effect: bitsandbytes leaves
# FalconLinear 16-bit; 19.5 while the plan took its weights for 4-bit; without
# checkpointing not measured, every layer's counted).
SCORES_BYTES = {"falcon": 14.0}
# Eager attention (chosen, or "auto" on a family whose class supports no sdpa: gpt-oss)
# materialises every head's scores: bf16 scores, the masked copy, the fp32 softmax and its
# bf16 result, per batch x head x query x key of a layer. Read from transformers'
# eager_attention_forward, not measured on a GPU.
EAGER_SCORE_BYTES = 10.0


def attention_of(model: ModelInfo, settings: TrainSettings) -> str:
    """The kernel the run will use: "auto" is sdpa, or eager where the class has no sdpa."""
    setting = settings.model.attn_implementation
    if setting == "auto" and not model.sdpa:
        return "eager"
    return planned_attention(setting)


def padded_batches(settings: TrainSettings) -> bool:
    """Whether micro-batches carry padding, as real data gives: samples of different lengths
    whenever a micro-batch puts more than one sequence through the model (a preference
    pair's two). Benchmark rows whose samples all fill max_seq_length say otherwise."""
    return sequences(settings) > 1


def masked_attention_bytes(
    model: ModelInfo, settings: TrainSettings, word: int, padded: bool | None = None
) -> float:
    """One layer's extra under a padding mask. transformers hands sdpa the mask, and uses
    sdpa's grouped-query attention only without one (`use_gqa_in_sdpa`): with it,
    `repeat_kv` copies K and V to every head and sdpa keeps the copies for the backward;
    sdpa turns the boolean mask into one in the query's dtype and keeps that too. Eager
    attention repeats K and V always (its scores: scores_bytes). Read from transformers'
    sdpa_attention_forward; traced on an H200 (docs/BENCHMARKS.md). Packed batches: their
    block mask's fitted term (packing_mask_bytes)."""
    attention = attention_of(model, settings)
    if settings.memory.packing or "flash" in attention:
        return 0.0
    masked = padded_batches(settings) if padded is None else padded
    if not (masked or attention == "eager"):
        return 0.0
    repeated = 2 * word * (model.num_heads - model.num_kv_heads) * model.head_dim
    mask = word * sequences(settings) * settings.training.max_seq_length**2
    return step_tokens(settings) * repeated + (mask if masked and attention != "eager" else 0)


def scores_bytes(model: ModelInfo, settings: TrainSettings) -> float:
    """One layer's attention scores, where the family's attention or eager attention
    materialises them."""
    t = settings.training
    eager = EAGER_SCORE_BYTES if attention_of(model, settings) == "eager" else 0.0
    per_score = SCORES_BYTES.get(model.model_type, eager)
    return per_score * sequences(settings) * model.num_heads * t.max_seq_length**2


def packing_mask_bytes(model: ModelInfo, settings: TrainSettings) -> float:
    """A packed micro-batch's block mask ('auto' attention is planned as sdpa)."""
    if not settings.memory.packing:
        return 0.0
    t, memory = settings.training, settings.memory
    kept = model.num_layers if memory.gradient_checkpointing == "off" else 1
    return mask_bytes(
        t.micro_batch_size,
        t.max_seq_length,
        attention_of(model, settings),
        memory.backend,
        kept,
    )
