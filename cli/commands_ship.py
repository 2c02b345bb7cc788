"""`finetune-tui ship DIR --to gguf|ollama|vllm`: serve a finished model elsewhere."""

from __future__ import annotations

import argparse

TARGETS = ("gguf", "ollama", "vllm")


def register(sub: argparse._SubParsersAction) -> None:
    ship = sub.add_parser(
        "ship",
        help="make a model folder ready for llama.cpp (GGUF), Ollama (Modelfile) or vLLM",
    )
    ship.add_argument(
        "folder", metavar="DIR", help="a model folder (e.g. from merge) or a run folder"
    )
    ship.add_argument("--to", required=True, choices=TARGETS, help="where the model goes")
    ship.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="gguf: a new folder (default NAME-gguf beside DIR); ollama: the Modelfile "
        "(default DIR/Modelfile); vllm: the script (default DIR/serve-vllm.sh); for a "
        "Hugging Face cache snapshot the defaults are in the current folder",
    )
    ship.add_argument(
        "--quant",
        default="q8_0",
        metavar="LIST",
        help="gguf: comma-separated f16, q8_0, q4_k_m (default q8_0)",
    )
    ship.add_argument("--gguf", metavar="FILE", help="ollama: FROM this GGUF file, not DIR")
    ship.add_argument(
        "--name",
        metavar="NAME",
        help="served as NAME (lower-case ASCII letters, digits, '.', '_', '-'; at most 64); "
        "default: DIR's name made to fit",
    )
    ship.set_defaults(handler=ship_command)


def ship_command(args: argparse.Namespace) -> int:
    from finetune_tui.engine.common.errors import InputError
    from finetune_tui.engine.deliver.ship import ship
    from finetune_tui.engine.runs.event_text import printable

    if args.gguf and args.to != "ollama":
        raise InputError("--gguf: only with --to ollama")
    quants = [q.strip().lower() for q in args.quant.split(",") if q.strip()]
    shipped = ship(
        args.folder,
        args.to,
        args.output,
        quants,
        args.gguf,
        say=lambda line: print(printable(line), flush=True),
        name=args.name,
    )
    for note in shipped.notes:
        print(printable(note))
    if shipped.commands:
        print("next:")
    for command in shipped.commands:
        print(f"  {printable(command)}")
    return 1 if shipped.failed else 0
