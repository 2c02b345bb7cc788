"""Screen 5: the settings, what differs from the defaults, and the headless command."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from finetune_tui.engine.settings.preset import dump_preset, load_preset
from finetune_tui.engine.settings.schema import TrainSettings
from finetune_tui.tui.state import INPUT_FIELDS
from finetune_tui.tui.text import shown, shown_lines


class ReviewScreen(Screen):
    TITLE = "5 Review"

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="body"):
            yield Static("", id="review-time")
            yield Static("", id="review-diff")
            yield Static("", id="review-command")
            yield Static("", id="review-yaml", classes="sample")
        yield Footer()

    def on_screen_resume(self) -> None:
        state = self.app.state
        settings = state.settings
        diffs = changed_fields(settings, TrainSettings())
        self.query_one("#review-time", Static).update("\n".join(map(shown, self._time(settings))))
        self.query_one("#review-diff", Static).update(
            "[b]Differs from the defaults[/b] (set by you, or recommended for this card):\n"
            + (
                "\n".join(
                    shown(f"  {k}: {a!r} (default {b!r}; {origin(k, a, state)})")
                    for k, a, b in diffs
                )
                or "  nothing"
            )
        )
        self.query_one("#review-command", Static).update(
            "[b]Same run headless:[/b]\n  finetune-tui --preset PRESET.yaml   "
            "(write PRESET.yaml on the Export screen)\n  or: " + shown(headless_command(settings))
        )
        self.query_one("#review-yaml", Static).update(shown_lines(dump_preset(settings)))

    def on_mount(self) -> None:
        self.on_screen_resume()

    def _time(self, settings: TrainSettings) -> list[str]:
        """The run's time on this card and the disk its saves take, as `plan` says them."""
        from ..planning import disk_text, time_text

        try:
            return [time_text(self.app.hardware, settings), disk_text(settings)]
        except Exception as exc:  # a planner error must not take the screen down
            return [f"time: no prediction ({exc})"]


def origin(field: str, value: object, state) -> str:
    """Who chose this value: the user (pinned, or the model and data they picked), the
    advisor, or an edit since."""
    if field in state.pinned or field in INPUT_FIELDS:
        return "set by you"
    if state.recommended is not None and state.recommended.value(field) == value:
        return "recommended"
    return "changed by you"


def headless_command(settings: TrainSettings) -> str:
    """The demo preset and a --set for every field that differs from it: the same run
    (a diff against the schema's defaults would run the demo preset's own values)."""
    import shlex

    from ..state import DEMO_PRESET

    args = ["finetune-tui", "--preset", shown_path(DEMO_PRESET)]
    for field, (value, _) in settings.differences(load_preset(DEMO_PRESET)).items():
        args += ["--set", f"{field}={yaml_value(value)}"]
    return shlex.join(args)


def shown_path(path) -> str:
    """Relative to the working directory when under it (a checkout), else absolute."""
    from pathlib import Path

    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def yaml_value(value: object) -> str:
    """A value as `--set` reads it back (YAML): 'on' stays a string, lists stay lists."""
    import yaml

    if isinstance(value, str) and value.strip() and _reads_back(value):
        return value
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9)
    return text.removesuffix("\n...\n").strip()


def _reads_back(text: str) -> bool:
    import yaml

    try:
        return yaml.safe_load(text) == text
    except yaml.YAMLError:
        return False


def changed_fields(settings: TrainSettings, reference: TrainSettings):
    return [(field, *values) for field, values in settings.differences(reference).items()]
