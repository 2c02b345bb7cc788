"""Starting a new run, the same way from every front end: the output folder first (before
any data is read), then every input, and only then the run folder is made."""

from __future__ import annotations

from pathlib import Path

from ..runs.create import check_run_dir_free, prepare_run_dir
from ..settings.schema import TrainSettings
from .preflight import check_run_inputs
from .run_control import clear_stop_request


def start_run(
    settings: TrainSettings, overwrite: bool = False, inputs: tuple[Path, ...] = ()
) -> Path:
    """The new run's folder, made once every check passed; nothing is written before.

    `inputs`: files the run reads that an overwrite must never replace (its preset).
    """
    check_run_dir_free(settings, overwrite, inputs)  # a refusal costs no dataset read
    check_run_inputs(settings)
    run_dir = prepare_run_dir(settings, overwrite=overwrite, inputs=inputs)
    clear_stop_request(run_dir)  # a STOP_NOW planted before the start never stops it
    return run_dir
