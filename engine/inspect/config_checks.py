"""What a config.json must hold before planning reads it, each fault one line naming the
field: the sizes planning divides and multiplies by (positive integers, a language model's
and its towers'), and every field the family's transformers config class declares a plain
type for (transformers 5 refuses any other when it builds the model; planned, "multi_query":
"no" read as true and a NaN width crashed the plan)."""

from __future__ import annotations

from ..common.errors import ModelError
from .library_tables import config_field_types
from .linear_attention import HYBRID_TYPES, LINEAR_ATTENTION_SIZES

REQUIRED = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
SIZES_IF_SET = (  # null or left out: derived, or not this family's
    "num_key_value_heads",
    "head_dim",
    "intermediate_size",
    # experts, whichever family's names (families.experts_of reads them all)
    "num_local_experts",
    "num_experts",
    "n_routed_experts",
    "num_experts_per_tok",
    "moe_intermediate_size",
    "decoder_sparse_step",
    "interleave_moe_layer_step",
    # multi-head latent attention (DeepSeek)
    "kv_lora_rank",
    "q_lora_rank",
    "qk_nope_head_dim",
    "qk_rope_head_dim",
    "v_head_dim",
    "max_position_embeddings",  # the context: the advisor caps the length at it
    "num_kv_heads",  # Falcon's key/value heads
)
COUNTS_IF_SET = ("first_k_dense_replace", "n_shared_experts", "shared_expert_intermediate_size")
LARGEST_SIZE = 2**24  # no model's width, depth or vocabulary comes near: a typo or a forgery
# sizes only some families read: positive integers where set (null: transformers' default)
FAMILY_SIZES = {
    **dict.fromkeys(HYBRID_TYPES, LINEAR_ATTENTION_SIZES),
    "llama4_text": ("intermediate_size_mlp", "num_local_experts", "interleave_moe_layer_step"),
    "gemma4_text": (
        "global_head_dim",
        "num_global_key_value_heads",
        "vocab_size_per_layer_input",
        "num_experts",
        "top_k_experts",
        "moe_intermediate_size",
    ),
}
# what towers.py reads of each tower's config: positive integers where set
TOWER_SIZES = {
    "siglip_vision_model": (
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_channels",
        "image_size",
        "patch_size",
    ),
    "gemma4_vision": (
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "patch_size",
        "position_embedding_size",
        "output_proj_dims",
    ),
    "gemma4_audio": (
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "output_proj_dims",
        "conv_kernel_size",
    ),
}
# how a declared type is told in a message, and what a JSON value of it is
TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true/false",
    "str": "text",
    "None": "null",
    "list": "a list",
    "tuple": "a list",
    "dict": "an object",
}
TYPE_TESTS = {
    "int": lambda v: type(v) is int,  # bool is an int to isinstance
    "float": lambda v: type(v) in (int, float),
    "bool": lambda v: type(v) is bool,
    "str": lambda v: isinstance(v, str),
    "None": lambda v: v is None,
    "list": lambda v: isinstance(v, list),
    "tuple": lambda v: isinstance(v, list),
    "dict": lambda v: isinstance(v, dict),
}


def check_declared_types(name: str, c: dict, model_type: str, where: str = "") -> None:
    """Each field of config.json (`c`, a tower's under `where`) that the family's config
    class declares a plain type for holds a value of that type (a null where the type has
    none: gpt-oss's null expert count crashed the plan); a null size planning needs is the
    size checks' to name."""
    for key, kinds in config_field_types(model_type).items():
        if key not in c or (c[key] is None and key in REQUIRED):
            continue
        value = c[key]
        if not any(TYPE_TESTS[kind](value) for kind in kinds):
            wanted = " or ".join(dict.fromkeys(TYPE_WORDS[kind] for kind in kinds))
            shown = "null" if value is None else _shown(value)
            raise ModelError(f"{name}: config.json: '{where}{key}' is {shown}, not {wanted}")


def check_tower_sizes(name: str, tower: dict, tower_type: str, where: str) -> None:
    """A tower's sizes as a language model's are: its types, then positive integers below
    LARGEST_SIZE (a vision tower of -1,000 layers planned -3.2 B parameters as fitting)."""
    check_declared_types(name, tower, tower_type, where)
    for key in TOWER_SIZES.get(tower_type, ()):
        _check_size(name, f"{where}{key}", tower.get(key), optional=True, least=1)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."


def check_config_sizes(name: str, c: dict, required: bool = True) -> None:
    """The sizes planning divides and multiplies by are positive integers: zero heads or
    layers made `plan` say "fits" for "-0.00 B parameters", and loading fail later.
    Preflight checks a model folder with `required=False` (a family we cannot plan may
    name its sizes otherwise) before the run directory exists."""
    text = c.get("text_config")
    c = text if isinstance(text, dict) else c
    optional = SIZES_IF_SET + COUNTS_IF_SET + FAMILY_SIZES.get(c.get("model_type"), ())
    for key in REQUIRED + optional:
        least = 0 if key in COUNTS_IF_SET else 1
        _check_size(name, key, c.get(key), key in optional or not required, least)
    _check_routing(name, c)
    _check_head_groups(name, c)
    tie = c.get("tie_word_embeddings")
    if tie is not None and type(tie) is not bool:  # "false" is a true string
        raise ModelError(f"{name}: config.json: 'tie_word_embeddings' is {tie!r}, not true/false")


def _check_size(name: str, key: str, value, optional: bool, least: int) -> None:
    """One size: an integer (where set, if `optional`) from `least` to LARGEST_SIZE."""
    if value is None and optional:
        return
    if value is None:
        raise ModelError(f"{name}: config.json has no integer '{key}', which planning needs")
    if type(value) is not int:  # bool is an int to isinstance
        raise ModelError(f"{name}: config.json: '{key}' is {_shown(value)}, not an integer")
    if value < least:
        raise ModelError(f"{name}: config.json: '{key}' is {value}; it must be at least {least}")
    if value > LARGEST_SIZE:
        raise ModelError(
            f"{name}: config.json: '{key}' is {_shown(value)}; no model's is above {LARGEST_SIZE:,}"
        )


def _check_head_groups(name: str, c: dict) -> None:
    """Each key/value head serves a whole group of query heads (transformers builds any
    other count and fails at the first step)."""
    heads, kv = c.get("num_attention_heads"), c.get("num_key_value_heads")
    if type(heads) is int and type(kv) is int and kv > 0 and (kv > heads or heads % kv):
        raise ModelError(
            f"{name}: config.json: {kv} key/value heads do not divide the {heads} attention "
            "heads into groups ('num_key_value_heads')"
        )


def _check_routing(name: str, c: dict) -> None:
    """A token is routed to at most every expert there is."""
    experts = c.get("num_local_experts") or c.get("num_experts") or c.get("n_routed_experts")
    top_k = c.get("num_experts_per_tok")
    if experts and top_k and top_k > experts:
        raise ModelError(
            f"{name}: config.json: 'num_experts_per_tok' is {top_k}, more than the "
            f"{experts} experts there are"
        )
