"""Model facts from config.json alone: exact parameter counts, LoRA targets, backends.

Never loads weights and never imports torch: the planner and the first screens use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .catalog import CATALOG
from .errors import ModelError
from .safe_io import CONFIG_LIMIT, read_json
from .settings import DEMO

GATED_FAMILIES = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "granite"}
# model_type → backends with kernels for it (liger-kernel 0.8 / Unsloth 2026.10 lists).
LIGER_TYPES = {
    "llama",
    "mistral",
    "mixtral",
    "gemma",
    "gemma2",
    "gemma3_text",
    "qwen2",
    "qwen3",
    "phi3",
    "granite",
    "olmo2",
    "glm4",
    "smollm3",
}
UNSLOTH_TYPES = {
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma",
    "gemma2",
    "gemma3_text",
    "phi3",
    "granite",
    "cohere",
}
NORMS_PER_LAYER = {"gemma2": 4, "gemma3_text": 4}


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
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool
    max_context: int
    lora_targets: list[str]
    supported_backends: dict[str, str | None]  # backend → None if supported, else why not
    linear_shapes: dict[str, tuple[int, int]] = field(default_factory=dict)  # per layer

    @property
    def params_linear(self) -> int:
        """Parameters in the blocks' linear layers: what 4-/8-bit quantisation shrinks."""
        return self.num_layers * sum(i * o for i, o in self.linear_shapes.values())

    def lora_params(self, r: int, targets: list[str] | None = None) -> int:
        chosen = targets or self.lora_targets
        per_layer = sum(
            r * (i + o) for name, (i, o) in self.linear_shapes.items() if name in chosen
        )
        return self.num_layers * per_layer


def catalog_ids() -> list[str]:
    return sorted(CATALOG)


def load_config(name_or_path: str) -> dict:
    """config.json of 'demo', a local folder, or a catalog ID — no download."""
    if name_or_path == DEMO:
        from .demo import demo_model_config

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
    raise ModelError(
        f"{name_or_path}: not a local model folder and not in the catalog "
        "(finetune-tui plan --help lists how to add one: point at a folder with config.json)"
    )


def inspect_model(name_or_path: str) -> ModelInfo:
    config = load_config(name_or_path)
    text = config.get("text_config")
    config = (text if isinstance(text, dict) else config) | {
        "architectures": config.get("architectures")
    }
    try:
        return _info(name_or_path, config)
    except (KeyError, TypeError, ValueError, ZeroDivisionError, AttributeError) as exc:
        raise ModelError(f"{name_or_path}: config.json lacks what planning needs ({exc})") from None


def _info(name: str, c: dict) -> ModelInfo:
    model_type = c.get("model_type", "llama")
    h, layers, vocab = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
    heads = c["num_attention_heads"]
    kv = c.get("num_key_value_heads") or heads
    head_dim = c.get("head_dim") or h // heads
    inter = c.get("intermediate_size") or 4 * h
    tie = bool(c.get("tie_word_embeddings", model_type in {"gemma", "gemma2"}))
    shapes = linear_shapes(model_type, h, heads, kv, head_dim, inter)
    bias = _bias_params(model_type, h, heads, kv, head_dim, inter)
    norms = _norm_params(model_type, h, layers)
    embedding = vocab * h * (1 if tie else 2)
    total = embedding + layers * (sum(i * o for i, o in shapes.values()) + bias) + norms
    backends = {
        "hf": None,
        "liger": None if model_type in LIGER_TYPES else f"Liger has no kernels for {model_type}",
        "unsloth": None
        if model_type in UNSLOTH_TYPES
        else f"Unsloth does not support {model_type}",
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
        intermediate_size=inter,
        vocab_size=vocab,
        tie_word_embeddings=tie,
        max_context=c.get("max_position_embeddings", 2048),
        lora_targets=list(shapes),
        supported_backends=backends,
        linear_shapes=shapes,
    )


def linear_shapes(model_type, h, heads, kv, head_dim, inter) -> dict[str, tuple[int, int]]:
    """(in, out) of every linear projection in one block, by the module's own name."""
    q, k = heads * head_dim, kv * head_dim
    if model_type == "gpt_neox":
        return {
            "query_key_value": (h, 3 * h),
            "dense": (h, h),
            "dense_h_to_4h": (h, inter),
            "dense_4h_to_h": (inter, h),
        }
    if model_type == "phi3":
        return {
            "qkv_proj": (h, q + 2 * k),
            "o_proj": (q, h),
            "gate_up_proj": (h, 2 * inter),
            "down_proj": (inter, h),
        }
    return {
        "q_proj": (h, q),
        "k_proj": (h, k),
        "v_proj": (h, k),
        "o_proj": (q, h),
        "gate_proj": (h, inter),
        "up_proj": (h, inter),
        "down_proj": (inter, h),
    }


def _bias_params(model_type, h, heads, kv, head_dim, inter) -> int:
    if model_type == "qwen2":  # q, k, v carry biases
        return heads * head_dim + 2 * kv * head_dim
    if model_type == "gpt_neox":
        return 3 * h + h + inter + h
    return 0


def _norm_params(model_type: str, h: int, layers: int) -> int:
    if model_type == "gpt_neox":  # LayerNorm with bias: 2 per layer + final
        return layers * 2 * 2 * h + 2 * h
    return layers * NORMS_PER_LAYER.get(model_type, 2) * h + h
