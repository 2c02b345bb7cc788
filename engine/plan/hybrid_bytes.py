"""What a hybrid model's layers keep for the backward beyond a Llama layer of its widths
(memory.py's per-layer terms): Qwen3.5's gated DeltaNet layers and its gated full-attention
layers.

Read with benchmarks/layer_trace.py's saved-tensor trace of one layer on the CPU (the
installed transformers' code, bf16, sdpa, 256 tokens), ten configurations at the published
head widths of 128 (hidden 1,024-5,120, 8-64 value heads, 8-16 key heads), fitted by least
squares within 1 % of the layer (2.8 % for 8 heads of each). Without flash-linear-attention
(not a dependency), transformers runs the DeltaNet's chunked rule in torch, in fp32: queries
and keys repeated to every value head, each 64-token chunk's matrices and recurrent state
kept for the backward. Other head widths are scaled by the same bytes a channel (not traced).
"""

from __future__ import annotations

from ..inspect.models import ModelInfo

# bytes a token of one layer, beyond a Llama layer of the same widths
LINEAR_VALUE_BYTES = 84.2  # a channel of the values (value heads x value head width)
LINEAR_KEY_BYTES = 3.8  # a channel of the keys (key heads x key head width)
HYBRID_H_BYTES = 4.0  # its fp32 norms, either kind of layer (4.03-4.19 traced)
GATED_QUERY_BYTES = 12.0  # full attention: the query's gate, sigmoid and q_norm, per channel
NORMED_KEY_BYTES = 8.3  # full attention: k_norm's fp32 copies, a key channel (kv x head)


def linear_layer_bytes(model: ModelInfo) -> float:
    """One gated DeltaNet layer's extra, a token."""
    mixer = model.linear_attention
    return (
        LINEAR_VALUE_BYTES * mixer.value_dim
        + LINEAR_KEY_BYTES * mixer.key_dim
        + HYBRID_H_BYTES * model.hidden_size
    )


def full_layer_bytes(model: ModelInfo) -> float:
    """One gated full-attention layer's extra, a token."""
    q, k = model.num_heads * model.head_dim, model.num_kv_heads * model.head_dim
    return GATED_QUERY_BYTES * q + NORMED_KEY_BYTES * k + HYBRID_H_BYTES * model.hidden_size


def hybrid_bytes_per_token(model: ModelInfo) -> tuple[float, float]:
    """(every layer's extra together, the largest one layer's), a token; (0, 0) for a model
    without linear-attention layers."""
    mixer = model.linear_attention
    if mixer is None:
        return 0.0, 0.0
    linear, full = linear_layer_bytes(model), full_layer_bytes(model)
    attention = model.num_layers - mixer.layers
    largest = max(linear if mixer.layers else 0.0, full if attention else 0.0)
    return mixer.layers * linear + attention * full, largest


def attention_layers(model: ModelInfo) -> int:
    """The layers that run softmax attention (a padding mask's and the scores' terms)."""
    mixer = model.linear_attention
    return model.num_layers - (mixer.layers if mixer else 0)
