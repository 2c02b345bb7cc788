"""metrics.jsonl: every event of a run, one JSON line each, written live and read back.

The runner appends through `MetricsFile`; `runs`, `attach` and the TUI read the same lines
with `read_events` (what is there) and `follow_events` (what is there and what comes).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from ..common.errors import InputError
from ..common.safe_io import check_regular_file, open_append, open_regular
from .events import Event, event_from_json
from .layout import METRICS_FILE
from .pid import is_running

LINE_LIMIT = 1 * 2**20  # one metrics event; longer lines are not ours


class MetricsFile:
    """Appends every event as one JSON line, flushed so `attach` and `tail -f` see it live."""

    def __init__(self, path: Path):
        # appended without following a link: a planted one must not redirect the events
        self.file = os.fdopen(open_append(path, "metrics file"), "a", encoding="utf-8")
        self.broken = False

    def __call__(self, event: Event) -> None:
        if self.broken:  # a full disk fails the run once; the Failed event still reaches the UI
            return
        try:
            self.file.write(json.dumps(event.to_json(), default=str) + "\n")
            self.file.flush()
        except OSError:
            self.broken = True
            raise

    def close(self) -> None:
        try:
            self.file.close()
        except OSError:  # the unflushed tail of a write that already failed
            if not self.broken:
                raise


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
        chunk = b""
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
        # all read, and no one writes: a torn last line of a run that ended never completes
        if len(chunk) < LINE_LIMIT and not is_running(run_dir):
            return
        time.sleep(poll_s)


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
