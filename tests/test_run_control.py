"""Stopping a run that trains in another process: only a live finetune-tui run is signalled.

A run is alive while a process holds its folder's lock; run.pid only says which pid to
signal. A stale run.pid (a double Ctrl-C, a reused pid) naming any process, even one whose
command line says finetune, never makes a run look alive, and is never signalled.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import (
    DEMO_PRESET,
    FEW_RECORDS,
    copy_finished_run,
    start_live_run,
    stop_live_run,
)

from finetune_tui.engine.runs.layout import PID_FILE
from finetune_tui.engine.runs.pid import claim_run, is_running, release_run
from finetune_tui.engine.runs.status import run_status
from finetune_tui.engine.train.run_control import ask_run_to_stop


def start(*command: str) -> subprocess.Popen:
    """The process, once it runs its own program (its command line is readable)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "ready\n"
    return process


def stop(process: subprocess.Popen) -> None:
    process.kill()
    process.wait()
    process.stdout.close()


def locked_elsewhere(folder) -> bool:
    """What another process sees: the folder's lock is held (a fresh descriptor's try fails)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_no_pid_file_means_nothing_to_stop(tmp_path):
    assert ask_run_to_stop(tmp_path) is None


def test_a_live_run_gets_sigterm(tmp_path):
    run = start_live_run(tmp_path)
    try:
        assert is_running(tmp_path) and run_status(tmp_path) == "running"
        assert ask_run_to_stop(tmp_path) == run.pid
        assert run.wait(timeout=30) == -signal.SIGTERM
    finally:
        stop_live_run(run)
    assert ask_run_to_stop(tmp_path) is None  # it has ended: nothing left to stop


SLEEPS = "import time\nprint('ready', flush=True)\ntime.sleep(60)"
STALE = {
    # what a tester left behind: a program named like ours, and an editor on a preset
    "named finetune": ("bash", "-c", "echo ready; exec -a finetune-fake sleep 60"),
    "vim finetune.yaml": (sys.executable, "-c", SLEEPS, "vim", "finetune.yaml"),
    "no such process": ("sh", "-c", "echo ready; exec sleep 60"),
}


@pytest.mark.parametrize("case", sorted(STALE))
def test_a_stale_pid_is_left_alone(tmp_path, case):
    """A run.pid naming a process that holds no lock on the folder (a pid reused by another
    program, even one whose command line says finetune, or one that names no process): the
    run is not running, and nothing is signalled."""
    other = start(*STALE[case])
    try:
        pid = 2**22 if case == "no such process" else other.pid
        (tmp_path / PID_FILE).write_text(f"{pid}\n")
        assert not is_running(tmp_path) and run_status(tmp_path) != "running"
        assert ask_run_to_stop(tmp_path) is None
        assert other.poll() is None
    finally:
        stop(other)


def test_another_runs_process_in_a_stale_pid_is_left_alone(tmp_path):
    """run.pid names a live run's process, which holds the lock of its own folder only."""
    (tmp_path / "other").mkdir()
    (tmp_path / "mine").mkdir()
    other = start_live_run(tmp_path / "other")
    try:
        (tmp_path / "mine" / PID_FILE).write_text(f"{other.pid}\n")
        assert not is_running(tmp_path / "mine") and is_running(tmp_path / "other")
        assert ask_run_to_stop(tmp_path / "mine") is None
        assert other.poll() is None
    finally:
        stop_live_run(other)


def test_a_claim_is_taken_once_and_is_this_processs_own(tmp_path, monkeypatch):
    """Claimed twice in one process (the headless command, then its runner): no second
    flock, which would conflict with the first; this process's own run is not 'running'."""
    try:
        assert claim_run(tmp_path) is True
        monkeypatch.chdir(tmp_path.parent)
        assert claim_run(Path(tmp_path.name)) is False  # the same folder, spelled otherwise
        assert locked_elsewhere(tmp_path) and not is_running(tmp_path)
    finally:
        release_run(tmp_path)
    assert not locked_elsewhere(tmp_path)


def test_the_wizards_in_process_run_holds_the_lock_while_it_trains(tmp_path):
    """The wizard trains in its own process: without the lock its run looked stopped to
    `runs`, and a --resume of it trained alongside. It releases the lock when the run ends
    (the wizard lives on)."""
    from finetune_tui.engine.settings.preset import load_preset
    from finetune_tui.engine.train.runner import run_training

    settings = load_preset(
        DEMO_PRESET, ["training.max_steps=2", "training.exact_match_samples=0", FEW_RECORDS]
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    stop, held = threading.Event(), []

    def sink(event):
        if event.kind == "step":
            held.append(locked_elsewhere(run_dir))
            stop.set()

    assert run_training(settings, sink, stop, run_dir=run_dir).status == "stopped"
    assert held and all(held)  # every step it trained, the folder was locked
    assert not locked_elsewhere(run_dir) and not (run_dir / PID_FILE).exists()


def test_a_stale_pid_neither_lists_a_run_as_running_nor_blocks_its_resume(
    cli, finished_template, tmp_path
):
    """run.pid left naming `exec -a finetune-fake sleep`: `runs` listed the run running and
    --resume refused it, for as long as that process lived."""
    run = copy_finished_run(finished_template, tmp_path / "data" / "runs" / "tiny")
    fake = start("bash", "-c", "echo ready; exec -a finetune-fake sleep 60")
    try:
        (run / PID_FILE).write_text(f"{fake.pid}\n")
        listed = cli("runs", "--json")
        assert '"status": "finished"' in listed.stdout, listed.stdout
        resumed = cli("--resume", str(run))
        assert resumed.returncode == 0 and "already finished" in resumed.stdout, resumed
        assert fake.poll() is None
    finally:
        stop(fake)


def test_a_live_run_whose_pid_is_not_written_yet_is_named_without_one(tmp_path):
    """A run that has just taken the lock has no run.pid yet: a resume refused then said
    "still running (pid None)"."""
    from finetune_tui.engine.runs.pid import running_pid_text

    holder = start_live_run(tmp_path)
    try:
        assert running_pid_text(tmp_path) == f" (pid {holder.pid})"
        (tmp_path / PID_FILE).unlink()
        assert is_running(tmp_path) and running_pid_text(tmp_path) == ""
    finally:
        stop_live_run(holder)
