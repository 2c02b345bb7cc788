"""Screen 3: the dataset — detected format, problems with line numbers, lengths, a sample."""

from __future__ import annotations

import json

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Static

from finetune_tui.engine.common.errors import FinetuneError
from finetune_tui.engine.recipe.examples import kto_label
from finetune_tui.engine.settings.options import PAIRED, UNPAIRED
from finetune_tui.tui.text import shown, shown_lines

from ..planning import dataset_key, remember_counted

PREFERENCE_FORMATS = (PAIRED, UNPAIRED)


class DatasetScreen(Screen):
    TITLE = "3 Dataset"

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="body"):
            yield Static("Dataset file (JSONL/JSON/CSV/Parquet), save_to_disk folder, or 'demo':")
            with Horizontal(classes="row"):
                yield Input(id="dataset-path")
                yield Button("Check", id="check-dataset")
            yield Static("", id="dataset-info")
            yield Static("", id="dataset-sample", classes="sample")
        yield Footer()

    def on_mount(self) -> None:
        self.described: tuple | None = None  # what the lines below were drawn for
        self.query_one("#dataset-path", Input).value = self.app.state.settings.dataset.path
        self.inspect_dataset()

    def on_screen_resume(self) -> None:
        """Back from another screen: described again if what the lines depend on changed
        (max_seq_length set on the Strategy screen left "0 % longer" standing)."""
        if self.described is not None and self.described != dataset_key(self.app.state.settings):
            self.query_one("#dataset-path", Input).value = self.app.state.settings.dataset.path
            self.inspect_dataset()

    @on(Input.Submitted, "#dataset-path")
    @on(Button.Pressed, "#check-dataset")
    def choose(self) -> None:
        path = self.query_one("#dataset-path", Input).value.strip()
        if path:
            self.app.update_setting("dataset.path", path)
            self.inspect_dataset()

    @work(thread=True, exclusive=True, group="dataset")
    def inspect_dataset(self) -> None:
        settings = self.app.state.settings
        self.described = dataset_key(settings)
        info, sample = describe_dataset(settings)
        self.app.call_from_thread(self.query_one("#dataset-info", Static).update, info)
        self.app.call_from_thread(self.query_one("#dataset-sample", Static).update, sample)


def describe_dataset(settings) -> tuple[str, str]:
    """Format, problems (file:line), token-length histogram, first formatted example."""
    from finetune_tui.engine.data.dataset import read_dataset
    from finetune_tui.engine.data.formats import validate_records
    from finetune_tui.engine.recipe.examples import to_example

    try:
        path, records, fmt = read_dataset(settings)  # problems are listed, not raised
    except FinetuneError as exc:
        return f"[red]{shown(exc)}[/red]", ""
    problems = validate_records(records, fmt)
    stats, counted = token_stats(settings, records, fmt)
    lines = [f"[b]{plural(len(records), 'record')}[/b], format [b]{fmt}[/b]  ({shown(path)})"]
    if problems:
        lines.append(f"[red]{plural(len(problems), 'record')} with problems:[/red]")
        lines += [f"  {shown(p)}" for p in problems[:5]]
    lines.append(
        f"{counted} per example: mean {stats.mean:.0f}, p95 {stats.p95}, max {stats.max}; "
        f"{stats.truncated_fraction:.0%} longer than max_seq_length "
        f"{settings.training.max_seq_length}"
    )
    lines += histogram(stats.histogram, settings.training.max_seq_length)
    good = next((r for r in records if r.data is not None), None)
    sample = ""
    if fmt in PREFERENCE_FORMATS:
        lines[1:1] = preference_lines(records, fmt, settings.training.objective)
        if good is not None and not validate_records([good], fmt):
            sample = preference_sample(good, to_example(good.data, fmt, ""))
    elif good is not None and not validate_records([good], fmt):
        example = to_example(good.data, fmt, "</s>")
        sample = "First example as trained (prompt → completion):\n" + shown_lines(
            json.dumps(example, ensure_ascii=False, indent=1)[:600]
        )
    return "\n".join(lines), sample


def token_stats(settings, records: list, fmt: str):
    """Token lengths as the run counts them, with the model's own tokenizer where it is on
    this machine (the demo's byte-level vocabulary counts 3.4x the characters' estimate:
    the screen said 0 % too long where the run refused every record); else estimated."""
    from finetune_tui.engine.data.formats import validate_records
    from finetune_tui.engine.data.lengths import estimate_token_stats, measured_token_stats
    from finetune_tui.engine.train.loading import tokenizer_here

    max_len = settings.training.max_seq_length
    tokenizer = tokenizer_here(settings)
    if tokenizer is not None:
        valid = [r for r in records if r.data is not None and not validate_records([r], fmt)]
        measured = measured_token_stats(valid, fmt, max_len, tokenizer)
        if measured is not None:
            remember_counted(settings, measured)  # the plan's time and batching use it
            return measured, "tokens (this model's tokenizer)"
    return estimate_token_stats(records, fmt, max_len), "~tokens (estimated)"


def preference_lines(records: list, fmt: str, objective: str) -> list[str]:
    """What preference data holds (pairs, or good and bad completions), and whether the
    objective set trains on it."""
    from finetune_tui.engine.settings.options import OBJECTIVES, objective_format_problem

    data = [r.data for r in records if isinstance(r.data, dict)]
    if fmt == "preference":
        held = f"{plural(len(data), 'pair')}: a prompt, a chosen and a rejected answer each"
    else:
        good = sum(kto_label(d.get("label")) is True for d in data)
        held = f"{good} desirable and {len(data) - good} undesirable completions (label)"
    lines = [f"preference data: {held}"]
    if objective_format_problem(objective, fmt):
        suits = " or ".join(name for name, o in OBJECTIVES.items() if fmt in o.formats)
        lines.append(
            f"[yellow]these records train training.objective {suits}; it is {objective} "
            "now: choose it on the Strategy screen (4)[/yellow]"
        )
    return lines


def preference_sample(record, example: dict) -> str:
    """The first record's prompt and answers as the trainer reads them, one field a line."""
    names = ("chosen", "rejected") if "chosen" in example else ("completion", "label")
    rows = [f"First record as trained ({shown(record.where)}):"]
    for name in ("prompt", *names):
        value = example[name]
        if isinstance(value, list):  # chat turns: role and content
            value = "  ".join(f"{turn['role']}: {turn['content']}" for turn in value)
        rows.append(f"  [b]{name}[/b]: {shown(str(value)[:200])}")
    return "\n".join(rows)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def histogram(bins: list[tuple[int, int]], max_len: int, width: int = 40) -> list[str]:
    top = max((n for _, n in bins), default=0) or 1
    rows = []
    for start, count in bins:
        mark = (
            " ◀ max_seq_length"
            if start <= max_len < start + (bins[1][0] if len(bins) > 1 else 1)
            else ""
        )
        rows.append(f"  {start:>6} | {'█' * int(count / top * width)} {count}{mark}")
    return rows
