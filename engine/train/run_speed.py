"""A run's speed beside its plan: the planner's tokens/s and whole-run time for the settings
that trained, on the card they trained on, for summary.json (GPU only, as the memory's)."""

from __future__ import annotations

from ..settings.schema import TrainSettings


def predicted_speed(settings: TrainSettings) -> dict:
    """summary.json's predicted_tokens_per_s and predicted_wall_time_s; empty on a CPU, for a
    card or model the planner cannot read, or for data it cannot count (never fails a run)."""
    import torch

    if not torch.cuda.is_available():
        return {}
    from ..data.dataset import dataset_stats
    from ..inspect.models import inspect_model
    from ..plan.run_time import predicted_run_time

    try:
        model = inspect_model(settings.model.name_or_path)
        timing, speed = predicted_run_time(
            model, settings, dataset_stats(settings), torch.cuda.get_device_name(0)
        )
    except Exception:
        return {}
    if speed is None:
        return {}
    return {
        "predicted_tokens_per_s": round(speed.tokens_per_s, 1),
        "predicted_wall_time_s": None if timing is None else round(timing.total_s, 1),
    }
