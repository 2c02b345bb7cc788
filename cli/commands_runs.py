"""`finetune-tui runs` and `finetune-tui attach [RUN]`: look at runs from any login."""

from __future__ import annotations

import argparse
import sys

from finetune_tui.engine.common.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    runs = sub.add_parser(
        "runs",
        help="list runs with status, step, loss, age and VRAM (all known runs, or those in DIR)",
    )
    runs.add_argument("dir", nargs="?", help="a folder holding run directories")
    runs.add_argument("--json", action="store_true", help="machine-readable output")
    runs.set_defaults(handler=list_command)

    attach = sub.add_parser(
        "attach", help="watch a run's live panel (read-only; default: the newest run)"
    )
    attach.add_argument("run", nargs="?", help="run directory or name")
    attach.add_argument(
        "--plain", action="store_true", help="print progress lines instead of the panel"
    )
    attach.set_defaults(handler=attach_command)


def list_command(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from finetune_tui.engine.runs.event_text import printable
    from finetune_tui.engine.runs.status import list_runs

    root = Path(args.dir).expanduser() if args.dir else None
    if root is not None and not root.is_dir():  # "no runs yet" for a folder that is not there
        from finetune_tui.engine.common.errors import InputError

        raise InputError(f"{root}: no such folder (runs lists the run folders inside one)")
    runs = list_runs(root)
    if args.json:
        rows = [
            {
                "name": r.name,
                "path": str(r.path),
                "status": r.status,
                "step": r.step,
                "total_steps": r.total_steps,
                "loss": r.loss,
                "age_s": round(r.age_s, 1),
                "peak_reserved_gib": r.peak_reserved_gib,
                "predicted_peak_reserved_gib": r.predicted_peak_reserved_gib,
            }
            for r in runs
        ]
        print(json.dumps(rows, indent=2))
        return 0
    if not runs:
        print("no runs yet")
        return 0
    header = f"{'RUN':<40} {'STATUS':<12} {'STEP':>11} {'LOSS':>8} {'AGE':>8}"
    print(f"{header} {'VRAM GiB (measured/predicted)':>30}")
    for r in runs:
        step = f"{r.step}/{r.total_steps}" if r.step is not None else "-"
        loss = f"{r.loss:.4f}" if r.loss is not None else "-"
        vram = "-"
        if r.peak_reserved_gib is not None:
            predicted = r.predicted_peak_reserved_gib
            vram = f"{r.peak_reserved_gib:.2f}/" + (f"{predicted:.2f}" if predicted else "-")
        row = f"{printable(_typed(r.path)):<40} {r.status:<12} {step:>11} {loss:>8}"
        row += f" {_age(r.age_s):>8}"
        print(f"{row} {vram:>30}")
    return 0


def _typed(run_dir) -> str:
    """What to type to name the run in merge, attach, --resume: its name in the runs
    folder, else its path (~ for the home folder): runs made with --output elsewhere often
    share a name."""
    from pathlib import Path

    from finetune_tui.engine.runs.layout import runs_root

    if run_dir.parent == runs_root():
        return run_dir.name
    home = Path.home()
    return f"~/{run_dir.relative_to(home)}" if run_dir.is_relative_to(home) else str(run_dir)


def attach_command(args: argparse.Namespace) -> int:
    from finetune_tui.engine.runs.event_text import printable
    from finetune_tui.engine.runs.status import find_run

    run_dir = find_run(args.run)
    if run_dir is None:
        raise InputError(f"{printable(args.run or 'runs')}: no such run (see finetune-tui runs)")
    if args.plain or not sys.stdout.isatty():
        return _follow_plain(run_dir)
    from finetune_tui.tui.app import run_attach

    return run_attach(run_dir)


def _follow_plain(run_dir) -> int:
    from finetune_tui.engine.runs.event_text import printable
    from finetune_tui.engine.runs.metrics import follow_events
    from finetune_tui.headless import print_event, say

    say(f"attached to {printable(run_dir)} (read-only; Ctrl-C detaches, the run goes on)")
    try:
        for event in follow_events(run_dir):
            print_event(event)
    except KeyboardInterrupt:
        say("detached")
    return 0


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"
