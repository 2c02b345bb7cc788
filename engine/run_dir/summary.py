"""summary.json: how a run ended, its losses, timings and peak memory."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from ..safe_io import read_json, write_text_atomic
from .layout import SUMMARY_FILE

SUMMARY_LIMIT = 16 * 2**20


def write_summary(run_dir: Path, summary: dict) -> None:
    """Written atomically: a reader never sees half a summary."""
    write_text_atomic(run_dir / SUMMARY_FILE, json.dumps(summary, indent=2, default=str) + "\n")


def read_summary(run_dir: Path) -> dict | None:
    """summary.json, or None when it is missing, unreadable or not a JSON object."""
    try:
        summary = read_json(run_dir / SUMMARY_FILE, SUMMARY_LIMIT, "run summary")
    except InputError:
        return None
    return summary if isinstance(summary, dict) else None
