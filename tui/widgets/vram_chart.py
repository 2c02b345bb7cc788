"""The Train panel's VRAM chart: reserved memory per logged step, with the planner's
predicted peak drawn as a line across it, so measured and predicted meet on one picture."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

BLOCKS = " ▁▂▃▄▅▆▇█"
LINE = "╌"
HEADROOM = 1.08  # the top of the chart sits a little above the highest value


def chart_text(values: list[float], predicted: float | None, width: int, height: int) -> Text:
    """Columns for the newest `width` values (newest right); the predicted peak as a line.

    Bars at or under the prediction are green, bars over it red, the line yellow.
    """
    width, height = max(width, 1), max(height, 1)
    shown = values[-width:]
    top = max([*shown, predicted or 0.0, 1e-9]) * HEADROOM
    line_row = (
        None if predicted is None else height - 1 - min(int(predicted / top * height), height - 1)
    )
    text = Text()
    for row in range(height):
        floor = (height - 1 - row) / height
        for cells, style in _runs(shown, top, floor, height, predicted, row == line_row):
            text.append(cells, style=style)
        if row == line_row:
            text.append(LINE * (width - len(shown)), style="yellow")
        if row < height - 1:
            text.append("\n")
    return text


def _runs(values, top, floor, height, predicted, on_line):
    """One row's cells grouped into runs of one style: a span per run, not per cell (the
    panel redraws while training shares the GIL)."""
    run, run_style = [], None
    for value in values:
        fill = min(max((value / top - floor) * height, 0.0), 1.0)
        cell = BLOCKS[round(fill * 8)]
        if cell == " " and on_line:
            cell, style = LINE, "yellow"
        else:
            style = "red" if predicted is not None and value > predicted else "green"
        if style != run_style and run:
            yield "".join(run), run_style
            run = []
        run.append(cell)
        run_style = style
    if run:
        yield "".join(run), run_style


class VramChart(Widget):
    """Reserved VRAM history against the predicted peak (empty on CPU)."""

    DEFAULT_CSS = "VramChart { height: 4; }"
    values: reactive[list[float]] = reactive(list, always_update=True)
    predicted: reactive[float | None] = reactive(None)

    def render(self) -> Text:
        if not self.values and self.predicted is None:
            return Text("")
        return chart_text(self.values, self.predicted, self.size.width, self.size.height)
