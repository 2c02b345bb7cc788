"""The planner's peak memory of a configuration: one GPU's (memory.py) or each
GPU's share when several train (sharding.py). Callers ask here, so neither of
those two needs the other's entry point."""

from __future__ import annotations

from finetune_tui.engine.plan.memory import MemoryBreakdown, breakdown_of, one_gpu_bytes

from ..inspect.models import ModelInfo
from ..settings.preset import with_changes
from ..settings.schema import TrainSettings
from .sharding import per_gpu_bytes


def predict_memory(
    model: ModelInfo, settings: TrainSettings, hardware=None, padded: bool | None = None
) -> MemoryBreakdown:
    """Each GPU's predicted peak: one GPU's whole step, or a share under several processes
    (`padded`: whether micro-batches carry padding; None: as real data gives). A model
    bitsandbytes quantises nothing of loads in 16-bit whatever quantization.mode says, and
    is planned so."""
    if settings.quantization.mode != "none" and model.params_quantised == 0:
        settings = with_changes(settings, {"quantization.mode": "none"})
    if settings.distributed.launched:
        return breakdown_of(per_gpu_bytes(model, settings, padded), settings, hardware)
    return breakdown_of(one_gpu_bytes(model, settings, padded), settings, hardware)
