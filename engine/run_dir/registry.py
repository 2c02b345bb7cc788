"""runs.txt: run directories made outside the runs folder (`--output`), one path per line.

`runs` and `attach` find those runs from any login through it.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..safe_io import read_text
from .layout import SETTINGS_FILE, data_dir, runs_root

REGISTRY_FILE = "runs.txt"
REGISTRY_LIMIT = 16 * 2**20


def register_run(run_dir: Path) -> None:
    """Remember a run made outside the runs folder, so `runs` lists it from any login."""
    run_dir = Path(run_dir).resolve()
    if run_dir.parent == runs_root().resolve() or run_dir in _registry():
        return
    registry = data_dir() / REGISTRY_FILE
    registry.parent.mkdir(parents=True, exist_ok=True)
    with registry.open("a", encoding="utf-8") as file:
        file.write(f"{run_dir}\n")


def registered_runs() -> list[Path]:
    """Run directories recorded by register_run that still hold a run."""
    return [p for p in _registry() if (p / SETTINGS_FILE).is_file()]


def _registry() -> list[Path]:
    try:
        text = read_text(data_dir() / REGISTRY_FILE, REGISTRY_LIMIT, "run registry")
    except InputError:
        return []
    return list(dict.fromkeys(Path(line) for line in text.splitlines() if line.strip()))
