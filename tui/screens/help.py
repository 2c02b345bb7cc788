"""`?`: every key and what each screen is for, as a screen (Escape or ? closes it)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS = [
    ("n / p", "next / previous screen (ctrl+→ / ctrl+← while typing in a field)"),
    ("1-8, F1-F8", "go to a screen"),
    ("h / a", "a held-out prompt / ask the tuned and the base model (Try)"),
    ("s / x", "start training / stop it (a checkpoint and the adapter are saved)"),
    ("r", "reset every option to the recommendation (Strategy)"),
    ("tab", "move between fields"),
    ("?", "this help"),
    ("q, ctrl+q", "quit (a running training saves a checkpoint first; so does the palette's Quit)"),
]
SCREENS = [
    ("1 Hardware", "the GPU found, or plan for another card (a name or a VRAM size)"),
    ("2 Model", "a local folder, a catalog ID or the demo; type to filter"),
    ("3 Dataset", "your file: format, problems by line, token lengths"),
    ("4 Strategy", "every option, the recommendation and why, VRAM updating live"),
    ("5 Review", "what differs from the defaults, who chose it, the headless command"),
    ("6 Train", "the live panel: loss, tokens/s, VRAM measured vs predicted"),
    ("7 Try", "the trained model beside its base, on held-out or typed prompts"),
    ("8 Export", "a standalone script and its preset"),
]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [("escape,question_mark,q", "close", "Close")]

    def compose(self) -> ComposeResult:
        keys = "\n".join(f"  [b]{key:<12}[/b] {what}" for key, what in KEYS)
        screens = "\n".join(f"  [b]{name:<12}[/b] {what}" for name, what in SCREENS)
        with VerticalScroll(id="help"):
            yield Static(f"[b]Keys[/b]\n{keys}\n\n[b]Screens[/b]\n{screens}\n\nEscape closes.")

    def action_close(self) -> None:
        self.dismiss(None)
