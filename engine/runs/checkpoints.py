"""Which checkpoints can be resumed from.

transformers' `get_last_checkpoint` takes the highest-numbered folder without checking it
was fully written; a run killed during a save would then fail to resume. The Trainer
writes `trainer_state.json` last, after the adapter, optimizer, scheduler and RNG state,
and a finished save does not prove the files are still intact (a disk error, a stray
edit), so every candidate's files are checked: its trainer state parses, the files a
resume needs are there, torch archives are readable zips and safetensors headers parse.
A bad checkpoint is skipped with the file and the reason, and the previous one is used.

Its own state decides its place, not its folder name: `global_step` is a whole number (not
`true`, not negative) equal to the number in the folder's name, within the state's and the
run's `max_steps`; a LoRA checkpoint's rank matches the run's `lora.r`. Nothing in the
checkpoints folder is followed: a link named like a checkpoint is not one.

What a resume needs depends on who wrote the checkpoint: a LoRA adapter or a whole model
(full fine-tuning), and the optimizer state as the Trainer saves it alone or under DDP
(optimizer.pt), under FSDP (optimizer_0/, one file per rank) or under DeepSpeed (its own
global_stepN/ folder, named by `latest`, which holds the scheduler too).
"""

from __future__ import annotations

import math
import os
import re
import stat
import zipfile
from pathlib import Path

from ..common.errors import FinetuneError, InputError
from ..common.safe_io import read_json, read_text, safetensors_problem
from ..settings.schema import TrainSettings
from .layout import CHECKPOINTS_DIR, SETTINGS_FILE

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
# trainer_state.json numbers the Trainer reads back on resume (None allowed)
STATE_NUMBERS = ("epoch", "max_steps", "num_train_epochs", "train_batch_size", "save_steps")


def checkpoint_step(path: Path) -> int | None:
    match = _NAME.match(path.name)
    return int(match.group(1)) if match else None


def checkpoint_problem(path: Path, settings: TrainSettings | None = None) -> str | None:
    """Why this checkpoint cannot be resumed from ('file: reason'), or None if it can.

    With `settings` (the run's), its step must lie within `training.max_steps` and a LoRA
    checkpoint's rank must be `lora.r`: a resume would otherwise end at once or fail on
    mismatched shapes.
    """
    if not _is_real_dir(path):
        return f"{path}: not a folder (a link or a file); not a checkpoint of this run"
    try:
        state = read_json(path / "trainer_state.json", STATE_LIMIT, "trainer state")
    except InputError as exc:
        return str(exc)
    problem = _state_problem(path, state)
    if problem:
        return f"{path / 'trainer_state.json'}: {problem}"
    missing = _missing_for_resume(path)
    if missing:
        return missing
    for file in sorted(path.iterdir()):
        problem = _file_problem(file)
        if problem:
            return f"{file}: {problem}"
    return _settings_problem(path, state, settings) if settings is not None else None


def _state_problem(path: Path, state) -> str | None:
    """The step and the numbers the Trainer reads back, checked against each other."""
    if not isinstance(state, dict):
        return "not a JSON object"
    step = state.get("global_step")
    if type(step) is not int:  # bool is an int subclass: `true` is no step
        return f"global_step {_show(step)} is not a whole number"
    if step < 1:
        return f"global_step {step} is not a step of a run"
    named = checkpoint_step(path)
    if named is not None and step != named:
        return f"global_step {step} does not match the folder name {path.name}"
    for key in STATE_NUMBERS:
        value = state.get(key)
        if value is None:
            continue
        if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
            return f"{key} {_show(value)} is not a number of steps or epochs"
    if type(state.get("max_steps")) is int and step > state["max_steps"] > 0:
        return f"global_step {step} is beyond its max_steps {state['max_steps']}"
    if not isinstance(state.get("log_history", []), list):
        return "log_history is not a list"
    return None


def _settings_problem(path: Path, state: dict, settings: TrainSettings) -> str | None:
    """What the run's settings say this checkpoint must be (cheap: no tensor is read)."""
    limit = settings.training.max_steps  # None: epochs decide (the state's max_steps holds)
    if limit is not None and state["global_step"] > limit:
        return (
            f"{path / 'trainer_state.json'}: global_step {state['global_step']} is beyond "
            f"the run's training.max_steps {limit}"
        )
    epoch = state.get("epoch")
    if limit is None and epoch is not None and epoch > settings.training.epochs + 1e-6:
        return (
            f"{path / 'trainer_state.json'}: epoch {_show(epoch)} is beyond the run's "
            f"training.epochs {settings.training.epochs}"
        )
    lora = (path / "adapter_config.json").is_file()
    if settings.training.method == "lora" and (path / "config.json").is_file() and not lora:
        return f"{path}: holds a whole model; the run's settings train a LoRA adapter"
    if settings.training.method == "full" and lora:
        return f"{path}: holds a LoRA adapter; the run's settings train the whole model"
    if lora and settings.training.method == "lora":
        try:
            config = read_json(path / "adapter_config.json", STATE_LIMIT, "adapter config")
        except InputError as exc:
            return str(exc)
        rank = config.get("r") if isinstance(config, dict) else None
        if rank is not None and rank != settings.lora.r:
            return (
                f"{path / 'adapter_config.json'}: rank r={_show(rank)}; the run's settings "
                f"say lora.r={settings.lora.r}"
            )
        return _targets_problem(path, config, settings.lora.target_modules)
    return None


def _targets_problem(path: Path, config, wanted) -> str | None:
    """The checkpoint's adapted layers against lora.target_modules named in the settings
    ("auto" is resolved against the model only; a pattern string is Unsloth's)."""
    saved = config.get("target_modules") if isinstance(config, dict) else None
    if (
        wanted == "auto"
        or not isinstance(saved, list)
        or not all(isinstance(t, str) for t in saved)
    ):
        return None
    if {t.rsplit(".", 1)[-1] for t in wanted} == {t.rsplit(".", 1)[-1] for t in saved}:
        return None
    return (
        f"{path / 'adapter_config.json'}: LoRA on {', '.join(sorted(saved))}; the run's "
        f"settings say lora.target_modules [{', '.join(wanted)}]"
    )


def _show(value) -> str:
    text = repr(value) if not isinstance(value, bool) else str(value).lower()
    return text if len(text) <= 40 else text[:37] + "..."


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


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


def candidates(run_dir: Path) -> list[Path]:
    """Entries named like checkpoints, newest first by their number (links included: they
    are named and skipped by `checkpoint_problem`, never resumed from)."""
    folder = Path(run_dir) / CHECKPOINTS_DIR
    if not _is_real_dir(folder):
        return []
    found = [p for p in folder.iterdir() if checkpoint_step(p) is not None]
    return sorted(found, key=checkpoint_step, reverse=True)


def last_complete_checkpoint(
    run_dir: Path, skipped: list[str] | None = None, settings: TrainSettings | None = None
) -> Path | None:
    """Highest-step checkpoint that was fully written, is intact and fits the run's settings
    (read from its settings.yaml when not given).

    Each newer checkpoint passed over is appended to `skipped` as 'file: reason'.
    """
    if settings is None:
        settings = run_settings_or_none(run_dir)
    for path in candidates(run_dir):
        problem = checkpoint_problem(path, settings)
        if problem is None:
            return path
        if skipped is not None:
            skipped.append(problem)
    return None


def settings_mismatch(run_dir: Path, settings: TrainSettings) -> str | None:
    """When every intact checkpoint disagrees with the run's settings, the settings were
    changed: 'file: reason' of the newest, so a resume stops instead of starting over
    (whose checkpoint rotation would then delete the intact ones)."""
    newest = None
    for path in candidates(run_dir):
        if checkpoint_problem(path) is not None:
            continue  # damaged: it neither agrees nor disagrees
        state = read_json(path / "trainer_state.json", STATE_LIMIT, "trainer state")
        problem = _settings_problem(path, state, settings)
        if problem is None:
            return None  # one intact checkpoint agrees: the settings are the run's
        newest = newest or problem
    return newest


def run_settings_or_none(run_dir: Path) -> TrainSettings | None:
    """The run's own settings, or None when they cannot be read (the caller checks them)."""
    from ..settings.preset import load_preset

    try:
        return load_preset(Path(run_dir) / SETTINGS_FILE, saved_run=True)
    except FinetuneError:
        return None
