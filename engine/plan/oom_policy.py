"""What the runner does after CUDA runs out of memory, and how to recognise that it did.

The planner relies on this policy as its safety net for tight fits (engine/plan/headroom.py):
halving the micro-batch keeps the effective batch and frees activations first.
"""

from __future__ import annotations

from ..common.errors import TrainingError
from ..settings.options import least_micro_batch
from ..settings.schema import TrainSettings


def back_off(settings: TrainSettings) -> tuple[TrainSettings, str]:
    """After an OOM: halve the micro-batch keeping the effective batch, else checkpoint."""
    t = settings.training
    if t.micro_batch_size // 2 >= least_micro_batch(t.objective):
        batch, accum = t.micro_batch_size // 2, t.gradient_accumulation_steps * 2
        change = (
            f"micro-batch {t.micro_batch_size} -> {batch}, "
            f"gradient accumulation {t.gradient_accumulation_steps} -> {accum}"
        )
        training = t.model_copy(
            update={"micro_batch_size": batch, "gradient_accumulation_steps": accum}
        )
        return settings.model_copy(update={"training": training}), change
    if settings.memory.gradient_checkpointing == "off":
        memory = settings.memory.model_copy(update={"gradient_checkpointing": "on"})
        return settings.model_copy(update={"memory": memory}), "gradient checkpointing on"
    raise TrainingError(
        f"out of memory at micro-batch {t.micro_batch_size} with gradient checkpointing on: "
        "lower training.max_seq_length or use quantization.mode: nf4"
    )


def is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()
