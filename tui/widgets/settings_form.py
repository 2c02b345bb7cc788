"""A form built from the settings schema itself: no option list is repeated in the UI.

Literal fields become Selects, booleans Switches, everything else an Input validated by
the schema. Every change posts `SettingsForm.Changed` with the dotted field name and value.
"""

from __future__ import annotations

import typing

from pydantic import BaseModel
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, Select, Static, Switch

from finetune_tui.engine.settings.schema import TrainSettings

FORM_SECTIONS = (
    "quantization",
    "memory",
    "lora",
    "training",
    "distributed",
    "model",
    "dataset",
    "output",
)


def _choices(annotation) -> list[str] | None:
    """The values of a Literal field (also inside `X | None`), else None."""
    if typing.get_origin(annotation) is typing.Literal:
        return [str(v) for v in typing.get_args(annotation)]
    return None


def field_id(dotted: str) -> str:
    return "f-" + dotted.replace(".", "--")


class SettingsForm(VerticalScroll):
    """Every field of TrainSettings, one row each, with its description as the tooltip."""

    class Changed(Message):
        def __init__(self, field: str, value: object) -> None:
            super().__init__()
            self.field = field
            self.value = value

    def __init__(self, settings: TrainSettings, **kwargs) -> None:
        super().__init__(**kwargs)
        self._settings = settings

    def compose(self) -> ComposeResult:
        for section in FORM_SECTIONS:
            model: BaseModel = getattr(self._settings, section)
            yield Static(section, classes="form-section")
            for name, info in type(model).model_fields.items():
                dotted = f"{section}.{name}"
                with Horizontal(classes="form-row"):
                    yield Label(name, classes="form-label")
                    yield self._control(dotted, info, getattr(model, name))

    def _control(self, dotted: str, info, value):
        choices = _choices(info.annotation)
        tooltip = info.description
        if choices is not None:
            widget = Select(
                [(c, c) for c in choices], value=str(value), allow_blank=False, id=field_id(dotted)
            )
        elif info.annotation is bool:
            widget = Switch(value=bool(value), id=field_id(dotted))
        else:
            text = (
                ""
                if value is None
                else (",".join(value) if isinstance(value, list) else str(value))
            )
            widget = Input(value=text, placeholder="none", id=field_id(dotted))
        widget.tooltip = tooltip
        return widget

    def load(self, settings: TrainSettings) -> None:
        """Show these settings (after 'reset to recommended' or a preset load)."""
        self._settings = settings
        with self.prevent(Select.Changed, Switch.Changed, Input.Changed):
            for section in FORM_SECTIONS:
                model = getattr(settings, section)
                for name in type(model).model_fields:
                    widget = self.query_one(f"#{field_id(f'{section}.{name}')}")
                    value = getattr(model, name)
                    if isinstance(widget, Select):
                        widget.value = str(value)
                    elif isinstance(widget, Switch):
                        widget.value = bool(value)
                    else:
                        widget.value = (
                            ""
                            if value is None
                            else (",".join(value) if isinstance(value, list) else str(value))
                        )

    def _dotted(self, widget) -> str:
        return widget.id.removeprefix("f-").replace("--", ".")

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        self.post_message(self.Changed(self._dotted(event.select), event.value))

    def on_switch_changed(self, event: Switch.Changed) -> None:
        event.stop()
        self.post_message(self.Changed(self._dotted(event.switch), event.value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.post_message(self.Changed(self._dotted(event.input), _parse(event.value)))

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.post_message(self.Changed(self._dotted(event.input), _parse(event.value)))


def _parse(text: str) -> object:
    """Input text → YAML scalar (numbers, null), lists as comma-separated values."""
    import yaml

    text = text.strip()
    if not text:
        return None
    if "," in text:
        return [part.strip() for part in text.split(",") if part.strip()]
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text
