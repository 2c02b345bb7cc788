"""runs.txt: run directories made outside the runs folder (`--output`), one path per line.

`runs` and `attach` find those runs from any login through it. It is a cache, never a
reason for a run to fail or hang:
- read bounded (a regular file, at most REGISTRY_LIMIT bytes), entry by entry: a line that
  is not UTF-8, too long, not an absolute path or holds control characters is skipped,
  the others still count;
- a path that is not plain printable UTF-8 (a newline, an escape sequence, a byte that is
  not UTF-8) is stored as one JSON string line, so no name can split or forge a line;
- when it cannot be written (read-only home, a directory or FIFO in its place, a full
  disk), the run says so in one warning line on stderr and goes on: the run folder is fine
  and `finetune-tui runs PARENT` still lists it.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

from ..common.errors import InputError
from ..common.places import data_dir
from ..common.safe_io import UnsafeTarget, open_append, open_regular
from .layout import SETTINGS_FILE, runs_root

REGISTRY_FILE = "runs.txt"
REGISTRY_LIMIT = 16 * 2**20  # bytes read; 4,000 entries take ~0.5 MiB
ENTRY_LIMIT = 6 * 4096 + 2  # PATH_MAX, every character JSON-escaped (\uXXXX), quoted


def register_run(run_dir: Path) -> None:
    """Remember a run made outside the runs folder, so `runs` lists it from any login.
    Never raises: a registry that cannot be written is one warning line."""
    registry = data_dir() / REGISTRY_FILE
    try:
        run_dir = Path(run_dir).resolve()
        if run_dir.parent == runs_root().resolve() or run_dir in _registry():
            return
        registry.parent.mkdir(parents=True, exist_ok=True)
        _append(registry, _entry(run_dir))
    except (OSError, ValueError, UnsafeTarget) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        _warn(
            f"{registry}: cannot record the run in the run registry ({reason}); the run goes "
            f"on, and `finetune-tui runs {shlex.quote(str(run_dir.parent))}` lists it"
        )


def registered_runs() -> list[Path]:
    """Run directories recorded by register_run that still hold a run."""
    return [p for p in _registry() if holds_run(p)]


def holds_run(folder: Path) -> bool:
    """folder/settings.yaml is a file; a name too long or otherwise unusable is no run."""
    try:
        return (Path(folder) / SETTINGS_FILE).is_file()
    except (OSError, ValueError):
        return False


def _entry(run_dir: Path) -> bytes:
    """One line: the path itself when it is plain printable UTF-8, else a JSON string."""
    text = str(run_dir)
    if text.isprintable() and not text.startswith('"'):
        return (text + "\n").encode("utf-8")
    return (json.dumps(text) + "\n").encode("ascii")  # \n, \x1b, surrogates: all escaped


def _parse_entry(line: bytes) -> Path | None:
    """The path of one line, or None for a line that is not an entry of ours."""
    line = line.rstrip(b"\n")
    if not line or len(line) > ENTRY_LIMIT:
        return None
    try:
        text = line.decode("utf-8")
        if text.startswith('"'):
            text = json.loads(text)
            if not isinstance(text, str) or "\0" in text:
                return None
        elif not text.isprintable():  # raw control characters: damaged, or forged
            return None
    except (ValueError, RecursionError):
        return None
    path = Path(text)
    return path if path.is_absolute() else None


def _registry() -> list[Path]:
    """Every readable entry, in order, once each; damaged lines are skipped one by one."""
    try:
        file = open_regular(data_dir() / REGISTRY_FILE, "run registry", mode="rb")
    except InputError:
        return []
    entries = []
    with file:
        budget = REGISTRY_LIMIT
        while budget > 0 and (line := file.readline(min(ENTRY_LIMIT + 2, budget))):
            budget -= len(line)
            if not line.endswith(b"\n") and len(line) > ENTRY_LIMIT:
                budget -= _skip_line(file, budget)  # an overlong line: skip it, unread
                continue
            path = _parse_entry(line)
            if path is not None:
                entries.append(path)
    return list(dict.fromkeys(entries))


def _skip_line(file, budget: int) -> int:
    """Read past the rest of a line in small pieces; the bytes read."""
    skipped = 0
    while skipped < budget:
        chunk = file.readline(min(64 * 1024, budget - skipped))
        skipped += len(chunk)
        if not chunk or chunk.endswith(b"\n"):
            break
    return skipped


def _append(registry: Path, entry: bytes) -> None:
    """Append one line, on a line of its own even when the last write was torn."""
    fd = open_append(registry, "run registry", readable=True)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            entry = b"\n" + entry
        os.write(fd, entry)
    finally:
        os.close(fd)


def _warn(message: str) -> None:
    """One line on stderr; a closed stderr loses the warning, not the run."""
    from .event_text import printable

    try:
        print(f"finetune-tui: warning: {printable(message)}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
