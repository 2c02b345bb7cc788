"""One of the Train panel's charts: plotext draws the ChartData it is given (tui/charts.py),
with its axes' ranges and tick labels, each series in its colour; no legend (the line above
the chart names the colours: a legend would cover the newest steps)."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual_plotext import PlotextPlot

from ..charts import ChartData


class RunChart(PlotextPlot):
    """Drawn only when its data changes: assigning equal data is no redraw. Before the
    first step it says what it will draw, instead of an empty frame."""

    DEFAULT_CSS = "RunChart { width: 1fr; height: 1fr; }"
    data: reactive[ChartData | None] = reactive(None)

    def __init__(self, waiting: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.waiting = waiting

    def render(self):
        chart = self.data
        if chart is None:
            return Text(self.waiting, style="dim", justify="center")
        plt = self.plt
        plt.clear_figure()
        plt.title(chart.title)
        for series in chart.series:
            plt.plot(series.xs, series.ys, color=series.color, marker="braille")
        plt.xlim(chart.x.low, chart.x.high)
        plt.ylim(chart.y.low, chart.y.high)
        plt.xticks(chart.x.ticks, chart.x.tick_labels)
        plt.yticks(chart.y.ticks, chart.y.tick_labels)
        plt.xlabel(chart.x.label)
        return super().render()
