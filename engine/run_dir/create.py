"""Creating a run directory, and replacing an older run with `--overwrite` without losing it.

The marker file says a folder is ours; an overwritten run is moved aside, deleted once the
new run has started and put back if the start fails.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from ..errors import InputError, OutputExistsError
from ..launch import CONFIG_FILE, DEEPSPEED_FILE
from ..safe_io import SMALL_LIMIT, read_text
from ..settings import TrainSettings
from .layout import (
    LOG_FILE,
    METRICS_FILE,
    PID_FILE,
    RUN_MARKER,
    SETTINGS_FILE,
    STOP_FILE,
    data_dir,
    resolve_run_dir,
    runs_root,
)
from .pid import is_running, read_pid
from .registry import register_run

REPLACES = "replaces:"  # marker line of a run waiting to replace an older one
# what a failed start leaves (a launch also writes its configs, and perhaps a stop request)
START_FILES = {
    RUN_MARKER,
    SETTINGS_FILE,
    METRICS_FILE,
    LOG_FILE,
    PID_FILE,
    STOP_FILE,
    CONFIG_FILE,
    DEEPSPEED_FILE,
}


def prepare_run_dir(
    settings: TrainSettings, overwrite: bool = False, inputs: tuple[Path, ...] = ()
) -> Path:
    """Create the run directory and mark it ours; refuse a non-empty one unless replaceable.

    `overwrite` is a command-line decision, never a setting. It replaces only a run
    directory finetune-tui made (see `check_replaceable`), and only by moving the old run
    aside: `finish_replacement` deletes it once the new run has started,
    `undo_replacement` puts it back if the start fails.
    """
    run_dir = resolve_run_dir(settings)
    if run_dir.is_symlink() and overwrite:
        raise OutputExistsError(f"{run_dir}: is a symbolic link; finetune-tui will not replace it")
    if run_dir.exists() and not run_dir.is_dir():
        raise OutputExistsError(f"{run_dir}: exists and is not a directory")
    if run_dir.exists() and _has_entries(run_dir):
        if not overwrite:
            raise OutputExistsError(
                f"{run_dir}: run directory exists; use --overwrite or another --output"
            )
        check_replaceable(run_dir, (*settings.input_paths(), *inputs))
        os.rename(run_dir, replaced_path(run_dir))
        replacing = True
    else:
        replacing = False
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_marker(run_dir, replacing)
        register_run(run_dir)
    except OSError as exc:
        undo_replacement(run_dir)
        raise OutputExistsError(f"{run_dir}: cannot create run directory: {exc.strerror}") from None
    return run_dir


def _write_marker(run_dir: Path, replacing: bool) -> None:
    """The marker says this folder is ours, and whether it waits to replace an older run."""
    text = f"finetune-tui run directory, created {time.ctime()}\n"
    if replacing:
        text += f"{REPLACES} {replaced_path(run_dir).name}\n"
    (run_dir / RUN_MARKER).write_text(text, encoding="utf-8")


def _is_replacing(run_dir: Path) -> bool:
    try:
        marker = read_text(run_dir / RUN_MARKER, SMALL_LIMIT, "run marker")
    except InputError:
        return False
    return f"{REPLACES} {replaced_path(run_dir).name}" in marker.splitlines()


def replaced_path(run_dir: Path) -> Path:
    """Where an overwritten run waits until its replacement has started."""
    return run_dir.with_name(f".{run_dir.name}.replaced")


def finish_replacement(run_dir: Path) -> None:
    """The new run has started: delete the run it replaced (a marked run, nothing else)."""
    run_dir = Path(run_dir)
    if not _is_replacing(run_dir):
        return
    old = replaced_path(run_dir)
    if old.is_dir() and not old.is_symlink() and (old / RUN_MARKER).is_file():
        shutil.rmtree(old)
    _write_marker(run_dir, replacing=False)


def undo_replacement(run_dir: Path) -> None:
    """The new run failed before it started: remove it and put the old run back.

    Only a run still waiting to replace another is undone, and only while it holds
    nothing but the files a failed start writes (no checkpoint, no adapter).
    """
    run_dir = Path(run_dir)
    old = replaced_path(run_dir)
    if not (_is_replacing(run_dir) and old.is_dir() and _only_start_files(run_dir)):
        return
    shutil.rmtree(run_dir)
    os.rename(old, run_dir)


def check_replaceable(run_dir: Path, inputs: tuple[Path, ...]) -> None:
    """--overwrite deletes only what finetune-tui created, never something still in use."""
    target = run_dir.resolve()
    if not (run_dir / RUN_MARKER).is_file():
        raise OutputExistsError(
            f"{run_dir}: not a finetune-tui run directory (no {RUN_MARKER}); "
            "--overwrite replaces only runs finetune-tui made; choose another --output"
        )
    protected = {Path("/"), Path.home().resolve(), data_dir().resolve()}
    protected |= {runs_root().resolve()}
    cwd = Path.cwd().resolve()
    if target in protected or target == cwd or target in cwd.parents:
        raise OutputExistsError(f"{run_dir}: will not replace this folder (home, / or in use)")
    for path in inputs:
        resolved = Path(path).expanduser().resolve()
        if resolved == target or target in resolved.parents:
            raise OutputExistsError(f"{run_dir}: holds {path}, an input of this run; not replaced")
    if is_running(run_dir):
        raise OutputExistsError(
            f"{run_dir}: its run is still going (pid {read_pid(run_dir)}); not replaced"
        )
    if replaced_path(run_dir).exists():
        raise OutputExistsError(
            f"{replaced_path(run_dir)}: an earlier replaced run is still there; "
            "delete or restore it first"
        )


def _has_entries(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return any(True for _ in entries)


def _only_start_files(folder: Path) -> bool:
    """What a run writes before training starts; anything else means keep the folder."""
    return all(entry.name in START_FILES for entry in folder.iterdir())
