"""User-facing errors: one family, each with a message written for the user.

The CLI prints `str(error)` on one line and exits with `exit_code`; the TUI shows it
in a modal. Anything else that escapes is a bug and gets a traceback only with --debug.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path


class FinetuneError(Exception):
    """An error the user can act on. `exit_code` 2 = bad input, 1 = runtime failure."""

    exit_code = 1


class InputError(FinetuneError):
    """Bad usage or bad input: a preset, a dataset, a path, an override."""

    exit_code = 2


class SettingsError(InputError):
    """A preset or override does not validate against the settings schema."""


class DatasetError(InputError):
    """A dataset file cannot be read or its records do not fit the format."""


class ModelError(InputError):
    """A model folder or hub ID cannot be resolved or is not supported."""


class OutputExistsError(InputError):
    """An output (run directory, exported file) exists and replacing it was not asked for;
    `path` names it where the caller offers to replace it (the Export screen)."""

    def __init__(self, message: str, path: Path | None = None):
        super().__init__(message)
        self.path = path


class TrainingError(FinetuneError):
    """Training failed at run time (out of memory after back-off, library failure)."""


# Errors the operating system raises while a run writes its files: no space, no access.
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
_NO_ACCESS = {errno.EACCES, errno.EPERM, errno.EROFS}
LOW_DISK_BYTES = 64 * 2**20


def storage_failure(exc: BaseException, run_dir: Path) -> TrainingError | None:
    """A full disk or a refused write, said in one line, whatever library wrapped it.

    torch.save reports a full disk as a bare RuntimeError ("unexpected pos"), so when the
    chain holds no OSError the free space of the run directory decides.
    """
    for error in _chain(exc):
        if isinstance(error, OSError) and error.errno in _NO_SPACE:
            return TrainingError(f"{error.filename or run_dir}: no space left on device")
        if isinstance(error, OSError) and error.errno in _NO_ACCESS:
            return TrainingError(f"{error.filename or run_dir}: permission denied")
    try:
        free = shutil.disk_usage(run_dir).free
    except OSError:
        return None
    if free < LOW_DISK_BYTES:
        return TrainingError(f"{run_dir}: no space left on device ({free / 2**20:.0f} MiB free)")
    return None


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__
