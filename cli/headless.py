"""Headless training: `finetune-tui --preset FILE` over SSH, under nohup, in CI.

Plain lines, no TTY needed. SIGINT / SIGTERM / SIGHUP ask the runner to save and stop
(exit 130 / 143 / 143), as RUN_DIR/STOP_NOW does (143); a second Ctrl-C exits at once.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import threading
from contextlib import redirect_stdout
from pathlib import Path

from finetune_tui.engine.common.errors import InputError
from finetune_tui.engine.common.safe_io import encoding_problem, open_append
from finetune_tui.engine.runs.create import (
    reopen_run_dir,
)
from finetune_tui.engine.runs.event_text import describe, printable
from finetune_tui.engine.runs.events import Event
from finetune_tui.engine.runs.layout import LOG_FILE, SETTINGS_FILE
from finetune_tui.engine.runs.pid import (
    HANDED_CLAIM_ENV,
    claim_descriptor,
    claim_run,
    is_running,
    release_run,
    running_pid_text,
    write_pid,
)
from finetune_tui.engine.runs.status import run_status
from finetune_tui.engine.settings.preset import load_preset, save_preset
from finetune_tui.engine.settings.schema import TrainSettings
from finetune_tui.engine.train.run_control import STOP_REQUEST_EXIT, clear_stop_request

from .stop_signals import StopSignals

# Options that describe a new run; a resumed run keeps the settings it was started with.
NEW_RUN_OPTIONS = {
    "preset": "--preset",
    "overrides": "--set",
    "output": "--output",
    "overwrite": "--overwrite",
}


def run_headless(args: argparse.Namespace) -> int:
    try:
        return _run_headless(args)
    finally:
        release_run()  # the run folders this command claimed


def _run_headless(args: argparse.Namespace) -> int:
    if getattr(args, "worker_resume", False):  # hidden: only a launch's worker takes it
        raise InputError("--worker-resume belongs to the workers finetune-tui launches")
    if args.resume:
        _refuse_new_run_options(args)
        run_dir, settings = _existing_run(args.resume)
        if run_status(run_dir) == "finished":
            say(f"{run_dir}: already finished; nothing to resume")
            return 0
        if settings.distributed.launched:  # nothing is rewritten before this machine can run it
            from finetune_tui.engine.train.preflight import check_environment

            check_environment(settings)
        from finetune_tui.engine.train.disk_room import check_resume_room

        check_resume_room(settings, run_dir)
    else:
        settings = _settings_from_args(args)
        from finetune_tui.engine.train.start import start_run

        preset = (Path(args.preset),) if args.preset else ()
        run_dir = start_run(settings, overwrite=args.overwrite, inputs=preset)
        claim_run(run_dir)  # a --resume of it started meanwhile is refused
    write_pid(run_dir)  # the claimer, from here: never an earlier process's stale pid
    if args.resume:
        clear_stop_request(run_dir)  # an earlier attempt's STOP_NOW never stops this one
    if args.detach:
        return _detach(run_dir, settings)
    if settings.distributed.launched:
        from finetune_tui.workers import launch_workers

        return launch_workers(run_dir, settings, resume=bool(args.resume))

    stop = threading.Event()
    signals = install_signal_handlers(stop)
    stop_with_parent()
    say(f"run directory: {run_dir} (library messages: {LOG_FILE})")
    finished = train_here(settings, run_dir, stop, resume=bool(args.resume))
    if finished.status == "finished":
        if signals.received:
            say("the signal came after the last step: the run finished and its adapter is saved")
        from finetune_tui.engine.deliver.ship import keep_commands

        say(keep_commands(run_dir, settings))
        return 0
    return signals.exit_code(otherwise=STOP_REQUEST_EXIT)  # no signal: RUN_DIR/STOP_NOW


def train_here(settings: TrainSettings, run_dir: Path, stop, resume: bool, quiet=False):
    """Train in this process: progress lines on stdout, what libraries print in the run's
    log. A quiet process (a worker other than rank 0) prints nothing at all."""
    from finetune_tui.engine.train.fdcapture import captured_fds
    from finetune_tui.engine.train.runner import run_training

    progress = sys.stdout
    sink = (lambda event: None) if quiet else (lambda event: print_event(event, progress))
    fds = (1, 2) if quiet else (2,)
    with captured_fds(run_dir / LOG_FILE, enabled=True, fds=fds), redirect_stdout(sys.stderr):
        return run_training(settings, sink, stop=stop, run_dir=run_dir, resume=resume)


def _refuse_new_run_options(args: argparse.Namespace) -> None:
    given = [flag for name, flag in NEW_RUN_OPTIONS.items() if getattr(args, name, None)]
    if given:
        raise InputError(
            f"--resume continues a run with its own settings; {', '.join(given)} cannot be "
            "combined with it (start a new run instead)"
        )


def _settings_from_args(args: argparse.Namespace) -> TrainSettings:
    values = {}
    if args.output is not None:
        if not args.output.strip():
            raise InputError("--output: empty path; give a directory for the run")
        if encoding_problem(args.output):
            raise InputError(  # settings.yaml records it, as UTF-8 text
                f"--output {printable(args.output)}: the name holds bytes that are not UTF-8, "
                "which settings.yaml cannot record; choose a UTF-8 name"
            )
        values["output.dir"] = args.output
    return load_preset(args.preset, args.overrides, values)


def _existing_run(path: str) -> tuple[Path, TrainSettings]:
    """A run's own settings (including any batch size changed by OOM back-off)."""
    if not path.strip():
        raise InputError("--resume: empty path; give a run directory")
    run_dir = Path(path).expanduser()
    if not (run_dir / SETTINGS_FILE).is_file():
        raise InputError(f"{run_dir}: not a run directory (no {SETTINGS_FILE})")
    if is_running(run_dir):
        raise InputError(f"{run_dir}: this run is still running{running_pid_text(run_dir)}")
    claim_run(run_dir)  # from here on no other process resumes it (one started meanwhile: refused)
    return run_dir, reopen_run_dir(run_dir)  # no links where it writes, settings intact


def _detach(run_dir: Path, settings: TrainSettings) -> int:
    """Start `--resume RUN_DIR` in its own session; output goes to the run's log. The run
    folder's lock passes on to it (an inherited descriptor): it never looks stopped between
    this process's exit and the other's start, and no other `--resume` slips in there."""
    save_preset(settings, run_dir / SETTINGS_FILE)
    log = os.fdopen(open_append(run_dir / LOG_FILE, "run log"), "ab")  # never through a link
    claim = claim_descriptor(run_dir)
    process = subprocess.Popen(
        [sys.executable, "-m", "finetune_tui", "--resume", str(run_dir)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        pass_fds=(claim,),
        env={**os.environ, "PYTHONUNBUFFERED": "1", HANDED_CLAIM_ENV: str(claim)},
    )
    log.close()
    write_pid(run_dir, process.pid)
    release_run(run_dir)  # the background process holds the lock now
    say(str(run_dir))
    say(f"started in the background (pid {process.pid}); log: {run_dir / LOG_FILE}")
    say(f"watch it: finetune-tui attach {shlex.quote(str(run_dir))}")
    return 0


def install_signal_handlers(stop: threading.Event, quiet: bool = False) -> StopSignals:
    """The stop policy for a run in this process: the first signal sets `stop` (the runner
    saves after its step); the Ctrl-C that ends it at once leaves in the middle."""

    progress = sys.stdout  # the terminal: while a run trains, sys.stdout is its log

    def ask(name: str) -> None:
        stop.set()
        if not quiet:
            say(f"{name}: saving the adapter and stopping after this step", progress)

    def force() -> None:
        if not quiet:
            say("second interrupt: exiting now (last complete checkpoint kept)", progress)
        os._exit(130)

    return StopSignals(ask, force)


def stop_with_parent() -> None:
    """A run another finetune-tui process started for itself (plan --measure's candidates)
    stops, saving, as on SIGTERM, once that process is gone, however it went: nothing is
    left training for nobody. Only when the variable names this process's own parent (an
    inherited one names some other process and is ignored)."""
    import signal
    import time

    from finetune_tui.engine.train.measure import PARENT_ENV

    named = os.environ.pop(PARENT_ENV, "")
    parent = os.getppid()
    if named != str(parent):
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def say(line: str, stream=None) -> None:
    """Print one line; a vanished terminal (SSH dropped) must not kill the run."""
    try:
        print(printable(line), file=stream or sys.stdout, flush=True)  # names: escaped
    except (OSError, ValueError):
        pass


def print_event(event: Event, stream=None) -> None:
    line = describe(event)
    if line:
        say(line, stream)
