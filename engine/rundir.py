"""Run directories: where a run's settings, metrics, checkpoints and adapter live.

Layout (documented in README):
    <run>/settings.yaml   resolved settings, reloadable with --preset
    <run>/metrics.jsonl   one event per line (engine.events)
    <run>/summary.json    final status, losses, timings, peak memory
    <run>/train.log       library output (C-level stdout/stderr during training)
    <run>/run.pid         process id of the training process (status = files + pid check)
    <run>/checkpoints/    Trainer checkpoints (adapter + optimizer + RNG)
    <run>/adapter/        the final LoRA adapter and tokenizer
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

from .errors import OutputExistsError
from .settings import TrainSettings

SETTINGS_FILE = "settings.yaml"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
LOG_FILE = "train.log"
PID_FILE = "run.pid"
ADAPTER_DIR = "adapter"
CHECKPOINTS_DIR = "checkpoints"


def data_dir() -> Path:
    """User data folder (runs live under it); FINETUNE_TUI_DATA_DIR overrides for tests."""
    override = os.environ.get("FINETUNE_TUI_DATA_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_data_dir("finetune-tui"))


def default_run_name(settings: TrainSettings) -> str:
    model = Path(settings.model.name_or_path.rstrip("/")).name or "model"
    model = re.sub(r"[^A-Za-z0-9._-]+", "-", model)
    return f"{model}-{time.strftime('%Y%m%d-%H%M%S')}"


def resolve_run_dir(settings: TrainSettings) -> Path:
    if settings.output.dir:
        return Path(settings.output.dir).expanduser()
    name = settings.output.run_name or default_run_name(settings)
    return data_dir() / "runs" / name


def prepare_run_dir(settings: TrainSettings) -> Path:
    """Create the run directory; refuse to reuse a non-empty one unless overwrite is set."""
    run_dir = resolve_run_dir(settings)
    if run_dir.exists() and not run_dir.is_dir():
        raise OutputExistsError(f"{run_dir}: exists and is not a directory")
    if run_dir.exists() and any(run_dir.iterdir()):
        if not settings.output.overwrite:
            raise OutputExistsError(
                f"{run_dir}: run directory exists; use --overwrite or another --output"
            )
        shutil.rmtree(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputExistsError(f"{run_dir}: cannot create run directory: {exc.strerror}") from None
    return run_dir


def write_json(path: Path, data: dict) -> None:
    """Write JSON atomically: a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
