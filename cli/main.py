"""Command line entry point: `finetune-tui [--preset FILE] [COMMAND ...]`.

Only argparse and light modules are imported here: `--help`, `plan` and the first TUI
screen must not pay for torch. Each command lives in its own `commands_*.py` module that
registers a sub-parser and a handler.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
import traceback

from finetune_tui import __version__
from finetune_tui.engine.common.errors import FinetuneError, InputError
from finetune_tui.stop_signals import interrupt_on_termination

COMMAND_MODULES = (
    "commands_plan",
    "commands_export",
    "commands_runs",
    "commands_try",
    "commands_merge",
    "commands_ship",
)
ERROR_PREFIX = "finetune-tui: error: "  # every error line starts so (workers' are found by it)
EVERY_COMMAND = {"debug"}  # top-level options main() itself honours, whatever the command
MISPLACED = "misplaced_option"  # the parser's refusal of a top-level option, for main()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finetune-tui",
        description=(
            "Fine-tune an LLM on the GPU you have. With no arguments, opens the interactive "
            "wizard; with --preset FILE, trains headless (no TTY needed)."
        ),
        epilog=(
            "An option given before COMMAND goes to COMMAND when COMMAND takes it too: "
            "'finetune-tui --vram 24 plan' is 'finetune-tui plan --vram 24'. Given both "
            "before and after COMMAND, or before a COMMAND that does not take it, it is "
            "refused (exit 2). --debug goes with every COMMAND."
        ),
    )
    parser.add_argument("--version", action="version", version=f"finetune-tui {__version__}")
    parser.add_argument("--preset", metavar="FILE", help="train headless from this YAML preset")
    parser.add_argument(
        "--resume", metavar="RUN_DIR", help="continue a run from its last complete checkpoint"
    )
    parser.add_argument(
        "--tui",
        action="store_true",
        help="open the wizard with --preset / --set / --output preloaded instead of training",
    )
    parser.add_argument(
        "--detach",
        action="store_true",
        help="start the run in the background (own session, log in the run dir) and return",
    )
    add_settings_arguments(parser)
    parser.add_argument("--output", metavar="DIR", help="run directory (overrides output.dir)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing run directory"
    )
    parser.add_argument("--gpu", metavar="NAME", help="plan for a simulated card, e.g. 'RTX 4090'")
    parser.add_argument("--vram", metavar="GIB", type=float, help="plan for a card with this VRAM")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    # one worker of a run that trains on several processes (started by accelerate launch)
    parser.add_argument("--worker", metavar="RUN_DIR", help=argparse.SUPPRESS)
    parser.add_argument("--worker-resume", action="store_true", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", action=_Commands)
    for name in COMMAND_MODULES:
        importlib.import_module(f"finetune_tui.{name}").register(sub)
    return parser


class _Commands(argparse._SubParsersAction):
    """The COMMAND sub-parsers, which also place the top-level options given before the
    command. argparse would let the command's defaults overwrite them unsaid (`--vram 24
    plan` planned on the CPU); here each goes to the command when it takes the same option,
    else it is refused. The refusal waits in the namespace for main(): argparse's own
    errors print the usage first, and a refusal is one line."""

    def __call__(self, parser, namespace, values, option_string=None):
        before = {a: getattr(namespace, a.dest) for a in parser._actions if _given(a, namespace)}
        super().__call__(parser, namespace, values, option_string)
        name, command = values[0], self.choices[values[0]]
        shared = {a: _same_option(command, a) for a in before}
        typed = _typed_after(command, values[1:], [a for a in shared.values() if a])
        for action, value in before.items():
            problem = _place(action, value, shared[action], typed, name, namespace, self)
            if problem:
                setattr(namespace, MISPLACED, problem)
                return


def _given(action: argparse.Action, namespace: argparse.Namespace) -> bool:
    """A top-level option the user gave (before the command): argparse filled every one
    with its default object, and a given one holds another (True, a value, a new list)."""
    if action.dest == argparse.SUPPRESS or action.dest in EVERY_COMMAND:
        return False
    if isinstance(action, argparse._SubParsersAction):
        return False
    return getattr(namespace, action.dest, action.default) is not action.default


def _same_option(command: argparse.ArgumentParser, action: argparse.Action):
    """The command's own action for one of this option's strings, or None."""
    found = (command._option_string_actions.get(s) for s in action.option_strings)
    return next((a for a in found if a is not None), None)


def _typed_after(command: argparse.ArgumentParser, arg_strings: list[str], actions) -> set:
    """The dests of `actions` the user gave after the command: parsed again over a marker
    object each, which argparse replaces only for an option it meets."""
    marks = {a.dest: [] for a in actions}
    if not marks:
        return set()
    seen = argparse.Namespace(**marks)
    command.parse_known_args(arg_strings, seen)
    return {dest for dest, mark in marks.items() if getattr(seen, dest) is not mark}


def _place(action, value, own, typed: set, name: str, namespace, commands) -> str | None:
    """Hand a top-level option's value to the command's own copy of it; or why not."""
    flag = max(action.option_strings, key=len)
    if own is None:
        takers = [f"'{n}'" for n, p in commands.choices.items() if _same_option(p, action)]
        after = f" or after {' or '.join(takers)}" if takers else ""
        return (
            f"{flag} does not go with '{name}': it goes without a command (a run or the "
            f"wizard){after}"
        )
    if own.dest in typed:
        return f"{flag} is given both before and after '{name}': give it once, after '{name}'"
    setattr(namespace, own.dest, value)
    return None


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """`--set section.key=value`, shared by every command that takes settings."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting, e.g. --set lora.r=32 (repeatable)",
    )


def run() -> None:
    """The program's entry (the console script and `python -m finetune_tui`): main(), and
    an exit that skips the interpreter's teardown. With torch, transformers and TRL loaded,
    the garbage collector's walk over every object they made took 1.2-1.5 s of each exit
    (benchmarks/exit_cost.py), three times over in a launch. Registered before anything
    else, `_leave` runs after every other exit handler (they run last-registered first)
    and after the threads were joined; it flushes the output and ends with main()'s code."""
    import atexit

    atexit.register(_leave)
    try:
        _outcome["code"] = main()
    except SystemExit as exc:  # argparse's --help and usage errors
        _outcome["code"] = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        raise
    except KeyboardInterrupt:  # before main() handles it (while the parser is built)
        _outcome["code"] = 130
        raise
    sys.exit(_outcome["code"])


_outcome = {"code": 1}


def _leave() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader gone or a stream closed: nothing to keep
            pass
    os._exit(_outcome["code"])


def main(argv: list[str] | None = None) -> int:
    closed = _reopen_closed_streams()
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_optional_kernels()
    try:
        if getattr(args, MISPLACED, None):
            raise InputError(getattr(args, MISPLACED))
        _launcher_variables(worker=bool(args.worker))
        if getattr(args, "handler", None) is not None:
            if "stdout" in closed:  # plan, detect, export, runs, attach: printing is the point
                raise InputError(
                    "standard output is closed; give the command somewhere to print "
                    "(a file, a pipe or /dev/null)"
                )
            stdout, sys.stdout = sys.stdout, _NamedStdout(sys.stdout)
            interrupt_on_termination()
            try:
                code = int(args.handler(args) or 0)
                sys.stdout.flush()  # a closed pipe or a full disk shows up here at the latest
            finally:
                sys.stdout = stdout
            return code
        if args.worker:
            from finetune_tui.workers import run_worker

            return run_worker(args)
        if (args.preset or args.resume) and not args.tui:
            from finetune_tui.headless import run_headless

            return run_headless(args)
        return _open_tui(args)
    except FinetuneError as exc:
        if args.debug:
            traceback.print_exc()
        _error_line(f"{ERROR_PREFIX}{exc}")
        return exc.exit_code
    except KeyboardInterrupt as exc:
        _error_line("finetune-tui: interrupted" + (f" ({exc})" if str(exc) else ""))
        return getattr(exc, "exit_code", 130)
    except BrokenPipeError:
        return _reader_went_away()
    except OSError as exc:  # the machine refused: a full disk, a read-only folder
        if args.debug or exc.errno not in SYSTEM_REFUSALS | PATH_REFUSALS:
            return _internal_error(exc, args.debug)
        _error_line(f"{ERROR_PREFIX}{_refusal(exc)}")
        return 2 if exc.errno in PATH_REFUSALS else 1
    except RuntimeError as exc:  # pathlib's resolve() meeting a link loop (Python < 3.13)
        if args.debug or not str(exc).startswith("Symlink loop from "):
            return _internal_error(exc, args.debug)
        where = str(exc).removeprefix("Symlink loop from ").strip("'\"")
        _error_line(f"{ERROR_PREFIX}{where}: {PATH_REFUSALS[errno.ELOOP]}")
        return 2
    except Exception as exc:  # a bug of ours: still one line, the traceback on request
        return _internal_error(exc, args.debug)


def _quiet_optional_kernels() -> None:
    """bitsandbytes, imported by PEFT on every run and merge, warns on CPUs with AVX512-BF16
    that it could not fetch an optional CPU kernel from the Hub (the `kernels` package): the
    first line a CPU user read, about nothing they asked for. Its other warnings stay."""
    import logging

    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


# What the machine can refuse a write or a read for, in words a user can act on.
SYSTEM_REFUSALS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "input/output error",
}
# paths given that no file system resolves: bad input (exit 2), wherever a command meets them
PATH_REFUSALS = {
    errno.ENAMETOOLONG: "file name too long",
    errno.ELOOP: "too many levels of symbolic links",
}


STDOUT = "standard output"


class _NamedStdout:
    """A command's stdout whose failed writes name it (`plan > /dev/full`: the error says
    which file was full); everything else is the stream's own."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        return self._named(self._stream.write, text)

    def flush(self) -> None:
        self._named(self._stream.flush)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)

    @staticmethod
    def _named(call, *args):
        try:
            return call(*args)
        except BrokenPipeError:
            raise
        except OSError as exc:
            exc.filename = exc.filename or STDOUT
            raise


def _refusal(exc: OSError) -> str:
    """`PATH: no space left on device`, or without a path when the write named none."""
    what = (SYSTEM_REFUSALS | PATH_REFUSALS)[exc.errno]
    if exc.filename == STDOUT:
        _silence_stdout()  # its unwritten buffer would fail again at exit
    if exc.filename is not None:
        return f"{os.fsdecode(exc.filename)}: {what}"
    return f"{what} (a write failed; free some space or choose another folder)"


def _internal_error(exc: BaseException, debug: bool) -> int:
    if debug:
        raise exc
    _error_line(
        f"finetune-tui: internal error: {type(exc).__name__}: {exc}"
        " (rerun with --debug for the traceback, and please report it)"
    )
    return 1


def _error_line(text: str) -> None:
    """One line on stderr: library messages can span lines, and names in them can hold
    terminal escapes (engine/event_text.printable). A closed stderr loses the line only."""
    from finetune_tui.engine.runs.event_text import printable

    try:
        print(printable(" ".join(text.split())), file=sys.stderr, flush=True)
    except (OSError, ValueError, AttributeError):
        pass


def _reopen_closed_streams() -> set[str]:
    """`finetune-tui ... >&-` / `<&-` / `2>&-`: which standard streams were closed.

    Each closed descriptor is reopened on /dev/null before anything else is opened, so no
    file we write takes number 1 or 2 (where a library's print would land inside it) and
    child processes inherit three valid descriptors. A command that prints its result
    refuses a closed stdout in one line (exit 2); a run trains on, its progress in
    metrics.jsonl; with stderr closed too, the exit code is all that is said.
    """
    closed = set()
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            closed.add(name)
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            mode = "r" if fd == 0 else "w"
            setattr(sys, name, open(fd, mode, encoding="utf-8", errors="replace", closefd=False))
    return closed


def _launcher_variables(worker: bool) -> None:
    """RANK, WORLD_SIZE ... count only inside our own launch (engine/launch/environment.py);
    elsewhere they are dropped before anything reads them, with one warning line."""
    from finetune_tui.engine.launch.environment import apply_policy

    warning = apply_policy(worker)
    if warning:
        print(f"finetune-tui: warning: {warning}", file=sys.stderr)


def _reader_went_away() -> int:
    """`finetune-tui plan --json | head`: the reader closed the pipe; exit quietly."""
    _silence_stdout()
    return 141  # 128 + SIGPIPE, what a shell reports for a reader that left


def _silence_stdout() -> None:
    """Python would report the failed flush of stdout at exit; point stdout at /dev/null
    so it does not (the pattern the Python documentation gives for SIGPIPE)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def _open_tui(args: argparse.Namespace) -> int:
    if not sys.stdin.isatty() and not os.environ.get("FINETUNE_TUI_FORCE_TUI"):
        print(
            "finetune-tui: no terminal: use --preset FILE for a headless run "
            "(see finetune-tui --help)",
            file=sys.stderr,
        )
        return 2
    from finetune_tui.tui.app import run_app

    return run_app(args)
