"""What each event says, in words: one line of plain text per event, for every front end."""

from __future__ import annotations

from .events import (
    Checkpoint,
    Eval,
    Event,
    Failed,
    Finished,
    Notice,
    Started,
    Step,
    format_duration,
)


def describe(event: Event) -> str | None:
    """The event as one line of plain text (None for none): the headless progress lines,
    `attach --plain` and the wizard's log all print this."""
    if isinstance(event, Step):
        eta = format_duration(event.eta_s)
        width = len(str(event.total_steps))
        memory = (
            f"  vram {event.memory_reserved_gib:.1f} GiB"
            if event.memory_reserved_gib is not None
            else ""
        )
        return (
            f"step {event.step:>{width}}/{event.total_steps}  loss {event.loss:.4f}  "
            f"lr {event.learning_rate:.2e}  {event.tokens_per_second:,.0f} tok/s  "
            f"{event.samples_per_second:.1f} samples/s{memory}  eta {eta}"
        )
    if isinstance(event, Started):
        return (
            f"training {event.model} on {event.device}: {event.train_samples} train / "
            f"{event.eval_samples} eval samples, {event.total_steps} steps"
            f"{f' ({event.steps_per_epoch} per epoch)' if event.steps_per_epoch else ''}, "
            f"{event.trainable_params:,} trainable parameters"
        )
    if isinstance(event, Eval):
        match = f"  exact-match {event.exact_match:.1%}" if event.exact_match is not None else ""
        return f"eval at step {event.step}: loss {event.eval_loss:.4f}{match}"
    if isinstance(event, Checkpoint):
        return f"checkpoint ({event.reason}) at step {event.step}: {event.path}"
    if isinstance(event, Notice):
        return f"{'warning: ' if event.level == 'warning' else ''}{event.message}"
    if isinstance(event, Finished):
        return _finished(event)
    if isinstance(event, Failed):
        return f"failed: {event.message}"
    return None


def _finished(event: Finished) -> str:
    s = event.summary
    parts = [
        f"{event.status} at step {event.step}/{event.total_steps} "
        f"in {format_duration(event.elapsed_s)}"
    ]
    if s.first_loss is not None and event.final_loss is not None:
        parts.append(f"loss {s.first_loss:.4f} -> {event.final_loss:.4f}")
    if s.eval_loss is not None:
        parts.append(f"eval loss {s.eval_loss:.4f}")
    if s.exact_match_after is not None:
        parts.append(f"exact-match {s.exact_match_before or 0:.1%} -> {s.exact_match_after:.1%}")
    if s.peak_reserved_gib is not None:
        predicted = s.predicted_peak_reserved_gib
        parts.append(
            f"peak VRAM measured {s.peak_reserved_gib:.2f}"
            + (f" / predicted {predicted:.2f}" if predicted is not None else "")
            + " GiB reserved"
        )
    saved = "model" if s.method == "full" else "adapter"  # full fine-tuning saves every weight
    parts.append(f"{saved}: {event.adapter_path}")
    return "; ".join(parts)
