"""What Gemma-4's layers keep for the backward beyond a Gemma-3 layer of the model's widths
(memory.py's per-layer terms): wider full-attention heads, the value norm, layers that
reuse earlier keys and values, and the per-layer embeddings (PLE).

Read with a saved-tensor trace of whole small decoders on the CPU (the installed
transformers' code, bf16, sdpa, 256 tokens), each layer against a Gemma-3 decoder of the
same widths: hidden 512-1,024, 4-8 heads, 1-4 key/value heads, head widths 32-128 (full
layers to twice that), PLE widths 0-128. Fitted by hand within 3 % of each layer's
difference; the CPU picks another attention kernel from head width 256, so wider heads
are scaled by the same bytes a channel (not traced on a GPU).
"""

from __future__ import annotations

from ..inspect.models import ModelInfo

QUERY_BYTES = 12.0  # a query channel beyond the model's: q_proj, q_norm (fp32), rope, output
KEY_VALUE_BYTES = 16.0  # a key channel (and its value's) beyond the model's
VALUE_NORM_BYTES = 4.0  # a key channel: the value norm's fp32 copy (no Gemma-3 counterpart)
SHARED_SAVES_BYTES = 12.0  # a key channel a layer reusing earlier keys and values does not keep
PLE_H_BYTES = 10.1  # a layer's PLE gate, product, projection and norm: per hidden channel…
PLE_BYTES = 6.06  # …and per PLE channel
PLE_INPUT_BYTES = 8.0  # the per-layer inputs built once before the layers, per PLE channel
PLE_INPUT_H_BYTES = 2.05  # …and their projection's input, per hidden channel


def kind_bytes(model: ModelInfo, kind) -> float:
    """One layer of this kind's extra, a token."""
    base_q = model.num_heads * model.head_dim
    base_k = model.num_kv_heads * model.head_dim
    q, k = model.num_heads * kind.head_dim, kind.kv_heads * kind.head_dim
    extra = QUERY_BYTES * (q - base_q)
    if kind.shares_kv:
        extra -= SHARED_SAVES_BYTES * base_k
    else:
        extra += KEY_VALUE_BYTES * (k - base_k) + VALUE_NORM_BYTES * k
    ple = model.layer_kinds.per_layer_width
    if ple:
        extra += PLE_H_BYTES * model.hidden_size + PLE_BYTES * ple
    return extra


def kinded_bytes_per_token(model: ModelInfo) -> tuple[float, float, float]:
    """(every layer's extra together, the largest one layer's, what is kept outside the
    layers), a token; zeros for a model whose layers are alike."""
    shapes = model.layer_kinds
    if shapes is None:
        return 0.0, 0.0, 0.0
    each = [(kind_bytes(model, kind), kind.layers) for kind in shapes.kinds]
    outside = 0.0
    if shapes.per_layer_width:
        outside = (
            PLE_INPUT_BYTES * model.num_layers * shapes.per_layer_width
            + PLE_INPUT_H_BYTES * model.hidden_size
        )
    return sum(b * n for b, n in each), max(b for b, _ in each), outside
