"""User-facing errors: one family, each with a message written for the user.

The CLI prints `str(error)` on one line and exits with `exit_code`; the TUI shows it
in a modal. Anything else that escapes is a bug and gets a traceback only with --debug.
"""

from __future__ import annotations


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
    """The run directory exists and --overwrite was not given."""


class TrainingError(FinetuneError):
    """Training failed at run time (out of memory after back-off, library failure)."""
