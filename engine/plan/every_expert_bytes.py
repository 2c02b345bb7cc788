"""What transformers' Llama-4 layers keep beyond memory.py's per-layer terms of their width.

Llama4TextMoe runs every token through every expert, each copy scaled by the router's
score: the repeated input and its scaled copy stay for the backward, E x hidden each in
16-bit (the experts' own activations are the layer's MLP width: models.py counts every
expert's, EVERY_EXPERT_TYPES). Its attention L2-normalises queries and keys, keeping a
copy of each. Read with benchmarks/layer_trace.py's saved-tensor trace of one layer on the
CPU (five configurations, 4-16 experts, hidden 512-1,024): 4.0 bytes an expert x hidden,
4.0 a query channel and 3.8 a key channel beyond a Llama layer of the same MLP width,
within 0.1 %.

On the GPU (a 2-layer Scout cut, hf / Liger x NF4 / 16-bit, b4 x 1,024, H100 2026-12-06)
the experts' batched matmuls behaved unlike an nn.Linear MLP of their width: Liger's SwiGLU
and the 16-bit base weights' extra copy do not reach them (Liger and HF peaked alike, 16-bit
only its attention's weights above NF4), they kept 1.8 bytes a channel more than the fitted
8.0 (allocated), and the allocator kept one block of the experts' gate-and-up output cached
beyond the peak (reserved 2.0-2.2 GiB above allocated in all four; one such block is 2.0 GiB).
Those three terms are fitted on those four rows.
"""

from __future__ import annotations

from ..inspect.families import EVERY_EXPERT_TYPES
from ..inspect.models import ModelInfo

EXPERT_INPUT_BYTES = 4.0  # an expert x hidden: the repeated input and its scaled copy
QK_NORM_QUERY_BYTES = 4.0  # a query channel (heads x head width)
QK_NORM_KEY_BYTES = 3.8  # a key channel (key heads x head width)
ROUTED_EXTRA_BYTES = 1.8  # a routed channel (experts x expert width), beyond act_i (fitted)


def routed_width(model: ModelInfo) -> int:
    """The every-expert layer's width that runs through batched matmuls on the fused
    expert weights (0 elsewhere): memory.py gives it the plain act_i, no backend's kernel
    or 16-bit copy, and ROUTED_EXTRA_BYTES (a GPU peak's, not in the CPU trace of what the
    forward saves, which every_expert_bytes_per_token is)."""
    if model.model_type not in EVERY_EXPERT_TYPES or model.moe is None:
        return 0
    return model.moe.experts * model.moe.expert_intermediate


def cached_block_bytes(model: ModelInfo, tokens: int, word: int) -> float:
    """The experts' gate-and-up output of one layer (experts x tokens x 2 x expert width),
    which the allocator keeps cached beside the peak: reserved, never allocated at it."""
    return 2.0 * routed_width(model) * tokens * word


def every_expert_bytes_per_token(model: ModelInfo) -> float:
    """One layer's extra a token (0 for every family whose MoE routes each token to its
    top-k experts only)."""
    if model.model_type not in EVERY_EXPERT_TYPES or model.moe is None:
        return 0.0
    q, k = model.num_heads * model.head_dim, model.num_kv_heads * model.head_dim
    experts = EXPERT_INPUT_BYTES * model.moe.experts * model.hidden_size
    return experts + QK_NORM_QUERY_BYTES * q + QK_NORM_KEY_BYTES * k
