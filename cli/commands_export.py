"""`finetune-tui export --preset FILE -o train.py`: a script that trains without us."""

from __future__ import annotations

import argparse
from pathlib import Path

from finetune_tui.main import add_settings_arguments


def register(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser(
        "export", help="write a standalone training script (+ preset) for these settings"
    )
    export.add_argument("--preset", metavar="FILE", help="settings to export (default: defaults)")
    add_settings_arguments(export)
    export.add_argument("-o", "--output", default="train.py", metavar="FILE", help="script path")
    export.add_argument(
        "--force", action="store_true", help="replace existing output files (never the inputs)"
    )
    export.add_argument("--gpus", type=int, default=1, help="GPUs per node for accelerate launch")
    export.add_argument("--nodes", type=int, default=1, help="machines (with --slurm)")
    export.add_argument(
        "--slurm", action="store_true", help="also write an sbatch script: one launch per node"
    )
    export.add_argument(
        "--distributed",
        choices=["fsdp", "deepspeed"],
        default="fsdp",
        help="multi-GPU strategy: FSDP full-shard or DeepSpeed ZeRO-3 with CPU offload",
    )
    export.set_defaults(handler=export_command)


def export_command(args: argparse.Namespace) -> int:
    from finetune_tui.engine.errors import InputError
    from finetune_tui.engine.export import export_distribution, export_run
    from finetune_tui.engine.preset import settings_from_arguments

    if args.gpus < 1 or args.nodes < 1:
        raise InputError(f"--gpus {args.gpus} --nodes {args.nodes}: each must be at least 1")
    settings = settings_from_arguments(args.preset, args.overrides)
    spread = export_distribution(settings, args.gpus, args.distributed, args.nodes)
    if spread.nodes > 1 and not args.slurm:
        raise InputError("--nodes: several machines are launched through SLURM; add --slurm")
    if args.slurm and spread.world_size < 2:
        raise InputError("--slurm: give the machines and GPUs, e.g. --nodes 2 --gpus 8")
    if not args.output.strip():
        raise InputError("-o: empty path; give the script's file name, e.g. train.py")
    inputs = (Path(args.preset),) if args.preset else ()
    exported = export_run(
        settings,
        args.output,
        gpus=args.gpus,
        distributed=args.distributed,
        inputs=inputs,
        force=args.force,
        nodes=args.nodes,
        slurm=args.slurm,
    )
    print(f"script:  {exported.script}")
    print(f"preset:  {exported.preset}")
    if exported.accelerate_config:
        print(f"accelerate config: {exported.accelerate_config}")
    if exported.sbatch:
        print(f"sbatch script: {exported.sbatch} (shared storage: same paths on every node)")
    print("run it with:")
    for command in exported.commands:
        print(f"  {command}")
    return 0
