"""Which checkpoints can be resumed from.

transformers' `get_last_checkpoint` takes the highest-numbered folder without checking it
was fully written; a run killed during a save would then fail to resume. The Trainer
writes `trainer_state.json` last, after the adapter, optimizer, scheduler and RNG state,
and we mark a checkpoint `COMPLETE` once `on_save` has fired. The marker says the save
finished; it does not prove the files are still intact (a disk error, a stray edit), so
every candidate's files are checked as well: its trainer state parses, the files a resume
needs are there, torch archives are readable zips and safetensors headers parse. A bad
checkpoint is skipped with the file and the reason, and the previous one is used.

What a resume needs depends on who wrote the checkpoint: a LoRA adapter or a whole model
(full fine-tuning), and the optimizer state as the Trainer saves it alone or under DDP
(optimizer.pt), under FSDP (optimizer_0/, one file per rank) or under DeepSpeed (its own
global_stepN/ folder, named by `latest`, which holds the scheduler too).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from ..errors import InputError
from ..safe_io import read_json, read_text, safetensors_problem
from .layout import CHECKPOINTS_DIR

COMPLETE_MARKER = "COMPLETE"
_NAME = re.compile(r"^checkpoint-(\d+)$")
# Each way the weights are saved, and the file that must come with it.
WEIGHTS = (
    ("adapter_model.safetensors", "adapter_config.json"),  # LoRA
    ("adapter_model.bin", "adapter_config.json"),
    ("model.safetensors", "config.json"),  # full fine-tuning
    ("model.safetensors.index.json", "config.json"),
    ("pytorch_model_fsdp_0", None),  # FSDP's sharded state dict
    ("pytorch_model_fsdp.bin", None),
)
OPTIMIZER_STATE = ("optimizer.pt", "optimizer.bin", "optimizer_0")
SCHEDULER_FILE = "scheduler.pt"
DEEPSPEED_LATEST = "latest"  # DeepSpeed's pointer to its global_stepN/ folder
STATE_LIMIT = 64 * 2**20


def checkpoint_step(path: Path) -> int | None:
    match = _NAME.match(path.name)
    return int(match.group(1)) if match else None


def checkpoint_problem(path: Path) -> str | None:
    """Why this checkpoint cannot be resumed from ('file: reason'), or None if it can."""
    try:
        state = read_json(path / "trainer_state.json", STATE_LIMIT, "trainer state")
    except InputError as exc:
        return str(exc)
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
        return f"{path / 'trainer_state.json'}: no global_step"
    missing = _missing_for_resume(path)
    if missing:
        return missing
    for file in sorted(path.iterdir()):
        problem = _file_problem(file)
        if problem:
            return f"{file}: {problem}"
    return None


def _missing_for_resume(path: Path) -> str | None:
    """'file: missing' for the first thing a resume would read that is not there."""
    weights = next(((w, c) for w, c in WEIGHTS if (path / w).exists()), None)
    if weights is None:
        return f"{path}: missing the weights (adapter_model.safetensors or model.safetensors)"
    if weights[1] is not None and not (path / weights[1]).is_file():
        return f"{path / weights[1]}: missing"
    if (path / DEEPSPEED_LATEST).is_file():
        return _deepspeed_problem(path)
    if not any((path / name).exists() for name in OPTIMIZER_STATE):
        return f"{path / OPTIMIZER_STATE[0]}: missing"
    if not (path / SCHEDULER_FILE).is_file():
        return f"{path / SCHEDULER_FILE}: missing"
    return None


def _deepspeed_problem(path: Path) -> str | None:
    """DeepSpeed's `latest` names its folder of optimizer, scheduler and model states."""
    try:
        tag = read_text(path / DEEPSPEED_LATEST, 256, "DeepSpeed tag").strip()
    except InputError as exc:
        return str(exc)
    folder = path / tag
    if not tag or "/" in tag or not folder.is_dir():
        return f"{path / DEEPSPEED_LATEST}: names no folder here ({tag!r})"
    if not any(folder.glob("*optim_states.pt")):
        return f"{folder}: missing the optimizer states"
    for file in sorted(folder.iterdir()):
        problem = _file_problem(file)
        if problem:
            return f"{file}: {problem}"
    return None


def _file_problem(file: Path) -> str | None:
    if not file.is_file():
        return None
    if file.suffix in (".pt", ".pth", ".bin"):
        return None if zipfile.is_zipfile(file) else "not a readable torch archive"
    if file.suffix == ".safetensors":
        return safetensors_problem(file)
    if file.suffix == ".json":
        try:
            read_json(file, STATE_LIMIT)
        except InputError:
            return "invalid JSON"
    return None


def is_complete(path: Path) -> bool:
    return checkpoint_problem(path) is None


def mark_complete(path: Path) -> None:
    if path.is_dir():
        (path / COMPLETE_MARKER).write_text("ok\n")


def last_complete_checkpoint(run_dir: Path, skipped: list[str] | None = None) -> Path | None:
    """Highest-step checkpoint that was fully written and is intact.

    Each newer checkpoint passed over is appended to `skipped` as 'file: reason'.
    """
    folder = Path(run_dir) / CHECKPOINTS_DIR
    if not folder.is_dir():
        return None
    candidates = [p for p in folder.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    for path in sorted(candidates, key=checkpoint_step, reverse=True):
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        if skipped is not None:
            skipped.append(problem)
    return None
