"""The two shapes a model's weights are counted in: the blocks' nn.Linear layers (what
bitsandbytes quantises and LoRA adapts) and a mixture of experts' fused expert weights.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class Linear:
    """One nn.Linear of the blocks: its leaf name (what PEFT targets), shape, and in how
    many layers it appears. Only these are quantised by bitsandbytes and adapted by LoRA."""

    name: str
    in_features: int
    out_features: int
    layers: int
    auto_lora: bool = True  # False for a router: "auto" never adapts it (recipe.language_linears)
    quantised: bool = True  # False for an nn.Linear subclass: bitsandbytes leaves it 16-bit

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


def merged(linears) -> list[Linear]:
    """One entry a name and shape, its layers summed (Gemma-4's kinds share their o_proj;
    a tower repeats its projections layer by layer)."""
    counts: Counter = Counter()
    for x in linears:
        counts[(x.name, x.in_features, x.out_features, x.auto_lora, x.quantised)] += x.layers
    return [
        Linear(n, i, o, layers, auto, quant) for (n, i, o, auto, quant), layers in counts.items()
    ]
