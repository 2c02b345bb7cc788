"""A run's speed beside its plan: the planner's tokens/s and whole-run time for the settings
that train, on the card they train on (GPU only, as the memory's). Computed once, when the
trainer is built: the Started event carries it to the panel's chart, summary.json keeps it."""

from __future__ import annotations

from ..settings.schema import TrainSettings

ON_CPU = "no prediction on a CPU"
# A run's pace settles after its first minute or two (H100, Llama-3.1-8B Liger b8 x 1,024:
# 43 s of steps ran at 0.90x the plan, the same configuration over 100 s at 1.24x, its
# windows 0.36 s a step at first and 0.25 at the end): a shorter run's tokens/s would
# correct the next plans by its warm-up, not by the machine's pace (plan/measured_speed.py).
MIN_SPEED_SECONDS = 90.0


def predicted_speed(settings: TrainSettings, tokenizer=None) -> dict:
    """Started's speed fields: predicted_tokens_per_s and predicted_wall_time_s (at the
    lengths the run's tokenizer gives: the tokens/s measured beside it counts those), the
    tokens/s at the cards' bf16 peak (a measured tokens/s over it is the MFU), and, where
    there is no prediction, why (speed_unpredicted). Never fails a run."""
    import torch

    if not torch.cuda.is_available():
        return {"speed_unpredicted": ON_CPU}
    from ..data.dataset import dataset_stats
    from ..inspect.models import inspect_model
    from ..plan.run_time import predicted_run_time
    from ..plan.throughput import peak_tokens_per_s, unpredicted

    gpu = torch.cuda.get_device_name(0)
    try:
        model = inspect_model(settings.model.name_or_path)
        stats = dataset_stats(settings, tokenizer)
        timing, speed = predicted_run_time(model, settings, stats, gpu)
        peak = peak_tokens_per_s(model, settings, gpu)
    except Exception:
        return {"speed_unpredicted": "no prediction: the planner could not read the model or data"}
    if settings.training.objective != "sft":  # FLOPs per token are SFT's: one sequence, no
        peak = None  # reference pass
    return {
        "predicted_tokens_per_s": None if speed is None else round(speed.tokens_per_s, 1),
        "speed_correction": None if speed is None else speed.correction,
        "predicted_wall_time_s": None if timing is None else round(timing.total_s, 1),
        "tokens_per_s_at_peak": None if peak is None else round(peak, 1),
        "speed_unpredicted": None if speed is not None else unpredicted(settings, gpu),
    }


def speed_reading(events) -> tuple[float | None, float | None]:
    """(measured, predicted) tokens/s for the store of what runs measured: the speed
    model's own prediction, before the correction earlier runs brought to it, so corrections
    never compound; (None, None) for a run too short to tell the machine's pace."""
    measured = events.steady_tokens_per_s()
    predicted = events.started.get("predicted_tokens_per_s")
    if measured is None or predicted is None or events.steady_seconds() < MIN_SPEED_SECONDS:
        return None, None
    return round(measured, 1), round(predicted / (events.started.get("speed_correction") or 1), 1)
