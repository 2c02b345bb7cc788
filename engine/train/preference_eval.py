"""Held-out preference metrics, as TRL's preference trainers compute them on evaluation:
the share of pairs whose chosen answer earns the higher reward (`rewards/accuracies`) and
the mean margin between the rewards (`rewards/margins`).

KTO's pairs are unpaired, so TRL logs its margin (mean desirable reward minus mean
undesirable reward) but no accuracy. Before training, DPO's and KTO's rewards are all zero
(the policy is its reference), so no chosen answer is ahead yet: the accuracy reads 0.
"""

from __future__ import annotations

from dataclasses import dataclass

ACCURACY, MARGIN = "eval_rewards/accuracies", "eval_rewards/margins"


@dataclass
class PreferenceScore:
    accuracy: float | None
    margin: float | None


def from_metrics(metrics: dict) -> PreferenceScore:
    """The score in one evaluation's metrics (None where TRL did not log it)."""

    def value(key: str) -> float | None:
        return float(metrics[key]) if key in metrics else None

    return PreferenceScore(value(ACCURACY), value(MARGIN))


def before_training(trainer, events) -> PreferenceScore:
    """One evaluation before the first step, kept off the event stream (the run has not
    started yet)."""
    events.emit_evals = False
    try:
        return from_metrics(trainer.evaluate())
    finally:
        events.emit_evals = True
