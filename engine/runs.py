"""Run status derived from files plus a pid check: no daemon, survives reboots.

running      run.pid names a live finetune-tui process
finished     summary.json says finished
stopped      summary.json says stopped (Stop, Ctrl-C, SIGTERM) — resumable
failed       metrics.jsonl ends with an error event
interrupted  none of the above (killed, machine rebooted) — resumable
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .events import Event, event_from_json
from .rundir import METRICS_FILE, PID_FILE, SETTINGS_FILE, SUMMARY_FILE, data_dir


@dataclass
class RunInfo:
    path: Path
    status: str
    step: int | None
    total_steps: int | None
    loss: float | None
    age_s: float

    @property
    def name(self) -> str:
        return self.path.name


def runs_root() -> Path:
    return data_dir() / "runs"


def list_runs(root: Path | None = None) -> list[RunInfo]:
    """Every run under the data folder, newest first."""
    root = root or runs_root()
    if not root.is_dir():
        return []
    runs = [run_info(p) for p in root.iterdir() if (p / SETTINGS_FILE).is_file()]
    return sorted(runs, key=lambda r: r.age_s)


def find_run(name: str | None) -> Path | None:
    """A run by path, by name under the data folder, or the newest one when name is None."""
    if name:
        path = Path(name).expanduser()
        if (path / SETTINGS_FILE).is_file():
            return path
        path = runs_root() / name
        return path if (path / SETTINGS_FILE).is_file() else None
    runs = list_runs()
    return runs[0].path if runs else None


def run_info(run_dir: Path) -> RunInfo:
    last_step = None
    last_kind = None
    for event in read_events(run_dir):
        last_kind = event.kind
        if event.kind == "step":
            last_step = event
    mtime = max(
        (
            p.stat().st_mtime
            for p in (run_dir / METRICS_FILE, run_dir / SETTINGS_FILE)
            if p.exists()
        ),
        default=time.time(),
    )
    return RunInfo(
        path=run_dir,
        status=run_status(run_dir, last_kind),
        step=last_step.step if last_step else None,
        total_steps=last_step.total_steps if last_step else None,
        loss=last_step.loss if last_step else None,
        age_s=time.time() - mtime,
    )


def run_status(run_dir: Path, last_kind: str | None = None) -> str:
    if is_running(run_dir):
        return "running"
    try:
        summary = json.loads((run_dir / SUMMARY_FILE).read_text())
        return summary.get("status", "finished")
    except (OSError, ValueError):
        pass
    return "failed" if last_kind == "error" else "interrupted"


def is_running(run_dir: Path) -> bool:
    """Another live finetune-tui process trains in this run directory."""
    pid = read_pid(run_dir)
    if pid is None or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():  # a reused pid after a reboot is some other program
        return b"finetune" in cmdline.read_bytes()
    return True


def read_pid(run_dir: Path) -> int | None:
    try:
        return int((run_dir / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def read_events(run_dir: Path) -> Iterator[Event]:
    """Every complete event line of metrics.jsonl (a half-written last line is skipped)."""
    path = run_dir / METRICS_FILE
    if not path.exists():
        return
    with path.open(encoding="utf-8") as file:
        for line in file:
            event = _parse(line)
            if event is not None:
                yield event


def follow_events(run_dir: Path, stop=None, poll_s: float = 0.5) -> Iterator[Event]:
    """Tail metrics.jsonl like `tail -f`, read-only, until `stop` is set or the run ends."""
    path = run_dir / METRICS_FILE
    position, pending = 0, ""
    while stop is None or not stop.is_set():
        if path.exists():
            with path.open(encoding="utf-8") as file:
                file.seek(position)
                chunk = file.read()
                position = file.tell()
            pending += chunk
            *lines, pending = pending.split("\n")
            for line in lines:
                event = _parse(line)
                if event is not None:
                    yield event
                    if event.kind in {"finished", "error"}:
                        return
        if not is_running(run_dir) and not pending:
            return
        time.sleep(poll_s)


def _parse(line: str) -> Event | None:
    line = line.strip()
    if not line:
        return None
    try:
        return event_from_json(json.loads(line))
    except (ValueError, KeyError, TypeError):
        return None
