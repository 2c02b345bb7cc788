"""Families whose decoder layers differ in shape from layer to layer: Gemma-4's sliding and
full-attention layers with their own head widths and key/value heads, its last layers that
reuse an earlier layer's keys and values (no k/v projections, a double-wide MLP), and its
per-layer embeddings (PLE) beside the usual one. From config.json as transformers 5 reads it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .shapes import Linear, merged

KINDED_TYPES = {"gemma4_text"}
# Gemma4TextConfig.__post_init__'s defaults, keywords popped there rather than declared
# fields config_defaults could read (tests pin them to the installed transformers): every
# 6th layer full attention where `layer_types` is absent, and the full layers' head width
# where a config names neither `per_layer_config` nor `global_head_dim`
SLIDING_PATTERN = 6
GLOBAL_HEAD_DIM = 512
FULL = "full_attention"


@dataclass(frozen=True)
class Kind:
    """Layers of one shape: their attention type, head width, key/value heads, whether
    they reuse an earlier layer's keys and values, and how many there are."""

    layer_type: str
    head_dim: int
    kv_heads: int
    shares_kv: bool
    values: bool  # a v_proj of its own (Gemma-4's `attention_k_eq_v` full layers: none)
    layers: int


@dataclass(frozen=True)
class LayerKinds:
    kinds: tuple[Kind, ...]
    per_layer_width: int  # PLE: `hidden_size_per_layer_input` (0: none)
    per_layer_vocab: int
    double_wide: bool  # the KV-sharing layers' MLP is twice `intermediate_size`

    def kv_shared(self) -> int:
        return sum(kind.layers for kind in self.kinds if kind.shares_kv)


def layer_types(c: dict, layers: int) -> list[str]:
    """Each layer's attention type, the last one full, as transformers makes it."""
    named = c.get("layer_types")
    if named is None:
        named = ["sliding_attention" if (i + 1) % SLIDING_PATTERN else FULL for i in range(layers)]
    if not isinstance(named, list) or len(named) != layers:
        raise ValueError(f"'layer_types' must be a list of {layers} names")
    return [*named[:-1], FULL]


def layer_kinds_of(model_type: str, c: dict, layers: int, kv: int, head_dim: int):
    """The layers grouped by shape, or None for a family whose layers are all alike."""
    if model_type not in KINDED_TYPES:
        return None
    types = layer_types(c, layers)
    overrides = _overrides(c, types)
    first_shared = layers - (c.get("num_kv_shared_layers") or 0)
    k_eq_v = bool(c.get("attention_k_eq_v"))
    shapes = Counter()
    for i, kind in enumerate(types):
        over = overrides.get(i, {})
        shapes[
            (
                kind,
                over.get("head_dim", head_dim),
                over.get("num_key_value_heads", kv),
                i >= first_shared,
                not (k_eq_v and kind == FULL),
            )
        ] += 1
    return LayerKinds(  # sizes left out are the config class's (models._info merged them)
        kinds=tuple(Kind(*shape, count) for shape, count in shapes.items()),
        per_layer_width=c.get("hidden_size_per_layer_input") or 0,
        per_layer_vocab=c.get("vocab_size_per_layer_input") or 0,
        double_wide=bool(c.get("use_double_wide_mlp")) and first_shared > 0,
    )


def _overrides(c: dict, types: list[str]) -> dict[int, dict]:
    """Per-layer size overrides: a saved config's `per_layer_config` ({"5": {"head_dim":
    512}}), else the full layers' `global_head_dim` (and `num_global_key_value_heads` where
    keys are values), as Gemma4TextConfig builds them."""
    saved = c.get("per_layer_config")
    if isinstance(saved, dict):
        return {int(i): dict(sizes) for i, sizes in saved.items()}
    full = {"head_dim": c.get("global_head_dim") or GLOBAL_HEAD_DIM}
    if c.get("attention_k_eq_v") and c.get("num_global_key_value_heads"):
        full["num_key_value_heads"] = c["num_global_key_value_heads"]
    return {i: full for i, kind in enumerate(types) if kind == FULL}


def kinded_linears(h: int, heads: int, width: int, shapes: LayerKinds, layers: int) -> list:
    """The nn.Linear layers of every layer kind, and the per-layer embeddings' gate and
    projections (never adapted by "auto": they are neither attention nor MLP)."""
    linears: list[Linear] = []
    for kind in shapes.kinds:
        q = heads * kind.head_dim
        linears.append(Linear("q_proj", h, q, kind.layers))
        if not kind.shares_kv:
            linears.append(Linear("k_proj", h, kind.kv_heads * kind.head_dim, kind.layers))
            if kind.values:
                linears.append(Linear("v_proj", h, kind.kv_heads * kind.head_dim, kind.layers))
        linears.append(Linear("o_proj", q, h, kind.layers))
    shared = shapes.kv_shared() if shapes.double_wide else 0
    for mlp_width, count in ((width, layers - shared), (2 * width, shared)):
        if count:
            linears += [
                Linear("gate_proj", h, mlp_width, count),
                Linear("up_proj", h, mlp_width, count),
                Linear("down_proj", mlp_width, h, count),
            ]
    ple = shapes.per_layer_width
    if ple:
        linears += [
            Linear("per_layer_input_gate", h, ple, layers, auto_lora=False),
            Linear("per_layer_projection", ple, h, layers, auto_lora=False),
            Linear("per_layer_model_projection", h, layers * ple, 1, auto_lora=False),
        ]
    return merged(linears)


def kinded_small_params(h: int, shapes: LayerKinds, layers: int) -> int:
    """Norms beside the linears: four a layer (Gemma's sandwich), q_norm a head width,
    k_norm where a layer has keys of its own (v_norm has no weight), and PLE's norms."""
    total = layers * 4 * h + h  # + the final norm
    for kind in shapes.kinds:
        total += kind.layers * kind.head_dim * (1 if kind.shares_kv else 2)
    if shapes.per_layer_width:
        total += layers * h + shapes.per_layer_width  # post-PLE norms, the projection's norm
    return total


def per_layer_embedding(shapes: LayerKinds | None, layers: int) -> int:
    """PLE's embedding table: one row a token of every layer's input (16-bit, like the
    token embedding)."""
    if shapes is None or not shapes.per_layer_width:
        return 0
    return shapes.per_layer_vocab * layers * shapes.per_layer_width
