"""Screen 7: try the trained model beside its base, the same prompt, answers side by side.

The run's model loads once in a thread worker (engine/deliver/run_model.py; under LoRA the
base is the same model with its adapter off) and answers stream into both panes. The
run's held-out prompts are prefilled: `h` cycles them, so "did it learn?" is one key.
Below, the commands that keep the model: merge (a LoRA run), then ship.
"""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Static

from finetune_tui.engine.train.fdcapture import silenced_fds
from finetune_tui.tui.text import shown, shown_lines

NO_RUN = "No run yet: train first (screen 6), then try the model here."


class TryScreen(Screen):
    TITLE = "7 Try"
    BINDINGS = [("h", "next_prompt", "Held-out prompt"), ("a", "ask", "Ask")]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.run = None  # engine.deliver.run_model.RunModel, once loaded
        self.loaded_for: Path | None = None
        self.loading = False
        self.answering = False
        self.prompts: list = []  # held-out Prompts of the run's dataset
        self.prompt_index = -1

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="body"):
            yield Static(NO_RUN, id="try-status")
            with Horizontal(classes="row"):
                yield Input(id="try-prompt", placeholder="a prompt (h: a held-out one)")
                yield Button("Ask", id="ask", variant="primary", disabled=True)
            yield Static("", id="try-expected")
            with Horizontal(id="answers"):
                with Vertical(classes="answer"):
                    yield Static("[b]tuned[/b]", classes="answer-label")
                    yield Static("", id="tuned")
                with Vertical(classes="answer"):
                    yield Static("[b]base[/b]", classes="answer-label")
                    yield Static("", id="base")
            yield Static("", id="try-next")
        yield Footer()

    def on_mount(self) -> None:
        self.on_screen_resume()

    def on_screen_resume(self) -> None:
        run_dir = self.app.state.last_run_dir
        if run_dir is None:
            self._status(NO_RUN)
        elif run_dir != self.loaded_for and not self.loading:
            self.loading = True
            self._status(f"loading {shown(run_dir)}…")
            self.load(run_dir)

    # --- loading ----------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="try-load", exit_on_error=False)
    def load(self, run_dir: Path) -> None:
        from finetune_tui.engine.common.errors import FinetuneError
        from finetune_tui.engine.deliver.held_out import held_out_prompts
        from finetune_tui.engine.deliver.run_model import load_run_model

        try:
            with silenced_fds(self.app.capture_fds):
                run = load_run_model(run_dir)
                prompts = held_out_prompts(run.settings, run.tokenizer)
        except FinetuneError as exc:
            self.app.call_from_thread(self._load_failed, str(exc))
            return
        self.app.call_from_thread(self._loaded, run_dir, run, prompts)

    def _load_failed(self, message: str) -> None:
        self.loading = False
        self._status(f"[red]{shown(message)}[/red]")

    def _loaded(self, run_dir: Path, run, prompts: list) -> None:
        self.loading = False
        self.run, self.loaded_for, self.prompts = run, run_dir, prompts
        from finetune_tui.engine.runs.status import run_info

        how = "LoRA adapter off" if run.base is None else "loaded beside it"
        held = f"; h cycles {len(prompts)} held-out prompts" if prompts else ""
        info = run_info(run_dir)  # a stopped run's adapter is the one it had then: say so
        when = (
            f", {info.status} at step {info.step}/{info.total_steps}"
            if info.status != "finished" and info.step is not None
            else ""
        )
        self._status(
            f"run {shown(run_dir)}{shown(when)} on {run.device} (base: {how}){held}; "
            "Enter or a asks both"
        )
        self.query_one("#ask", Button).disabled = False
        from finetune_tui.engine.deliver.ship import keep_commands

        keep = self.query_one("#try-next", Static)
        keep.update(shown(keep_commands(run_dir, run.settings)))
        keep.display = True
        self.prompt_index = -1
        if prompts:
            self.action_next_prompt()

    # --- asking -----------------------------------------------------------------------

    def action_next_prompt(self) -> None:
        if not self.prompts:
            return
        self.prompt_index = (self.prompt_index + 1) % len(self.prompts)
        prompt = self.prompts[self.prompt_index]
        self.query_one("#try-prompt", Input).value = prompt.text
        expected = "" if prompt.expected is None else f"expected: {shown(prompt.expected)}"
        self.query_one("#try-expected", Static).update(expected)  # none: labelled undesirable

    @on(Input.Submitted, "#try-prompt")
    @on(Button.Pressed, "#ask")
    def action_ask(self) -> None:
        text = self.query_one("#try-prompt", Input).value
        if self.run is None or self.answering or not text.strip():
            return
        held = [p for p in self.prompts if p.text == text]
        if not held:
            self.query_one("#try-expected", Static).update("")
        self.answering = True
        self.query_one("#ask", Button).disabled = True
        for pane in ("#tuned", "#base"):
            self.query_one(pane, Static).update("…")
        self.answer(held[0].rendered if held else self.run.render(text))

    @work(thread=True, exclusive=True, group="try-answer", exit_on_error=False)
    def answer(self, rendered: str) -> None:
        """Tuned first, then base: under LoRA they are one model, one answer at a time."""
        try:
            with silenced_fds(self.app.capture_fds):
                for pane, base in (("#tuned", False), ("#base", True)):
                    text = ""
                    for piece in self.run.stream(rendered, base):
                        text += piece
                        self.app.call_from_thread(self._show, pane, text)
        except Exception as exc:  # a generation failure is shown, never a crash
            self.app.call_from_thread(self._status, f"[red]{shown(exc)}[/red]")
        finally:
            self.app.call_from_thread(self._answered)

    def _show(self, pane: str, text: str) -> None:
        shown_text = shown_lines(text) if text.strip() else "[dim](an empty answer)[/dim]"
        self.query_one(pane, Static).update(shown_text)

    def _answered(self) -> None:
        self.answering = False
        self.query_one("#ask", Button).disabled = False

    def _status(self, markup: str) -> None:
        self.query_one("#try-status", Static).update(markup)
