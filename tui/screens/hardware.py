"""Screen 1: the GPU(s) found, or the CPU-only path with the embedded demo."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Static

from finetune_tui.engine.inspect.hardware import describe_hardware
from finetune_tui.tui.text import shown

from ..planning import detect


class HardwareScreen(Screen):
    TITLE = "1 Hardware"

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="body"):
            yield Static("", id="hw-summary")
            yield Static("Plan for another card (e.g. 'RTX 4090') or a VRAM size in GiB:")
            with Horizontal(classes="row"):
                yield Input(placeholder="GPU name", id="sim-gpu")
                yield Input(placeholder="VRAM GiB", id="sim-vram")
                yield Button("Simulate", id="simulate")
                yield Button("Use the embedded demo", id="use-demo", variant="primary")
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_summary()

    def refresh_summary(self, previous: tuple | None = None) -> None:
        """Detect (or simulate) the card and plan for it; an unknown simulated card is said
        and the card before it stays, with its plan (a typo dropped back to the CPU)."""
        state = self.app.state
        try:
            hw = detect(state.simulated_gpu, state.simulated_vram)
        except Exception as exc:  # unknown simulated card: say why, keep the old one
            self.notify(shown(exc), severity="error")
            state.simulated_gpu, state.simulated_vram = previous or (None, None)
            if previous is not None and self.app.hardware is not None:
                return
            hw = detect(state.simulated_gpu, state.simulated_vram)
        self.app.hardware = hw
        self.app.recommend_for_inputs()  # a new card: the plan that fits it
        self.query_one("#hw-summary", Static).update(describe_hardware(hw))  # its own markup

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in the card name or VRAM field simulates, as the button does."""
        if event.input.id in ("sim-gpu", "sim-vram"):
            self.simulate()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "simulate":
            self.simulate()
        elif event.button.id == "use-demo":
            self.app.use_demo()
            self.notify("embedded demo selected: tiny model + uppercase task")

    def simulate(self) -> None:
        state = self.app.state
        previous = (state.simulated_gpu, state.simulated_vram)
        gpu = self.query_one("#sim-gpu", Input).value.strip() or None
        vram = self.query_one("#sim-vram", Input).value.strip()
        try:
            state.simulated_vram = float(vram) if vram else None
        except ValueError:
            self.notify(f"VRAM {vram!r}: not a number of GiB", severity="error")
            return
        state.simulated_gpu = gpu
        self.refresh_summary(previous)
