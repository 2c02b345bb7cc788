"""The processes of one launch: a token marks every process it starts, the launcher
finds them all by it in /proc, and a worker trains only inside the live launch made
for its folder. Ending a launch ends every one of them."""

from __future__ import annotations

import os
from pathlib import Path

# --- the processes of one launch --------------------------------------------------------
#
# accelerate's launcher (torch's elastic agent) starts each worker in a session of its own,
# so neither a terminal's Ctrl-C nor a signal to the launcher's process group reaches them,
# and a worker whose agent died lives on, reparented to init. Each launch therefore marks
# every process it starts with a token in the environment (inherited by the workers and
# whatever they start): the launcher finds them all by it in /proc, and a worker refuses to
# train unless the token names a live ancestor and its own run folder.

HAS_PROC = os.path.isdir("/proc/self")  # Linux; elsewhere the process group stands in
FORCE_GRACE_S = 2.0  # between SIGTERM and SIGKILL when a launch is ended by force
GONE_WAIT_S = 10.0  # how long a killed process may take to disappear


def launch_token(run_dir: Path) -> str:
    """This launch's mark: the launcher's pid, the run folder it prepared, and a secret."""
    import secrets

    return f"{os.getpid()}:{_folder_key(run_dir)}:{secrets.token_hex(8)}"


def _folder_key(run_dir: Path) -> str:
    import hashlib

    return hashlib.sha256(os.fsencode(Path(run_dir).resolve())).hexdigest()[:16]


def launcher_pid(environ=None) -> int | None:
    """The pid of the launch this process belongs to, or None outside a launch."""
    from .environment import LAUNCH_TOKEN

    environ = os.environ if environ is None else environ
    head = environ.get(LAUNCH_TOKEN, "").split(":", 1)[0]
    return int(head) if head.isdigit() and len(head) < 10 else None


def launch_problem(run_dir: Path, environ=None) -> str | None:
    """Why this process is not a worker started by the launch of `run_dir`, or None.

    A worker trains only inside the launch that prepared its folder: one started by
    hand (or by anything else) would write into a folder whose live, finished or
    replaced state no one checked."""
    from .environment import LAUNCH_TOKEN

    environ = os.environ if environ is None else environ
    parts = environ.get(LAUNCH_TOKEN, "").split(":")
    pid = launcher_pid(environ)
    if len(parts) != 3 or pid is None:
        return "--worker is started by finetune-tui's own launch, not by hand"
    if parts[1] != _folder_key(run_dir):
        return "--worker names another folder than its launch prepared"
    if HAS_PROC and pid not in ancestors():
        return f"--worker outlived its launch (pid {pid} is gone)"
    return None


def launcher_gone() -> bool:
    """Inside a launch: whether the process that launched it has ended (killed with
    SIGKILL, say); a worker then saves and stops instead of training on, orphaned."""
    pid = launcher_pid()
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def ancestors(pid: int | None = None) -> list[int]:
    """The parent, grandparent ... of a process, up to init (Linux /proc)."""
    chain: list[int] = []
    pid = os.getpid() if pid is None else pid
    while pid > 1 and len(chain) < 256:
        pid = _parent(pid)
        if pid is None:
            break
        chain.append(pid)
    return chain


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(errors="replace")
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # the name in parentheses may hold spaces
    return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None


def catches(pid: int, signum: int) -> bool:
    """Whether a process has its own handler for a signal (it has started far enough to
    take SIGTERM as a request, not as the end), from /proc's mask of caught signals."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(errors="replace")
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def runs_own_program(pid: int, parent: int) -> bool:
    """Whether a child has replaced its parent's program with its own (exec). Between fork
    and exec a child still shows its parent's command line, environment and signal handlers,
    and a signal it gets then is held until its handlers are reset to the default: a request
    to stop would kill it instead."""
    try:
        own = Path(f"/proc/{pid}/cmdline").read_bytes()
        parents = Path(f"/proc/{parent}/cmdline").read_bytes()
    except OSError:
        return False
    return bool(own) and own != parents


def launched_processes(token: str) -> list[int]:
    """Every live process carrying this launch's token (the launcher, the workers and
    what they started), however they were started; never this process."""
    from .environment import LAUNCH_TOKEN

    wanted = f"{LAUNCH_TOKEN}={token}".encode()
    found = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as environ:
                variables = environ.read().split(b"\0")
        except OSError:  # gone meanwhile, a zombie, or another user's
            continue
        if wanted in variables:
            found.append(int(name))
    return found


def signal_processes(signum: int, pids: list[int]) -> None:
    """Send `signum` to each pid; one already gone (or no longer ours) is skipped."""
    for pid in pids:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def end_processes(token: str, grace: float = FORCE_GRACE_S, hurry=lambda: False) -> list[int]:
    """End every process of a launch: SIGTERM, then SIGKILL after `grace` seconds (at once
    when `hurry()` turns true), and wait until none is left. Returns what would not go
    (none, short of a process stuck in the kernel)."""
    import signal
    import time

    send = signal_processes
    alive = launched_processes(token)
    if not alive:
        return []
    send(signal.SIGTERM, alive)
    deadline = time.monotonic() + grace
    while alive and time.monotonic() < deadline and not hurry():
        time.sleep(0.05)
        alive = launched_processes(token)
    deadline = time.monotonic() + GONE_WAIT_S
    while alive and time.monotonic() < deadline:
        send(signal.SIGKILL, alive)  # again for any process started in between
        time.sleep(0.05)
        alive = launched_processes(token)
        if not alive:  # once more: a process in the middle of exec may not show its token
            time.sleep(0.05)
            alive = launched_processes(token)
    return alive
