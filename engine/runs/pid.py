"""run.pid: which process trains in a run directory, and whether it still does."""

from __future__ import annotations

import os
from pathlib import Path

from ..common.errors import InputError
from ..common.safe_io import SMALL_LIMIT, read_text, write_text_atomic
from .layout import PID_FILE

PID_MAX = 2**22  # Linux's upper limit for pid_max


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


def write_pid(run_dir: Path, pid: int | None = None) -> None:
    """Record the training process; renamed into place, so a link named run.pid is replaced,
    never written through."""
    write_text_atomic(Path(run_dir) / PID_FILE, f"{pid or os.getpid()}\n")


def clear_pid(run_dir: Path) -> None:
    """This process no longer trains in the run: its run.pid goes (the wizard lives on after
    its run stopped, and `runs` and `--resume` took the live wizard for the trainer)."""
    if read_pid(run_dir) == os.getpid():
        (Path(run_dir) / PID_FILE).unlink(missing_ok=True)


_claims: dict[Path, int] = {}  # run folder -> the open descriptor its lock is held on


def claim_run(run_dir: Path) -> None:
    """Hold the run folder's lock for as long as this process lives (the kernel drops it
    when the process ends, however it ends): two `--resume` of one run started together
    both passed the run.pid check, seconds before either wrote run.pid, and both trained."""
    import fcntl

    run_dir = Path(run_dir)
    fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise InputError(f"{run_dir}: another process is resuming this run") from None
    _claims[run_dir] = fd


def release_run(run_dir: Path | None = None) -> None:
    """Hand the run on (to the background process `--detach` starts), or every run this
    process claimed (None: its command is over, whether it trained or was refused)."""
    for folder in [Path(run_dir)] if run_dir is not None else list(_claims):
        fd = _claims.pop(folder, None)
        if fd is not None:
            os.close(fd)
