"""Per-family tables: the nn.Linear layers of a decoder block by the module names
transformers uses, routed experts from whichever keys a family names them with, and the
norms, biases and routers each family adds. Counted from config.json alone.
"""

from __future__ import annotations

import dataclasses

from .layer_kinds import LayerKinds, kinded_linears, kinded_small_params
from .library_tables import config_field_names, fused_linears
from .linear_attention import GATED_QUERY_TYPES
from .shapes import Experts, Linear

NORMS_PER_LAYER = {"gemma2": 4, "gemma3_text": 4}
LAYERNORM = {"gpt_neox", "starcoder2", "falcon", "phimoe", "phi", "gpt2", "gpt_bigcode"}
EXPERT_BIASES = {"gpt_oss"}
# bitsandbytes (through transformers) replaces only `type(module) is nn.Linear`: a family's own
# nn.Linear subclass stays in the compute dtype whatever the quantisation
LINEAR_ROUTERS = {"phimoe", "llama4_text"}  # routers subclassing nn.Linear: 16-bit, no LoRA
# transformers' Llama-4 MoE runs every token through every expert (scaled by the router's
# scores) and a shared expert as wide as one of them (Llama4TextMoe)
EVERY_EXPERT_TYPES = {"llama4_text"}
# the shared expert's one-output gate, an nn.Linear: how much the shared expert adds
SHARED_EXPERT_GATES = {"qwen2_moe", "qwen3_5_moe_text", "qwen3_next"}
SUBCLASSED_LINEARS = {"falcon"}  # FalconLinear: every projection stays 16-bit under NF4
KNOWN_TYPES = {
    "llama",
    "mistral",
    "mixtral",
    "qwen2",
    "qwen2_moe",
    "qwen3",
    "qwen3_moe",
    "olmoe",
    "deepseek_v2",
    "deepseek_v3",
    "gemma",
    "gemma2",
    "gemma3_text",
    "phi3",
    "phimoe",
    "gpt_neox",
    "falcon",
    "starcoder2",
    "granite",
    "olmo2",
    "olmo3",
    "gpt_oss",
    "smollm3",
    "glm4",
    "cohere",
    "qwen3_5_text",
    "qwen3_5_moe_text",
    "qwen3_next",
    "llama4_text",
    "gemma4_text",
}
# a dense MLP in every layer beside the routed experts (Gemma-4's `enable_moe_block`),
# counted as a shared expert of the dense width; experts only where the block is enabled
DENSE_BESIDE_EXPERTS = {"gemma4_text"}
# routers that are a plain nn.Linear inside a router module (Gemma4TextRouter.proj):
# quantised like any linear, never adapted
ROUTER_LINEARS = {"gemma4_text": "proj"}


def kv_heads(model_type: str, c: dict, heads: int) -> int:
    if model_type == "falcon" and not c.get("new_decoder_architecture"):
        return 1 if c.get("multi_query", True) else heads
    if model_type == "falcon":
        return c.get("num_kv_heads") or heads
    return c.get("num_key_value_heads") or heads


def dense_width(c: dict, h: int) -> int:
    """A dense layer's MLP width (Llama-4 names its dense layers' apart from its experts')."""
    return (
        c.get("intermediate_size_mlp") or c.get("intermediate_size") or c.get("ffn_hidden_size")
    ) or 4 * h


# the keys experts_of reads, each family naming its own
EXPERT_KEYS = (
    "num_local_experts",
    "num_experts",
    "n_routed_experts",
    "num_experts_per_tok",
    "top_k_experts",
    "moe_intermediate_size",
    "shared_expert_intermediate_size",
    "n_shared_experts",
    "first_k_dense_replace",
    "decoder_sparse_step",
    "interleave_moe_layer_step",
    "mlp_only_layers",
    "moe_layers",
)


def declared_experts(model_type: str, c: dict) -> dict:
    """`c` less the expert keys its family's config class does not declare: its model
    reads none of them (a dense Llama's config.json with a stray `num_local_experts: 64`
    was planned as a 363 B mixture of experts, transformers building the 8 B model)."""
    declared = config_field_names(model_type)
    if not declared:  # the class is not found: every key stands
        return c
    return {k: v for k, v in c.items() if k not in EXPERT_KEYS or k in declared}


def experts_of(model_type: str, c: dict, layers: int) -> Experts | None:
    """Routed experts from whichever keys the family uses; None for a dense model."""
    count = c.get("num_local_experts") or c.get("num_experts") or c.get("n_routed_experts")
    if not count or (model_type in DENSE_BESIDE_EXPERTS and not c.get("enable_moe_block")):
        return None
    # absent from config.json and the class's defaults (models._info merged them): the dense width
    width = c.get("moe_intermediate_size") or c.get("intermediate_size")
    shared = c.get("shared_expert_intermediate_size") or 0
    if c.get("n_shared_experts"):
        shared = c["n_shared_experts"] * width
    if model_type in EVERY_EXPERT_TYPES:
        shared = width
    if model_type in DENSE_BESIDE_EXPERTS:
        shared = c["intermediate_size"]
    first_dense = c.get("first_k_dense_replace", 0)
    step = c.get("decoder_sparse_step") or c.get("interleave_moe_layer_step") or 1
    mlp_only = set(c.get("mlp_only_layers") or [])
    sparse = sum(
        1 for i in range(layers) if i >= first_dense and i not in mlp_only and (i + 1) % step == 0
    )
    named = c.get("moe_layers")  # Llama-4 may name its MoE layers outright
    if named is not None:
        if not (isinstance(named, list) and all(type(i) is int for i in named)):
            raise ValueError("'moe_layers' must be a list of layer indices")
        sparse = len({i for i in named if 0 <= i < layers})
    top_k = c.get("num_experts_per_tok") or c.get("top_k_experts") or 2
    return Experts(count, top_k, width, shared, sparse)


# The attention's output projections among attention_linears' names: they read what the
# attention itself keeps for its backward (plan/lora_dropout.py)
ATTENTION_OUTPUTS = ("o_proj", "dense")


def attention_linears(model_type, c, h, heads, kv, head_dim, layers, mixer) -> list[Linear]:
    """The attention projections of one layer, by the module names transformers uses
    (`mixer`: a hybrid's linear-attention layers, linear_attention_of's, or None)."""
    q, k = heads * head_dim, kv * head_dim

    def lin(name, i, o):
        return Linear(name, i, o, layers)

    if model_type in ("deepseek_v2", "deepseek_v3"):  # multi-head latent attention
        nope, rope, v = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
        rank, q_rank = c["kv_lora_rank"], c.get("q_lora_rank")
        query = (
            [lin("q_a_proj", h, q_rank), lin("q_b_proj", q_rank, heads * (nope + rope))]
            if q_rank
            else [lin("q_proj", h, heads * (nope + rope))]
        )
        return [
            *query,
            lin("kv_a_proj_with_mqa", h, rank + rope),
            lin("kv_b_proj", rank, heads * (nope + v)),
            lin("o_proj", heads * v, h),
        ]
    if model_type in ("gpt_neox", "falcon"):
        return [lin("query_key_value", h, q + 2 * k), lin("dense", q, h)]
    if "qkv_proj" in fused_linears(model_type):  # Phi-3
        return [lin("qkv_proj", h, q + 2 * k), lin("o_proj", q, h)]
    if mixer:  # a hybrid: full attention in some layers, linear attention in the rest
        full = layers - mixer.layers
        gated = 2 if model_type in GATED_QUERY_TYPES else 1
        both = [
            Linear("q_proj", h, gated * q, full),
            *(Linear(name, h, k, full) for name in ("k_proj", "v_proj")),
            Linear("o_proj", q, h, full),
            *(Linear(name, i, o, mixer.layers) for name, i, o in mixer.projections(h)),
        ]
        return [linear for linear in both if linear.layers]  # a cut may hold one kind only
    return [lin("q_proj", h, q), lin("k_proj", h, k), lin("v_proj", h, k), lin("o_proj", q, h)]


def mlp_linears(model_type: str, h: int, width: int, layers: int) -> list[Linear]:
    if not width or not layers:
        return []
    if model_type == "gpt_neox" or model_type == "falcon":
        return [
            Linear("dense_h_to_4h", h, width, layers),
            Linear("dense_4h_to_h", width, h, layers),
        ]
    if model_type == "starcoder2":
        return [Linear("c_fc", h, width, layers), Linear("c_proj", width, h, layers)]
    if "gate_up_proj" in fused_linears(model_type):  # Phi-3, GLM-4
        return [Linear("gate_up_proj", h, 2 * width, layers), Linear("down_proj", width, h, layers)]
    return [
        Linear("gate_proj", h, width, layers),
        Linear("up_proj", h, width, layers),
        Linear("down_proj", width, h, layers),
    ]


def small_params(model_type, c, h, heads, kv, head_dim, layers, moe, mixer, kinds=None) -> int:
    """Norms, biases and routers: under 1 % of a model, but counted exactly where known."""
    if kinds:
        return kinded_small_params(h, kinds, layers) + _dense_beside_experts_params(h, moe)
    per_norm = 2 * h if model_type in LAYERNORM else h
    norms_per_layer = NORMS_PER_LAYER.get(model_type, 2)
    if model_type == "falcon" and not c.get("new_decoder_architecture"):
        norms_per_layer = 1  # parallel attention shares one LayerNorm
    total = layers * norms_per_layer * per_norm + per_norm  # + the final norm
    q, k = heads * head_dim, kv * head_dim
    full = layers - (mixer.layers if mixer else 0)
    if model_type in ("qwen3", "qwen3_moe", "gemma3_text") or mixer:
        total += full * 2 * head_dim  # q_norm, k_norm per head
    if mixer:
        total += mixer.layers * mixer.other_params()
    if model_type in ("olmoe", "olmo2", "olmo3"):  # q_norm, k_norm over whole projections
        total += layers * (q + k)
    if model_type == "gpt_oss":  # attention sinks; router biases
        total += layers * heads + moe.sparse_layers * moe.experts
    if model_type in ("deepseek_v2", "deepseek_v3"):
        total += layers * c["kv_lora_rank"] + layers * (c.get("q_lora_rank") or 0)
    if model_type in ("qwen2", "qwen2_moe") or c.get("attention_bias"):  # a hybrid: its full
        gated = 2 if model_type in GATED_QUERY_TYPES else 1  # layers' q (and gate), k, v, o
        total += full * (gated * q + 2 * k + (h if c.get("attention_bias") else 0))
    if model_type == "gpt_neox":  # its MLP's biases; its attention's where attention_bias
        total += layers * (dense_width(c, h) + h)
    if model_type == "starcoder2" and c.get("use_bias", True):
        total += layers * (q + 2 * k + h + dense_width(c, h) + h)
    if model_type == "phimoe" and c.get("lm_head_bias"):
        total += c["vocab_size"]
    if moe and model_type not in LINEAR_ROUTERS:
        total += moe.sparse_layers * moe.experts * h  # routers (ROUTER_LINEARS: kinded)
    return total


def _dense_beside_experts_params(h: int, moe: Experts | None) -> int:
    """Gemma-4's MoE layer: three more norms, and its router's scale a channel and an
    expert (the router's projection is a Linear)."""
    if moe is None:
        return 0
    return moe.sparse_layers * (3 * h + h + moe.experts)


def block_linears(
    model_type, c, h, heads, kv, head_dim, layers, moe, mixer, kinds: LayerKinds | None = None
) -> tuple[list[Linear], int]:
    """The blocks' nn.Linear layers (attention, dense and shared-expert MLPs, a linear
    router) and the fused routed-expert parameters beside them (`kinds`: layers that
    differ in shape, layer_kinds_of's; their MLP runs beside any experts)."""
    if kinds:
        linears = kinded_linears(h, heads, dense_width(c, h), kinds, layers)
    else:
        dense_layers = layers - (moe.sparse_layers if moe else 0)
        linears = attention_linears(model_type, c, h, heads, kv, head_dim, layers, mixer)
        linears += mlp_linears(model_type, h, dense_width(c, h), dense_layers)
    experts = 0
    if moe:
        if not kinds:
            linears += mlp_linears(model_type, h, moe.shared_intermediate, moe.sparse_layers)
        if model_type in ROUTER_LINEARS:
            name = ROUTER_LINEARS[model_type]
            linears.append(Linear(name, h, moe.experts, moe.sparse_layers, auto_lora=False))
        if model_type in SHARED_EXPERT_GATES:  # nn.Linear(h, 1): quantised, never adapted
            linears.append(Linear("shared_expert_gate", h, 1, moe.sparse_layers, False))
        if model_type in LINEAR_ROUTERS:
            router = Linear("router", h, moe.experts, moe.sparse_layers, False, quantised=False)
            linears.append(router)
        experts = moe.sparse_layers * moe.experts * 3 * h * moe.expert_intermediate
        if model_type in EXPERT_BIASES:  # gate_up and down biases of every expert
            experts += moe.sparse_layers * moe.experts * (2 * moe.expert_intermediate + h)
    if model_type in SUBCLASSED_LINEARS:
        linears = [dataclasses.replace(linear, quantised=False) for linear in linears]
    return linears, experts
