"""The UI's one door to the planner: hardware, model facts and the live prediction.

Before the Hardware screen has run there is no hardware yet: the prediction says so and
the recommendation waits.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

from finetune_tui.engine.settings.schema import TrainSettings


@dataclass
class Prediction:
    breakdown: object | None
    budget_gib: float | None
    fits: bool | None
    reasons: dict[str, str]
    note: str = ""
    time_text: str = ""  # the whole run's predicted time on this card, as `plan` says it


def detect(simulated_gpu: str | None = None, vram: float | None = None):
    """This machine's hardware, or the simulated card asked for."""
    from finetune_tui.engine.inspect.hardware import hardware_for

    return hardware_for(simulated_gpu, vram)


def inspect(name_or_path: str):
    from finetune_tui.engine.inspect.models import inspect_model

    return inspect_model(name_or_path)


def predict(hw, settings: TrainSettings) -> Prediction:
    """The prediction for exactly these settings (the live VRAM bar)."""
    from finetune_tui.engine.plan.advisor import evaluate

    model = inspect(settings.model.name_or_path)
    if hw is None:
        return Prediction(None, None, None, {}, "no hardware or model facts")
    plan = evaluate(hw, model, settings)
    return Prediction(
        plan.breakdown, plan.budget_gib, plan.fits, dict(plan.reasons), "", time_text(hw, settings)
    )


def time_text(hw, settings: TrainSettings) -> str:
    """'time: about 3 h 10 min (...)' for these settings on this (or the simulated) card."""
    from finetune_tui.engine.plan.run_time import time_summary

    model = inspect(settings.model.name_or_path)
    card = hw.card_name if hw is not None else None
    stats = dataset_stats(settings) if card is not None else None
    return "time: " + time_summary(model, settings, stats, card)["time_text"]


def disk_text(settings: TrainSettings) -> str:
    """'disk: up to 2.31 GiB: 3 checkpoints of ...', as `plan` says it (the run checks it
    against the output folder's free space before it starts)."""
    from finetune_tui.engine.plan.disk import disk_summary
    from finetune_tui.engine.plan.run_time import steps_of

    model = inspect(settings.model.name_or_path)
    steps = steps_of(settings, dataset_stats(settings))
    return "disk: up to " + disk_summary(model, settings, *steps)["disk_text"]


def recommend(
    hw, settings: TrainSettings, pinned: set[str] = frozenset()
) -> tuple[TrainSettings, dict[str, str]] | None:
    """The advisor's settings for this card, model and dataset; pinned fields stay as set."""
    from finetune_tui.engine.plan.advisor import advise

    model = inspect(settings.model.name_or_path)
    if hw is None:
        return None
    plan = advise(hw, model, settings, fixed=set(pinned), dataset_stats=dataset_stats(settings))
    return plan.settings, dict(plan.reasons)


def unavailable_here(hw, model) -> dict[str, str]:
    """'field=value' -> why it cannot run on this (or the simulated) machine, as plan says."""
    if hw is None or model is None:
        return {}
    from finetune_tui.engine.plan.candidates import unavailable_options

    return unavailable_options(hw, model)


# Token lengths the Dataset screen counted with the model's own tokenizer (in its worker,
# the model's files being here): the plan scores batching and time at them, as the run will
_COUNTED: dict[tuple, object] = {}


def dataset_key(settings: TrainSettings) -> tuple:
    """What a dataset's token lengths depend on: the data, its length limit, the objective
    (what the records train) and the model (its tokenizer counts)."""
    return (
        settings.dataset.model_dump_json(),
        settings.training.max_seq_length,
        settings.training.objective,
        settings.model.name_or_path,
    )


def _counted_key(settings: TrainSettings) -> tuple:
    """A count stands at any length limit: its lengths are whole (the planner cuts its
    sample at the limit it plans)."""
    data, _, objective, model = dataset_key(settings)
    return data, objective, model


def remember_counted(settings: TrainSettings, stats) -> None:
    _COUNTED[_counted_key(settings)] = stats


def dataset_stats(settings: TrainSettings):
    """Token lengths: the model's tokenizer's count where the Dataset screen made one, else
    estimated from the dataset (None when it cannot be read yet); read once per dataset,
    length and objective, not on every change of the form."""
    counted = _COUNTED.get(_counted_key(settings))
    if counted is not None:
        return counted
    t = settings.training
    return _stats(settings.dataset.model_dump_json(), t.max_seq_length, t.objective)


@functools.lru_cache(maxsize=8)
def _stats(dataset_json: str, max_seq_length: int, objective: str):
    """The objective picks the demo's data and which formats it reads."""
    from finetune_tui.engine.common.errors import FinetuneError
    from finetune_tui.engine.data.dataset import dataset_stats as stats

    training = {"max_seq_length": max_seq_length, "objective": objective}
    try:
        settings = TrainSettings.model_validate(
            {"dataset": json.loads(dataset_json), "training": training}
        )
    except ValueError:  # a dataset.format the objective does not train: no lengths yet
        return None
    try:
        return stats(settings)
    except FinetuneError:
        return None
