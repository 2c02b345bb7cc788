"""How much of a card training may use, and how sure the planner is that a peak fits.

Three measured things replace a flat margin (docs/BENCHMARKS.md):
- the CUDA context, which depends on the card class (engine/plan/memory.py) and is taken from
  the card before torch's pool;
- the planner's measured error: its worst under-prediction of peak reserved memory on
  held-out rows is 6.5 %; a peak inside that band of the usable memory is a *tight* fit;
- the runner's out-of-memory back-off (engine/plan/oom_policy.py), the safety net: a tight fit
  is safe where the configuration the back-off falls to fits outside the band. A tight fit
  with nothing to back off to (micro-batch 1, checkpointing on) still fits by prediction,
  but the advisor takes it only when nothing safe fits and says so.
Where runs on this card measured more than the memory model predicts, the peak judged here
is the corrected one (engine/plan/measured.py); the runner checks its plan at the first step
(engine/plan/self_check.py) with the same band.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..common.errors import TrainingError
from ..inspect.models import ModelInfo
from ..settings.schema import TrainSettings
from .measured import planned_memory
from .memory import CONTEXT_GIB, cuda_context_gib
from .oom_policy import back_off

WORST_UNDERPREDICTION = 0.065  # measured: Liger + checkpointing b16, Gemma-2-9B Liger b32


@dataclass(frozen=True)
class Fit:
    fits: bool  # the predicted peak is within the usable memory
    tight: bool  # inside the planner's error band: the back-off may have to step in
    spare_gib: float  # usable memory left at the predicted peak (negative: over)
    usable_gib: float
    backed: bool = True  # where tight: the back-off's configuration surely fits

    @property
    def safe(self) -> bool:
        return self.fits and (not self.tight or self.backed)


def usable_gib(hardware) -> float | None:
    """What torch may reserve: the card (what is free on a real one) less the context;
    nothing, never less, on a card the context alone fills."""
    gpu = hardware.primary
    if gpu is None:
        return None
    room = gpu.total_gib if hardware.simulated else min(gpu.total_gib, gpu.free_gib)
    return max(0.0, room - cuda_context_gib(gpu.total_gib))


def surely_fits(reserved_gib: float, usable: float) -> bool:
    return reserved_gib * (1 + WORST_UNDERPREDICTION) <= usable


def judge(model: ModelInfo, settings: TrainSettings, hardware, reserved_gib: float) -> Fit:
    """Fit of one configuration whose predicted peak reserved memory is `reserved_gib`."""
    usable = usable_gib(hardware)
    if usable is None:
        return Fit(True, False, float("inf"), float("inf"))
    spare = usable - reserved_gib
    if surely_fits(reserved_gib, usable):
        return Fit(True, False, spare, usable)
    if spare < 0:
        return Fit(False, False, spare, usable)
    return Fit(True, True, spare, usable, _back_off_fits(model, settings, hardware, usable))


def _back_off_fits(model, settings, hardware, usable) -> bool:
    try:
        fallback, _ = back_off(settings)
    except TrainingError:  # nothing left to back off to
        return False
    return surely_fits(planned_memory(model, fallback, hardware).reserved_gib, usable)


def smallest_card_gib(reserved_gib: float) -> float:
    """The card size on which this peak surely fits: the inverse of usable_gib."""
    needed = reserved_gib * (1 + WORST_UNDERPREDICTION)
    return needed + cuda_context_gib(needed + CONTEXT_GIB["consumer"])
