"""Command line entry point: `finetune-tui [--preset FILE] [COMMAND ...]`.

Only argparse and light modules are imported here: `--help`, `plan` and the first TUI
screen must not pay for torch. Each command lives in its own `commands_*.py` module that
registers a sub-parser and a handler.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from finetune_tui import __version__
from finetune_tui.engine.errors import FinetuneError

COMMAND_MODULES = ("commands_plan", "commands_export", "commands_runs")
ERROR_PREFIX = "finetune-tui: error: "  # every error line starts so (workers' are found by it)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finetune-tui",
        description=(
            "Fine-tune an LLM on the GPU you have. With no arguments, opens the interactive "
            "wizard; with --preset FILE, trains headless (no TTY needed)."
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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"finetune_tui.{name}").register(sub)
    return parser


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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _launcher_variables(worker=bool(args.worker))
        if getattr(args, "handler", None) is not None:
            code = int(args.handler(args) or 0)
            sys.stdout.flush()  # a closed pipe shows up here, inside the handler below
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
        message = " ".join(str(exc).split())  # library messages can span lines
        print(f"{ERROR_PREFIX}{message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("finetune-tui: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _reader_went_away()
    except Exception as exc:  # a bug of ours: still one line, the traceback on request
        if args.debug:
            raise
        print(
            f"finetune-tui: internal error: {type(exc).__name__}: {' '.join(str(exc).split())}"
            " (rerun with --debug for the traceback, and please report it)",
            file=sys.stderr,
        )
        return 1


def _launcher_variables(worker: bool) -> None:
    """RANK, WORLD_SIZE ... count only inside our own launch (engine/launcher_env.py);
    elsewhere they are dropped before anything reads them, with one warning line."""
    from finetune_tui.engine.launcher_env import apply_policy

    warning = apply_policy(worker)
    if warning:
        print(f"finetune-tui: warning: {warning}", file=sys.stderr)


def _reader_went_away() -> int:
    """`finetune-tui plan --json | head`: the reader closed the pipe; exit quietly.

    Python would report the failed flush of stdout at exit; point stdout at /dev/null so
    it does not (the pattern the Python documentation gives for SIGPIPE).
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141  # 128 + SIGPIPE, what a shell reports for a reader that left


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
