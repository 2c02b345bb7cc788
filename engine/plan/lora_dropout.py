"""What LoRA dropout keeps for the backward pass, a token and a layer.

PEFT runs each adapted linear's LoRA path as lora_B(lora_A(dropout(x))). With dropout at 0
the dropout is an identity, and the adapted linears that read one input (q, k and v; gate
and up) keep that one tensor for lora_A's gradient. Above 0 each adapted linear keeps its
own dropped copy of its input and torch's dropout mask (one byte an element), and the
undropped input goes free where only lora_A kept it: the attention's and the MLP's normed
inputs and the MLP's product. The attention's output, which o_proj reads, stays: the
attention keeps it for its own backward. Under 16-bit weights PEFT's adapters are fp32 and
every adapted linear already keeps its own 16-bit copy of its input (recompute.py); dropout
adds only its mask there. Read from PEFT's LoRA Linear.forward and torch's native_dropout;
checked on the GPU (docs/BENCHMARKS.md, "LoRA dropout").
"""

from __future__ import annotations

from ..inspect.families import ATTENTION_OUTPUTS
from ..inspect.models import ModelInfo
from ..settings.schema import TrainSettings
from .recompute import adapted_linears, adapted_mlp_linears

MASK_BYTES = 1  # torch's dropout mask: bool


def dropout_bytes_per_token(model: ModelInfo, settings: TrainSettings, word: int) -> float:
    """Bytes a token kept by LoRA dropout in one (average) layer, `word` the compute dtype's
    size; 0 without LoRA or with dropout at 0."""
    s = settings
    if s.training.method != "lora" or s.lora.dropout == 0:
        return 0.0
    adapted = adapted_linears(model, settings)
    layers = max(model.num_layers, 1)
    if s.quantization.mode == "none":  # fp32 adapters: each linear had its own copy already
        return sum(MASK_BYTES * lin.in_features * lin.layers for lin in adapted) / layers
    kept = sum((word + MASK_BYTES) * lin.in_features * lin.layers for lin in adapted)
    return (kept - word * _freed_inputs(model, settings, adapted)) / layers


def _freed_inputs(model: ModelInfo, settings: TrainSettings, adapted: list) -> float:
    """Elements of the inputs only lora_A kept, over all layers: one per input the adapted
    linears read (the attention's, the MLP's, the MLP's product), not the attention output."""
    mlp = set(adapted_mlp_linears(model, settings))
    inputs: dict[tuple[bool, int], int] = {}  # (in the MLP, width) -> elements
    for lin in adapted:
        if lin.name not in ATTENTION_OUTPUTS:
            reads = (lin.name in mlp, lin.in_features)
            inputs[reads] = max(inputs.get(reads, 0), lin.in_features * lin.layers)
    return float(sum(inputs.values()))
