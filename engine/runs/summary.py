"""summary.json: how a run ended, its losses, timings and peak memory, as one typed record.

The runner writes it through `RunSummary`; `runs`, `--resume` and the final lines read it
back through the same model. Every field has a default so a summary written by an older
version (without the newer keys) still loads, and a field that does not hold what it
should reads as unknown instead of making the whole file unreadable.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ValidationError

from ..common.errors import InputError
from ..common.safe_io import read_json, write_text_atomic
from .layout import SUMMARY_FILE

SUMMARY_LIMIT = 16 * 2**20
# Measured on CUDA only: absent from the file (not null) on a CPU run.
CUDA_ONLY = (
    "peak_allocated_gib",
    "peak_reserved_gib",
    "cuda_allocator",
    "predicted_tokens_per_s",
    "predicted_wall_time_s",
    "predicted_peak_at_longest_gib",
)
STATUSES = ("finished", "stopped")  # what summary.json may say


class RunSummary(BaseModel):
    """One run's outcome; the field names are the keys of summary.json (README)."""

    status: str = "finished"  # "finished" | "stopped"
    step: int | None = None
    total_steps: int | None = None
    first_loss: float | None = None
    final_loss: float | None = None
    eval_loss: float | None = None
    exact_match_before: float | None = None
    exact_match_after: float | None = None
    objective: str = "sft"  # "sft" | "dpo" | "orpo" | "kto"
    # preference objectives, on the held-out split (TRL's eval rewards/accuracies, before
    # and after training, and rewards/margins after)
    preference_accuracy_before: float | None = None
    preference_accuracy_after: float | None = None
    reward_margin: float | None = None
    wall_time_s: float | None = None
    predicted_wall_time_s: float | None = None  # the planner's, for the whole run (GPU)
    tokens_per_s: float | None = None  # real tokens/s after the first step
    predicted_tokens_per_s: float | None = None  # the planner's, for the card it ran on
    train_samples: int | None = None
    device: str | None = None
    compute_dtype: str | None = None
    backend: str | None = None
    packing: bool | None = None
    method: str = "lora"  # "lora" | "full"
    processes: int = 1  # training processes (GPUs), all ranks together
    micro_batch_size: int | None = None  # after any out-of-memory back-off
    gradient_accumulation_steps: int | None = None
    gradient_checkpointing: str | None = None
    oom_backoffs: list[str] = []
    backend_changes: list[str] = []  # what the backend changed behind our back
    lora_target_modules: list[str] = []
    trainable_params: int | None = None
    adapter_path: str | None = None
    peak_allocated_gib: float | None = None
    peak_reserved_gib: float | None = None
    cuda_allocator: str | None = None  # PYTORCH_CUDA_ALLOC_CONF in force ("": the default)
    predicted_peak_reserved_gib: float | None = None  # the planner's, for the same settings
    # the planner's at the longest sample trained (GPU): the figure the peak is compared with
    predicted_peak_at_longest_gib: float | None = None
    export: str | None = None  # export/train.py, None when it could not be written

    def to_json(self) -> dict:
        """The summary.json object: the same keys, in the same order, every time."""
        data = self.model_dump()
        for key in CUDA_ONLY:
            if data[key] is None:
                del data[key]
        return data

    @classmethod
    def from_json(cls, data: dict) -> RunSummary:
        """Read a summary.json object; a key missing or of the wrong type reads as its default."""
        if not isinstance(data, dict):
            raise TypeError(f"a run summary is a JSON object, not {type(data).__name__}")
        try:
            return cls.model_validate(data, strict=True)
        except ValidationError as exc:
            bad = {error["loc"][0] for error in exc.errors() if error["loc"]}
        return cls.model_validate({k: v for k, v in data.items() if k not in bad}, strict=True)


def write_summary(run_dir: Path, summary: RunSummary) -> None:
    """Written atomically: a reader never sees half a summary."""
    text = json.dumps(summary.to_json(), indent=2, default=str) + "\n"
    write_text_atomic(run_dir / SUMMARY_FILE, text)


def read_summary(run_dir: Path) -> RunSummary | None:
    """summary.json, or None when it is missing, unreadable or not a JSON object."""
    return checked_summary(run_dir)[0]


def checked_summary(run_dir: Path) -> tuple[RunSummary | None, bool]:
    """summary.json read once, and whether it is damaged: present but not a summary (a key
    of the wrong type or an unknown status, which `from_json` would quietly default)."""
    try:
        data = read_json(run_dir / SUMMARY_FILE, SUMMARY_LIMIT, "run summary")
    except InputError:
        return None, (run_dir / SUMMARY_FILE).exists()
    if not isinstance(data, dict):
        return None, True
    try:
        RunSummary.model_validate(data, strict=True)
    except ValidationError:
        return RunSummary.from_json(data), True
    return RunSummary.from_json(data), data.get("status", "finished") not in STATUSES
