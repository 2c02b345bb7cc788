"""Creating a run directory, and replacing an older run with `--overwrite` without losing it.

The marker file says a folder is ours; an overwritten run is moved aside, deleted once the
new run has started and put back if the start fails.

The marker is a regular file created exclusively: of two processes making the same folder
one wins and the other is told the run directory exists, and a link named like the marker
proves nothing. Before a run folder is written again (`--resume`, `--overwrite`), every
entry the product writes there must be a plain file or a real folder: a link, pipe or
device is named in one line and nothing is written.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from pathlib import Path

from ..common.errors import InputError, OutputExistsError, SettingsError
from ..common.places import data_dir
from ..common.safe_io import (
    SMALL_LIMIT,
    entry_problem,
    read_text,
    write_text_atomic,
    write_text_exclusive,
)
from ..launch.configs import CONFIG_FILE, DEEPSPEED_FILE
from ..settings.schema import TrainSettings
from .adapter_save import restore_adapter
from .checkpoints import last_complete_checkpoint, settings_mismatch
from .layout import (
    ADAPTER_DIR,
    LOG_FILE,
    METRICS_FILE,
    OWN_DIRS,
    OWN_FILES,
    PID_FILE,
    RUN_MARKER,
    SETTINGS_FILE,
    STOP_FILE,
    resolve_run_dir,
    runs_root,
)
from .pid import is_running, running_pid_text
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
    replacing = check_run_dir_free(settings, overwrite, inputs)
    if replacing:
        os.rename(run_dir, replaced_path(run_dir))
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        # exclusive: of two processes preparing this folder at once, one wins
        write_text_exclusive(run_dir / RUN_MARKER, _marker_text(run_dir, replacing))
        register_run(run_dir)
    except FileExistsError:
        raise OutputExistsError(
            f"{run_dir}: run directory exists (another run was just started there); "
            "use another --output"
        ) from None
    except OSError as exc:
        undo_replacement(run_dir)
        raise OutputExistsError(f"{run_dir}: cannot create run directory: {exc.strerror}") from None
    return run_dir


def check_run_dir_free(
    settings: TrainSettings, overwrite: bool = False, inputs: tuple[Path, ...] = ()
) -> bool:
    """Whether the run directory may be used: refuses (OutputExistsError) what
    prepare_run_dir would refuse, writing nothing; True when an older run is to be replaced.
    The headless run asks first, before any data is read."""
    run_dir = resolve_run_dir(settings)
    if run_dir.is_symlink() and overwrite:
        raise OutputExistsError(f"{run_dir}: is a symbolic link; finetune-tui will not replace it")
    if run_dir.is_symlink() and not run_dir.exists():  # it was "another run was just started"
        raise OutputExistsError(
            f"{run_dir}: a symbolic link to nothing ({os.readlink(run_dir)}); give a folder"
        )
    if run_dir.exists() and not run_dir.is_dir():
        raise OutputExistsError(f"{run_dir}: exists and is not a directory")
    holder = run_folder_holding(run_dir.resolve())
    if holder is not None:  # --overwrite of that run would delete this one with it
        raise OutputExistsError(
            f"{run_dir}: inside the run folder {holder}; give a folder outside every run"
        )
    recover_interrupted_replacement(run_dir.resolve())
    if not (run_dir.exists() and _has_entries(run_dir)):
        return False
    if not overwrite:
        raise OutputExistsError(
            f"{run_dir}: run directory exists; use --overwrite or another --output"
        )
    check_replaceable(run_dir, (*settings.input_paths(), *inputs))
    return True


def _marker_text(run_dir: Path, replacing: bool) -> str:
    """The marker says this folder is ours, and whether it waits to replace an older run."""
    text = f"finetune-tui run directory, created {time.ctime()}\n"
    if replacing:
        text += f"{REPLACES} {replaced_path(run_dir).name}\n"
    return text


def run_folder_holding(path: Path) -> Path | None:
    """The run folder `path` lies in (the nearest marked folder above it), or None."""
    return next((folder for folder in Path(path).parents if is_marked(folder)), None)


def _run_inside(folder: Path) -> Path | None:
    """A run folder somewhere below `folder` (links not followed), or None."""
    for root, _, files in os.walk(folder):
        if root != str(folder) and RUN_MARKER in files and is_marked(Path(root)):
            return Path(root)
    return None


def is_marked(folder: Path) -> bool:
    """The folder itself holds the marker as a regular file (a link named like it, to a
    marker elsewhere or to anything, proves nothing)."""
    try:
        return stat.S_ISREG(os.lstat(Path(folder) / RUN_MARKER).st_mode)
    except OSError:
        return False


def _is_replacing(run_dir: Path) -> bool:
    if not is_marked(run_dir):
        return False
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
    if old.is_dir() and not old.is_symlink() and is_marked(old):
        shutil.rmtree(old)
    write_text_atomic(run_dir / RUN_MARKER, _marker_text(run_dir, replacing=False))


def recover_interrupted_replacement(run_dir: Path) -> None:
    """A start that replaced a run and was killed before training (a second Ctrl-C) left
    the old run aside and a new folder of start files: the old run goes back, before
    anything else opens the folder (a later `--resume` started from step 0 and deleted the
    old run; `--overwrite` was refused for good)."""
    if _is_replacing(Path(run_dir)) and not is_running(run_dir):
        undo_replacement(run_dir)


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
    if not is_marked(run_dir):
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
            f"{run_dir}: its run is still going{running_pid_text(run_dir)}; not replaced"
        )
    nested = _run_inside(run_dir)
    if nested is not None:  # deleted with it, perhaps while it trains
        raise OutputExistsError(f"{run_dir}: holds another run, {nested}; not replaced")
    if replaced_path(run_dir).exists() or replaced_path(run_dir).is_symlink():
        raise OutputExistsError(
            f"{replaced_path(run_dir)}: an earlier replaced run is still there; "
            "delete or restore it first"
        )
    check_run_entries(run_dir)


def check_run_entries(run_dir: Path) -> None:
    """Every entry the product writes, appends, rotates or deletes in this run folder is a
    plain file or a real folder holding no link, pipe or device; else one line naming it.

    Libraries write the adapter, checkpoints and script through ordinary paths and rotate
    checkpoints with rmtree: a link there would carry those writes and deletions out of
    the run folder, onto the user's files.
    """
    run_dir = Path(run_dir)
    for name in (*OWN_FILES, CONFIG_FILE, DEEPSPEED_FILE):
        path = run_dir / name
        problem = entry_problem(path)
        if problem is None and path.is_dir():
            problem = "is a folder, where finetune-tui writes a file"
        if problem:
            raise OutputExistsError(_not_written(path, problem))
    for name in OWN_DIRS:
        path = run_dir / name
        problem = entry_problem(path)
        if problem is None and path.exists() and not path.is_dir():
            problem = "is a file, where finetune-tui keeps a folder"
        if problem:
            raise OutputExistsError(_not_written(path, problem))
        if path.is_dir():
            _check_tree(path)


def _check_tree(folder: Path) -> None:
    """No link, pipe or device anywhere under a folder the product writes into."""
    try:
        entries = list(os.scandir(folder))
    except OSError as exc:
        raise OutputExistsError(f"{folder}: cannot be read: {exc.strerror}") from None
    for entry in sorted(entries, key=lambda e: e.name):
        path = Path(entry.path)
        problem = entry_problem(path)
        if problem:
            raise OutputExistsError(_not_written(path, problem))
        if entry.is_dir(follow_symlinks=False):
            _check_tree(path)


def _not_written(path: Path, problem: str) -> str:
    return (
        f"{path}: {problem} inside the run folder; finetune-tui writes there only through "
        "plain files and folders it made (remove it, or start a new run)"
    )


def reopen_run_dir(run_dir: Path) -> TrainSettings:
    """Checks before a run folder is written again (`--resume`): its entries (above), and
    its own settings.yaml, which must name what the run trains; an empty or partial file
    is one line and is never rewritten with the defaults. Returns those settings."""
    from ..settings.preset import load_preset

    run_dir = Path(run_dir)
    recover_interrupted_replacement(run_dir.resolve())
    check_run_entries(run_dir)
    restore_adapter(run_dir)  # a save killed half way is cleared, never resumed over
    path = run_dir / SETTINGS_FILE
    settings = load_preset(path, saved_run=True)
    mismatch = settings_mismatch(run_dir, settings)
    if mismatch:
        raise SettingsError(
            f"{mismatch}; the run's settings.yaml was changed after its checkpoints were "
            "written (restore it, or start a new run)"
        )
    _refuse_replacing_the_trained_adapter(run_dir, settings)
    return settings


def _refuse_replacing_the_trained_adapter(run_dir: Path, settings: TrainSettings) -> None:
    """A run whose adapter was saved (training ended, or stopped twice over) but which has no
    checkpoint would train from step 0 and write its adapter over the trained one."""
    adapter = run_dir / ADAPTER_DIR
    if not adapter.is_dir() or not _has_entries(adapter):
        return
    if last_complete_checkpoint(run_dir, [], settings) is not None:
        return
    raise InputError(
        f"{adapter}: the run's trained adapter, and no checkpoint to resume from: resuming "
        "would train again from step 0 and write over it; copy it elsewhere first, or "
        "start a new run"
    )


def _has_entries(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return any(True for _ in entries)


def _only_start_files(folder: Path) -> bool:
    """What a run writes before training starts; anything else means keep the folder."""
    return all(entry.name in START_FILES for entry in folder.iterdir())
