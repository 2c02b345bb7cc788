"""Whether the run folder's disk holds what the run will save (engine/plan/disk.py), asked
before a new run's folder is made and before a run resumes."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from ..common.errors import FinetuneError, ModelError
from ..settings.schema import TrainSettings


def check_new_run_room(settings: TrainSettings, records: int, run_dir: Path) -> None:
    """A new run over `records` records (before its split): its saves fit, or InputError."""
    from ..plan.run_time import run_steps
    from ..recipe.examples import split_sizes

    d = settings.dataset
    trained, _ = split_sizes(records, d.eval_fraction, d.max_samples)
    # unpacked samples: more steps than packing gives, so more saves, never fewer
    steps, per_epoch = run_steps(settings, trained, settings.training.max_seq_length)
    _check(settings, run_dir, steps, per_epoch)


def check_resume_room(settings: TrainSettings, run_dir: Path) -> None:
    """A run resumed: its steps as its newest checkpoint's trainer state counted them."""
    from ..common.safe_io import read_json
    from ..runs.checkpoints import STATE_LIMIT, last_complete_checkpoint

    checkpoint = last_complete_checkpoint(run_dir, [], settings)
    if checkpoint is None:
        return  # it starts again from step 0: its dataset is read then
    try:
        state = read_json(checkpoint / "trainer_state.json", STATE_LIMIT, "trainer state")
        steps, epochs = int(state["max_steps"]), float(state.get("num_train_epochs") or 1)
    except (FinetuneError, KeyError, TypeError, ValueError, AttributeError, OverflowError):
        return  # a state the Trainer wrote differently: the resume itself reads it
    if steps > 0 and math.isfinite(epochs):
        _check(settings, run_dir, steps, max(1, math.ceil(steps / max(epochs, 1.0))))


def _check(settings: TrainSettings, run_dir: Path, steps: int, per_epoch: int) -> None:
    from ..inspect.models import inspect_model
    from ..plan import disk
    from ..plan.memory import DTYPE_BYTES
    from ..recipe.model import compute_dtype

    try:
        model = inspect_model(settings.model.name_or_path)
    except ModelError:  # a family the planner cannot read: nothing to size the saves by
        return
    word = DTYPE_BYTES[compute_dtype(settings.quantization.compute_dtype)]
    plan = dataclasses.replace(
        disk.disk_plan(model, settings, word, steps, per_epoch),
        download=_download_bytes(settings.model.name_or_path, model.params_total, run_dir),
    )
    disk.check_room(plan, run_dir, kept=_checkpoint_bytes(run_dir))


def _download_bytes(model_path: str, params: int, run_dir: Path) -> float:
    """A Hub model whose weights are not here yet is downloaded into the Hugging Face cache
    before the first step: on the run folder's disk, it takes from the same room (its 16-bit
    size: what nearly every published checkpoint holds)."""
    from huggingface_hub import constants

    from ..plan.disk import existing_parent
    from ..settings.schema import DEMO, is_local_model
    from .loading import weight_file_bytes

    if model_path == DEMO or is_local_model(model_path) or weight_file_bytes(model_path) > 0:
        return 0.0

    cache = existing_parent(Path(constants.HF_HUB_CACHE))
    if cache.stat().st_dev != existing_parent(run_dir).stat().st_dev:
        return 0.0
    return 2.0 * params


def _checkpoint_bytes(run_dir: Path) -> float:
    """Bytes of the checkpoints a run folder holds already (none for a new run)."""
    from ..runs.layout import CHECKPOINTS_DIR

    folder = run_dir / CHECKPOINTS_DIR
    if not folder.is_dir():
        return 0.0
    return float(
        sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())
    )
