"""A headless run on several processes: this process prepares the run directory, then
`accelerate launch` starts the workers (`finetune-tui --worker RUN_DIR`), each training its
rank; rank 0 writes the run directory and prints the progress lines.

Ctrl-C, SIGTERM and SIGHUP reach this process; it writes RUN_DIR/STOP_NOW, which every
worker reads after its step; the workers agree to stop at the same step and save a
checkpoint (engine/callbacks.py), however long that takes. The launcher itself is never
signalled: its agent would terminate the workers and kill them in the middle of a large
save. `--resume`, `runs` and `attach` see one run directory.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from finetune_tui.engine.errors import InputError
from finetune_tui.engine.launch import (
    CONFIG_FILE,
    is_main_process,
    launch_command,
    launch_files,
)
from finetune_tui.engine.launcher_env import own_launch_environment
from finetune_tui.engine.preset import load_preset, save_preset
from finetune_tui.engine.run_dir.create import undo_replacement
from finetune_tui.engine.run_dir.layout import (
    LOG_FILE,
    PID_FILE,
    RUN_MARKER,
    SETTINGS_FILE,
    STOP_FILE,
    SUMMARY_FILE,
)
from finetune_tui.engine.run_dir.summary import read_summary
from finetune_tui.engine.safe_io import write_text_atomic
from finetune_tui.engine.settings import TrainSettings

from .headless import EXIT_CODES, install_signal_handlers, say, train_here
from .main import ERROR_PREFIX


def launch_workers(run_dir: Path, settings: TrainSettings, resume: bool) -> int:
    """Start the run's workers through accelerate and wait; the exit code follows the run."""
    spread = settings.distributed
    save_preset(settings, run_dir / SETTINGS_FILE)
    for path, text in launch_files(spread, run_dir, mixed_precision="no").items():
        write_text_atomic(path, text)
    config = run_dir / CONFIG_FILE
    (run_dir / PID_FILE).write_text(f"{os.getpid()}\n")
    say(
        f"run directory: {run_dir} ({spread.world_size} processes, {spread.strategy}; "
        f"library messages: {LOG_FILE})"
    )
    (run_dir / STOP_FILE).unlink(missing_ok=True)  # an earlier attempt's, never this one's
    launched_at = time.time()
    with (run_dir / LOG_FILE).open("ab") as log:
        launcher = subprocess.Popen(
            launch_command(run_dir, config, resume),
            stdin=subprocess.DEVNULL,
            stderr=log,  # the launcher's own notices; rank 0's progress lines reach stdout
            start_new_session=True,  # a terminal's Ctrl-C reaches us, and we pass it on once
            env={**own_launch_environment(), "PYTHONUNBUFFERED": "1"},  # workers keep RANK...
        )
        received = _stop_on_signals(launcher, run_dir / STOP_FILE)
        code = launcher.wait()
    (run_dir / STOP_FILE).unlink(missing_ok=True)  # asked after the last step: not read
    # rank 0 writes summary.json when the run finished or stopped as asked (the launcher's
    # own exit code is not 0 after a signal); an older summary is an earlier attempt's
    summary = read_summary(run_dir) if _written_since(run_dir, launched_at) else None
    if summary is not None and summary.status == "finished":
        return 0
    if summary is not None and summary.status == "stopped":
        return EXIT_CODES[received[0]] if received else 143
    say(_worker_error(run_dir, code), sys.stderr)
    undo_replacement(run_dir)  # failed before training: an overwritten run comes back
    return 1


def _written_since(run_dir: Path, moment: float) -> bool:
    try:
        return (run_dir / SUMMARY_FILE).stat().st_mtime >= moment
    except OSError:
        return False


def _stop_on_signals(launcher: subprocess.Popen, stop_file: Path) -> list[int]:
    """The first signal asks every worker to save and stop (the stop file); a second
    Ctrl-C ends the workers at once, as it does a one-process run."""
    received: list[int] = []

    def stop(signum, frame):
        if received and signum == signal.SIGINT:
            say("second interrupt: exiting now (last complete checkpoint kept)")
            os.killpg(launcher.pid, signal.SIGKILL)
            return
        received.append(signum)
        say(f"{signal.Signals(signum).name}: every process saves and stops after this step")
        stop_file.write_text(f"{signal.Signals(signum).name}\n")

    for signum in EXIT_CODES:
        signal.signal(signum, stop)
    return received


def _worker_error(run_dir: Path, code: int) -> str:
    """The workers' own one-line error when they left one in the log, else where to look."""
    try:
        lines = (run_dir / LOG_FILE).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    errors = [line for line in lines if line.startswith(ERROR_PREFIX)]
    if errors:
        return errors[-1]
    return f"{ERROR_PREFIX}training processes failed (exit {code}); see {run_dir / LOG_FILE}"


def run_worker(args: argparse.Namespace) -> int:
    """One rank of the run: rank 0 prints progress lines, the others only train."""
    run_dir = Path(args.worker)
    if not (run_dir / RUN_MARKER).is_file():  # trains only where finetune-tui prepared a run
        raise InputError(f"{run_dir}: not a finetune-tui run directory (no {RUN_MARKER})")
    settings = load_preset(run_dir / SETTINGS_FILE, saved_run=True)
    stop = threading.Event()
    quiet = not is_main_process()
    install_signal_handlers(stop, quiet=quiet)
    train_here(settings, run_dir, stop, resume=args.worker_resume, quiet=quiet)
    return 0  # stopped or finished: the launching process reads the outcome in summary.json
