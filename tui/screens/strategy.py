"""Screen 4: every option as a form control, with the VRAM bar updating on every change."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Static

from ..planning import inspect, predict, recommend, unavailable_here
from ..text import shown, shown_lines
from ..widgets.settings_form import SettingsForm
from ..widgets.vram_bar import VramBar


class StrategyScreen(Screen):
    TITLE = "4 Strategy"
    BINDINGS = [("r", "reset", "Reset to recommended"), ("m", "measure", "Measure on this GPU")]

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="body"):
            yield VramBar(id="vram-bar")
            yield Static("", id="strategy-time")
            yield Static("", id="strategy-objective")
            yield Static("", id="strategy-status")
            with Horizontal(classes="row"):
                yield Button("Reset to recommended", id="reset")
                yield Button("Measure on this GPU", id="measure")
            yield SettingsForm(self.app.state.settings, id="form")
        yield Footer()

    def on_mount(self) -> None:
        self.show_reasons()
        self.refresh_prediction()

    def on_screen_resume(self) -> None:
        self.query_one(SettingsForm).load(self.app.state.settings)
        self.show_reasons()
        self.refresh_prediction()

    def show_objective(self) -> None:
        """What the objective trains the model to do; for a preference objective, how sure
        the bar's memory is and that there is no time prediction."""
        from finetune_tui.engine.plan.reasons import PREFERENCE_PLAN
        from finetune_tui.engine.settings.options import OBJECTIVES

        objective = self.app.state.settings.training.objective
        text = f"objective [b]{objective}[/b]: {shown(OBJECTIVES[objective].means)}"
        if objective != "sft":
            note = PREFERENCE_PLAN.format(objective)
            text += f"\n[yellow]{shown_lines(note)}[/yellow]"
        self.query_one("#strategy-objective", Static).update(text)

    def show_reasons(self) -> None:
        """Why each recommended value; fields the user set are marked as theirs, in red with
        the reason where this model or card refuses what they set (a pinned Unsloth on a
        family it does not patch read "set by you" beside a bar that said it fits)."""
        from finetune_tui.engine.plan.target_names import target_problem

        state = self.app.state
        lines = [
            shown(f"{field}: {why}")
            for field, why in state.reasons.items()
            if field not in state.pinned
        ]
        model = self._model()
        refused = unavailable_here(self.app.hardware, model)
        for field in sorted(state.pinned):
            value = state.settings.value(field)
            why = refused.get(f"{field}={value}")
            if field == "lora.target_modules" and model is not None:
                why = why or target_problem(model, value)
            said = shown(f"{field}: set by you" + (f"; refused here: {why}" if why else ""))
            lines.append(f"[red]{said}[/red]" if why else said)
        self.query_one("#strategy-status", Static).update("\n".join(lines))

    @on(SettingsForm.Changed)
    def changed(self, event: SettingsForm.Changed) -> None:
        if self.app.state.settings.value(event.field) == event.value:
            return  # controls report their first value on mount: not a change
        status = self.query_one("#strategy-status", Static)
        why = unavailable_here(self.app.hardware, self._model()).get(f"{event.field}={event.value}")
        if why:  # the same reason `plan` gives; the form goes back to what can run
            status.update(f"[red]{shown(f'{event.field}: {event.value}: {why}')}[/red]")
            self.query_one(SettingsForm).load(self.app.state.settings)
            return
        error, reset = self.apply_change(event.field, event.value)
        if error:
            status.update(f"[red]{shown_lines(error)}[/red]")
            return
        status.update(shown("; ".join([f"{event.field} = {event.value!r}", *reset])))
        if reset:
            self.query_one(SettingsForm).load(self.app.state.settings)
        self.refresh_prediction()

    @on(Input.Blurred)
    def left_field(self, event: Input.Blurred) -> None:
        """A field left holding text the settings refused ("8x", "0") shows again the value
        that applies (it kept the text while Review and the command used the last valid
        value); its refusal stays said."""
        if (event.input.id or "").startswith("f-"):  # the form's fields: field_id's names
            self.query_one(SettingsForm).load(self.app.state.settings)

    def apply_change(self, field: str, value: object) -> tuple[str | None, list[str]]:
        """The user's change; where the settings refuse it only because of a value the user
        did not set (an objective that cannot pack, say), that value goes back to its
        default. A value the user set is never changed: its refusal is shown."""
        from finetune_tui.engine.settings.schema import TrainSettings

        state, defaults, reset = self.app.state, TrainSettings(), []
        saved = state.settings
        error = self.app.update_setting(field, value, pin=True)
        while error and len(reset) < 4:
            blocker = error.split(":", 1)[0]
            if blocker == field or blocker in state.pinned or blocker.count(".") != 1:
                break
            try:
                default = defaults.value(blocker)
            except AttributeError:  # the message names no field
                break
            if self.app.update_setting(blocker, default):
                break
            reset.append(f"{blocker} back to {default!r}, as {field} needs")
            error = self.app.update_setting(field, value, pin=True)
        if error:  # nothing changes unless the change is made
            state.settings, reset = saved, []
        return error, reset

    def _model(self):
        """The model's facts, or None when the planner cannot read it."""
        from finetune_tui.engine.common.errors import FinetuneError

        try:
            return inspect(self.app.state.settings.model.name_or_path)
        except FinetuneError:
            return None

    def refresh_prediction(self) -> None:
        try:
            prediction = predict(self.app.hardware, self.app.state.settings)
        except Exception as exc:  # a planner error must not take the form down
            self.query_one(VramBar).update(f"[red]prediction failed: {shown(exc)}[/red]")
            return
        self.prediction = prediction
        self.query_one(VramBar).show(prediction.breakdown, prediction.budget_gib, prediction.fits)
        self.query_one("#strategy-time", Static).update(shown(prediction.time_text))
        self.show_objective()
        if prediction.note:
            note = f"[dim]{shown(prediction.note)}[/dim]"
            self.query_one("#strategy-status", Static).update(note)

    @on(Button.Pressed, "#reset")
    def action_reset(self) -> None:
        try:
            result = recommend(self.app.hardware, self.app.state.settings)
        except Exception as exc:  # nothing to recommend (say, full fine-tuning of 4-bit
            # weights): the planner's one line, the form kept
            status = self.query_one("#strategy-status", Static)
            status.update(f"[red]{shown(str(exc))}[/red]")
            return
        if result is None:
            self.notify("no recommendation available (planner or hardware facts missing)")
            return
        settings, reasons = result
        self.app.state.settings = settings
        self.app.state.recommended = settings
        self.app.state.reasons = reasons
        self.app.state.pinned.clear()  # reset means: recommend everything again
        self.query_one(SettingsForm).load(settings)
        self.show_reasons()
        self.refresh_prediction()

    @on(Button.Pressed, "#measure")
    def action_measure(self) -> None:
        """The advisor's top candidates, a few steps each on this GPU (as `plan --measure`)."""
        from finetune_tui.engine.train.measure import measure_refusal

        status = self.query_one("#strategy-status", Static)
        why = measure_refusal(self.app.hardware)
        if why:
            status.update(f"[red]{shown(f'Measure on this GPU {why}')}[/red]")
            return
        status.update("measuring the advisor's top candidates, each in its own process...")
        self.run_worker(self._measure_here, thread=True, exclusive=True, group="measure")

    def _measure_here(self) -> None:
        """In a thread: each candidate trains in its own process; the table comes back."""
        import tempfile
        from pathlib import Path

        from finetune_tui.engine.plan.advisor import advise
        from finetune_tui.engine.train.measure import candidates, measure, subprocess_runner, table

        from ..planning import dataset_stats

        state, hardware = self.app.state, self.app.hardware
        try:
            plan = advise(
                hardware,
                inspect(state.settings.model.name_or_path),
                state.settings,
                fixed=set(state.pinned),
                dataset_stats=dataset_stats(state.settings),
            )
            with tempfile.TemporaryDirectory(prefix="finetune-tui-measure-") as work:
                result = measure(candidates(plan), subprocess_runner(Path(work)), plan.budget_gib)
        except Exception as exc:  # a failed measurement must not take the form down
            self.app.call_from_thread(self._measured, [f"measuring failed: {exc}"], None)
            return
        lines = table(result, hardware.primary.name)
        self.app.call_from_thread(self._measured, lines, result.picked)

    def _measured(self, lines: list[str], picked) -> None:
        """Show predicted beside measured; the measured fastest that fits goes into the form."""
        if picked is not None:
            self.app.state.settings = picked.candidate.settings
            self.query_one(SettingsForm).load(picked.candidate.settings)
            self.refresh_prediction()
            lines = [*lines, "the picked candidate is now in the form"]
        self.query_one("#strategy-status", Static).update(shown_lines("\n".join(lines)))
