"""`finetune-tui export --preset FILE -o train.py`: a script that trains without us."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from finetune_tui.main import add_settings_arguments

SCRIPT_NAME = "train.py"


def register(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser(
        "export", help="write a standalone training script (+ preset) for these settings"
    )
    export.add_argument("--preset", metavar="FILE", help="settings to export (default: defaults)")
    add_settings_arguments(export)
    export.add_argument(
        "-o",
        "--output",
        default=SCRIPT_NAME,
        metavar="FILE",
        help=f"script file (a folder is refused: give e.g. DIR/{SCRIPT_NAME})",
    )
    export.add_argument(
        "--force", action="store_true", help="replace existing output files (never the inputs)"
    )
    # None: not given (the settings' distributed section, else 1); given, they must agree
    export.add_argument("--gpus", type=int, help="GPUs per node for accelerate launch")
    export.add_argument("--nodes", type=int, help="machines (with --slurm)")
    export.add_argument(
        "--slurm", action="store_true", help="also write an sbatch script: one launch per node"
    )
    export.add_argument(
        "--distributed",
        choices=["fsdp", "deepspeed"],
        help="multi-GPU strategy: FSDP full-shard (default) or DeepSpeed ZeRO-3 with CPU offload",
    )
    export.set_defaults(handler=export_command)


def export_command(args: argparse.Namespace) -> int:
    from finetune_tui.engine.common.errors import InputError
    from finetune_tui.engine.export.files import export_distribution, export_run
    from finetune_tui.engine.runs.event_text import printable
    from finetune_tui.engine.settings.preset import (
        layout_flag_changes,
        settings_from_arguments,
        with_changes,
    )

    for flag, value in (("--gpus", args.gpus), ("--nodes", args.nodes)):
        if value is not None and value < 1:
            raise InputError(f"{flag} {value}: must be at least 1")
    settings = settings_from_arguments(args.preset, args.overrides)
    flags = {
        "distributed.processes": ("--gpus", args.gpus),
        "distributed.nodes": ("--nodes", args.nodes),
        "distributed.strategy": ("--distributed", args.distributed),
    }
    changes = layout_flag_changes(settings, flags, args.preset, args.overrides)
    if settings.distributed.launched and changes:  # its section is exported: flags fill it in
        settings = with_changes(settings, changes, source=" ".join(flags[f][0] for f in changes))
    args.gpus, args.nodes = args.gpus or 1, args.nodes or 1
    args.distributed = args.distributed or "fsdp"
    spread = export_distribution(settings, args.gpus, args.distributed, args.nodes)
    if spread.nodes > 1 and not args.slurm:
        raise InputError("--nodes: several machines are launched through SLURM; add --slurm")
    if args.slurm and spread.world_size < 2:
        raise InputError("--slurm: give the machines and GPUs, e.g. --nodes 2 --gpus 8")
    inputs = (Path(args.preset),) if args.preset else ()
    exported = export_run(
        settings,
        script_path(args.output),
        gpus=args.gpus,
        distributed=args.distributed,
        inputs=inputs,
        force=args.force,
        nodes=args.nodes,
        slurm=args.slurm,
    )
    print(f"script:  {printable(exported.script)}")
    print(f"preset:  {printable(exported.preset)}")
    if exported.accelerate_config:
        print(f"accelerate config: {printable(exported.accelerate_config)}")
    if exported.sbatch:
        print(
            f"sbatch script: {printable(exported.sbatch)} "
            "(shared storage: same paths on every node)"
        )
    print("run it with:")
    for command in exported.commands:
        print(f"  {printable(command)}")
    return 0


def script_path(output: str) -> Path:
    """Where `-o` puts the script: a file, never a folder (`.`, `/`, an existing folder or
    any path ending in /: one line naming the file to give instead). A relative path
    starting with '-' is made absolute, so no printed command (`python -cprint(1)#.py`)
    reads it as an option."""
    from finetune_tui.engine.common.errors import InputError
    from finetune_tui.engine.runs.event_text import printable

    if not output.strip():
        raise InputError(f"-o: empty path; give the script's file name, e.g. {SCRIPT_NAME}")
    path = Path(output).expanduser()
    if output.endswith(("/", os.sep)) or not path.name or path.is_dir():
        folder = output.rstrip("/") or "/"
        raise InputError(
            f"-o {printable(output)}: is a directory; give the script's file name, e.g. "
            f"{printable(os.path.join(folder, SCRIPT_NAME))}"
        )
    if str(path).startswith("-"):
        path = Path(os.path.abspath(path))
    return path
