"""Ctrl-C, SIGTERM and SIGHUP while a run trains: one policy for a run in this process and
for a launch of several.

The first signal asks the run to save and stop after its step (the exit code follows that
signal: 130 for Ctrl-C, 143 for SIGTERM and SIGHUP). A later Ctrl-C ends it at once, the
last complete checkpoint kept, as a second Ctrl-C ends any program; a later SIGTERM or
SIGHUP lets the save finish (a job system repeats them while a large save is written).
"""

from __future__ import annotations

import signal
from collections.abc import Callable

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 143}


class StopSignals:
    """Installs the policy's handlers; `ask(name)` runs on the first signal, `force()` on
    the Ctrl-C that ends the run at once."""

    def __init__(self, ask: Callable[[str], None], force: Callable[[], None]):
        self.ask, self.force = ask, force
        self.received: list[int] = []
        self.forced_at = 0  # how many signals had come when the run was ended by force
        for signum in EXIT_CODES:
            if not kept_ignored(signum):
                signal.signal(signum, self.handle)

    def handle(self, signum, frame) -> None:
        self.received.append(signum)
        if len(self.received) == 1:
            self.ask(signal.Signals(signum).name)
        elif signum == signal.SIGINT and not self.forced:
            self.forced_at = len(self.received)
            self.force()

    @property
    def forced(self) -> bool:
        return self.forced_at > 0

    def hurried(self) -> bool:
        """A signal after the forced end began: skip its grace period."""
        return self.forced and len(self.received) > self.forced_at

    def exit_code(self, otherwise: int) -> int:
        """The first signal's exit code (Ctrl-C's once ended by force), else `otherwise`."""
        if self.forced:
            return EXIT_CODES[signal.SIGINT]
        return EXIT_CODES[self.received[0]] if self.received else otherwise


def kept_ignored(signum: int) -> bool:
    """SIGHUP ignored by whoever started us (`nohup`): the user asked the program to outlive
    its terminal, so that stays."""
    return signum == signal.SIGHUP and signal.getsignal(signum) == signal.SIG_IGN


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where Ctrl-C raises KeyboardInterrupt."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.exit_code = EXIT_CODES[signum]


def interrupt_on_termination() -> None:
    """Commands that do not train (merge, ship, export ...): SIGTERM and SIGHUP end them as
    Ctrl-C does, so their cleanup runs (a merge removes its half-written folder; the
    default action killed it where it stood)."""

    def terminated(signum, frame):
        raise Terminated(signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        if not kept_ignored(signum):
            signal.signal(signum, terminated)
