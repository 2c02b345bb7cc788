"""Names in lora.target_modules that the run's preflight would refuse, told by the plan
from config.json alone: names PEFT moves onto a mixture of experts' fused weights, and
names no linear layer of the model carries (the run checks them against the built model's
modules, train/preflight.py; the plan had counted them as 0 bytes of LoRA and said "fits")."""

from __future__ import annotations

from ..inspect.library_tables import peft_moved_names
from ..inspect.models import ModelInfo
from ..settings.options import OUTPUT_LAYER_RULE

OUTSIDE_BLOCKS = frozenset({"embed_tokens"})  # adaptable, outside the blocks' linears
OUTPUT_LAYER = "lm_head"  # the output layer's name in the families config.json describes


def target_problem(model: ModelInfo, targets) -> str | None:
    """Why the run would refuse these targets, or None ("auto" is always the model's own)."""
    if targets == "auto":
        return None
    short = {target.rsplit(".", 1)[-1] for target in targets}
    moved = sorted(short & peft_moved_names(model.model_type))
    if moved:
        return (
            f"{', '.join(moved)}: PEFT moves them onto the fused expert and router weights "
            "(transformers 5 fuses them), not onto layers of that name: the run refuses them; "
            "leave them out ('auto' does)"
        )
    if OUTPUT_LAYER in short:
        return f"{OUTPUT_LAYER}: {OUTPUT_LAYER_RULE}"
    layers = sorted({linear.name for linear in model.linears + model.vision_linears})
    unknown = sorted(short - set(layers) - OUTSIDE_BLOCKS)
    if unknown:
        return (
            f"{', '.join(unknown)}: no linear layer of this model has that name (its layers: "
            f"{', '.join(layers)}): the run refuses a name that matches none"
        )
    return None
