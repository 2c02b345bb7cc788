"""Stopping a run that trains in another process: only a live finetune-tui run is signalled."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from finetune_tui.engine.runs.layout import PID_FILE
from finetune_tui.engine.train.run_control import ask_run_to_stop

LOOKS_LIKE_A_RUN = "import time  # finetune-tui\nprint('ready', flush=True)\ntime.sleep(60)"


def start(*command: str) -> subprocess.Popen:
    """The process, once it runs its own program (its command line is readable)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "ready\n"
    return process


def stop(process: subprocess.Popen) -> None:
    process.kill()
    process.wait()
    process.stdout.close()


def test_no_pid_file_means_nothing_to_stop(tmp_path):
    assert ask_run_to_stop(tmp_path) is None


def test_a_live_run_gets_sigterm(tmp_path):
    run = start(sys.executable, "-c", LOOKS_LIKE_A_RUN)
    (tmp_path / PID_FILE).write_text(f"{run.pid}\n")
    try:
        assert ask_run_to_stop(tmp_path) == run.pid
        assert run.wait(timeout=30) == -signal.SIGTERM
    finally:
        stop(run)
    assert ask_run_to_stop(tmp_path) is None  # it has ended: nothing left to stop


@pytest.mark.parametrize("reused", [True, False])
def test_a_stale_pid_is_left_alone(tmp_path, reused):
    """A pid reused by another program, or one that names no process, is never signalled."""
    other = start("sh", "-c", "echo ready; exec sleep 60")
    try:
        pid = other.pid if reused else 2**22
        (tmp_path / PID_FILE).write_text(f"{pid}\n")
        assert ask_run_to_stop(tmp_path) is None
        assert other.poll() is None
    finally:
        stop(other)
