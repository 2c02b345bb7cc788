"""Hybrid families whose token mixers are mostly linear attention: Qwen3.5's and
Qwen3-Next's gated DeltaNet layers beside every few full-attention layers. Their
projections, the parameters beside them, and which layers are which, from config.json as
transformers reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .library_tables import legacy_layer_types

# model_type -> transformers' default `full_attention_interval` where `layer_types` is absent
# (Qwen3_5TextConfig.__post_init__: every 4th layer full attention; a keyword popped there,
# not a declared default config_defaults can read). Other sizes: models._info's defaults.
HYBRID_TYPES = {"qwen3_5_text": 4, "qwen3_5_moe_text": 4, "qwen3_next": 4}
# Qwen3-Next fuses the DeltaNet's input projections in two (Qwen3NextGatedDeltaNet)
FUSED_INPUT_TYPES = {"qwen3_next"}
# the config fields a hybrid reads beside the usual sizes (check_config_sizes checks them)
LINEAR_ATTENTION_SIZES = (
    "linear_num_key_heads",
    "linear_num_value_heads",
    "linear_key_head_dim",
    "linear_value_head_dim",
    "linear_conv_kernel_dim",
    "full_attention_interval",
)
LAYER_TYPES = ("linear_attention", "full_attention")
# Their full-attention layers gate the attention's output: q_proj yields the queries and a
# gate of the same width (Qwen3_5Attention: torch.chunk(q_proj(x), 2))
GATED_QUERY_TYPES = {"qwen3_5_text", "qwen3_5_moe_text", "qwen3_next"}


@dataclass(frozen=True)
class LinearAttention:
    """The gated DeltaNet layers of a hybrid model (Qwen3_5GatedDeltaNet)."""

    layers: int  # how many of the model's layers are linear attention
    fused_inputs: bool  # in_proj_qkvz / in_proj_ba (Qwen3-Next), not four projections
    key_heads: int  # the next five in LINEAR_ATTENTION_SIZES' order
    value_heads: int
    key_head_dim: int
    value_head_dim: int
    conv_kernel: int

    @property
    def key_dim(self) -> int:
        return self.key_heads * self.key_head_dim

    @property
    def value_dim(self) -> int:
        return self.value_heads * self.value_head_dim

    @property
    def conv_dim(self) -> int:
        """The causal convolution's channels: queries, keys and values together."""
        return 2 * self.key_dim + self.value_dim

    def projections(self, h: int) -> list[tuple[str, int, int]]:
        """(name, in, out) of each nn.Linear of one layer, as transformers names them."""
        if self.fused_inputs:
            return [
                ("in_proj_qkvz", h, self.conv_dim + self.value_dim),
                ("in_proj_ba", h, 2 * self.value_heads),
                ("out_proj", self.value_dim, h),
            ]
        return [
            ("in_proj_qkv", h, self.conv_dim),
            ("in_proj_z", h, self.value_dim),
            ("in_proj_b", h, self.value_heads),
            ("in_proj_a", h, self.value_heads),
            ("out_proj", self.value_dim, h),
        ]

    def other_params(self) -> int:
        """A layer's parameters outside its linears: the depthwise convolution (no bias),
        dt_bias, A_log and the gated norm over one value head."""
        return self.conv_dim * self.conv_kernel + 2 * self.value_heads + self.value_head_dim


def layer_types(model_type: str, c: dict, layers: int) -> list[str]:
    """Each layer's token mixer, "linear_attention" or "full_attention": `layer_types` where
    the config lists them (one per layer, as transformers requires), else every
    `full_attention_interval`-th layer full attention."""
    types = c.get("layer_types")
    if types is not None:
        renamed = legacy_layer_types()  # old names transformers still reads ("mamba")
        if isinstance(types, list):
            types = [renamed.get(t, t) if isinstance(t, str) else t for t in types]
        if not (
            isinstance(types, list) and len(types) == layers and set(types) <= set(LAYER_TYPES)
        ):
            raise ValueError(
                f"'layer_types' must list {layers} entries (num_hidden_layers), "
                f"each {' or '.join(repr(t) for t in LAYER_TYPES)}"
            )
        return types
    interval = c.get("full_attention_interval") or HYBRID_TYPES[model_type]
    return [
        "full_attention" if (i + 1) % interval == 0 else "linear_attention" for i in range(layers)
    ]


def linear_attention_of(model_type: str, c: dict, layers: int) -> LinearAttention | None:
    """The linear-attention layers of a hybrid family; None for every other family."""
    if model_type not in HYBRID_TYPES:
        return None
    count = layer_types(model_type, c, layers).count("linear_attention")
    return LinearAttention(
        count,
        model_type in FUSED_INPUT_TYPES,
        *(sized(c, key) for key in LINEAR_ATTENTION_SIZES[:5]),
    )


def sized(c: dict, key: str) -> int:
    """A size from the config (where config.json leaves it out, models._info has put the
    installed transformers' default for this model type)."""
    value = c.get(key)
    if not value:
        raise ValueError(f"'{key}' is not set and transformers' default could not be read")
    return value
