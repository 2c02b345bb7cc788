"""Which process trains in a run directory, and whether one still does.

The run folder's lock is the one rule: every process that trains in a folder holds it
(`claim_run`) for as long as it trains, and the kernel drops it however that process ends.
run.pid only records which pid to signal, read once the lock says the run is alive: a stale
one (a double Ctrl-C, a reused pid) names a process that holds nothing.
"""

from __future__ import annotations

import fcntl
import os
import stat
import time
from pathlib import Path

from ..common.errors import InputError
from ..common.safe_io import SMALL_LIMIT, read_text, write_text_atomic
from .layout import PID_FILE

PID_MAX = 2**22  # Linux's upper limit for pid_max
HANDED_CLAIM_ENV = "FINETUNE_TUI_RUN_LOCK"  # the claim --detach passes to the run it starts


def is_running(run_dir: Path) -> bool:
    """Another process holds the run folder's lock (this process's own claim: not running,
    the wizard lives on beside its runs)."""
    if _claim_of(run_dir) is not None:
        return False
    try:
        fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    except PermissionError:
        return _pid_says_running(run_dir)  # the lock cannot be tried: run.pid's word
    except OSError:
        return False  # no folder: nothing trains there
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # shared: two lookers never collide
    except BlockingIOError:
        return True
    except OSError:  # a filesystem without locks
        return _pid_says_running(run_dir)
    finally:
        os.close(fd)
    return False


def _pid_says_running(run_dir: Path) -> bool:
    """The old rule, where the lock cannot be tried: run.pid names a live finetune process."""
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


def running_pid_text(run_dir: Path) -> str:
    """' (pid N)' for a message about a live run, or nothing while its run.pid is not yet
    written (a run that has just taken the lock said "pid None")."""
    pid = read_pid(run_dir)
    return f" (pid {pid})" if pid is not None else ""


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


_claims: list[int] = []  # open descriptors of the run folders whose lock this process holds


def claim_run(run_dir: Path) -> bool:
    """Hold the run folder's lock while this process trains there: two `--resume` of one run
    started together both passed the run.pid check, seconds before either wrote run.pid, and
    both trained. True when this call took it; False when this process held it already (the
    headless command claims before its runner does: a second flock would conflict with it)."""
    run_dir = Path(run_dir)
    if _claim_of(run_dir) is not None:
        return False
    fd = _open_folder(run_dir)
    if not _lock(fd):
        os.close(fd)
        raise InputError(f"{run_dir}: another process is resuming this run")
    _claims.append(fd)
    return True


def _open_folder(run_dir: Path) -> int:
    """The folder itself: a link to it is refused, naming where it leads (the run writes
    nowhere through a link)."""
    try:
        return os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        if run_dir.is_symlink():
            target = os.path.realpath(run_dir)
            raise InputError(f"{run_dir}: a link: give the run folder itself, {target}") from None
        raise


def _lock(fd: int, tries: int = 20) -> bool:
    """The exclusive lock, tried for a moment: an `is_running` elsewhere holds it shared for
    an instant, and must not turn a claim away."""
    for _ in range(tries):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            time.sleep(0.01)
    return False


def release_run(run_dir: Path | None = None) -> None:
    """This process no longer trains there (the wizard after its run; `--detach` once its
    background process holds the lock), or every run it claimed (None: its command is over,
    whether it trained or was refused)."""
    fd = _claim_of(run_dir) if run_dir is not None else None
    for held in [fd] if run_dir is not None else list(_claims):
        if held is not None:
            _claims.remove(held)
            os.close(held)


def claim_descriptor(run_dir: Path) -> int:
    """The descriptor holding this process's claim on the folder: `--detach` passes it to the
    process it starts (named in HANDED_CLAIM_ENV), so the run never looks stopped between
    the two."""
    fd = _claim_of(run_dir)
    if fd is None:
        raise RuntimeError(f"{run_dir}: not claimed by this process")
    return fd


def _claim_of(run_dir: Path) -> int | None:
    """This process's claim on that folder, however its path is spelled."""
    _adopt_handed_claim()
    try:
        folder = os.stat(run_dir)
    except OSError:
        return None
    for fd in _claims:
        held = os.fstat(fd)
        if (held.st_dev, held.st_ino) == (folder.st_dev, folder.st_ino):
            return fd
    return None


def _adopt_handed_claim() -> None:
    """The background process `--detach` starts inherits its parent's claim as an open
    descriptor; it holds the lock already (taking it again on that descriptor is at once)."""
    handed = os.environ.pop(HANDED_CLAIM_ENV, "")  # its own children inherit nothing
    if not handed.isdigit():
        return
    fd = int(handed)
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            return
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # not the descriptor its parent passed on
        return
    os.set_inheritable(fd, False)
    _claims.append(fd)
