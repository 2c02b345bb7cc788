"""Run status derived from files plus the run folder's lock: no daemon, survives reboots.

running      another process holds the run folder's lock (runs/pid.py)
finished     summary.json says finished
stopped      summary.json says stopped (Stop, Ctrl-C, SIGTERM) — resumable
failed       metrics.jsonl ends with an error event
interrupted  none of the above (killed, machine rebooted) — resumable
damaged      its metrics or summary hold values of the wrong type: listed, not trusted

One run's files never stop the listing of the others: anything unreadable in a run makes
that run "damaged" (or skips a folder that cannot be looked at), nothing more.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .layout import METRICS_FILE, SETTINGS_FILE, runs_root
from .metrics import read_events
from .pid import is_running
from .registry import holds_run, registered_runs
from .summary import RunSummary, checked_summary, read_summary


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
    folders += [p for p in _children(root) if holds_run(p)]
    unique = dict.fromkeys(_resolved(p) for p in folders)
    return sorted((run_info(p) for p in unique), key=lambda r: r.age_s)


def find_run(name: str | None) -> Path | None:
    """A run by path, by name under the data folder, or the newest one when name is None."""
    if name:
        path = Path(name).expanduser()
        if holds_run(path):
            return path
        path = runs_root() / name
        return path if holds_run(path) else None
    runs = list_runs()
    return runs[0].path if runs else None


def _children(root: Path) -> list[Path]:
    try:
        return list(root.iterdir()) if root.is_dir() else []
    except OSError:  # unreadable: no runs to list there
        return []


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a link loop: list it under the name it has
        return path


def run_info(run_dir: Path) -> RunInfo:
    """What `runs` shows of one run; a run whose files hold wrong types is "damaged"."""
    try:
        return _run_info(run_dir)
    except (OSError, ValueError, TypeError, AttributeError):
        return RunInfo(run_dir, "damaged", None, None, None, _age(run_dir))


def _run_info(run_dir: Path) -> RunInfo:
    from .event_text import well_typed

    last_step = None
    last_kind = None
    damaged = False
    for event in read_events(run_dir):
        if not well_typed(event):
            damaged = True
            continue
        last_kind = event.kind
        if event.kind in ("step", "finished"):  # a run ends at its last step, logged or not
            last_step = event
    summary, summary_damaged = checked_summary(run_dir)
    if damaged or summary_damaged:
        return RunInfo(run_dir, "damaged", None, None, None, _age(run_dir))
    return RunInfo(
        peak_reserved_gib=summary.peak_reserved_gib if summary else None,
        predicted_peak_reserved_gib=summary.predicted_peak_reserved_gib if summary else None,
        path=run_dir,
        status=run_status(run_dir, last_kind, summary),
        step=last_step.step if last_step else None,
        total_steps=last_step.total_steps if last_step else None,
        loss=getattr(last_step, "loss", getattr(last_step, "final_loss", None)),
        age_s=_age(run_dir),
    )


def _age(run_dir: Path) -> float:
    """Seconds since metrics.jsonl or settings.yaml last changed (0 when neither can tell)."""
    times = []
    for path in (run_dir / METRICS_FILE, run_dir / SETTINGS_FILE):
        try:
            times.append(path.stat().st_mtime)
        except (OSError, ValueError):
            pass
    return max(0.0, time.time() - max(times, default=time.time()))


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


def refuse_while_training(run_dir: Path, doing: str) -> None:
    """What reads a run's final outputs (try, compare, merge) waits until it has finished:
    its adapter is written over when it ends or stops."""
    if run_status(run_dir) == "running":
        from ..common.errors import InputError
        from .event_text import printable

        raise InputError(
            f"{printable(run_dir)}: the run is still training; {doing} once it has finished"
        )
