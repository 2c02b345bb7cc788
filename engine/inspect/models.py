"""Model facts from config.json alone: exact parameter counts, LoRA targets, backends.

Never loads weights and never imports torch: the planner and the first screens use it.
The per-family tables are inspect/families.py; which backends train a family,
inspect/backend_support.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..common.errors import ModelError
from ..common.safe_io import CONFIG_LIMIT, read_json
from ..settings.schema import DEMO
from .backend_support import supported_backends
from .catalog import CATALOG, UNPLANNED
from .config_checks import check_config_sizes, check_declared_types, check_tower_sizes
from .families import (
    EVERY_EXPERT_TYPES,
    KNOWN_TYPES,
    block_linears,
    declared_experts,
    dense_width,
    experts_of,
    kv_heads,
    small_params,
)
from .layer_kinds import LayerKinds, layer_kinds_of, per_layer_embedding
from .library_tables import (
    causal_lm_class,
    config_defaults,
    peft_moved_names,
    scales_input_embeddings,
    sdpa_unsupported,
    with_defaults,
)
from .linear_attention import LinearAttention, linear_attention_of
from .shapes import Experts, Linear
from .stored_quantization import StoredQuantization, stored_quantization
from .towers import gemma4_towers, siglip_tower


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
    # a multimodal checkpoint's towers (vision; Gemma-4's audio too) and projectors: loaded
    # and quantised with the language model, never adapted by "auto"; params_total has them
    vision_linears: list[Linear] = field(default_factory=list)
    params_vision: int = 0
    sdpa: bool = True  # transformers' class supports sdpa ("auto" loads eager where not)
    logit_softcapping: bool = False  # final logits through tanh (Gemma-2): a copy more
    scaled_embeddings: bool = False  # the family's code multiplies them (Granite): a copy more
    linear_attention: LinearAttention | None = None  # a hybrid's gated DeltaNet layers
    layer_kinds: LayerKinds | None = None  # layers of differing shapes (Gemma-4)
    params_lookup: int = 0  # embedding tables beside the token embedding (Gemma-4's PLE)
    stored: StoredQuantization | None = None  # weights stored quantised (config.json says)

    @property
    def params_linear(self) -> int:
        """Parameters in nn.Linear layers, subclasses included (the blocks', a vision
        tower's): the matrices FSDP's units hold; params_quantised is what 4-/8-bit shrinks."""
        return sum(linear.params for linear in self.linears + self.vision_linears)

    @property
    def params_quantised(self) -> int:
        """What 4-/8-bit quantisation really shrinks: nn.Linear itself, not a family's
        subclass (Falcon's projections, Phi-3.5-MoE's router stay 16-bit)."""
        return sum(x.params for x in self.linears + self.vision_linears if x.quantised)

    @property
    def params_computed(self) -> int:
        """The parameters a text token's matrix products run through: the active ones
        less a tower's (text never reaches it) and a per-layer embedding table (read by
        lookup). The token embedding stays, as the speed model was fitted with it."""
        active = self.params_active or self.params_total
        return active - self.params_vision - self.params_lookup

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


def auto_targets(model_type: str, linears: list[Linear]) -> list[str]:
    """The names "auto" adapts: the language model's projections, less those the installed
    PEFT would move onto the routed experts (as the recipe leaves them out)."""
    moved = peft_moved_names(model_type)
    return list(dict.fromkeys(x.name for x in linears if x.auto_lora and x.name not in moved))


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
    for part in (config, text if isinstance(text, dict) else {}):
        kind = part.get("model_type")
        if kind is not None and not isinstance(kind, str):
            raise ModelError(f"{name}: config.json: 'model_type' is {kind!r}, not a name")
    merged = (text if isinstance(text, dict) else config) | {
        "architectures": config.get("architectures"),
        "loaded_model_type": config.get("model_type"),  # the class a loader builds
    }
    outer = loads_vision(config)  # the multimodal class is built, not a text-only one
    if isinstance(text, dict) and outer:  # it ties by its own config (Gemma3Config: tied)
        tie = with_defaults(config.get("model_type") or "", config).get("tie_word_embeddings")
        if tie is not None:
            merged["tie_word_embeddings"] = tie
    stored = stored_quantization(name, config)  # before the family: refused either way
    try:
        info = _info(name, merged)
        towers = (config.get(key) for key in ("vision_config", "audio_config"))
        if outer and any(isinstance(tower, dict) for tower in towers):
            _add_towers(name, info, config)
        info.stored = stored
        return info
    except (KeyError, TypeError, ValueError, ZeroDivisionError, AttributeError) as exc:
        raise ModelError(f"{name}: config.json lacks what planning needs ({exc})") from None


def loads_vision(config: dict) -> bool:
    """Whether the runner's AutoModelForCausalLM loads this multimodal config's vision tower:
    not where transformers maps its type to a text-only *ForCausalLM class."""
    built = causal_lm_class(config.get("model_type") or "")
    return not (built and built.endswith("ForCausalLM"))


def _add_towers(name: str, info: ModelInfo, config: dict) -> None:
    """Count the vision (and audio) towers and projectors the checkpoint holds beside the
    language model (a plan of the text model alone missed Gemma-3-4B's 0.42 B). Towers
    and projectors this does not know are refused rather than planned short."""
    projector = config.get("model_type")
    vision = config.get("vision_config")
    tower = (vision or {}).get("model_type", PROJECTORS.get(projector))
    if projector not in PROJECTORS or tower not in VISION_TOWERS:
        raise ModelError(
            f"{name}: the vision tower ({tower}) and projector ({projector}) of this "
            "multimodal config cannot be counted, so its memory cannot be predicted "
            f"(known: {', '.join(sorted(VISION_TOWERS))} with {', '.join(sorted(PROJECTORS))})"
        )
    for key, kind in (("vision_config", tower), ("audio_config", "gemma4_audio")):
        if isinstance(config.get(key), dict):
            check_tower_sizes(name, config[key], kind, f"{key}.")
    if projector == "gemma4":
        linears, other = gemma4_towers(config, info.hidden_size, info.tie_word_embeddings)
    else:
        linears, other = siglip_tower(vision, info.hidden_size)
    info.vision_linears = linears
    info.params_vision = sum(lin.params for lin in linears) + other
    info.params_total += info.params_vision
    info.params_active += info.params_vision


VISION_TOWERS = {"siglip_vision_model", "gemma4_vision"}
# the outer model_type: the multimodal classes AutoModelForCausalLM (the runner's) builds
PROJECTORS = {"gemma3": "siglip_vision_model", "gemma4": "gemma4_vision"}  # → default tower


def _info(name: str, c: dict) -> ModelInfo:
    """The language model's facts from its (text) config: counts, widths, targets, backends."""
    model_type = _known_type(name, c)
    # as transformers builds it: Qwen3-Next's 512-wide experts, Gemma-4's head width left
    # out, Gemma-3's published text_config naming neither its heads nor its vocabulary;
    # DeepSeek-V2-Lite's null `q_lora_rank` (no query compression) kept
    check_declared_types(name, c, model_type)  # as config.json has it: before the defaults
    c = declared_experts(model_type, with_defaults(model_type, c))
    check_config_sizes(name, c)
    h, layers, vocab = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
    heads = c["num_attention_heads"]
    kv = kv_heads(model_type, c, heads)
    head_dim = c.get("head_dim") or h // heads
    moe = experts_of(model_type, c, layers)
    mixer = linear_attention_of(model_type, c, layers)  # None but for a hybrid
    kinds = layer_kinds_of(model_type, c, layers, kv, head_dim)  # None: layers alike
    sizes = (model_type, c, h, heads, kv, head_dim, layers, moe, mixer, kinds)
    linears, experts = block_linears(*sizes)
    tie = bool(c.get("tie_word_embeddings"))  # Gemma's classes tie by default: merged above
    lookup = per_layer_embedding(kinds, layers)  # Gemma-4's PLE table: 0 elsewhere
    embedding = vocab * h * (1 if tie else 2) + lookup
    other = embedding + small_params(*sizes)
    total = sum(lin.params for lin in linears) + experts + other
    active = total
    width = dense_width(c, h)
    if moe:  # what a token runs through: its top-k experts (every one: EVERY_EXPERT_TYPES)
        computed = moe.experts if model_type in EVERY_EXPERT_TYPES else moe.top_k
        active -= moe.sparse_layers * (moe.experts - computed) * 3 * h * moe.expert_intermediate
        width = computed * moe.expert_intermediate + moe.shared_intermediate
    backends = supported_backends(model_type, c.get("loaded_model_type"))
    return ModelInfo(
        name=name,
        architecture=_architecture(c.get("architectures"), model_type),
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
        lora_targets=auto_targets(model_type, linears),
        supported_backends=backends,
        linears=linears,
        params_experts=experts,
        params_active=active,
        moe=moe,
        sdpa=not sdpa_unsupported(c.get("loaded_model_type") or model_type),
        logit_softcapping=c.get("final_logit_softcapping") is not None,
        scaled_embeddings=scales_input_embeddings(c.get("loaded_model_type") or model_type),
        linear_attention=mixer,
        layer_kinds=kinds,
        params_lookup=lookup,
    )


def _architecture(architectures, model_type: str) -> str:
    """The class config.json names first (a list of names), else the family's type."""
    if isinstance(architectures, list) and architectures and isinstance(architectures[0], str):
        return architectures[0]
    return model_type


def _known_type(name: str, c: dict) -> str:
    """The config's model_type, if it is a family whose memory can be predicted."""
    model_type = c.get("model_type")
    loaded = c.get("loaded_model_type") or model_type
    if model_type not in KNOWN_TYPES and isinstance(loaded, str) and _not_causal(loaded):
        raise ModelError(
            f"{name}: model_type {loaded!r} is not a causal language model: transformers "
            "builds no AutoModelForCausalLM class for it, and finetune-tui trains those"
        )
    if model_type not in KNOWN_TYPES:
        raise ModelError(
            f"{name}: model_type {model_type!r} is not a family finetune-tui can plan "
            f"(known: {', '.join(sorted(KNOWN_TYPES))}); training it may still work, "
            "but its memory cannot be predicted"
        )
    return model_type


def _not_causal(model_type: str) -> bool:
    """A type the installed transformers knows (its config class) but builds no
    AutoModelForCausalLM for: T5, audio and vision-to-text models."""
    return bool(config_defaults(model_type)) and not causal_lm_class(model_type)
