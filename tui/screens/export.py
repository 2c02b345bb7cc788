"""Screen 8: write the preset and the standalone script; show how to rerun."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Static

from finetune_tui.engine.common.errors import FinetuneError, OutputExistsError
from finetune_tui.tui.text import shown, shown_lines


class ExportScreen(Screen):
    TITLE = "8 Export"
    confirmed_replace: str | None = None  # a path the user chose to replace by asking twice

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="body"):
            yield Static("Write a standalone training script and its preset:")
            with Horizontal(classes="row"):
                yield Input(id="export-path")
                yield Button("Export", id="export", variant="primary")
            yield Static("", id="export-result")
        yield Footer()

    def on_screen_resume(self) -> None:
        run = self.app.state.last_run_dir
        # the run keeps its own script in RUN/export/: a new one goes beside, not over it
        default = Path("finetune-export") / (run.name if run else "") / "train.py"
        field = self.query_one("#export-path", Input)
        if not field.value:
            field.value = str(default)
        if run is not None and not self.query_one("#export-result", Static).content:
            self.query_one("#export-result", Static).update(
                shown_lines(f"the run's own script, as it trained: {run / 'export' / 'train.py'}")
            )

    def on_mount(self) -> None:
        self.on_screen_resume()

    @on(Input.Submitted, "#export-path")
    @on(Button.Pressed, "#export")
    def export(self) -> None:
        from finetune_tui.engine.export.files import export_run

        path = self.query_one("#export-path", Input).value.strip()
        result = self.query_one("#export-result", Static)
        if not path:
            result.update("[red]give the script's file name, e.g. job/train.py[/red]")
            return
        force = path == self.confirmed_replace
        try:
            exported = export_run(self.app.state.settings, path, force=force)
        except FinetuneError as exc:
            replaceable = isinstance(exc, OutputExistsError)
            self.confirmed_replace = path if replaceable else None
            where = getattr(exc, "path", None) or path  # the preset beside it, maybe
            message = f"{where}: exists; press Export again to replace it" if replaceable else exc
            result.update(f"[red]{shown(message)}[/red]")
            return
        self.confirmed_replace = None
        result.update(
            shown_lines(
                f"script: {exported.script}\npreset: {exported.preset}\nrerun with:\n"
                + "\n".join(f"  {c}" for c in exported.commands)
            )
        )
        self.query_one("#export", Button).focus()  # keys are commands again, not typing
