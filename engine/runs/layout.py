"""Where a run's settings, metrics, checkpoints and adapter live: names and paths only.

Layout (documented in README):
    <run>/settings.yaml   resolved settings, reloadable with --preset
    <run>/metrics.jsonl   one event per line (runs/events.py)
    <run>/summary.json    final status, losses, timings, peak memory (run_dir.summary)
    <run>/train.log       library output (C-level stdout/stderr during training)
    <run>/run.pid         process id of the training process (status = files + pid check)
    <run>/checkpoints/    Trainer checkpoints (adapter + optimizer + RNG)
    <run>/adapter/        the final LoRA adapter and tokenizer (written beside, renamed in)
    <run>/export/         train.py, the standalone script that reproduces the run
    <run>/.finetune-tui-run  marker: this folder is a run finetune-tui made
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from finetune_tui.engine.common.places import data_dir

from ..settings.schema import TrainSettings

SETTINGS_FILE = "settings.yaml"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
LOG_FILE = "train.log"
PID_FILE = "run.pid"
ADAPTER_DIR = "adapter"
ADAPTER_STAGING = ".adapter.saving"  # the final adapter while it is written (runs/adapter_save.py)
ADAPTER_REPLACED = ".adapter.replaced"  # the adapter it replaces, for the instant of the swap
CHECKPOINTS_DIR = "checkpoints"
EXPORT_DIR = "export"
TRIGGER_FILE = "CHECKPOINT_NOW"
STOP_FILE = "STOP_NOW"  # save and stop at the next step (how a launcher stops its workers)
RUN_MARKER = ".finetune-tui-run"  # written first: only folders carrying it are ever replaced

# What the product writes, appends, rotates or deletes in a run folder (the launch's config
# files are added by run_dir.create): each must be a plain file, each folder a real one
# holding no links, pipes or devices.
OWN_FILES = (
    RUN_MARKER,
    SETTINGS_FILE,
    METRICS_FILE,
    SUMMARY_FILE,
    LOG_FILE,
    PID_FILE,
    TRIGGER_FILE,
    STOP_FILE,
)
OWN_DIRS = (CHECKPOINTS_DIR, ADAPTER_DIR, EXPORT_DIR, ADAPTER_STAGING, ADAPTER_REPLACED)


def runs_root() -> Path:
    """Where runs go unless `output.dir` puts one elsewhere."""
    return data_dir() / "runs"


def default_run_name(settings: TrainSettings) -> str:
    model = Path(settings.model.name_or_path.rstrip("/")).name or "model"
    model = re.sub(r"[^A-Za-z0-9._-]+", "-", model)
    return f"{model}-{time.strftime('%Y%m%d-%H%M%S')}"


def resolve_run_dir(settings: TrainSettings) -> Path:
    if settings.output.dir:
        return Path(settings.output.dir).expanduser()
    name = settings.output.run_name or default_run_name(settings)
    return runs_root() / name
