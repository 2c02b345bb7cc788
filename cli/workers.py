"""A headless run on several processes: this process prepares the run directory, then
`accelerate launch` starts the workers (`finetune-tui --worker RUN_DIR`), each training its
rank; rank 0 writes the run directory and prints the progress lines.

Ctrl-C, SIGTERM and SIGHUP reach this process; it writes RUN_DIR/STOP_NOW, which every
worker reads after its step; the workers agree to stop at the same step and save a
checkpoint (engine/train/callbacks.py), however long that takes. The launcher itself is never
signalled: its agent would terminate the workers and kill them in the middle of a large
save. A second Ctrl-C ends every process of the launch at once (SIGTERM, then SIGKILL):
they are found by the token each carries in its environment, since accelerate starts every
worker in a session of its own. `--resume`, `runs` and `attach` see one run directory.
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

from finetune_tui.engine.common.errors import InputError
from finetune_tui.engine.common.safe_io import open_append, write_text_atomic
from finetune_tui.engine.launch.configs import CONFIG_FILE, launch_command, launch_files
from finetune_tui.engine.launch.environment import LAUNCH_TOKEN, own_launch_environment
from finetune_tui.engine.launch.processes import (
    ancestors,
    catches,
    end_processes,
    launch_problem,
    launch_token,
    launched_processes,
    launcher_pid,
    runs_own_program,
    signal_processes,
)
from finetune_tui.engine.launch.ranks import is_main_process
from finetune_tui.engine.runs.create import is_marked, undo_replacement
from finetune_tui.engine.runs.layout import (
    LOG_FILE,
    RUN_MARKER,
    SETTINGS_FILE,
    STOP_FILE,
    SUMMARY_FILE,
)
from finetune_tui.engine.runs.pid import is_running, read_pid, write_pid
from finetune_tui.engine.runs.summary import read_summary
from finetune_tui.engine.settings.preset import load_preset, save_preset
from finetune_tui.engine.settings.schema import TrainSettings
from finetune_tui.engine.train.run_control import (
    STOP_REQUEST_EXIT,
    discard_stop_request,
    request_stop,
    stop_file_problem,
)

from .headless import install_signal_handlers, say, train_here
from .main import ERROR_PREFIX
from .stop_signals import StopSignals


def launch_workers(run_dir: Path, settings: TrainSettings, resume: bool) -> int:
    """Start the run's workers through accelerate and wait; the exit code follows the run.
    Whatever signals arrive, no process of the launch outlives this call."""
    spread = settings.distributed
    guard = _SignalGuard(run_dir)  # from here on no signal finds the launch unguarded
    save_preset(settings, run_dir / SETTINGS_FILE)
    for path, text in launch_files(spread, run_dir, mixed_precision="no").items():
        write_text_atomic(path, text)
    config = run_dir / CONFIG_FILE
    write_pid(run_dir)  # never through a link
    say(
        f"run directory: {run_dir} ({spread.world_size} processes, {spread.strategy}; "
        f"library messages: {LOG_FILE})"
    )
    token = launch_token(run_dir)
    launched_at = time.time()
    code = None
    try:
        if not guard.signals.received:  # a signal came first: nothing to launch or save
            code = _run_launcher(run_dir, launch_command(run_dir, config, resume), token, guard)
    finally:
        end_processes(token, hurry=guard.signals.hurried)  # normally none is left by now
        discard_stop_request(run_dir)  # asked after the last step: not read
    if code is None or guard.signals.forced:
        undo_replacement(run_dir)  # ended before it started: an overwritten run comes back
        return guard.signals.exit_code(otherwise=STOP_REQUEST_EXIT)
    # rank 0 writes summary.json when the run finished or stopped as asked (the launcher's
    # own exit code is not 0 after a signal); an older summary is an earlier attempt's
    summary = read_summary(run_dir) if _written_since(run_dir, launched_at) else None
    if summary is not None and summary.status == "finished":
        return 0
    if summary is not None and summary.status == "stopped":
        return guard.signals.exit_code(otherwise=STOP_REQUEST_EXIT)
    say(_worker_error(run_dir, code), sys.stderr)
    undo_replacement(run_dir)  # failed before training: an overwritten run comes back
    return 1


def _run_launcher(run_dir: Path, command: list[str], token: str, guard: _SignalGuard) -> int:
    """accelerate's launcher until it ends; a forced stop ends every process of the launch
    (SIGTERM, then SIGKILL) and waits for them."""
    environment = {**own_launch_environment(token), "PYTHONUNBUFFERED": "1"}
    with os.fdopen(open_append(run_dir / LOG_FILE, "run log"), "ab") as log:
        launcher = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stderr=log,  # the launcher's own notices; rank 0's progress lines reach stdout
            start_new_session=True,  # a terminal's Ctrl-C reaches us, and we pass it on once
            env=environment,  # workers keep RANK ..., and carry the token that finds them
        )
    while True:
        try:
            return launcher.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            pass
        if guard.signals.forced:
            end_processes(token, hurry=guard.signals.hurried)
            _signal_group(launcher.pid, signal.SIGKILL)  # where /proc cannot find them
            return launcher.wait()
        if guard.signal_workers:  # STOP_NOW could not be written: ask each worker itself
            _ask_workers(launcher.pid, token, guard.asked)


def _ask_workers(launcher: int, token: str, asked: set[int]) -> None:
    """SIGTERM to each worker (a child of accelerate's launcher) once it handles it as a
    stop (earlier it would die of it: before its exec it still carries the launcher's
    handlers); one rank asked stops every rank at the same step."""
    for pid in launched_processes(token):
        if pid in asked or ancestors(pid)[:1] != [launcher]:
            continue
        if runs_own_program(pid, launcher) and catches(pid, signal.SIGTERM):
            asked.add(pid)
            signal_processes(signal.SIGTERM, [pid])


class _SignalGuard:
    """The stop policy (stop_signals) in the launching process. The first signal asks every
    worker to save and stop after its step through RUN_DIR/STOP_NOW (accelerate's launcher
    is never signalled: its agent would kill the workers in the middle of a large save), or
    each worker itself where STOP_NOW cannot be written. The Ctrl-C that ends the run at once
    ends every process of the launch; one more skips that end's grace period."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.signal_workers = False
        self.asked: set[int] = set()  # workers asked to stop by a signal of their own
        self.signals = StopSignals(self._ask, self._force)

    def _ask(self, name: str) -> None:
        say(f"{name}: every process saves and stops after this step")
        if not request_stop(self.run_dir, name):
            problem = stop_file_problem(self.run_dir) or "cannot be written"
            say(f"{self.run_dir / STOP_FILE}: {problem}; asking each process directly")
            self.signal_workers = True

    def _force(self) -> None:
        say("second interrupt: ending every process now (last complete checkpoint kept)")


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _written_since(run_dir: Path, moment: float) -> bool:
    try:
        return (run_dir / SUMMARY_FILE).stat().st_mtime >= moment
    except OSError:
        return False


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
    """One rank of the run: rank 0 prints progress lines, the others only train.

    A worker trains only inside the launch that prepared its folder (which checked that no
    live run uses it and that it is not finished); by hand, or in any other folder, it is
    one line and nothing is written."""
    run_dir = Path(args.worker)
    if not is_marked(run_dir):  # trains only where finetune-tui prepared a run (no link)
        raise InputError(f"{run_dir}: not a finetune-tui run directory (no {RUN_MARKER})")
    problem = launch_problem(run_dir)
    if problem:
        raise InputError(f"{run_dir}: {problem}; train with --preset or continue with --resume")
    _check_worker_folder(run_dir)
    settings = load_preset(run_dir / SETTINGS_FILE, saved_run=True)
    stop = threading.Event()
    quiet = not is_main_process()
    install_signal_handlers(stop, quiet=quiet)
    train_here(settings, run_dir, stop, resume=args.worker_resume, quiet=quiet)
    return 0  # stopped or finished: the launching process reads the outcome in summary.json


def _check_worker_folder(run_dir: Path) -> None:
    """The checks of --preset and --resume, again where the worker trains: no other live
    process trains there (its own launcher and fellow workers do), and it is not finished."""
    if is_running(run_dir):
        pid = read_pid(run_dir)
        token = os.environ.get(LAUNCH_TOKEN, "")
        if pid != launcher_pid() and pid not in launched_processes(token):
            raise InputError(f"{run_dir}: this run is still running (pid {pid})")
    summary = read_summary(run_dir)
    if summary is not None and summary.status == "finished":
        raise InputError(f"{run_dir}: already finished; nothing to train")
