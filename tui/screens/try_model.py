"""Screen 7: try the trained model beside its base, the same prompt, answers side by side.

The run's model loads once in a thread worker (engine/deliver/run_model.py; under LoRA the
base is the same model with its adapter off) and answers stream into both panes. The
run's held-out prompts are prefilled: `h` cycles them, so "did it learn?" is one key.
Below, the commands that keep the model: merge (a LoRA run), then ship.
"""

from __future__ import annotations

import threading
from contextlib import closing
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Static

from finetune_tui.engine.train.fdcapture import silenced_fds
from finetune_tui.tui.text import shown, shown_lines

NO_RUN = "No run yet: train first (screen 6), then try the model here."
PANES = (("#tuned", False), ("#base", True))  # (pane, base?): tuned first, then its base


class TryScreen(Screen):
    TITLE = "7 Try"
    BINDINGS = [
        ("h", "next_prompt", "Held-out prompt"),
        ("a", "ask", "Ask"),
        # letters stay keys until a Tab reaches the field (the app's rule), yet the screen
        # says Enter asks: a focused field or button takes Enter first, as its own
        Binding("enter", "ask", "Ask", show=False),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.run = None  # engine.deliver.run_model.RunModel, once loaded
        self.loaded_for: Path | None = None
        self.loading = False
        self.answering = False
        self.asked = 0  # which ask the panes show: an older answer's pieces are dropped
        self.generating = threading.Lock()  # LoRA's base is the tuned model, adapter off
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
        self._drop_answers()
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
        self._drop_answers()
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
        self._set_answering(True)
        self.asked += 1
        for pane, _ in PANES:
            self.query_one(pane, Static).update("…")
        self.answer(self.asked, self.run, held[0].rendered if held else text, bool(held))

    def _drop_answers(self) -> None:
        """A new prompt (or run): the panes answered the last one, so they empty, and an
        answer still streaming for it stops at its next token instead of landing here."""
        self.asked += 1
        self._set_answering(False)
        for pane, _ in PANES:
            self.query_one(pane, Static).update("")

    @work(thread=True, group="try-answer", exit_on_error=False)
    def answer(self, ask: int, run, prompt: str, rendered: bool) -> None:
        """Both panes' answers to one ask, one generation at a time (the lock: a dropped
        answer may still be finishing its last token). A refusal (a prompt past the
        model's context) or a failure shows in the panes it leaves unanswered."""
        left = [pane for pane, _ in PANES]
        try:
            with self.generating, silenced_fds(self.app.capture_fds):
                prompt = prompt if rendered else run.render(prompt)
                for pane, base in PANES:
                    if not self._current(ask):
                        return  # dropped (`h`, a new run): no further generation
                    self._stream(ask, run, prompt, pane, base)
                    left.remove(pane)
        except Exception as exc:  # shown, never a crash
            for pane in left:
                self.app.call_from_thread(self._failed, ask, pane, exc)
        finally:
            self.app.call_from_thread(self._answered, ask)

    def _stream(self, ask: int, run, prompt: str, pane: str, base: bool) -> None:
        """One pane's answer as it is generated, until its ask is no longer the shown one."""
        text = ""
        with closing(run.stream(prompt, base)) as pieces:  # closed: generation ends
            for piece in pieces:
                if not self._current(ask):
                    return
                text += piece
                self.app.call_from_thread(self._show, ask, pane, text)

    def _current(self, ask: int) -> bool:
        """Whether the panes still show this ask (read from the worker's thread too)."""
        return ask == self.asked

    def _show(self, ask: int, pane: str, text: str) -> None:
        if self._current(ask):
            shown_text = shown_lines(text) if text.strip() else "[dim](an empty answer)[/dim]"
            self.query_one(pane, Static).update(shown_text)

    def _failed(self, ask: int, pane: str, exc: Exception) -> None:
        if self._current(ask):
            self.query_one(pane, Static).update(f"[red]{shown(exc)}[/red]")

    def _answered(self, ask: int) -> None:
        if self._current(ask):
            self._set_answering(False)

    def _set_answering(self, answering: bool) -> None:
        """One ask at a time: a second `a` or Enter while answers stream does nothing."""
        self.answering = answering
        self.query_one("#ask", Button).disabled = answering or self.run is None

    def _status(self, markup: str) -> None:
        self.query_one("#try-status", Static).update(markup)
