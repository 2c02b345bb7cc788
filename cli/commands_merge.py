"""`finetune-tui merge RUN [-o DIR]`: the run's adapter merged into its 16-bit base, in a new
folder any transformers user loads, with a proof that it answers as the adapter did."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    merge = sub.add_parser(
        "merge",
        help="merge a run's LoRA adapter into its base (bf16, or fp32 on a CPU) and check "
        "the merged model answers as the adapter did",
    )
    merge.add_argument("run", help="run directory or name (see finetune-tui runs)")
    merge.add_argument(
        "-o",
        "--output",
        metavar="DIR",
        help="new folder for the merged model (default: RUN-merged beside the run)",
    )
    merge.add_argument(
        "--max-shard-size", default="5GB", metavar="SIZE", help="largest safetensors shard"
    )
    merge.add_argument(
        "--prompts", type=int, default=4, metavar="N", help="held-out prompts the check uses"
    )
    merge.add_argument(
        "--tokens", type=int, default=16, metavar="N", help="greedy tokens that must agree"
    )
    merge.set_defaults(handler=merge_command)


def merge_command(args: argparse.Namespace) -> int:
    """0: merged and proved; 1: written, but the merged model answers differently (or a
    full fine-tuning's model lacks a stop token); 2: refused, nothing written."""
    from pathlib import Path

    from finetune_tui.engine.common.errors import InputError
    from finetune_tui.engine.deliver.generate import MAX_NEW_TOKENS_LIMIT
    from finetune_tui.engine.deliver.merge import merge_run
    from finetune_tui.engine.runs.event_text import printable
    from finetune_tui.engine.runs.status import find_run

    for flag, value in (("--prompts", args.prompts), ("--tokens", args.tokens)):
        if value < 1:
            raise InputError(f"{flag} {value}: must be at least 1")
    if args.tokens > MAX_NEW_TOKENS_LIMIT:
        raise InputError(f"--tokens {args.tokens}: must be 1..{MAX_NEW_TOKENS_LIMIT}")
    run_dir = find_run(args.run)
    if run_dir is None:
        raise InputError(f"{printable(args.run)}: no such run (see finetune-tui runs)")
    result = merge_run(
        Path(run_dir),
        Path(args.output) if args.output else None,
        args.max_shard_size,
        args.prompts,
        args.tokens,
        say=lambda line: print(printable(line), flush=True),
    )
    print(printable(result.line))
    return 0 if result.ok else 1
