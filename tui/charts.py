"""What the Train panel's charts draw, as plain data: each series (measured beside the
planner's prediction) and both axes with their range and tick labels.

Kept apart from the plotting widget (widgets/run_chart.py): tests read what a chart is
given, and plotext is imported only when the Train screen is first shown.
"""

from __future__ import annotations

from dataclasses import dataclass

from finetune_tui.engine.runs.event_text import below_full_length
from finetune_tui.engine.runs.events import Started, Step

# colours as the terminal's 16 (ANSI numbers: plotext's own names call 3 "orange")
MEASURED = 2  # green
PREDICTED = 3  # yellow: the planner's figure, a level line across the measured steps
LOSS = 6  # cyan
PAD = 0.1  # a value axis reaches 10 % of its values' span beyond them


@dataclass(frozen=True)
class Series:
    label: str  # "measured" | "predicted"
    xs: tuple[float, ...]
    ys: tuple[float, ...]
    color: int  # ANSI colour number


@dataclass(frozen=True)
class Axis:
    label: str
    low: float
    high: float
    ticks: tuple[float, ...]
    tick_labels: tuple[str, ...]


@dataclass(frozen=True)
class ChartData:
    title: str
    x: Axis
    y: Axis
    series: tuple[Series, ...]

    def named(self, label: str) -> Series | None:
        return next((s for s in self.series if s.label == label), None)


def loss_chart(steps: list[int], losses: list[float]) -> ChartData:
    series = (Series("measured", tuple(steps), tuple(losses), LOSS),)
    return ChartData("loss", step_axis(steps), fitted_axis("loss", losses), series)


def against_prediction(
    title: str, unit: str, steps: list[int], values: list[float], predicted: float | None
) -> ChartData:
    """Measured values with the prediction as a level line over the same steps, the axis
    fitted to both: a 10 % gap spans rows, not one row (its ticks say where it starts)."""
    series = [Series("measured", tuple(steps), tuple(values), MEASURED)]
    if predicted is not None:  # drawn first: a measured value on the line stays visible
        line = Series("predicted", (steps[0], steps[-1]), (predicted, predicted), PREDICTED)
        series.insert(0, line)
    shown = [*values] if predicted is None else [*values, predicted]
    return ChartData(title, step_axis(steps), fitted_axis(unit, shown), tuple(series))


def speed_chart(steps: list[int], speeds: list[float], started: Started | None) -> ChartData:
    """tokens/s measured against predicted; the title carries the latest step's MFU where
    the card's peak is known."""
    predicted, at_peak = _speed_plan(started)
    title = "tokens/s" if at_peak is None else f"tokens/s · MFU {mfu(speeds[-1], at_peak)}"
    return against_prediction(title, "tokens/s", steps, speeds, predicted)


def vram_chart(steps: list[int], reserved: list[float], predicted: float | None) -> ChartData:
    return against_prediction("VRAM reserved", "GiB", steps, reserved, predicted)


def mfu(tokens_per_s: float, at_peak: float) -> str:
    return f"{100 * tokens_per_s / at_peak:.0f} %"


def _speed_plan(started: Started | None) -> tuple[float | None, float | None]:
    """The run's predicted tokens/s and its tokens/s at the cards' peak (MFU's denominator);
    None for a run attached before Started arrived."""
    if started is None:
        return None, None
    return started.predicted_tokens_per_s, started.tokens_per_s_at_peak


# --- the line above each chart: its numbers, and the colours' meaning -----------------


def loss_text(losses: list[float]) -> str:
    return (
        f"loss over the last {len(losses)} logged steps: {losses[0]:.4f} → {losses[-1]:.4f}"
        f"  (low {min(losses):.4f}, high {max(losses):.4f})"
    )


def speed_text(speeds: list[float], started: Started | None) -> str:
    """Measured tokens/s (green) with its MFU, against the prediction (yellow line) or
    why there is none (a CPU: the chart is measured only)."""
    predicted, at_peak = _speed_plan(started)
    now = speeds[-1]
    text = f"tokens/s (green): {now:,.0f} now, {max(speeds):,.0f} best"
    if at_peak:
        text += f", MFU {mfu(now, at_peak)}"
    if predicted is None:
        why = started.speed_unpredicted if started else None
        return f"{text}; measured only: {why or 'no prediction for this run'}"
    text += f"; predicted {predicted:,.0f} (yellow line)"
    return text + (f", MFU {mfu(predicted, at_peak)}" if at_peak else "")


def step_vram_text(event: Step, predicted: float | None) -> str:
    """The stats line's VRAM part: used, reserved and peak, the plan beside the peak."""
    if event.memory_reserved_gib is None:
        return "  VRAM n/a (CPU)"
    planned = f" (predicted {predicted:.2f})" if predicted is not None else ""
    return (
        f"  VRAM {event.memory_allocated_gib:.2f} used / {event.memory_reserved_gib:.2f} "
        f"reserved / peak measured {event.memory_peak_gib:.2f}{planned} GiB"
    )


def vram_text(
    reserved: list[float], predicted: float | None, started: Started | None = None
) -> str:
    """`predicted`: the plan the yellow line draws, at the longest batch so far once the
    run's memory check has read it; the plan at max_seq_length (`started`'s) is said beside
    it where the batches so far are shorter (event_text.below_full_length, as the final line)."""
    full = started.predicted_peak_reserved_gib if started else None
    said = f" / predicted {predicted:.2f} (yellow line)" if predicted else ""
    if below_full_length(predicted, full):
        said = (
            f" / predicted {predicted:.2f} at the longest batch so far (yellow line;"
            f" {full:.2f} at the full length)"
        )
    return (
        f"VRAM GiB reserved (green): {reserved[-1]:.2f} now; peak measured "
        f"{max(reserved):.2f}{said}"
    )


def step_axis(steps: list[int]) -> Axis:
    """First, middle and last step shown, as whole steps."""
    first, last = steps[0], steps[-1]
    ticks = sorted({first, (first + last) // 2, last})
    return Axis("step", first, max(last, first + 1), tuple(ticks), tuple(map(str, ticks)))


def fitted_axis(label: str, values: list[float]) -> Axis:
    """From a little under the lowest value to a little over the highest (never below 0:
    no charted value can be), ticks at both ends and the middle."""
    pad = (max(values) - min(values)) * PAD or max(values) * PAD or 0.1
    low, high = max(min(values) - pad, 0.0), max(values) + pad
    ticks = (low, (low + high) / 2, high)
    return Axis(label, low, high, ticks, tick_labels(ticks))


def tick_labels(ticks: tuple[float, ...]) -> tuple[str, ...]:
    """One format for an axis, as few digits as tell its ticks apart: '12.5k', '1,400',
    '7.2', '1.35'."""
    span, top = ticks[-1] - ticks[0], max(abs(t) for t in ticks)
    if top >= 10_000:
        digits = 0 if span >= 20_000 else 1
        return tuple("0" if t == 0 else f"{t / 1000:.{digits}f}k" for t in ticks)
    digits = 0 if span >= 20 else 1 if span >= 2 else 2
    return tuple("0" if t == 0 else f"{t:,.{digits}f}" for t in ticks)
