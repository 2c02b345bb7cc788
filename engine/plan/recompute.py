"""What gradient checkpointing keeps at the end of the recomputed layer beyond memory.py's
layer terms: copies the family's code or PEFT's dtypes make, read with a live-storage trace
of a real step on the CPU (bf16 weights, sdpa, TRL's fused head, PEFT LoRA, non-reentrant
checkpointing, bf16 autocast; 2 layers at 512 and 1,024 tokens, the slope per token).

16-bit weights with LoRA (hf, liger): PEFT keeps the adapters in fp32 (autocast_adapter_dtype;
TRL casts them to 16-bit only over quantised weights), so each adapted linear casts its input
to fp32 and autocast casts it back to bf16 for lora_A: every adapted linear keeps its own copy
of its input, where a 16-bit adapter shares one. Where the peak falls decides what that adds
beyond the bf16-adapter plan: with a gated MLP adapted, the end of the last layer's MLP
recompute, 15.1-15.6 x hidden bytes a token (Llama-3.2-1B and Llama layers of Phi-3's and
Pythia's widths; Phi-3's fused projections peak as high); with a two-linear MLP (GPT-NeoX)
nothing beyond memory.py's 16-bit MLP copy; with the attention alone adapted (the mixtures of
experts), the attention's input copies, 2-4 x hidden (Phi-3.5-MoE, gpt-oss).
"""

from __future__ import annotations

from ..inspect.models import ModelInfo
from ..inspect.shapes import Linear
from ..settings.schema import TrainSettings

LORA16_GATED_MLP_H = 16.0
LORA16_ATTENTION_ONLY_H = 4.0
# Granite multiplies its embeddings (read from transformers' modeling file: library_tables.
# scales_input_embeddings). The unscaled embedding output is a leaf that requires grad
# (enable_input_require_grads) and stays alive beside the scaled copy layer 0 saves: 2 x
# hidden bytes a token. Gemma's normaliser is the same copy, inside its fitted terms.
SCALED_EMBEDDING_H = 2.0


def recompute_extra_h(model: ModelInfo, settings: TrainSettings) -> float:
    """Bytes a token, in units of hidden size, kept beyond the layer terms under
    checkpointing: fp32 adapters over 16-bit weights, a scaled embedding's second copy."""
    extra = SCALED_EMBEDDING_H if model.scaled_embeddings else 0.0
    s = settings
    if s.training.method != "lora" or s.quantization.mode != "none":
        return extra
    if s.memory.backend not in ("hf", "liger"):  # Unsloth's own LoRA kernels: not traced
        return extra
    mlp = adapted_mlp_linears(model, settings)
    if not mlp:
        return extra + LORA16_ATTENTION_ONLY_H
    return extra + (LORA16_GATED_MLP_H if any("gate" in name for name in mlp) else 0.0)


def adapted_linears(model: ModelInfo, settings: TrainSettings) -> list[Linear]:
    """The language model's linears LoRA adapts: "auto"'s targets, or the names given."""
    wanted = settings.lora.target_modules
    targets = set(model.lora_targets if wanted == "auto" else wanted)
    return [linear for linear in model.linears if linear.name in targets]


def adapted_mlp_linears(model: ModelInfo, settings: TrainSettings) -> list[str]:
    """The adapted linears of the MLP: those whose input or output is its width (a fused
    gate_up's output twice it)."""
    i = model.intermediate_size
    return [
        linear.name
        for linear in adapted_linears(model, settings)
        if linear.in_features == i or linear.out_features in (i, 2 * i)
    ]
