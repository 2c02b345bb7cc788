"""Keep C-level library output (CUDA, bitsandbytes, Triton) off the screen during training.

`captured_fds` points file descriptors 1 and 2 at the run's log file for the duration of
training (headless: only 2, so a failed run ends with its one error line, not library
warnings). The TUI first gives itself its own duplicate of the terminal
(`tui/app.py: detach_ui_from_fd2`), so it keeps drawing while fd 2 points at the log.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..common.safe_io import open_append


@contextlib.contextmanager
def captured_fds(log_path: Path, enabled: bool, fds: tuple[int, ...] = (1, 2)):
    """Point `fds` at the log for the duration; headless keeps fd 1 for its progress lines."""
    if not enabled:
        yield
        return
    log_fd = open_append(log_path, "run log")  # a link or FIFO planted there is refused
    try:
        with _pointed_at(log_fd, fds):
            yield
    finally:
        os.close(log_fd)


@contextlib.contextmanager
def silenced_fds(enabled: bool, fds: tuple[int, ...] = (1, 2)):
    """Discard `fds` for the duration (os.devnull): the wizard's model loading and answers
    print nothing over the screen it draws through its own copy of the terminal."""
    if not enabled:
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        with _pointed_at(null, fds):
            yield
    finally:
        os.close(null)


@contextlib.contextmanager
def _pointed_at(target: int, fds: tuple[int, ...]):
    saved = {fd: os.dup(fd) for fd in fds}
    try:
        for fd in fds:
            os.dup2(target, fd)
        yield
    finally:
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
