"""What every form of `plan` (one card, several GPUs, --compare) shares in its answer: the
exit code of "nothing fits" and the run's predicted time on a card."""

from __future__ import annotations

NOTHING_FITS = 3  # exit code: scripts can branch on "does not fit"


def plan_time(model, settings, stats, hardware) -> dict:
    """The run's predicted time on the planned card and the disk its saves take, for the
    JSON and the text."""
    from finetune_tui.engine.plan.disk import disk_summary
    from finetune_tui.engine.plan.run_time import steps_of, time_summary

    steps = steps_of(settings, stats)
    summary = time_summary(model, settings, stats, hardware.card_name)
    return summary | disk_summary(model, settings, *steps)
