"""The final adapter is written beside its place and renamed in.

A run ended while it writes (a second Ctrl-C, SIGKILL, a full disk) leaves the adapter the
folder had before, or none, never half of one: a resume then continues from the last
complete checkpoint, and merge, try and ship never read a torn adapter.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from .layout import ADAPTER_DIR, ADAPTER_REPLACED, ADAPTER_STAGING


def staging_dir(run_dir: Path) -> Path:
    """An empty folder to save into, made afresh (a leftover of a killed save is removed;
    a link planted under its name is removed, never followed)."""
    staging = Path(run_dir) / ADAPTER_STAGING
    _remove(staging)
    staging.mkdir()
    return staging


def put_in_place(run_dir: Path) -> Path:
    """Rename the saved adapter in; the one it replaces (a stopped run's) goes after."""
    run_dir = Path(run_dir)
    adapter, old = run_dir / ADAPTER_DIR, run_dir / ADAPTER_REPLACED
    _remove(old)
    if adapter.is_dir() and not adapter.is_symlink():
        os.rename(adapter, old)
    os.rename(run_dir / ADAPTER_STAGING, adapter)
    _remove(old)
    return adapter


def restore_adapter(run_dir: Path) -> None:
    """Before a run folder is written again: a save that was killed is cleared away, and
    an adapter caught between the two renames of `put_in_place` is put back."""
    run_dir = Path(run_dir)
    adapter, old = run_dir / ADAPTER_DIR, run_dir / ADAPTER_REPLACED
    if old.is_dir() and not old.is_symlink() and not os.path.lexists(adapter):
        os.rename(old, adapter)
    _remove(old)
    _remove(run_dir / ADAPTER_STAGING)


def _remove(path: Path) -> None:
    """Delete our own entry: a real folder with what it holds, anything else (a link) alone."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
