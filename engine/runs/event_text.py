"""What each event says, in words: one line of plain text per event, for every front end.

`printable` is the one escape for text that came from a file or folder name: every line the
product prints (progress, `runs`, `attach`, errors) goes through it, so a name holding a
newline or a terminal escape sequence cannot forge lines or drive the user's terminal.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import typing

from .events import (
    Checkpoint,
    Eval,
    Event,
    Failed,
    Finished,
    MemoryCheck,
    Notice,
    Started,
    Step,
    format_duration,
)
from .summary import RunSummary

# Bidirectional overrides reorder what the terminal shows (a name can hide its real text).
_BIDI = {*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C}


def printable(text: object) -> str:
    """`text` (a str or a path) with every control character escaped: C0, DEL, C1, the
    bidirectional overrides, and the bytes of a name that is not UTF-8 (`\\xff`)."""
    if isinstance(text, os.PathLike):
        text = os.fspath(text)
    text = text if isinstance(text, str) else str(text)
    if text.isprintable():  # the usual case, and cheap
        return text
    return "".join(_escape(char) for char in text)


def printable_lines(text: str) -> str:
    """`text` as printable shows it, its line breaks kept (model answers, plan output)."""
    return "\n".join(printable(line) for line in text.split("\n"))


def _escape(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, kept by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x20 or 0x7F <= code < 0xA0:
        return {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(char, f"\\x{code:02x}")
    if code in _BIDI or 0xD800 <= code <= 0xDFFF:
        return f"\\u{code:04x}"
    return char


def well_typed(event: Event) -> bool:
    """Every field holds the kind of value its annotation says (a metrics line read back may
    not: `"loss": "abc"` is valid JSON): text for text, a number (int or float, NaN too:
    training makes them) for a number, never a bool, list or object in their place."""
    hints = _hints(type(event))
    return all(_is_a(getattr(event, f.name), hints[f.name]) for f in dataclasses.fields(event))


@functools.cache
def _hints(cls: type) -> dict:
    return typing.get_type_hints(cls)


def _is_a(value: object, annotation) -> bool:
    options = typing.get_args(annotation) if typing.get_origin(annotation) else (annotation,)
    for option in options:
        if option is type(None) and value is None:
            return True
        if (
            option in (int, float)
            and isinstance(value, int | float)
            and not isinstance(value, bool)
        ):
            return True  # a number is a number: 9e9 parameters read back as a float
        if option in (str, RunSummary) and isinstance(value, option):
            return True
    return False


def describe(event: Event) -> str | None:
    """The event as one line of plain text (None for none): the headless progress lines,
    `attach --plain` and the wizard's log all print this. Names in it are escaped
    (`printable`); an event read back with fields of the wrong type is not described."""
    if not well_typed(event):
        return None
    line = _describe(event)
    return printable(line) if line is not None else None


def _describe(event: Event) -> str | None:
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
            f"{_preference(event)}"
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
        return (
            f"eval at step {event.step}: loss {event.eval_loss:.4f}{match}"
            f"{'  ' + _preference(event).strip() if event.reward_margin is not None else ''}"
        )
    if isinstance(event, Checkpoint):
        return f"checkpoint ({event.reason}) at step {event.step}: {event.path}"
    if isinstance(event, Notice):
        return f"{'warning: ' if event.level == 'warning' else ''}{event.message}"
    if isinstance(event, MemoryCheck):
        return memory_check(event)
    if isinstance(event, Finished):
        return _finished(event)
    if isinstance(event, Failed):
        return f"failed: {event.message}"
    return None


def _preference(event: Step | Eval) -> str:
    """A preference step's or evaluation's pairs: chosen ranked first, and by how much."""
    parts = []
    if event.reward_accuracy is not None:
        parts.append(f"pref-acc {event.reward_accuracy:.1%}")
    if event.reward_margin is not None:
        parts.append(f"margin {event.reward_margin:+.3f}")
    return "".join(f"{part}  " for part in parts)


def memory_check(e: MemoryCheck) -> str:
    """Measured beside predicted, and what the run does: the plan checking itself."""
    over = e.measured_gib / e.predicted_gib - 1
    head = (
        f"memory check at step {e.step}: measured {e.measured_gib:.2f} GiB, {over:+.0%} "
        f"against the plan's {e.predicted_gib:.2f} GiB"
    )
    if over <= e.band:
        return f"{head} (within its {e.band:.1%} error band)"
    head += f" (beyond its {e.band:.1%} error band)"
    fits = "fits" if e.projected_gib <= e.usable_gib else "would not fit"
    head += f"; projected peak {e.projected_gib:.2f} GiB {fits} {e.usable_gib:.2f} GiB usable"
    if e.change:
        head += f": backing off before running out of memory, {e.change} (same effective batch)"
    elif fits == "fits":
        head += ": no change"
    return f"{head}; {e.note}" if e.note else head


def _finished(event: Finished) -> str:
    s = event.summary
    parts = [
        f"{event.status} at step {event.step}/{event.total_steps} "
        f"in {format_duration(event.elapsed_s)}"
    ]
    if s.predicted_wall_time_s is not None:
        parts[0] += f" (predicted {format_duration(s.predicted_wall_time_s)})"
    if s.first_loss is not None and event.final_loss is not None:
        parts.append(f"loss {s.first_loss:.4f} -> {event.final_loss:.4f}")
    if s.eval_loss is not None:
        parts.append(f"eval loss {s.eval_loss:.4f}")
    if s.exact_match_after is not None:
        parts.append(f"exact-match {s.exact_match_before or 0:.1%} -> {s.exact_match_after:.1%}")
    if s.preference_accuracy_after is not None:
        before = s.preference_accuracy_before
        start = f"{before:.1%} -> " if before is not None else ""
        parts.append(f"held-out preference accuracy {start}{s.preference_accuracy_after:.1%}")
    if s.reward_margin is not None:
        parts.append(f"held-out reward margin {s.reward_margin:+.3f}")
    if s.peak_reserved_gib is not None:
        parts.append(_peak_text(s))
    if s.tokens_per_s is not None and s.predicted_tokens_per_s is not None:
        parts.append(
            f"tokens/s measured {s.tokens_per_s:,.0f} / predicted {s.predicted_tokens_per_s:,.0f}"
        )
    saved = "model" if s.method == "full" else "adapter"  # full fine-tuning saves every weight
    parts.append(f"{saved}: {event.adapter_path}")
    return "; ".join(parts)


# The plan at the longest sample trained is shown first where it is this much below the
# plan of the full length (the run's data never filled max_seq_length)
SHORTER_RUN = 0.98


def below_full_length(longest: float | None, full: float | None) -> bool:
    """Whether the plan at the longest sample so far is worth saying beside the full length's
    (the final line's rule, and the Train panel's)."""
    return bool(longest and full and longest < SHORTER_RUN * full)


def _peak_text(s) -> str:
    """Measured peak beside the plan it should be read against: the plan at the longest
    sample trained where the data never filled the length, the full length's beside it."""
    measured = f"peak VRAM measured {s.peak_reserved_gib:.2f}"
    full, longest = s.predicted_peak_reserved_gib, s.predicted_peak_at_longest_gib
    if full is None:
        return measured + " GiB reserved"
    if not below_full_length(longest, full):
        return f"{measured} / predicted {full:.2f} GiB reserved"
    return (
        f"{measured} / predicted {longest:.2f} GiB reserved at the longest sample trained"
        f" ({full:.2f} at the full length)"
    )
