"""Screen 2: which model — a local folder, a catalog ID, or the embedded demo."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, OptionList, Static

from finetune_tui.engine.inspect.models import catalog_ids
from finetune_tui.tui.text import shown

from ..planning import inspect, unavailable_here


class ModelScreen(Screen):
    TITLE = "2 Model"
    AUTO_FOCUS = "#model-path"  # "type to filter": letters go to the field, not to shortcuts

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="body"):
            yield Static("Model folder, Hub ID, or 'demo' (type to filter the catalog):")
            yield Input(id="model-path")
            yield OptionList(id="catalog")
            yield Static("", id="model-info")
        yield Footer()

    def on_mount(self) -> None:
        path = self.query_one("#model-path", Input)
        path.value = self.app.state.settings.model.name_or_path
        self._fill_catalog(path.value)
        self.show_info(path.value)

    def _fill_catalog(self, text: str) -> None:
        options = self.query_one("#catalog", OptionList)
        options.clear_options()
        ids = ["demo", *catalog_ids()]
        options.add_options([i for i in ids if text.lower() in i.lower()][:8] or ids[:8])

    @on(Input.Changed, "#model-path")
    def filter_catalog(self, event: Input.Changed) -> None:
        self._fill_catalog(event.value)

    @on(Input.Submitted, "#model-path")
    def choose_typed(self, event: Input.Submitted) -> None:
        self.choose(event.value.strip())

    @on(OptionList.OptionSelected, "#catalog")
    def choose_listed(self, event: OptionList.OptionSelected) -> None:
        self.choose(str(event.option.prompt))

    def choose(self, name: str) -> None:
        if not name:
            return
        self.app.update_setting("model.name_or_path", name)
        self.query_one("#model-path", Input).value = name
        self.show_info(name)

    def show_info(self, name: str) -> None:
        self.query_one("#model-info", Static).update(model_summary(name, self.app.hardware))


def format_params(count: int) -> str:
    """1.24 B, 812 M, 96 K: the demo's 0.8 M parameters are not '0.00 B'."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.2f} {unit}"
    return str(count)


def model_summary(name: str, hardware=None) -> str:
    """Architecture facts from config.json alone; never loads weights. Backends say 'no'
    with the same reason `plan` gives when this machine (or the model) rules them out."""
    try:
        info = inspect(name)
    except Exception as exc:
        return f"[red]{shown(exc)}[/red]"
    here = unavailable_here(hardware, info)
    backends = ", ".join(
        f"{b}: {'yes' if why is None else 'no (' + shown(why) + ')'}"
        for b, why in (
            (b, why or here.get(f"memory.backend={b}"))
            for b, why in info.supported_backends.items()
        )
    )
    return (
        f"[b]{shown(info.architecture)}[/b]  {format_params(info.params_total)} parameters"
        f"{f' ({format_params(info.params_active)} active)' if info.is_moe else ''}  "
        f"{info.num_layers} layers  hidden {info.hidden_size}  vocab {info.vocab_size}  "
        f"context {info.max_context}\nLoRA targets: {shown(', '.join(info.lora_targets))}\n"
        f"Backends: {backends}{stored_line(info.stored)}"
    )


def stored_line(stored) -> str:
    """A checkpoint stored quantised: what its weights train as."""
    if stored is None:
        return ""
    trains = "16-bit (dequantised as they load)" if stored.loads_as == "none" else stored.loads_as
    return f"\nWeights stored as {shown(stored.method)}: they train as {trains}"
