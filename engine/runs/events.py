"""The one event stream of a training run.

The runner emits these plain dataclasses through a single callback (`EventSink`); the
headless printer, the TUI's live panel, `metrics.jsonl` and the tests all consume the same
objects. `to_json()` is the line written to `metrics.jsonl` (schema documented in README).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from .summary import RunSummary


@dataclass
class Event:
    """Base: every event carries its kind and a wall-clock timestamp."""

    kind: str = field(init=False, default="event")
    time: float = field(default_factory=time.time, kw_only=True)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Started(Event):
    run_dir: str
    total_steps: int
    train_samples: int
    eval_samples: int
    model: str
    device: str
    trainable_params: int
    total_params: int
    steps_per_epoch: int | None = None
    predicted_peak_reserved_gib: float | None = None  # the planner's, for these settings (GPU)
    # the planner's speed for these settings on this card (GPU; train/run_speed.py)
    predicted_tokens_per_s: float | None = None  # real tokens/s, the whole machine
    predicted_wall_time_s: float | None = None  # the whole run
    tokens_per_s_at_peak: float | None = None  # at the cards' bf16 peak: measured / this = MFU
    speed_unpredicted: str | None = None  # why there is no predicted tokens/s
    speed_correction: float | None = None  # this machine's earlier runs' factor in the above
    kind: str = field(init=False, default="started")


@dataclass
class Step(Event):
    step: int
    total_steps: int
    epoch: float
    loss: float
    learning_rate: float
    grad_norm: float | None
    tokens_per_second: float
    samples_per_second: float
    elapsed_s: float
    eta_s: float | None
    memory_allocated_gib: float | None = None
    memory_reserved_gib: float | None = None
    memory_peak_gib: float | None = None
    tokens_seen: int | None = None  # real (non-padding) training tokens so far, every backend
    # preference objectives: the share of the step's pairs whose chosen answer earned the
    # higher reward, and the mean reward margin (TRL's rewards/accuracies, rewards/margins)
    reward_accuracy: float | None = None
    reward_margin: float | None = None
    kind: str = field(init=False, default="step")


@dataclass
class Eval(Event):
    step: int
    eval_loss: float
    exact_match: float | None = None
    reward_accuracy: float | None = None  # preference objectives, on the held-out pairs
    reward_margin: float | None = None
    kind: str = field(init=False, default="eval")


@dataclass
class Checkpoint(Event):
    step: int
    path: str
    reason: str  # "interval", "stop", "final", "trigger"
    kind: str = field(init=False, default="checkpoint")


@dataclass
class Notice(Event):
    """Something the user should see that is not a metric (backend choice, back-off)."""

    message: str
    level: str = "info"  # "info" | "warning"
    kind: str = field(init=False, default="notice")


@dataclass
class MemoryCheck(Event):
    """The plan checked on the GPU (engine/plan/self_check.py): the measured peak beside the
    predicted one for the batches trained so far, and what the run does about it."""

    step: int
    measured_gib: float
    predicted_gib: float  # the plan for the longest batch trained so far
    usable_gib: float  # what this process may reserve on its card
    projected_gib: float  # the peak projected at the longest batch
    band: float  # the planner's error band (0.065: 6.5 %)
    change: str | None = None  # the back-off, "micro-batch 8 -> 4, ..."; None: no change
    note: str | None = None  # nothing left to back off to
    level: str = "info"  # "warning" when over the band
    kind: str = field(init=False, default="memory_check")


@dataclass
class Finished(Event):
    """The run's end; `summary` is what summary.json holds, written as that same object."""

    status: str  # "finished" | "stopped"
    step: int
    total_steps: int
    final_loss: float | None
    elapsed_s: float
    adapter_path: str
    summary: RunSummary = field(default_factory=RunSummary)
    kind: str = field(init=False, default="finished")

    def __post_init__(self) -> None:
        if isinstance(self.summary, dict):  # read back from a metrics.jsonl line
            self.summary = RunSummary.from_json(self.summary)

    def to_json(self) -> dict:
        return {**asdict(self), "summary": self.summary.to_json()}


@dataclass
class Failed(Event):
    message: str
    step: int | None = None
    kind: str = field(init=False, default="error")


EventSink = Callable[[Event], None]

EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (Started, Step, Eval, Checkpoint, Notice, MemoryCheck, Finished, Failed)
}


def event_from_json(data: dict) -> Event:
    """Rebuild an event from a `metrics.jsonl` line (used by `attach` and tests)."""
    data = dict(data)
    cls = EVENT_TYPES[data.pop("kind")]
    return cls(**data)


def format_duration(seconds: float | None) -> str:
    """Elapsed / ETA as m:ss or h:mm:ss, the same in progress lines and the panel."""
    if seconds is None:
        return "?"
    hours, rest = divmod(int(round(seconds)), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
