"""What transformers' Llama-4 layers keep beyond memory.py's per-layer terms of their width.

Llama4TextMoe runs every token through every expert, each copy scaled by the router's
score: the repeated input and its scaled copy stay for the backward, E x hidden each in
16-bit (the experts' own activations are the layer's MLP width: models.py counts every
expert's, EVERY_EXPERT_TYPES). Its attention L2-normalises queries and keys, keeping a
copy of each. Read with benchmarks/layer_trace.py's saved-tensor trace of one layer on the
CPU (five configurations, 4-16 experts, hidden 512-1,024): 4.0 bytes an expert x hidden,
4.0 a query channel and 3.8 a key channel beyond a Llama layer of the same MLP width,
within 0.1 %. Not yet measured on a GPU.
"""

from __future__ import annotations

from ..inspect.families import EVERY_EXPERT_TYPES
from ..inspect.models import ModelInfo

EXPERT_INPUT_BYTES = 4.0  # an expert x hidden: the repeated input and its scaled copy
QK_NORM_QUERY_BYTES = 4.0  # a query channel (heads x head width)
QK_NORM_KEY_BYTES = 3.8  # a key channel (key heads x head width)


def every_expert_bytes_per_token(model: ModelInfo) -> float:
    """One layer's extra a token (0 for every family whose MoE routes each token to its
    top-k experts only)."""
    if model.model_type not in EVERY_EXPERT_TYPES or model.moe is None:
        return 0.0
    q, k = model.num_heads * model.head_dim, model.num_kv_heads * model.head_dim
    experts = EXPERT_INPUT_BYTES * model.moe.experts * model.hidden_size
    return experts + QK_NORM_QUERY_BYTES * q + QK_NORM_KEY_BYTES * k
