"""Ask a run that trains in another process (detached, another terminal) to save and stop.

The run's own handler turns SIGTERM into the Stop button's stop: a checkpoint and the
adapter after the current step (cli/headless.py; exit status 143).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from .errors import InputError
from .run_dir.pid import is_running, read_pid


def ask_run_to_stop(run_dir: Path) -> int | None:
    """SIGTERM to the process training in `run_dir`: its pid, or None when none is running.

    Only a live finetune-tui process is signalled, never whatever reused a stale pid.
    """
    pid = read_pid(run_dir)
    if pid is None or not is_running(run_dir):
        return None
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:  # it ended in between
        return None
    except PermissionError:
        raise InputError(f"{run_dir}: pid {pid} belongs to another user; not stopped") from None
    return pid
