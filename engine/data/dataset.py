"""User datasets, from file to TRL's datasets:

1. read the records of the file / folder with their locations (data/reading.py);
2. detect the format from the first record's keys, or take `dataset.format` (data/formats.py);
3. validate every record; report `file:line: problem` for the first few, with a count;
4. convert and split with the recipe (engine/recipe/examples.py), as the exported script does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..common.errors import DatasetError
from ..recipe.examples import split_examples, to_example
from ..settings.options import objective_format_problem
from ..settings.schema import TrainSettings
from .formats import Problem, detect_format, validate_records
from .reading import Record, load_records, record_limit, resolve_dataset_path

MAX_REPORTED = 3


@dataclass
class Prepared:
    train: object  # datasets.Dataset
    eval: object | None
    format: str
    source: str
    total_records: int


def read_dataset(settings: TrainSettings) -> tuple[Path, list[Record], str]:
    """Steps 1–2: the records with their locations, and their format (set or detected)."""
    path = resolve_dataset_path(settings.dataset.path, settings.training.objective)
    records = load_records(path, record_limit(settings))
    fmt = settings.dataset.format
    return path, records, detect_format(records) if fmt == "auto" else fmt


def load_validated(settings: TrainSettings) -> tuple[Path, list[Record], str]:
    """Steps 1–3: records, their format, and a DatasetError listing any problems."""
    path, records, fmt = read_dataset(settings)
    how = (
        "set by dataset.format; 'auto' detects it"
        if settings.dataset.format != "auto"
        else "detected"
    )
    mismatch = objective_format_problem(settings.training.objective, fmt)
    if mismatch:  # a preference record never trains as SFT, nor the other way round
        raise DatasetError(f"{path}: {mismatch} ({how})")
    _raise_if(validate_records(records, fmt), f"records read as {fmt} ({how})")
    return path, records, fmt


def dataset_stats(settings: TrainSettings, tokenizer=None):
    """The dataset's token lengths (what the planner scores batching and time with):
    counted by `tokenizer` where the run has it and it can (a chat format needs its
    template), else estimated from the validated records' characters (plan, the wizard: no
    tokenizer loaded); raises as `load_validated` does."""
    from .lengths import estimate_token_stats, measured_token_stats

    _, records, fmt = load_validated(settings)
    limit = settings.training.max_seq_length
    measured = None
    if tokenizer is not None:
        try:
            measured = measured_token_stats(records, fmt, limit, tokenizer)
        except Exception:  # a tokenizer that cannot render the format: the estimate stands
            measured = None
    return measured or estimate_token_stats(records, fmt, limit)


def prepare_datasets(settings: TrainSettings, eos_token: str) -> Prepared:
    """Steps 1–6: train and eval `datasets.Dataset`s in TRL's format."""
    path, records, fmt = load_validated(settings)
    examples = [to_example(r.data, fmt, eos_token) for r in records]
    train, evaluation = split_examples(
        examples,
        settings.dataset.eval_fraction,
        settings.dataset.max_samples,
        settings.training.seed,
    )
    return Prepared(train, evaluation, fmt, str(path), len(records))


def _raise_if(problems: list[Problem], context: str = "") -> None:
    if not problems:
        return
    shown = "; ".join(str(p) for p in problems[:MAX_REPORTED])
    more = f" ({len(problems)} records with problems)" if len(problems) > MAX_REPORTED else ""
    raise DatasetError(shown + more + (f"; {context}" if context else ""))
