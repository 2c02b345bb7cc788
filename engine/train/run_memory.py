"""A run's memory beside its plan: the CUDA allocator the plan assumes (set before CUDA is
touched), the prediction for the settings that train, the measured peak (read only through
callbacks.cuda_memory), the self-check that changes course before an out-of-memory error,
and what the run leaves in the measured-memory store.

Only one process is checked and remembered: with several, one rank backing off alone would
leave the others waiting at a collective (the out-of-memory back-off is one-process too).
"""

from __future__ import annotations

from ..launch.ranks import world_size
from ..plan.oom_policy import back_off
from ..recipe.trainer import planned_allocator
from ..runs.events import EventSink, Notice
from ..settings.schema import TrainSettings

ALLOCATOR = "PYTORCH_CUDA_ALLOC_CONF"
EXPANDABLE = "expandable_segments:True"  # what recipe.trainer.planned_allocator sets


def _asked() -> str:
    """The allocator setting this process's environment asks for ("" is torch's default)."""
    import os

    return os.environ.get(ALLOCATOR, "")


def use_planned_allocator(settings: TrainSettings) -> None:
    """Put the allocator the plan assumes in force (recipe.trainer.planned_allocator), before
    anything in this run touches CUDA; once CUDA is set up, remember the setting it was set
    up under (a run earlier in the wizard may have done it, before this one's setting)."""
    import torch

    global _CUDA_STARTED_UNDER
    before = _asked()
    planned_allocator(settings.training.objective)
    if _CUDA_STARTED_UNDER is None and torch.cuda.is_initialized():
        _CUDA_STARTED_UNDER = before


_CUDA_STARTED_UNDER: str | None = None  # the setting asked for when CUDA was set up


def allocator_in_force() -> str:
    """The allocator setting this process's CUDA runs under ("" is torch's default)."""
    return _asked() if _CUDA_STARTED_UNDER is None else _CUDA_STARTED_UNDER


def allocator_warning(settings: TrainSettings) -> str | None:
    """Why a preference run on a GPU may reserve more than planned, or None."""
    import torch

    if settings.training.objective == "sft" or not torch.cuda.is_available():
        return None
    in_force = allocator_in_force()
    if EXPANDABLE in in_force:
        return None
    if EXPANDABLE in _asked():
        return STALE_ALLOCATOR  # asked for, after CUDA was set up without it
    return f"{OWN_ALLOCATOR} ({ALLOCATOR}={in_force})"


STALE_ALLOCATOR = (
    "an earlier run in this process set up the GPU's memory without expandable segments, "
    "which the preference plan assumes: this run may reserve up to a third more than "
    "planned; restart finetune-tui for the planned memory"
)
OWN_ALLOCATOR = (
    f"your CUDA allocator setting is kept; the preference plan assumes {EXPANDABLE} and "
    "this run may reserve more than planned"
)


def free_memory() -> None:
    """Give cached blocks back and restart the peak counters the summary reports. Only a
    GPU caches blocks: on a CPU, memory goes back as it is freed (a collection there only
    costs time, a second or more in a process holding a large heap)."""
    import gc

    import torch

    if torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def predicted_peak_gib(settings: TrainSettings) -> float | None:
    """The planner's peak reserved for the settings that ran, beside the measured one
    (the memory model's own, uncorrected: the store compares it with what was measured).

    None on CPU or for a model the planner cannot read (it never fails a run).
    """
    import torch

    if not torch.cuda.is_available():
        return None
    from ..inspect.models import inspect_model
    from ..plan.peak import predict_memory

    try:
        return round(
            predict_memory(inspect_model(settings.model.name_or_path), settings).reserved_gib, 3
        )
    except Exception:
        return None


def peak_memory() -> dict:
    """summary.json's measured peaks; empty on CPU (the keys are absent there)."""
    from .callbacks import cuda_memory

    reading = cuda_memory()
    if not reading:
        return {}
    return {
        "peak_allocated_gib": round(reading["memory_peak_allocated_gib"], 3),
        "peak_reserved_gib": round(reading["memory_peak_gib"], 3),
        "cuda_allocator": allocator_in_force(),  # what the peaks were reserved under
    }


def _at_length(settings: TrainSettings, length: int) -> TrainSettings:
    training = settings.training.model_copy(update={"max_seq_length": max(1, length)})
    return settings.model_copy(update={"training": training})


def memory_check(settings: TrainSettings, emit: EventSink, events):
    """The self-check's callback for this attempt; None with several processes or for a
    model the planner cannot read."""
    if world_size() > 1:
        return None
    from ..inspect.models import inspect_model
    from ..plan.measured import planned_memory
    from .callbacks import MemoryCheckCallback

    try:
        model = inspect_model(settings.model.name_or_path)
    except Exception:
        return None

    def predict(s: TrainSettings, length: int, card: str) -> float:
        return planned_memory(model, _at_length(s, length), card=card).reserved_gib

    return MemoryCheckCallback(emit, settings, predict, events)


def next_attempt(settings: TrainSettings, check) -> tuple[TrainSettings, str, str]:
    """After an out-of-memory error or the self-check's decision to back off: the settings
    to continue with, the summary's line for it, and what the user is told."""
    decision = check.decision if check is not None else None
    if decision is None:
        settings, change = back_off(settings)
        return settings, change, f"out of memory: {change}"
    line = f"memory check at step {check.step}: {decision.change}"
    return decision.settings, line, f"memory check: {decision.change}"


def planned_at_longest(settings: TrainSettings, counter) -> float | None:
    """The planner's peak reserved at the longest sample the run trained (a run whose data
    never fills max_seq_length peaks lower than the plan of the full length): what the
    measured peak is compared with. None for a model the planner cannot read."""
    from ..inspect.models import inspect_model
    from ..plan.peak import predict_memory

    full = settings.training.max_seq_length
    longest = full if settings.memory.packing or counter is None else counter.longest
    try:
        model = inspect_model(settings.model.name_or_path)
        planned = predict_memory(model, _at_length(settings, min(longest or full, full)))
    except Exception:
        return None
    return round(planned.reserved_gib, 3)


def remember(
    settings: TrainSettings,
    summary,
    emit: EventSink,
    speeds: tuple[float | None, float | None] = (None, None),
) -> None:
    """Keep this run's measured peak per model family, backend and card (engine/plan/measured.py):
    compared with the plan at the longest length trained (the summary's, planned_at_longest),
    so a short run is not read as a plan that over-predicts. `speeds`: its measured and
    predicted tokens/s (run_speed.speed_reading), kept for plan/measured_speed.py."""
    from .callbacks import cuda_memory

    reading = cuda_memory()
    if not reading or world_size() > 1 or not summary.step:
        return
    from ..inspect.models import inspect_model
    from ..plan.measured import Measurement, record

    predicted = summary.predicted_peak_at_longest_gib
    if predicted is None:
        return  # the planner cannot read this model: nothing to compare with
    measurement = Measurement(
        inspect_model(settings.model.name_or_path).model_type,
        settings.memory.backend,
        reading["card"],
        reading["memory_peak_gib"],
        predicted,
        tokens_per_second=speeds[0],
        objective=settings.training.objective,
        predicted_tokens_per_second=speeds[1],
    )
    problem = record(measurement)
    if problem:
        emit(Notice(problem, level="warning"))
