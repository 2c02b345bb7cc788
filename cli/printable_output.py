"""Standard output that shows every control character as an escape but the line break.

What `plan` prints holds text from outside: a folder's name, a config.json's
`architectures`, a dataset's path. Written raw, an escape sequence in one of them retitles
the terminal or clears it; through this, it is shown as text (engine/runs/event_text's
`printable`, the rule the error lines follow).
"""

from __future__ import annotations

import functools
import io
import sys


class PrintableStream(io.TextIOBase):
    """A text stream over another that escapes what `printable` escapes, line by line."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        from finetune_tui.engine.runs.event_text import printable_lines

        self.stream.write(printable_lines(text))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()


def printable_stdout(command):
    """Run a command (args -> exit code) with its standard output through PrintableStream."""

    @functools.wraps(command)
    def wrapped(args):
        real = sys.stdout
        sys.stdout = PrintableStream(real)
        try:
            return command(args)
        finally:
            sys.stdout = real

    return wrapped
