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

from .errors import InputError
from .events import Event, event_from_json
from .rundir import (
    METRICS_FILE,
    PID_FILE,
    SETTINGS_FILE,
    SUMMARY_FILE,
    data_dir,
    registered_runs,
)
from .safe_io import SMALL_LIMIT, check_regular_file, open_regular, read_json, read_text

PID_MAX = 2**22  # Linux's upper limit for pid_max
SUMMARY_LIMIT = 16 * 2**20
LINE_LIMIT = 1 * 2**20  # one metrics event; longer lines are not ours


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


def runs_root() -> Path:
    return data_dir() / "runs"


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
    status = run_status(run_dir, last_kind, summary)
    summary = summary or {}
    return RunInfo(
        peak_reserved_gib=_number(summary.get("peak_reserved_gib")),
        predicted_peak_reserved_gib=_number(summary.get("predicted_peak_reserved_gib")),
        path=run_dir,
        status=status,
        step=last_step.step if last_step else None,
        total_steps=last_step.total_steps if last_step else None,
        loss=getattr(last_step, "loss", getattr(last_step, "final_loss", None)),
        age_s=time.time() - mtime,
    )


def run_status(run_dir: Path, last_kind: str | None = None, summary: dict | None = None) -> str:
    """`summary`: the run's summary.json when the caller has read it already."""
    if is_running(run_dir):
        return "running"
    summary = summary if summary is not None else read_summary(run_dir)
    if summary is not None:
        return str(summary.get("status", "finished"))
    return "failed" if last_kind == "error" else "interrupted"


def read_summary(run_dir: Path) -> dict | None:
    """summary.json, or None when it is missing, unreadable or not a JSON object."""
    try:
        summary = read_json(run_dir / SUMMARY_FILE, SUMMARY_LIMIT, "run summary")
    except InputError:
        return None
    return summary if isinstance(summary, dict) else None


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
    try:  # a reused pid after a reboot is some other program
        return b"finetune" in Path(f"/proc/{pid}/cmdline").read_bytes()[:65536]
    except OSError:
        return True


def read_pid(run_dir: Path) -> int | None:
    """The pid in run.pid, or None unless it is a plausible process id (1 < pid <= 2**22).

    0 and -1 would address process groups in os.kill, a 20-digit number overflows it.
    """
    try:
        pid = int(read_text(run_dir / PID_FILE, SMALL_LIMIT, "pid file").strip())
    except (InputError, ValueError):
        return None
    return pid if 1 < pid <= PID_MAX else None


def read_events(run_dir: Path) -> Iterator[Event]:
    """Every complete event line of metrics.jsonl (a half-written last line is skipped)."""
    path = run_dir / METRICS_FILE
    try:
        file = open_regular(path, "metrics file", mode="rb")
    except InputError:
        return
    with file:
        while line := file.readline(LINE_LIMIT):
            event = _parse(line)
            if event is not None:
                yield event


def follow_events(run_dir: Path, stop=None, poll_s: float = 0.5) -> Iterator[Event]:
    """Tail metrics.jsonl like `tail -f`, read-only, until `stop` is set or the run ends."""
    path = run_dir / METRICS_FILE
    position, pending = 0, b""
    while stop is None or not stop.is_set():
        if _is_regular(path):
            with open_regular(path, "metrics file", mode="rb") as file:
                file.seek(position)
                chunk = file.read(LINE_LIMIT)
                position = file.tell()
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if len(pending) > LINE_LIMIT:  # not an event line of ours: skip it
                pending = b""
            for line in lines:
                event = _parse(line)
                if event is not None:
                    yield event
                    if event.kind in {"finished", "error"}:
                        return
        if not is_running(run_dir) and not pending:
            return
        time.sleep(poll_s)


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _is_regular(path: Path) -> bool:
    try:
        check_regular_file(path, "metrics file")
    except InputError:
        return False
    return True


def _parse(line: bytes) -> Event | None:
    """One event, or None for a blank, torn, foreign or undecodable line."""
    try:
        data = json.loads(line.decode("utf-8").strip() or "null")
        return event_from_json(data) if isinstance(data, dict) else None
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
