"""Run status derived from files plus a pid check: no daemon, survives reboots.

running      run.pid names a live finetune-tui process
finished     summary.json says finished
stopped      summary.json says stopped (Stop, Ctrl-C, SIGTERM) — resumable
failed       metrics.jsonl ends with an error event
interrupted  none of the above (killed, machine rebooted) — resumable
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .layout import METRICS_FILE, SETTINGS_FILE, runs_root
from .metrics import read_events
from .pid import is_running
from .registry import registered_runs
from .summary import RunSummary, read_summary


@dataclass
class RunInfo:
    path: Path
    status: str
    step: int | None
    total_steps: int | None
    loss: float | None
    age_s: float
    peak_reserved_gib: float | None = None  # measured (CUDA runs)
    predicted_peak_reserved_gib: float | None = None  # the planner's, for the same settings

    @property
    def name(self) -> str:
        return self.path.name


def list_runs(root: Path | None = None) -> list[RunInfo]:
    """Every run under `root`, or under the data folder plus those made elsewhere
    (`--output`, recorded in the registry); newest first."""
    folders = [] if root is not None else registered_runs()
    root = root or runs_root()
    if root.is_dir():
        folders += [p for p in root.iterdir() if (p / SETTINGS_FILE).is_file()]
    unique = dict.fromkeys(p.resolve() for p in folders)
    return sorted((run_info(p) for p in unique), key=lambda r: r.age_s)


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
        if event.kind in ("step", "finished"):  # a run ends at its last step, logged or not
            last_step = event
    mtime = max(
        (
            p.stat().st_mtime
            for p in (run_dir / METRICS_FILE, run_dir / SETTINGS_FILE)
            if p.exists()
        ),
        default=time.time(),
    )
    summary = read_summary(run_dir)
    return RunInfo(
        peak_reserved_gib=summary.peak_reserved_gib if summary else None,
        predicted_peak_reserved_gib=summary.predicted_peak_reserved_gib if summary else None,
        path=run_dir,
        status=run_status(run_dir, last_kind, summary),
        step=last_step.step if last_step else None,
        total_steps=last_step.total_steps if last_step else None,
        loss=getattr(last_step, "loss", getattr(last_step, "final_loss", None)),
        age_s=time.time() - mtime,
    )


def run_status(
    run_dir: Path, last_kind: str | None = None, summary: RunSummary | None = None
) -> str:
    """`summary`: the run's summary.json when the caller has read it already."""
    if is_running(run_dir):
        return "running"
    summary = summary if summary is not None else read_summary(run_dir)
    if summary is not None:
        return summary.status
    return "failed" if last_kind == "error" else "interrupted"
