"""Which checkpoints can be resumed from.

transformers' `get_last_checkpoint` takes the highest-numbered folder without checking it
was fully written; a run killed during a save would then fail to resume. The Trainer
writes `trainer_state.json` last, after the adapter, optimizer, scheduler and RNG state,
and we mark a checkpoint `COMPLETE` once `on_save` has fired: a folder counts only if it
has the marker or a parseable trainer state plus the files a resume needs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .rundir import CHECKPOINTS_DIR

COMPLETE_MARKER = "COMPLETE"
_NAME = re.compile(r"^checkpoint-(\d+)$")
REQUIRED_FILES = ("adapter_config.json", "optimizer.pt", "scheduler.pt")


def checkpoint_step(path: Path) -> int | None:
    match = _NAME.match(path.name)
    return int(match.group(1)) if match else None


def is_complete(path: Path) -> bool:
    if (path / COMPLETE_MARKER).is_file():
        return True
    try:
        state = json.loads((path / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return "global_step" in state and all((path / name).is_file() for name in REQUIRED_FILES)


def mark_complete(path: Path) -> None:
    if path.is_dir():
        (path / COMPLETE_MARKER).write_text("ok\n")


def last_complete_checkpoint(run_dir: Path) -> Path | None:
    """Highest-step checkpoint that was fully written; half-written ones are skipped."""
    folder = Path(run_dir) / CHECKPOINTS_DIR
    if not folder.is_dir():
        return None
    candidates = [p for p in folder.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    for path in sorted(candidates, key=checkpoint_step, reverse=True):
        if is_complete(path):
            return path
    return None
