"""The plan checks itself on the user's GPU, before an out-of-memory error instead of after.

After the first optimizer step, and again whenever a longer batch than any before has
trained, the runner compares the measured peak with the planner's prediction for the
lengths trained so far. Where measured exceeds it by more than the planner's own error
band (engine/plan/headroom.py) and the peak projected to the longest batch would not fit the
card, the run changes course through the out-of-memory policy (engine/plan/oom_policy.py:
smaller micro-batch, more accumulation, the same effective batch), as many of its steps
as the projection needs. `decide` is pure: numbers and settings in, a Decision out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..common.errors import TrainingError
from ..settings.schema import TrainSettings
from .headroom import WORST_UNDERPREDICTION
from .oom_policy import back_off


@dataclass(frozen=True)
class Decision:
    settings: TrainSettings  # what trains from here: the same settings when kept
    changes: tuple[str, ...]  # the back-off's steps, in order; none: keep
    over: float  # measured / predicted - 1
    projected_gib: float  # the peak these settings are projected to reach
    after_gib: float | None = None  # the projection after the change (None: not known)
    stuck: str | None = None  # projected not to fit and nothing left to back off to

    @property
    def backs_off(self) -> bool:
        return bool(self.changes)

    @property
    def change(self) -> str:
        return "; then ".join(self.changes)


def decide(
    settings: TrainSettings,
    measured_gib: float,
    predicted_gib: float,
    usable_gib: float,
    band: float = WORST_UNDERPREDICTION,
    planned: Callable[[TrainSettings], float] | None = None,
) -> Decision:
    """Keep, or back off far enough that the projected peak fits.

    `predicted_gib` is the plan for the batches measured; `planned(settings)` the plan at
    the longest batch (None: the measured batches are the longest, and one back-off step
    is taken, its effect unknown until measured). The projection scales the plan by what
    was measured over it.
    """
    ratio = measured_gib / predicted_gib
    projected = planned(settings) * ratio if planned else measured_gib
    if ratio <= 1 + band or projected <= usable_gib:
        return Decision(settings, (), ratio - 1, projected)
    current, changes, after = settings, [], None
    while True:
        try:
            current, change = back_off(current)
        except TrainingError as exc:
            stuck = str(exc).replace("out of memory at", "projected not to fit even at")
            return Decision(current, tuple(changes), ratio - 1, projected, after, stuck)
        changes.append(change)
        if planned is None:
            return Decision(current, tuple(changes), ratio - 1, projected)
        after = planned(current) * ratio
        if after <= usable_gib:
            return Decision(current, tuple(changes), ratio - 1, projected, after)
