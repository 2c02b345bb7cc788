"""A run whose loss or gradient turned NaN or infinite: stopped where that is seen, never
saved past it, never called finished.

One optimizer step on a non-finite gradient makes the trained weights NaN: every step after
it trains nothing and every checkpoint after it holds garbage. A diverged demo run (learning
rate 0.9) logged "loss 0.0000" (transformers' NaN filter), finished with exit 0 and offered
its NaN adapter for merging.
"""

from __future__ import annotations

import math

from transformers import TrainerCallback

from ..launch.ranks import any_rank


class DivergenceCallback(TrainerCallback):
    """Watches each logged loss and gradient norm, and the trained weights before each save;
    the first non-finite one stops training without that save (`found` says where)."""

    def __init__(self) -> None:
        self.found: str | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        bad = [
            f"{name} {logs[name]}"
            for name in ("loss", "grad_norm")
            if isinstance((logs or {}).get(name), float) and not math.isfinite(logs[name])
        ]
        if bad:
            self._stop(control, state, ", ".join(bad))
        return control

    def on_step_end(self, args, state, control, model=None, **kwargs):
        # before a checkpoint: between two logs a step may have poisoned the weights
        if control.should_save and any_rank(not weights_finite(model)):
            self._stop(control, state, "trained weights NaN or infinite")
        return control

    def _stop(self, control, state, what: str) -> None:
        self.found = self.found or f"step {state.global_step} ({what})"
        control.should_training_stop = True
        control.should_save = False  # the last checkpoint before it is the good one


def weights_finite(model) -> bool:
    """Whether every trained weight is finite (a sync a tensor: at a save only)."""
    import torch

    if model is None:
        return True
    return all(
        bool(torch.isfinite(p).all()) for p in model.parameters() if p.requires_grad and p.numel()
    )
