"""Screen 6: the live panel. Training runs in a thread worker; its events are queued and the
panel drains the queue on a timer, so a fast training pays for one redraw a second, not one
per step (benchmarks/panel_overhead.py measures the cost: docs/BENCHMARKS.md).

The same screen attaches read-only to a run started elsewhere (`finetune-tui attach`):
then events come from the run's metrics.jsonl and Stop signals that process instead.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Footer, Header, ProgressBar, RichLog, Static

from finetune_tui.engine.runs.event_text import describe, printable
from finetune_tui.engine.runs.events import (
    Event,
    Failed,
    Finished,
    MemoryCheck,
    Started,
    Step,
    format_duration,
)
from finetune_tui.tui.text import shown

from .. import charts
from ..widgets.preference_line import PreferenceLine

HISTORY = 120
REFRESH_S = 1.0  # the panel redraws once a second, whatever the step rate
CHARTS = {"loss-chart": "loss", "speed-chart": "tokens/s", "vram-chart": "VRAM reserved"}
# The charts redraw every 10th refresh at most (plotext: ~45 ms for the three, on the thread
# that shares the GIL with training; every 5th cost 1.07-1.34 % of each second, every 10th
# 0.88 %), the numbers above them every refresh; benchmarks/panel_render.py measures both.
# A run logging less often redraws less often.
CHART_EVERY = 10
GIL_SWITCH_S = 0.0005  # see _gil_handoff
LOG_STYLES = {"warning": "yellow", "error": "red", "finished": "bold"}  # by level or kind


NOTHING_TRAINING = "nothing is training: x stops a run started with s"


class TrainScreen(Screen):
    TITLE = "6 Train"
    BINDINGS = [("s", "start", "Start"), ("x", "stop", "Stop")]

    class Opened(Message):
        """Posted on mount: the wizard stops this screen's training before it quits."""

        def __init__(self, train_screen: TrainScreen) -> None:
            super().__init__()
            self.train_screen = train_screen

    def __init__(self, attach_to: Path | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.attach_to = attach_to
        self.stop_event = threading.Event()
        self.running = False
        self.trained = threading.Event()  # set when the training thread has saved and ended
        self.pending: deque[Event] = deque()  # appended by the training thread
        self.telemetry = None  # GpuTelemetry, opened at the first poll on a real GPU
        self.forget_run()

    def forget_run(self) -> None:
        """What the charts and lines hold of one run: empty again before the next (a second
        run in one session drew its steps after the first's)."""
        self.steps: list[int] = []  # the logged steps the charts' x axis shows
        self.losses: list[float] = []
        self.speeds: list[float] = []
        self.vram: list[float] = []
        self.vram_steps: list[int] = []
        self.steps_seen = 0
        self.started_at: float | None = None
        self.predicted_gib: float | None = None  # the planner's peak, shown beside the measured
        self.started: Started | None = None  # its predicted tokens/s, peak and why none
        self.last_step: Step | None = None
        self.refreshes_since_charts = CHART_EVERY  # the first step draws them at once

    def compose(self) -> ComposeResult:
        yield Header()  # no clock: a redraw a second for nothing
        with Vertical(id="body"):
            with Horizontal(classes="row"):
                yield Button("Start training", id="start", variant="success")
                yield Button("Stop (saves)", id="stop", variant="error", disabled=True)
            yield ProgressBar(id="progress", show_eta=False, total=1)  # ETA is in #stats
            yield Static("waiting to start", id="stats")
            yield PreferenceLine(id="preference")  # preference objectives only
            yield Static("loss", classes="chart-label", id="loss-label")
            yield Static("tokens/s", classes="chart-label", id="speed-label")
            yield Static("VRAM GiB", classes="chart-label", id="vram-label")
            # plotext is imported with the first Train screen, not with the first screen
            from ..widgets.run_chart import RunChart

            with Horizontal(id="charts"):
                for chart_id, what in CHARTS.items():
                    yield RunChart(f"{what}: drawn from the first logged step", id=chart_id)
            yield Static("", id="gpu-telemetry")
            yield RichLog(id="log", wrap=True, max_lines=500)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#vram-chart").display = False  # shown once there is VRAM (GPU)
        self.query_one("#vram-label").display = False
        self.post_message(self.Opened(self))
        if self.attach_to is not None:  # read-only: this screen cannot start a run
            self.query_one("#start", Button).display = False
            self.query_one("#stop", Button).disabled = False
            self.log_line(f"attached to {printable(self.attach_to)} (read-only)")
            # the header keeps saying so once the log has scrolled past that line
            self.sub_title = f"attached to {printable(Path(self.attach_to).name)} (read-only)"
            self.follow_run()
        self.set_interval(1.0, self.poll_telemetry)
        self.set_interval(REFRESH_S, self.drain_events)

    # --- starting and stopping ------------------------------------------------------

    @on(Button.Pressed, "#start")
    def action_start(self) -> None:
        if self.running or self.attach_to is not None:
            return
        spread = self.app.state.settings.distributed
        if spread.launched:  # the wizard trains in its own process, without a launcher
            self.notify(
                f"accelerate launches {spread.strategy} runs ({spread.world_size} processes) "
                "headless: export the preset (screen 8), then finetune-tui --preset PRESET.yaml",
                severity="warning",
                timeout=12,
            )
            return
        self.running = True
        self.stop_event.clear()
        self.trained.clear()
        self.forget_run()
        self.query_one("#start", Button).disabled = True
        self.query_one("#stop", Button).disabled = False
        self.log_line("checking the model, dataset and settings…")
        self.train(self.app.state.settings)

    @on(Button.Pressed, "#stop")
    def action_stop(self) -> None:
        if self.attach_to is not None:
            self.app.push_screen(ConfirmStop(), self._stop_attached)
            return
        if self.running:
            self.stop_event.set()
            self.log_line("stopping: saving a checkpoint and the adapter after this step…")
        else:
            self.notify(NOTHING_TRAINING)

    def _stop_attached(self, confirmed: bool | None) -> None:
        from finetune_tui.engine.common.errors import FinetuneError
        from finetune_tui.engine.train.run_control import ask_run_to_stop

        if not confirmed:
            return
        try:
            pid = ask_run_to_stop(self.attach_to)
        except FinetuneError as exc:
            self.notify(shown(exc), severity="error")
            return
        if pid is None:
            self.log_line("the run is not running: nothing to stop")
        else:
            self.log_line(f"asked pid {pid} to checkpoint and stop")

    @work(thread=True, exclusive=True, group="training", exit_on_error=False)
    def train(self, settings) -> None:
        """Check the inputs, then make the run directory, then train (nothing before)."""
        from finetune_tui.engine.common.errors import FinetuneError
        from finetune_tui.engine.runs.layout import LOG_FILE
        from finetune_tui.engine.train.fdcapture import captured_fds
        from finetune_tui.engine.train.runner import run_training
        from finetune_tui.engine.train.start import start_run

        try:
            run_dir = start_run(settings)
        except Exception as exc:  # ours said as it is; anything else said, never a hang
            said = exc if isinstance(exc, FinetuneError) else f"{type(exc).__name__}: {exc}"
            self.deliver(Failed(message=str(said)))
            self._ended()
            return
        self.app.call_from_thread(self._run_dir_made, run_dir)
        try:
            with captured_fds(run_dir / LOG_FILE, enabled=self.app.capture_fds), _gil_handoff():
                run_training(settings, self.deliver, self.stop_event, run_dir)
        except FinetuneError:
            pass  # the runner already emitted a Failed event with the message
        finally:
            self._ended()

    def stop_and_wait(self) -> None:
        """From another thread: ask a running training to stop after its step and wait until
        its checkpoint and adapter are written (the way out when the UI cannot be waited on)."""
        if self.running:
            self.stop_event.set()
            self.trained.wait()

    def _ended(self) -> None:
        """On the training thread, once everything is saved: tell the app, if it still runs
        (a signal may have ended it while this thread saved)."""
        self.trained.set()
        try:
            self.app.call_from_thread(self._training_ended)
        except RuntimeError:  # the app has exited: no screen to update
            pass

    def show_predicted(self) -> None:
        """The planner's peak, said before the first step; its chart appears with the steps."""
        if self.predicted_gib is None:
            return
        self.query_one("#vram-label").display = True
        if not self.vram:
            self.query_one("#vram-label", Static).update(
                f"VRAM GiB reserved: predicted peak {self.predicted_gib:.2f} (yellow line)"
            )

    def _run_dir_made(self, run_dir: Path) -> None:
        self.app.state.last_run_dir = run_dir
        self.log_line(f"run directory: {printable(run_dir)}")

    @work(thread=True, exclusive=True, group="training", exit_on_error=False)
    def follow_run(self) -> None:
        from finetune_tui.engine.runs.metrics import follow_events

        for event in follow_events(self.attach_to, stop=self.stop_event):
            self.deliver(event)

    def deliver(self, event: Event) -> None:
        """Called on the training thread: queue the event (deque appends are thread-safe)."""
        self.pending.append(event)

    def _training_ended(self) -> None:
        self.drain_events()
        self.running = False
        self.query_one("#start", Button).disabled = False
        self.query_one("#stop", Button).disabled = True

    # --- showing events -------------------------------------------------------------

    def drain_events(self) -> None:
        """Show every queued event; steps feed the charts, the last one the numbers."""
        last_step = None
        while self.pending:
            event = self.pending.popleft()
            if isinstance(event, Step):
                self.record_step(event)
                last_step = event
                continue
            if last_step is not None:  # steps before this event are shown before it
                self.show_step(last_step)
                last_step = None
            self.show_event(event)
        if last_step is not None:
            self.show_step(last_step)

    def show_event(self, event: Event) -> None:
        """The event's line in the log (the engine's words, as headless prints them), and
        what it changes on the panel."""
        line = describe(event)
        if line:
            style = LOG_STYLES.get(getattr(event, "level", event.kind), "default")
            self.log_line(line, style)
        self.query_one(PreferenceLine).show(event)
        if isinstance(event, MemoryCheck):  # the plan at the longest batch so far
            self.predicted_gib = event.predicted_gib
        elif isinstance(event, Started):
            self.started_at = time.monotonic()
            self.predicted_gib = event.predicted_peak_reserved_gib
            self.started = event
            self.show_predicted()
            self.query_one(ProgressBar).update(total=event.total_steps, progress=0)
        elif isinstance(event, Finished):
            self.show_finished(event)
        elif isinstance(event, Failed):
            self.notify(shown(event.message), severity="error", timeout=15)
        if isinstance(event, Finished | Failed) and self.steps:
            self.show_charts(force=True)  # the last steps, whenever the last redraw was

    def record_step(self, event: Step) -> None:
        self.steps_seen += 1
        self.steps = (self.steps + [event.step])[-HISTORY:]
        self.losses = (self.losses + [event.loss])[-HISTORY:]
        self.speeds = (self.speeds + [event.tokens_per_second])[-HISTORY:]
        if event.memory_reserved_gib is not None:
            self.vram = (self.vram + [event.memory_reserved_gib])[-HISTORY:]
            self.vram_steps = (self.vram_steps + [event.step])[-HISTORY:]

    def show_step(self, event: Step) -> None:
        self.last_step = event
        self.query_one(PreferenceLine).show(event)
        self.show_charts()
        self.query_one(ProgressBar).update(total=event.total_steps, progress=event.step)
        vram = charts.step_vram_text(event, self.predicted_gib)
        self.set_text(
            "#stats",
            f"step [b]{event.step}/{event.total_steps}[/b]  loss [b]{event.loss:.4f}[/b]  "
            f"lr {event.learning_rate:.2e}  {event.tokens_per_second:,.0f} tokens/s  "
            f"{event.samples_per_second:.1f} samples/s\n"
            f"elapsed {format_duration(event.elapsed_s)}  "
            f"ETA {format_duration(event.eta_s)}{vram}",
        )

    def show_charts(self, force: bool = False) -> None:
        """The line above each chart every refresh; the charts' data (tui/charts.py) every
        CHART_EVERY refreshes, or when forced."""
        self.refreshes_since_charts += 1
        redraw = force or self.refreshes_since_charts >= CHART_EVERY
        self.set_text("#loss-label", charts.loss_text(self.losses))
        self.set_text("#speed-label", charts.speed_text(self.speeds, self.started))
        if self.vram:
            self.set_text(
                "#vram-label", charts.vram_text(self.vram, self.predicted_gib, self.started)
            )
            self.query_one("#vram-label").display = True
        if not redraw:
            return
        self.refreshes_since_charts = 0
        self.query_one("#loss-chart").data = charts.loss_chart(self.steps, self.losses)
        self.query_one("#speed-chart").data = charts.speed_chart(
            self.steps, self.speeds, self.started
        )
        if self.vram:
            chart = self.query_one("#vram-chart")
            chart.data = charts.vram_chart(self.vram_steps, self.vram, self.predicted_gib)
            chart.display = True

    def show_finished(self, event: Finished) -> None:
        # the last logged step may come before the last step: the bar shows where it ended
        self.query_one(ProgressBar).update(total=event.total_steps, progress=event.step)
        last = self.last_step
        speed = f"  {last.tokens_per_second:,.0f} tokens/s (last logged)" if last else ""
        self.query_one("#stats", Static).update(
            f"[b]{event.status}[/b] at step [b]{event.step}/{event.total_steps}[/b]"
            + (f"  final loss [b]{event.final_loss:.4f}[/b]" if event.final_loss else "")
            + f"{speed}\nelapsed {format_duration(event.elapsed_s)}"
        )
        hint = "" if self.attach_to is not None else ": export the script on screen 8"
        self.notify(f"training {event.status}{hint}", timeout=8)

    def set_text(self, selector: str, text: str) -> None:
        """A panel line whose height is fixed (app.tcss): no layout pass, once a second."""
        self.query_one(selector, Static).update(text, layout=False)

    def log_line(self, text: str, style: str = "") -> None:
        """Plain text, never markup: a log line may hold any name a run was given."""
        self.query_one(RichLog).write(Text(text, style=style))

    def on_unmount(self) -> None:
        if self.telemetry is not None:
            self.telemetry.close()

    def poll_telemetry(self) -> None:
        hw = self.app.hardware
        if hw is None or not hw.gpus or hw.simulated:
            return
        if self.telemetry is None:
            from finetune_tui.engine.inspect.hardware import GpuTelemetry

            self.telemetry = GpuTelemetry(0)
        gpu = self.telemetry.read()
        if gpu is not None:
            self.set_text(
                "#gpu-telemetry",
                f"GPU util {gpu.utilization_pct or 0:.0f}%  temp {gpu.temperature_c or 0:.0f}°C  "
                f"power {gpu.power_w or 0:.0f} W  free {gpu.free_gib:.1f}/{gpu.total_gib:.1f} GiB",
            )


class ConfirmStop(ModalScreen[bool]):
    """Stopping someone else's run is worth a question."""

    BINDINGS = [("y", "yes", "Yes"), ("n,escape", "no", "No")]

    def compose(self) -> ComposeResult:
        yield Static("Ask the run to save a checkpoint and stop? [y/n]", id="confirm")

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)


@contextmanager
def _gil_handoff(interval_s: float = GIL_SWITCH_S):
    """While training shares the process with the UI, hand the GIL back sooner.

    Launching CUDA kernels is Python work on the training thread; each redraw holds the GIL
    and, at the default 5 ms switch interval, stalls the launches longer than it runs.
    """
    previous = sys.getswitchinterval()
    sys.setswitchinterval(interval_s)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)
