"""Ask a run that trains in another process (detached, another terminal) to save and stop.

The run's own handler turns SIGTERM into the Stop button's stop: a checkpoint and the
adapter after the current step (cli/headless.py; exit status 143). RUN_DIR/STOP_NOW asks
the same of every process of a run (how a launcher stops its workers, or `touch`).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from ..common.errors import InputError
from ..common.safe_io import entry_problem, write_text_atomic
from ..runs.layout import STOP_FILE
from ..runs.pid import is_running, read_pid


def ask_run_to_stop(run_dir: Path) -> int | None:
    """SIGTERM to the process training in `run_dir`: its pid, or None when none is running.

    run.pid is read only while another process holds the run folder's lock (runs/pid.py):
    a stale one, whatever process now has that pid, is never signalled.
    """
    pid = read_pid(run_dir) if is_running(run_dir) else None
    if pid is None:
        return None
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:  # it ended in between
        return None
    except PermissionError:
        raise InputError(f"{run_dir}: pid {pid} belongs to another user; not stopped") from None
    return pid


# --- RUN_DIR/STOP_NOW: a stop asked through the run folder ------------------------------
#
# A run stopped through STOP_NOW saved and stopped because something outside it asked, as
# `attach`'s Stop (SIGTERM) does: it exits with the same code (README, exit codes).
STOP_REQUEST_EXIT = 143


def stop_file_problem(run_dir: Path) -> str | None:
    """Why RUN_DIR/STOP_NOW cannot be a stop request (a folder, a link, a pipe), or None
    when it is absent or a plain file. Links are not followed."""
    path = Path(run_dir) / STOP_FILE
    return entry_problem(path) or ("is a folder" if path.is_dir() else None)


def clear_stop_request(run_dir: Path) -> None:
    """Before an attempt starts: an earlier attempt's STOP_NOW is removed, so it never
    stops this one; one that is not a plain file is ours neither to read nor to delete,
    and is one line (exit 2)."""
    path = Path(run_dir) / STOP_FILE
    problem = stop_file_problem(run_dir)
    if problem:
        raise InputError(
            f"{path}: {problem}, not a stop request; remove it, then run the command again"
        )
    path.unlink(missing_ok=True)


def discard_stop_request(run_dir: Path) -> None:
    """After an attempt: a stop asked after its last step was never read; remove it (a
    plain file only), and never fail the run's ending over it."""
    if stop_file_problem(run_dir) is None:
        try:
            (Path(run_dir) / STOP_FILE).unlink(missing_ok=True)
        except OSError:
            pass


def request_stop(run_dir: Path, reason: str) -> bool:
    """Write RUN_DIR/STOP_NOW: every process of the run saves and stops after its step.
    False when it cannot be written (something else holds the name, the disk refuses):
    the caller asks another way."""
    if stop_file_problem(run_dir) is not None:
        return False
    try:
        write_text_atomic(Path(run_dir) / STOP_FILE, f"{reason}\n")
    except OSError:
        return False
    return True
