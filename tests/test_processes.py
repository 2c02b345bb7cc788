"""No process outlives its run, a worker trains only inside its own launch, and a stop
through RUN_DIR/STOP_NOW is one documented exit code (issue 25, items 2, 3 and 10)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest
from conftest import (
    DEMO_PRESET,
    FEW_RECORDS,
    call_main,
    read_until,
    set_args,
    start_cli,
    start_live_run,
)
from test_distributed import TWO_PROCESSES
from test_nothing_lost import marked, one_line_error, tree

from finetune_tui.engine.launch.environment import LAUNCH_TOKEN
from finetune_tui.engine.launch.processes import _folder_key
from finetune_tui.engine.runs.status import run_status
from finetune_tui.engine.runs.summary import read_summary

STOP_CODES = {0, 130, 143}  # README: finished, stopped by Ctrl-C, by SIGTERM / SIGHUP
LONG = set_args(
    FEW_RECORDS,
    "training.max_steps=100000",
    "training.exact_match_samples=0",
    "training.logging_steps=1",
)
NAMES = {"INT": signal.SIGINT, "TERM": signal.SIGTERM, "HUP": signal.SIGHUP}


def processes_mentioning(text: str) -> dict[int, str]:
    """Live processes whose command line holds `text` (zombies have none)."""
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            try:
                cmdline = open(f"/proc/{name}/cmdline", "rb").read().replace(b"\0", b" ")
            except OSError:
                continue
            if text.encode() in cmdline:
                found[int(name)] = cmdline.decode(errors="replace")
    return found


def kill_all(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def signal_sequence(seed: int, names: str) -> list[tuple[float, int]]:
    """(delay before it, signal) for each name, delays random-ish within half a second."""
    rng = random.Random(seed)
    return [(rng.uniform(0.0, 0.5), NAMES[name]) for name in names.split()]


# when the first signal goes out: as the launch starts (workers still importing), once
# the workers have loaded the model, or while they train; then the sequence
SEQUENCES = [
    ("run directory:", "INT INT", False),
    ("step ", "INT INT", False),  # the reported case: twice, 50 ms apart
    ("step ", "TERM HUP INT", False),
    ("run directory:", "HUP TERM TERM", True),  # STOP_NOW taken: each worker is asked
]


@pytest.mark.parametrize(
    ("anchor", "names", "stop_file_taken"),
    SEQUENCES,
    ids=[f"{a.split()[0].strip(':')}-{n.replace(' ', '-')}" for a, n, _ in SEQUENCES],
)
@pytest.mark.xdist_group("launch")  # launches take turns: see pyproject addopts
def test_no_process_survives_any_sequence_of_signals_sent_to_a_two_process_run(
    tmp_path, anchor, names, stop_file_taken
):
    run_dir = tmp_path / "run"
    proc = start_cli(
        tmp_path, "--preset", str(DEMO_PRESET), "--output", str(run_dir), *LONG, *TWO_PROCESSES
    )
    try:
        read_until(proc, lambda line: line.startswith(anchor))
        if stop_file_taken:
            (run_dir / "STOP_NOW").mkdir()
        seed = sum(map(ord, anchor + names))
        for n, (delay, signum) in enumerate(signal_sequence(seed, names)):
            time.sleep(0.05 if names == "INT INT" and n else delay)
            proc.send_signal(signum)
        out, err = proc.communicate(timeout=120)
        left = processes_mentioning(str(run_dir))
        assert not left, left
        assert proc.returncode in STOP_CODES, (proc.returncode, out[-1500:], err[-1500:])
        assert "internal error" not in err and "Traceback" not in err
        assert run_status(run_dir) != "running"
        if stop_file_taken:  # every worker still saved and stopped, as asked
            assert proc.returncode == 143 and read_summary(run_dir).status == "stopped"
            assert (run_dir / "STOP_NOW").is_dir()  # not ours to remove
    finally:
        proc.kill()
        kill_all(processes_mentioning(str(run_dir)))


@pytest.mark.xdist_group("launch")  # launches take turns: see pyproject addopts
def test_workers_whose_launcher_is_killed_save_and_stop(tmp_path):
    """SIGKILL cannot be caught: the workers notice their launcher is gone, save and stop
    at their next step instead of training on, reparented to init."""
    run_dir = tmp_path / "run"
    proc = start_cli(
        tmp_path, "--preset", str(DEMO_PRESET), "--output", str(run_dir), *LONG, *TWO_PROCESSES
    )
    try:
        read_until(proc, lambda line: line.startswith("step "))
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 60
        while processes_mentioning(str(run_dir)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not processes_mentioning(str(run_dir))
        assert read_summary(run_dir).status == "stopped"
    finally:
        proc.stdout.close()
        proc.stderr.close()
        kill_all(processes_mentioning(str(run_dir)))


# --- the hidden worker entry --------------------------------------------------------------


def stopped_run(folder, status="stopped"):
    """A run folder finetune-tui made, with its settings and summary."""
    marked(folder)
    (folder / "settings.yaml").write_text(DEMO_PRESET.read_text())
    (folder / "summary.json").write_text(f'{{"status": "{status}"}}')
    return folder


def start_sleeper(*marks: str) -> subprocess.Popen:
    """A live process whose command line says finetune (what run.pid of a live run names)."""
    code = "import sys, time  # finetune-tui\nprint('ready', flush=True)\ntime.sleep(60)"
    process = subprocess.Popen([sys.executable, "-c", code, *marks], stdout=subprocess.PIPE)
    assert process.stdout.readline() == b"ready\n"
    return process


def worker_by_hand(cli, monkeypatch, run_dir, token: str | None):
    """`--worker RUN_DIR` with this launch token (None: none) in the environment."""
    monkeypatch.delenv(LAUNCH_TOKEN, raising=False)
    if token is not None:
        monkeypatch.setenv(LAUNCH_TOKEN, token)
    return cli("--worker", str(run_dir))


@pytest.mark.parametrize(
    ("case", "said"),
    [
        ("no token", "--worker is started by finetune-tui's own launch, not by hand"),
        ("garbage token", "--worker is started by finetune-tui's own launch, not by hand"),
        ("another folder", "--worker names another folder than its launch prepared"),
        ("launcher not an ancestor", "--worker outlived its launch"),
        ("finished", "already finished; nothing to train"),
        ("live", "this run is still running"),
    ],
)
def test_a_worker_trains_only_inside_the_launch_of_its_own_folder(
    cli, monkeypatch, tmp_path, case, said
):
    """`--worker DIR` by hand on a live detached run rewrote run.pid (then `runs` said
    interrupted and --overwrite replaced a live run); on a finished run it trained over
    it. Outside its own launch, or in a folder no launch may train in, it is one line,
    exit 2, and nothing in the folder changes."""
    run_dir = stopped_run(tmp_path / "run", "finished" if case == "finished" else "stopped")
    other = start_live_run(run_dir) if case == "live" else start_sleeper()
    try:
        ours = f"{os.getppid()}:{_folder_key(run_dir)}:0123abcd"  # pytest's parent: an ancestor
        token = {
            "no token": None,
            "garbage token": "x",
            "another folder": f"{os.getppid()}:{_folder_key(tmp_path)}:0123abcd",
            "launcher not an ancestor": f"{other.pid}:{_folder_key(run_dir)}:0123abcd",
        }.get(case, ours)
        before = tree(run_dir)
        result = worker_by_hand(cli, monkeypatch, run_dir, token)
        assert said in one_line_error(result)
        assert tree(run_dir) == before
    finally:
        other.kill()
        other.wait()


# --- RUN_DIR/STOP_NOW ------------------------------------------------------------------------


def test_a_stop_through_stop_now_is_143_and_a_leftover_never_stops_the_next_resume(cli, tmp_path):
    """One process stopped through STOP_NOW exited 1 (a launched one 143); a STOP_NOW left
    from an earlier attempt stopped the resume after one step; a folder named STOP_NOW was
    an internal error."""
    run_dir = tmp_path / "run"
    steps = set_args(
        "training.max_steps=8",
        "training.exact_match_samples=0",
        "training.logging_steps=1",
        FEW_RECORDS,
    )
    proc = start_cli(tmp_path, "--preset", str(DEMO_PRESET), "--output", str(run_dir), *steps)
    read_until(proc, lambda line: line.startswith("step "), count=2)
    (run_dir / "STOP_NOW").write_text("")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert read_summary(run_dir).status == "stopped" and not (run_dir / "STOP_NOW").exists()

    (run_dir / "STOP_NOW").mkdir()
    assert "STOP_NOW" in one_line_error(cli("--resume", str(run_dir)))
    (run_dir / "STOP_NOW").rmdir()
    (run_dir / "STOP_NOW").symlink_to(tmp_path / "elsewhere")
    assert "STOP_NOW" in one_line_error(cli("--resume", str(run_dir)))
    (run_dir / "STOP_NOW").unlink()

    (run_dir / "STOP_NOW").write_text("left by an earlier attempt\n")
    resumed = call_main("--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert read_summary(run_dir).status == "finished" and read_summary(run_dir).step == 8


LAUNCHER = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, lambda *a: None)  # as torch's elastic agent does
forked = os.fork()
if forked == 0:  # a child between fork and exec: the launcher's command line and handlers
    time.sleep(30)
    os._exit(0)
worker = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, lambda *a: None); "
    "print('ready', flush=True); time.sleep(30)"], stdout=subprocess.PIPE, text=True)
worker.stdout.readline()
print(forked, worker.pid, flush=True)
time.sleep(30)
"""


def test_a_child_not_yet_running_its_own_program_is_never_asked_to_stop(tmp_path):
    """The launcher asks only workers that handle SIGTERM as a stop. A child between fork
    and exec shows the launcher's handler, and a SIGTERM held through its exec kills it
    (a worker then died at -15 when a signal came while the launch was starting)."""
    from finetune_tui.workers import _ask_workers

    token = "42:key:secret"
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, LAUNCH_TOKEN: token},
    )
    try:
        forked, worker = map(int, launcher.stdout.readline().split())
        asked: set[int] = set()
        _ask_workers(launcher.pid, token, asked)
        assert asked == {worker}
    finally:
        launcher.kill()
        kill_all([forked, worker])
