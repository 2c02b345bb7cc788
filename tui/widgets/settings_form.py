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
        self._changed(event.input)

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._changed(event.input)

    def _changed(self, widget: Input) -> None:
        dotted = self._dotted(widget)
        section, name = dotted.split(".")
        annotation = type(getattr(self._settings, section)).model_fields[name].annotation
        self.post_message(self.Changed(dotted, parse_field_text(widget.value, annotation)))


def parse_field_text(text: str, annotation) -> object:
    """An Input's text as the field's type reads it: text fields take it as typed (a folder
    named `null`, `yes` or `2024` is that folder; YAML had made them None, True, 2024),
    list fields comma-separated values (one value is a list of one, none an empty list),
    numbers a YAML scalar; empty is None elsewhere."""
    import yaml

    text = text.strip()
    kinds = _kinds(annotation)
    if not text:  # an emptied list (no trackers) is an empty list where None is no value
        return [] if list in kinds and type(None) not in kinds else None
    if list in kinds and text not in _choices_in(annotation):
        return [part.strip() for part in text.split(",") if part.strip()]
    if str in kinds and not kinds & {int, float}:
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _kinds(annotation) -> set[type]:
    """The plain types a field accepts, through Annotated, unions and list[...]."""
    origin = typing.get_origin(annotation)
    if origin is list:
        return {list}
    if origin is typing.Literal:
        return {type(value) for value in typing.get_args(annotation)}
    if origin is None:
        return {annotation} if isinstance(annotation, type) else set()
    return set().union(*(_kinds(arg) for arg in typing.get_args(annotation)))


def _choices_in(annotation) -> set[object]:
    """The Literal values a field accepts as a whole ("auto"), not those of its lists."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return set(typing.get_args(annotation))
    if origin is list:
        return set()
    return set().union(*(_choices_in(arg) for arg in typing.get_args(annotation)))
