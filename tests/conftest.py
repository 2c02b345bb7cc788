"""Shared fixtures: every test gets private cache/data/config folders, never the user's."""

from __future__ import annotations

import functools
import io
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from finetune_tui.tui import planning

REPO = Path(__file__).resolve().parent.parent
DEMO_PRESET = REPO / "presets" / "demo.yaml"

# No network, ever: set before any test module is collected, since huggingface_hub reads
# these once, when it is first imported (a module-level import during collection).
os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")

# One compute thread per process, this one and every process a test starts: the suite runs
# on as many pytest-xdist workers as there are CPUs, and torch's default (a thread per core
# in each process, spinning while it waits) made two workers slower than one. Set before
# torch is first imported, which reads it then.
os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

# One cache for the whole session (the demo model is built once), private to the tests.
_SESSION_CACHE = Path(os.environ.get("PYTEST_FINETUNE_CACHE", "/tmp/finetune-tui-test-cache"))


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("FINETUNE_TUI_CACHE_DIR", str(_SESSION_CACHE))
    monkeypatch.setenv("FINETUNE_TUI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FINETUNE_TUI_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    # what one wizard counted with a tokenizer stays with that test (one app a process)
    monkeypatch.setattr(planning, "_COUNTED", {})
    yield


def cli_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a `finetune-tui` subprocess: offline, private folders, unbuffered."""
    env = dict(os.environ)
    env.update(
        FINETUNE_TUI_CACHE_DIR=str(_SESSION_CACHE),
        FINETUNE_TUI_DATA_DIR=str(tmp_path / "data"),
        FINETUNE_TUI_CONFIG_DIR=str(tmp_path / "config"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def set_args(*pairs: str) -> list[str]:
    """`--set KEY=VALUE` for each pair, as a user types them."""
    return [arg for pair in pairs for arg in ("--set", pair)]


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "finetune_tui", *args]


def run_cli(tmp_path: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`finetune-tui ARGS` to the end, no terminal, output captured."""
    return subprocess.run(
        cli_command(*args),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=cli_env(tmp_path),
        timeout=timeout,
    )


# Python's own filters for a script run as `python -m`: what a user's terminal would show.
_DEFAULT_WARNING_FILTERS = (
    ("default", DeprecationWarning, "__main__"),
    ("ignore", DeprecationWarning, None),
    ("ignore", PendingDeprecationWarning, None),
    ("ignore", ImportWarning, None),
    ("ignore", ResourceWarning, None),
)


def call_main(*args: str) -> subprocess.CompletedProcess:
    """`finetune-tui ARGS` through main() in this process: where no process boundary is
    under test (a subprocess pays seconds of imports each time). Returns what run_cli
    returns; argparse's SystemExit becomes the exit code, as it would for a process, and
    any warning Python would print is on stderr as it would be. stdin is empty, as
    run_cli's; the signal handlers a run installs are put back."""
    import signal
    import warnings
    from contextlib import redirect_stderr, redirect_stdout

    from finetune_tui.main import main

    out, err = io.StringIO(), io.StringIO()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    stdin, sys.stdin = sys.stdin, io.StringIO()
    try:
        with warnings.catch_warnings(record=True) as shown:
            warnings.resetwarnings()
            for action, category, module in _DEFAULT_WARNING_FILTERS:
                warnings.filterwarnings(action, category=category, module=module or "")
            try:
                with redirect_stdout(out), redirect_stderr(err):
                    code = main(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        sys.stdin = stdin
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    stderr = err.getvalue() + "".join(
        warnings.formatwarning(w.message, w.category, w.filename, w.lineno) for w in shown
    )
    return subprocess.CompletedProcess(["finetune-tui", *args], code, out.getvalue(), stderr)


@pytest.fixture
def cli():
    """call_main, as a fixture: refusal tests and runs that need no process of their own."""
    return call_main


# What a training process does to its run folder, and no more: holds its lock, then waits.
HOLDS_THE_LOCK = (
    "import fcntl, os, sys, time\n"
    "fcntl.flock(os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY), fcntl.LOCK_EX)\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


def start_live_run(run_dir: Path) -> subprocess.Popen:
    """A process that trains in `run_dir` as far as anyone can tell: it holds the folder's
    lock, and run.pid names it. The caller kills it (stop_live_run)."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDS_THE_LOCK, str(run_dir)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline() == "ready\n"
    (Path(run_dir) / "run.pid").write_text(f"{process.pid}\n")
    return process


def stop_live_run(process: subprocess.Popen) -> None:
    process.kill()
    process.wait()
    process.stdout.close()


def start_cli(tmp_path: Path, *args: str, **popen) -> subprocess.Popen:
    """`finetune-tui ARGS` in the background, its output readable line by line."""
    return subprocess.Popen(
        cli_command(*args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(tmp_path),
        **popen,
    )


def read_until(proc: subprocess.Popen, wanted, count: int = 1) -> None:
    """Read progress lines until `wanted(line)` has held `count` times."""
    for line in proc.stdout:
        count -= bool(wanted(line))
        if count <= 0:
            return


def run_exported(tmp_path, script, *args: str) -> subprocess.CompletedProcess:
    """An exported train.py run as its user runs it: `python train.py ARGS`, in tmp_path,
    with this test's own cache and data folders."""
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        env=cli_env(tmp_path),
        timeout=600,
        cwd=tmp_path,
    )


def run_python(code: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter (imports and patches stay out of this process);
    it must exit 0."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


# A run of a few steps reads a quarter of the demo's records: TRL tokenizes every record
# a run is given, most of a short run's work in a process that has its libraries loaded.
FEW = 512
FEW_RECORDS = f"dataset.max_samples={FEW}"

# A finished demo run: 4 steps, checkpoints at 2 and 4, no evaluation.
FINISHED_STEPS = set_args(
    FEW_RECORDS,
    "training.max_steps=4",
    "training.save_steps=2",
    "training.exact_match_samples=0",
    "dataset.eval_fraction=0",
    "training.logging_steps=1",
)


@contextmanager
def own_folders(root: Path):
    """Data and config folders under `root` for a run trained once per session, in this
    process: the test that happens to ask first keeps its own registry of runs clean."""
    saved = dict(os.environ)
    os.environ.update(cli_env(root))
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@functools.cache
def finished_demo_run(root: Path) -> Path:
    """Trained once per session (root is the same for every module that asks): tests that
    need a finished run, not its training, copy it."""
    run = root / "F"
    with own_folders(root):
        result = call_main("--preset", str(DEMO_PRESET), "--output", str(run), *FINISHED_STEPS)
    assert result.returncode == 0, result.stderr[-2000:]
    return run


@pytest.fixture(scope="session")
def finished_template(tmp_path_factory) -> Path:
    return finished_demo_run(tmp_path_factory.getbasetemp() / "finished-run")


@functools.cache
def _learned_demo(root: Path) -> tuple[subprocess.CompletedProcess, Path]:
    """Trained by the first pytest-xdist worker that asks; the others wait for it and read
    its outcome (a demo run is the suite's longest piece of work)."""
    import json

    from filelock import FileLock

    run, record = root / "L", root / "outcome.json"
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(root / "training.lock"):
        if not record.exists():
            with own_folders(root):
                result = call_main("--preset", str(DEMO_PRESET), "--output", str(run))
            record.write_text(json.dumps(vars(result)))
    return subprocess.CompletedProcess(**json.loads(record.read_text())), run


def shared_root(tmp_path_factory) -> Path:
    """A folder every pytest-xdist worker of this session shares (each worker's base temp is
    inside the session's), or this process's base temp without xdist."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def learned_demo(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """The README's first command, `finetune-tui --preset presets/demo.yaml`, trained once
    per session to the end (the task learned): the headless test reads its output, the
    after-training tests read or copy its run, never change it."""
    return _learned_demo(shared_root(tmp_path_factory) / "learned-demo")


def copy_finished_run(template: Path, where: Path) -> Path:
    """The finished run copied to `where`, and recorded in this test's run registry as its
    own start would have recorded it."""
    from finetune_tui.engine.runs.registry import register_run

    shutil.copytree(template, where, symlinks=True)
    register_run(where)
    return where


def gpu_run_events(predicted: float = 7.23, steps: int = 30):
    """What a GPU run writes to metrics.jsonl: Started with the planner's peak and tokens/s
    (1,500, and 5,000 at the card's bf16 peak: MFU 30 %), then steps at 1,360 tokens/s whose
    reserved memory climbs to 6.79 GiB and one that overshoots the prediction."""
    from finetune_tui.engine.runs.events import Finished, Started, Step

    started = Started("run", steps, 512, 0, "google/gemma-2-9b", "NVIDIA H100 80GB HBM3", 54, 9e9)
    started.predicted_peak_reserved_gib = predicted
    started.predicted_tokens_per_s, started.tokens_per_s_at_peak = 1500.0, 5000.0
    events = [started]
    for step in range(1, steps + 1):
        reserved = 6.79 * min(1.0, 0.6 + step / 20) if step != steps - 5 else predicted + 0.3
        events.append(
            Step(
                step,
                steps,
                step / steps,
                2.0 - step / 40,
                1e-4,
                1.0,
                1360.0,
                1.1,
                5.0 * step,
                5.0 * (steps - step),
                6.71,
                reserved,
                max(reserved, 6.79),
                4800 * step,
            )
        )
    events.append(Finished("finished", steps, steps, 1.3, 150.0, "run/adapter", {}))
    return events


def write_run(folder, events) -> None:
    import json

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "settings.yaml").write_text("model: {}\n")
    lines = "".join(json.dumps(e.to_json()) + "\n" for e in events)
    (folder / "metrics.jsonl").write_text(lines)
