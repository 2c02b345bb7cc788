"""`finetune-tui merge` on a real architecture: the plan's host and GPU memory beside what the
merge used, its time, and the parity of the merged model with the adapter on its base.

A random-weight model of a catalog architecture (memory and time do not depend on the
values) with the demo's tokenizer is trained a few steps through the product (NF4 QLoRA on a
GPU, LoRA on a CPU, on the demo's chat task with a tenth held out), then merged through the
product; merge_report.json holds the plan, the measurement and the parity.

    python benchmarks/merge_bench.py --model meta-llama/Llama-3.1-8B --out merge.jsonl
    python benchmarks/merge_bench.py --model meta-llama/Llama-3.2-1B --steps 1   # on a CPU

Prints one JSON line (and appends it to --out).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import backends as bench  # noqa: E402

PRESET = Path(__file__).resolve().parent.parent / "presets" / "demo.yaml"


def cli(*args: str) -> subprocess.CompletedProcess:
    """The product, as a user runs it."""
    command = [sys.executable, "-m", "finetune_tui", *args]
    return subprocess.run(command, capture_output=True, text=True)


def train(model: Path, run: Path, steps: int, gpu: bool) -> None:
    """A few LoRA steps (QLoRA on a GPU) on the demo's chat task, a tenth held out."""
    sets = {
        "model.name_or_path": str(model),
        "training.max_steps": steps,
        "training.learning_rate": 1e-4,  # the demo's 3e-3 is for a model that knows nothing
        "training.micro_batch_size": 2,
        "training.max_seq_length": 128,
        "training.exact_match_samples": 0,
        "dataset.max_samples": 64,
        "dataset.eval_fraction": 0.1,
        "quantization.mode": "nf4" if gpu else "none",
    }
    args = [arg for key, value in sets.items() for arg in ("--set", f"{key}={value}")]
    result = cli("--preset", str(PRESET), "--output", str(run), *args)
    if result.returncode != 0:
        raise SystemExit(f"training failed: {result.stderr[-2000:]}")


def row(args: argparse.Namespace, root: Path) -> dict:
    import torch

    gpu = torch.cuda.is_available()
    started = time.monotonic()
    config = bench.family_config(args.model, args.layers)
    if args.ship:  # llama.cpp loads no file whose vocabulary is short of its embedding rows
        config["vocab_size"] = tokenizer_size(root)
    model = bench.build_from_config(config, root / "model")
    built = time.monotonic()
    train(model, root / "run", args.steps, gpu)
    trained = time.monotonic()
    merged = root / "merged"
    result = cli("merge", str(root / "run"), "-o", str(merged))
    if result.returncode not in (0, 1):
        raise SystemExit(f"merge failed: {result.stderr[-2000:]}")
    report = json.loads((merged / "merge_report.json").read_text())
    plan, measured, parity = report["plan"], report["measured"], report["parity"]
    line = {
        "model": args.model,
        "layers": args.layers,
        "vocab_size": config.get("vocab_size"),
        "device": torch.cuda.get_device_name(0) if gpu else "CPU",
        "run_quantization": report["run_quantization"],
        "merged_dtype": report["merged_dtype"],
        "plan_host_gib": plan["host_needed"],
        "measured_host_added_gib": measured["host_added_gib"],
        "host_error_pct": _error(plan["host_needed"], measured["host_added_gib"]),
        "seconds_merge": measured["seconds"],
        "parity_identical": parity["identical"],
        "max_logprob_difference": parity["max_logprob_difference"],
        "seconds_build": round(built - started, 1),
        "seconds_train": round(trained - built, 1),
        "versions": bench.versions(),
        "date": time.strftime("%Y-%m-%d"),
        "stdout": result.stdout.strip().splitlines(),
    }
    if "gpu_peak_reserved_gib" in measured:
        line["plan_gpu_gib"] = plan["gpu_needed"]
        line["measured_gpu_reserved_gib"] = measured["gpu_peak_reserved_gib"]
        line["gpu_error_pct"] = _error(plan["gpu_needed"], measured["gpu_peak_reserved_gib"])
    return line


def tokenizer_size(root: Path) -> int:
    """Tokens in the demo tokenizer the benchmark models carry."""
    from bench_tokenizer import save_byte_tokenizer
    from transformers import AutoTokenizer

    save_byte_tokenizer(root / "tokenizer")
    return len(AutoTokenizer.from_pretrained(root / "tokenizer"))


def ship_gguf(merged: Path, target: Path, quants: str) -> dict:
    """`finetune-tui ship --to gguf`: each file converted by llama.cpp's own converter
    ($LLAMA_CPP_DIR) and run in llama.cpp on the merge's held-out prompts."""
    started = time.monotonic()
    result = cli("ship", str(merged), "--to", "gguf", "--quant", quants, "-o", str(target))
    report = target / "gguf_report.json"
    return {
        "exit": result.returncode,
        "seconds": round(time.monotonic() - started, 1),
        "files": {f.name: f.stat().st_size for f in target.glob("*.gguf")},
        "report": json.loads(report.read_text()) if report.exists() else None,
        "stdout": result.stdout.strip().splitlines()[-8:],
        "stderr": result.stderr.strip().splitlines()[-4:],
    }


def _error(planned: float, measured: float) -> float | None:
    """(planned - measured) / measured, in per cent: positive is a plan on the safe side."""
    return round(100 * (planned - measured) / measured, 1) if measured else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="meta-llama/Llama-3.1-8B", help="a catalog name")
    parser.add_argument("--layers", type=int, default=None, help="keep this many layers")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--out", default="")
    parser.add_argument("--root", default="", help="work folder (default: a temporary one)")
    parser.add_argument("--ship", default="", help="then ship to GGUF in these quantizations")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.root or None) as root:
        write(row(args, Path(root)), args.out)  # kept before shipping, which may run long
        if args.ship:
            gguf = ship_gguf(Path(root) / "merged", Path(root) / "gguf", args.ship)
            write({"model": args.model, "gguf": gguf, "date": time.strftime("%Y-%m-%d")}, args.out)
    return 0


def write(line: dict, out: str) -> None:
    """One JSON line, printed and appended to --out as soon as it is known."""
    text = json.dumps(line)
    print(text, flush=True)
    if out:
        with open(out, "a", encoding="utf-8") as file:
            file.write(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
