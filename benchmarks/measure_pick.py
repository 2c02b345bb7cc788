"""`finetune-tui plan --measure` on a real GPU, as a user runs it: what the advisor predicted
for its top candidates beside what each measured in a few steps, and which one was picked.

A random-weight model of a catalog architecture (memory and speed do not depend on the
values) with the demo's tokenizer and plain-text data of a given length stand in for the
user's model and data; the command is the product's own, its table kept as printed.

    python benchmarks/measure_pick.py --model Qwen/Qwen2.5-1.5B --seq 1024 --out measure.jsonl

Prints one JSON line (and appends it to --out).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import backends as bench  # noqa: E402

ROW = re.compile(
    r"^(?P<mark>[* ]) (?P<label>.{44}) +(?P<pred_gib>[\d.]+) +(?P<pred_speed>[\d.]+)x"
    r" +(?P<peak>[\d.]+|no VRAM|-) +(?P<tps>[\d,]+|-)(?P<note>.*)$"
)


def candidates_from(lines: list[str]) -> list[dict]:
    """The table's candidate rows as fields (the printed table is the product's answer)."""
    rows = []
    for line in lines:
        found = ROW.match(line)
        if not found:
            continue
        peak, tps = found["peak"], found["tps"]
        rows.append(
            {
                "label": found["label"].strip(),
                "picked": found["mark"] == "*",
                "predicted_gib": float(found["pred_gib"]),
                "predicted_speed": float(found["pred_speed"]),
                "measured_gib": float(peak) if re.fullmatch(r"[\d.]+", peak) else None,
                "tokens_per_second": float(tps.replace(",", "")) if tps != "-" else None,
                "note": found["note"].strip(),
            }
        )
    return rows


def row(args: argparse.Namespace, root: Path) -> dict:
    model = bench.build_from_config(bench.family_config(args.model, args.layers), root / "model")
    data = bench.write_dataset(root / "data.jsonl", args.seq, samples=args.samples)
    command = [sys.executable, "-m", "finetune_tui", "plan", "--model", str(model)]
    command += ["--dataset", str(data), "--measure"]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, errors="replace")
    lines = done.stdout.splitlines()
    return {
        "model": args.model,
        "layers": args.layers,
        "seq": args.seq,
        "exit": done.returncode,
        "seconds": round(time.monotonic() - started, 1),
        "candidates": candidates_from(lines),
        "table": lines,
        "stderr_tail": done.stderr[-1500:] if done.returncode not in (0, 3) else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="catalog ID")
    parser.add_argument("--layers", type=int, default=None, help="keep this many layers")
    parser.add_argument("--seq", type=int, default=1024, help="data length, tokens")
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--root", type=Path, default=Path("/tmp/measure-pick"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    folder = args.root / args.model.replace("/", "--")
    folder.mkdir(parents=True, exist_ok=True)
    line = json.dumps(row(args, folder) | {"versions": bench.versions()})
    print(line)
    if args.out:
        with args.out.open("a") as out:
            out.write(line + "\n")


if __name__ == "__main__":
    main()
