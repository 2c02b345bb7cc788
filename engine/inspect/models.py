"""Model facts from config.json alone: exact parameter counts, LoRA targets, backends.

Never loads weights and never imports torch: the planner and the first screens use it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

from ..common.errors import ModelError
from ..common.safe_io import CONFIG_LIMIT, read_json
from ..settings.schema import DEMO
from .catalog import CATALOG, UNPLANNED

# Unsloth 2026.10's FastLanguageModel trains these with its own hand-written kernels (its
# loader dispatches them by model_type); every other type goes to FastModel, a generic path
# compiled with torch.compile on the first step.
UNSLOTH_TYPES = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2"}
UNSLOTH_GENERIC_REASON = (
    "Unsloth trains {type} through its generic compiled path (FastModel): measured 17-21 % "
    "above the plan on Gemma-3 and Phi-3, with 30-150 s first steps; use liger or hf"
)
UNSLOTH_GENERIC_MEASURED = {"gemma3_text", "gemma3", "phi3"}
NORMS_PER_LAYER = {"gemma2": 4, "gemma3_text": 4}
LIGER_TABLE = "MODEL_TYPE_TO_APPLY_LIGER_FN"  # liger_kernel.transformers.monkey_patch


@functools.lru_cache(maxsize=1)
def liger_model_types() -> frozenset[str] | None:
    """The model types the installed liger-kernel patches: the keys of its own table,
    read from the source of liger_kernel/transformers/monkey_patch.py without importing
    it (the import pulls in torch, and `plan` stays torch-free). None when liger-kernel
    is not installed or its table is no longer a literal (tests pin the shape)."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec("liger_kernel")
    if spec is None or not spec.submodule_search_locations:
        return None
    source = Path(next(iter(spec.submodule_search_locations)), "transformers", "monkey_patch.py")
    try:
        tree = ast.parse(source.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        named = any(isinstance(t, ast.Name) and t.id == LIGER_TABLE for t in targets)
        if named and isinstance(node.value, ast.Dict):
            keys = [k.value for k in node.value.keys if isinstance(k, ast.Constant)]
            return frozenset(k for k in keys if isinstance(k, str))
    return None


def liger_problem(model_types: list[str]) -> str | None:
    """Why Liger cannot patch a model of these types (the loaded class's type first:
    a multimodal model is patched by its outer type), or None when it can."""
    types = liger_model_types()
    if types is None:
        return "liger-kernel is not installed (or its model table could not be read)"
    if any(t in types for t in model_types):
        return None
    return f"Liger has no kernels for {model_types[0]}"


@dataclass(frozen=True)
class Linear:
    """One nn.Linear of the blocks: its leaf name (what PEFT targets), shape, and in how
    many layers it appears. Only these are quantised by bitsandbytes and adapted by LoRA."""

    name: str
    in_features: int
    out_features: int
    layers: int
    auto_lora: bool = True  # False for a router: "auto" never adapts it (recipe.language_linears)

    @property
    def params(self) -> int:
        return self.in_features * self.out_features * self.layers


@dataclass(frozen=True)
class Experts:
    """Mixture-of-experts facts. transformers 5 keeps each layer's routed experts as fused
    3-D parameters (not nn.Linear): bitsandbytes leaves them in 16-bit and LoRA's
    'all-linear' does not reach them."""

    experts: int
    top_k: int
    expert_intermediate: int
    shared_intermediate: int  # 0 when the family has no shared expert
    sparse_layers: int


@dataclass
class ModelInfo:
    name: str
    architecture: str
    model_type: str
    params_total: int
    params_embedding: int  # input embeddings + untied lm_head
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int  # per-token MLP width that activations scale with (active experts)
    vocab_size: int
    tie_word_embeddings: bool
    max_context: int
    lora_targets: list[str]
    supported_backends: dict[str, str | None]  # backend → None if supported, else why not
    linears: list[Linear] = field(default_factory=list)
    params_experts: int = 0  # fused routed-expert weights: resident, never quantised
    params_active: int = 0  # parameters one token passes through (= total when dense)
    moe: Experts | None = None
    # a multimodal checkpoint's vision tower and projector: loaded and quantised with the
    # language model, never adapted by "auto" LoRA; params_total includes them
    vision_linears: list[Linear] = field(default_factory=list)
    params_vision: int = 0

    @property
    def params_linear(self) -> int:
        """Parameters in nn.Linear layers (the blocks', a vision tower's): what 4-/8-bit
        quantisation shrinks."""
        return sum(linear.params for linear in self.linears + self.vision_linears)

    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    def lora_params(self, r: int, targets: list[str] | None = None) -> int:
        """LoRA's parameters: "auto" adapts the language model's layers only; names the
        user gives reach a vision tower's layers of that name too (PEFT matches by name)."""
        chosen = set(targets or self.lora_targets)
        reached = self.linears + (self.vision_linears if targets else [])
        return sum(
            r * (lin.in_features + lin.out_features) * lin.layers
            for lin in reached
            if lin.name in chosen
        )


def catalog_ids() -> list[str]:
    return sorted(CATALOG)


def load_config(name_or_path: str) -> dict:
    """config.json of 'demo', a local folder, or a catalog ID — no download."""
    if name_or_path == DEMO:
        from ..common.demo import demo_model_config

        return demo_model_config()
    path = Path(name_or_path).expanduser()
    if (path / "config.json").exists():
        config = read_json(path / "config.json", CONFIG_LIMIT, "model config")
        if not isinstance(config, dict):
            kind = type(config).__name__
            raise ModelError(f"{path / 'config.json'}: must be a JSON object, not {kind}")
        return config
    if path.is_dir():
        raise ModelError(f"{path}: not a model folder (no config.json)")
    if name_or_path in CATALOG:
        return dict(CATALOG[name_or_path])
    if name_or_path in UNPLANNED:
        raise ModelError(
            f"{name_or_path}: transformers builds it, but finetune-tui cannot plan its memory "
            f"yet ({UNPLANNED[name_or_path]})"
        )
    raise ModelError(
        f"{name_or_path}: not a local model folder and not in the catalog "
        "(finetune-tui plan --list-models shows it; or give a folder holding its config.json)"
    )


def inspect_model(name_or_path: str) -> ModelInfo:
    return inspect_config(name_or_path, load_config(name_or_path))


def inspect_config(name: str, config: dict) -> ModelInfo:
    """Facts from a config dict (a multimodal config's nested text settings are used)."""
    text = config.get("text_config")
    merged = (text if isinstance(text, dict) else config) | {
        "architectures": config.get("architectures"),
        "loaded_model_type": config.get("model_type"),  # the class a loader builds
    }
    try:
        info = _info(name, merged)
        if isinstance(config.get("vision_config"), dict):
            _add_vision(name, info, config)
        return info
    except (KeyError, TypeError, ValueError, ZeroDivisionError, AttributeError) as exc:
        raise ModelError(f"{name}: config.json lacks what planning needs ({exc})") from None


def _add_vision(name: str, info: ModelInfo, config: dict) -> None:
    """Count the vision tower and projector the checkpoint holds beside the language
    model (a plan of the text model alone missed Gemma-3-4B's 0.42 B). Towers and
    projectors this does not know are refused rather than planned short."""
    vision = config["vision_config"]
    projector = config.get("model_type")
    tower = vision.get("model_type", PROJECTORS.get(projector))  # the config class's default
    if tower not in VISION_TOWERS or projector not in PROJECTORS:
        raise ModelError(
            f"{name}: the vision tower ({tower}) and projector ({projector}) of this "
            "multimodal config cannot be counted, so its memory cannot be predicted "
            f"(known: {', '.join(sorted(VISION_TOWERS))} with {', '.join(sorted(PROJECTORS))})"
        )
    h, width = vision.get("hidden_size", 768), vision.get("intermediate_size", 3072)
    layers, patch = vision.get("num_hidden_layers", 12), vision.get("patch_size", 16)
    image, channels = vision.get("image_size", 224), vision.get("num_channels", 3)
    positions = (image // patch) ** 2
    linears = [
        *(Linear(n, h, h, layers, auto_lora=False) for n in ("q_proj", "k_proj", "v_proj")),
        Linear("out_proj", h, h, layers, auto_lora=False),
        Linear("fc1", h, width, layers, auto_lora=False),
        Linear("fc2", width, h, layers, auto_lora=False),
    ]
    biases_norms = layers * (4 * h + width + h + 4 * h)  # q/k/v/out, fc1, fc2 biases; 2 norms
    other = biases_norms + 2 * h  # post_layernorm
    other += channels * patch * patch * h + h + positions * h  # patch conv, positions
    if vision.get("vision_use_head", True):  # SigLIP's attention-pooling head
        other += h + (3 * h * h + 3 * h) + h + 2 * h + width + h  # probe, in_proj, biases, norm
        linears += [
            Linear("out_proj", h, h, 1, auto_lora=False),
            Linear("fc1", h, width, 1, auto_lora=False),
            Linear("fc2", width, h, 1, auto_lora=False),
        ]
    other += h * info.hidden_size + h  # gemma3's projection matrix (a Parameter), RMSNorm
    info.vision_linears = linears
    info.params_vision = sum(lin.params for lin in linears) + other
    info.params_total += info.params_vision
    info.params_active += info.params_vision


REQUIRED = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
SIZES_IF_SET = ("num_key_value_heads", "head_dim", "intermediate_size")  # null: derived
LAYERNORM = {"gpt_neox", "starcoder2", "falcon", "phimoe", "phi", "gpt2", "gpt_bigcode"}
VISION_TOWERS = {"siglip_vision_model"}
# the outer model_type: the multimodal classes AutoModelForCausalLM (the runner's) builds
PROJECTORS = {"gemma3": "siglip_vision_model"}  # → its default vision tower
EXPERT_BIASES = {"gpt_oss"}
LINEAR_ROUTERS = {"phimoe"}  # its router subclasses nn.Linear: quantised, never LoRA-targeted
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
}


def _info(name: str, c: dict) -> ModelInfo:
    model_type = c.get("model_type")
    if model_type not in KNOWN_TYPES:
        raise ModelError(
            f"{name}: model_type {model_type!r} is not a family finetune-tui can plan "
            f"(known: {', '.join(sorted(KNOWN_TYPES))}); training it may still work, "
            "but its memory cannot be predicted"
        )
    check_config_sizes(name, c)
    h, layers, vocab = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
    heads = c["num_attention_heads"]
    kv = _kv_heads(model_type, c, heads)
    head_dim = c.get("head_dim") or h // heads
    moe = _experts(model_type, c, layers)
    dense_layers = layers - (moe.sparse_layers if moe else 0)
    linears = _attention(model_type, c, h, heads, kv, head_dim, layers)
    linears += _mlp(model_type, h, _dense_width(c, h), dense_layers)
    experts = 0
    if moe:
        linears += _mlp(model_type, h, moe.shared_intermediate, moe.sparse_layers)
        if model_type in LINEAR_ROUTERS:
            linears.append(Linear("router", h, moe.experts, moe.sparse_layers, auto_lora=False))
        experts = moe.sparse_layers * moe.experts * 3 * h * moe.expert_intermediate
        if model_type in EXPERT_BIASES:  # gate_up and down biases of every expert
            experts += moe.sparse_layers * moe.experts * (2 * moe.expert_intermediate + h)
    tie = bool(c.get("tie_word_embeddings", model_type in {"gemma", "gemma2", "gemma3_text"}))
    embedding = vocab * h * (1 if tie else 2)
    other = embedding + _small_params(model_type, c, h, heads, kv, head_dim, layers, moe)
    total = sum(lin.params for lin in linears) + experts + other
    active = total
    width = _dense_width(c, h)
    if moe:
        idle = moe.experts - moe.top_k
        active -= moe.sparse_layers * idle * 3 * h * moe.expert_intermediate
        width = moe.top_k * moe.expert_intermediate + moe.shared_intermediate
    backends = {
        "hf": None,
        "liger": liger_problem([t for t in (c.get("loaded_model_type"), model_type) if t]),
        "unsloth": _unsloth_problem(model_type),
    }
    return ModelInfo(
        name=name,
        architecture=(c.get("architectures") or [model_type])[0],
        model_type=model_type,
        params_total=total,
        params_embedding=embedding,
        num_layers=layers,
        hidden_size=h,
        num_heads=heads,
        num_kv_heads=kv,
        head_dim=head_dim,
        intermediate_size=width,
        vocab_size=vocab,
        tie_word_embeddings=tie,
        max_context=c.get("max_position_embeddings", 2048),
        lora_targets=list(dict.fromkeys(lin.name for lin in linears if lin.auto_lora)),
        supported_backends=backends,
        linears=linears,
        params_experts=experts,
        params_active=active,
        moe=moe,
    )


def _unsloth_problem(model_type: str) -> str | None:
    """Why the plan does not offer Unsloth for this family, or None."""
    if model_type in UNSLOTH_TYPES:
        return None
    if model_type in UNSLOTH_GENERIC_MEASURED:
        return UNSLOTH_GENERIC_REASON.format(type=model_type)
    return f"Unsloth is not measured for {model_type} here; use liger or hf"


def check_config_sizes(name: str, c: dict, required: bool = True) -> None:
    """The sizes planning divides and multiplies by are positive integers: zero heads or
    layers made `plan` say "fits" for "-0.00 B parameters", and loading fail later.
    Preflight checks a model folder with `required=False` (a family we cannot plan may
    name its sizes otherwise) before the run directory exists."""
    text = c.get("text_config")
    c = text if isinstance(text, dict) else c
    for key in REQUIRED + SIZES_IF_SET:
        value = c.get(key)
        if value is None and (key in SIZES_IF_SET or not required):
            continue
        if type(value) is not int:  # bool is an int to isinstance
            if key in SIZES_IF_SET:
                raise ModelError(f"{name}: config.json: '{key}' is {value!r}, not an integer")
            raise ModelError(f"{name}: config.json has no integer '{key}', which planning needs")
        if value <= 0:
            raise ModelError(f"{name}: config.json: '{key}' is {value}; it must be at least 1")


def _kv_heads(model_type: str, c: dict, heads: int) -> int:
    if model_type == "falcon" and not c.get("new_decoder_architecture"):
        return 1 if c.get("multi_query", True) else heads
    if model_type == "falcon":
        return c.get("num_kv_heads") or heads
    return c.get("num_key_value_heads") or heads


def _dense_width(c: dict, h: int) -> int:
    return c.get("intermediate_size") or c.get("ffn_hidden_size") or 4 * h


def _experts(model_type: str, c: dict, layers: int) -> Experts | None:
    """Routed experts from whichever keys the family uses; None for a dense model."""
    count = c.get("num_local_experts") or c.get("num_experts") or c.get("n_routed_experts")
    if not count:
        return None
    width = c.get("moe_intermediate_size") or c.get("intermediate_size")
    shared = c.get("shared_expert_intermediate_size") or 0
    if c.get("n_shared_experts"):
        shared = c["n_shared_experts"] * width
    first_dense = c.get("first_k_dense_replace", 0)
    step = c.get("decoder_sparse_step", 1) or 1
    mlp_only = set(c.get("mlp_only_layers") or [])
    sparse = sum(
        1 for i in range(layers) if i >= first_dense and i not in mlp_only and (i + 1) % step == 0
    )
    return Experts(count, c.get("num_experts_per_tok", 2), width, shared, sparse)


def _attention(model_type, c, h, heads, kv, head_dim, layers) -> list[Linear]:
    """The attention projections of one layer, by the module names transformers uses."""
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
    if model_type == "phi3":
        return [lin("qkv_proj", h, q + 2 * k), lin("o_proj", q, h)]
    return [lin("q_proj", h, q), lin("k_proj", h, k), lin("v_proj", h, k), lin("o_proj", q, h)]


def _mlp(model_type: str, h: int, width: int, layers: int) -> list[Linear]:
    if not width or not layers:
        return []
    if model_type == "gpt_neox" or model_type == "falcon":
        return [
            Linear("dense_h_to_4h", h, width, layers),
            Linear("dense_4h_to_h", width, h, layers),
        ]
    if model_type == "starcoder2":
        return [Linear("c_fc", h, width, layers), Linear("c_proj", width, h, layers)]
    if model_type == "phi3":
        return [Linear("gate_up_proj", h, 2 * width, layers), Linear("down_proj", width, h, layers)]
    return [
        Linear("gate_proj", h, width, layers),
        Linear("up_proj", h, width, layers),
        Linear("down_proj", width, h, layers),
    ]


def _small_params(model_type, c, h, heads, kv, head_dim, layers, moe) -> int:
    """Norms, biases and routers: under 1 % of a model, but counted exactly where known."""
    per_norm = 2 * h if model_type in LAYERNORM else h
    norms_per_layer = NORMS_PER_LAYER.get(model_type, 2)
    if model_type == "falcon" and not c.get("new_decoder_architecture"):
        norms_per_layer = 1  # parallel attention shares one LayerNorm
    total = layers * norms_per_layer * per_norm + per_norm  # + the final norm
    q, k = heads * head_dim, kv * head_dim
    if model_type in ("qwen3", "qwen3_moe", "gemma3_text"):
        total += layers * 2 * head_dim  # q_norm, k_norm per head
    if model_type in ("olmoe", "olmo2", "olmo3"):  # q_norm, k_norm over whole projections
        total += layers * (q + k)
    if model_type == "gpt_oss":  # attention sinks; router biases
        total += layers * heads + moe.sparse_layers * moe.experts
    if model_type in ("deepseek_v2", "deepseek_v3"):
        total += layers * c["kv_lora_rank"] + layers * (c.get("q_lora_rank") or 0)
    if model_type in ("qwen2", "qwen2_moe") or c.get("attention_bias"):
        total += layers * (q + 2 * k + (h if c.get("attention_bias") else 0))
    if model_type == "gpt_neox":
        total += layers * (q + 2 * k + h + _dense_width(c, h) + h)
    if model_type == "starcoder2" and c.get("use_bias", True):
        total += layers * (q + 2 * k + h + _dense_width(c, h) + h)
    if model_type == "phimoe" and c.get("lm_head_bias"):
        total += c["vocab_size"]
    if moe and model_type not in LINEAR_ROUTERS:
        total += moe.sparse_layers * moe.experts * h  # routers
        if model_type == "qwen2_moe":
            total += moe.sparse_layers * h  # shared_expert_gate
    return total
