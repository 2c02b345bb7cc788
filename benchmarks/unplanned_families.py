"""The families transformers builds that the planner has no memory model for yet, trained a
few steps through the product (unplanned) or refused before their run folder: none may fail
at its first step.

Small models of each real architecture (the family's own module classes, widths cut, random
weights), the demo's tokenizer and data, the demo preset headless, each run in its own
process; one JSON line a run: trained / refused / failed, the adapted modules, the trainable
parameters, the peak reserved memory.

    python benchmarks/unplanned_families.py --out unplanned.jsonl --quant none,nf4
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import backends as bench  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(
    hidden_size=256,
    intermediate_size=512,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=64,
    max_position_embeddings=2048,
)
LINEAR_ATTENTION = dict(
    linear_num_value_heads=4,
    linear_num_key_heads=2,
    linear_key_head_dim=64,
    linear_value_head_dim=64,
)
FAMILIES = {  # model_type -> what its config needs beyond SMALL
    "qwen3_5_text": LINEAR_ATTENTION,  # gated-DeltaNet layers, every 4th full attention
    "qwen3_next": LINEAR_ATTENTION
    | dict(
        num_experts=8,
        num_experts_per_tok=2,
        moe_intermediate_size=128,
        shared_expert_intermediate_size=128,
    ),
    "qwen3_5_moe_text": LINEAR_ATTENTION
    | dict(
        num_experts=8,
        num_experts_per_tok=2,
        moe_intermediate_size=128,
        shared_expert_intermediate_size=128,
    ),
    "gemma4_text": {},
    "llama4_text": dict(num_local_experts=4, num_experts_per_tok=1, intermediate_size_mlp=512),
}


def config_of(model_type: str) -> dict:
    """The small config, its vocabulary the demo tokenizer's (its byte-level layout, which
    build_from_config writes where a class forces its own tokenizer, has the same ids)."""
    from transformers import AutoTokenizer

    from finetune_tui.engine.common.demo import ensure_demo_model

    vocab = len(AutoTokenizer.from_pretrained(ensure_demo_model()))
    return {"model_type": model_type, **SMALL, **FAMILIES[model_type], "vocab_size": vocab}


def train(model: Path, quant: str, run: Path, steps: int) -> dict:
    """The product headless on this model: its outcome as one row."""
    sets = {
        "model.name_or_path": model,
        "quantization.mode": quant,
        "training.max_steps": steps,
        "training.logging_steps": 1,
        "training.exact_match_samples": 0,
        "dataset.eval_fraction": 0,
    }
    args = ["--preset", str(ROOT / "presets" / "demo.yaml"), "--output", str(run)]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "finetune_tui", *args],
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    lines = done.stderr.strip().splitlines() or done.stdout.strip().splitlines() or [""]
    summary = json.loads((run / "summary.json").read_text()) if done.returncode == 0 else {}
    outcome = "trained" if done.returncode == 0 else "refused" if not run.exists() else "failed"
    return {
        "quant": quant,
        "outcome": outcome,
        "error": None if done.returncode == 0 else lines[-1][:300],
        "steps": summary.get("step"),
        "lora_target_modules": summary.get("lora_target_modules"),
        "trainable_params": summary.get("trainable_params"),
        "peak_reserved_gib": summary.get("peak_reserved_gib"),
        "wall_s": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="unplanned.jsonl")
    parser.add_argument("--work", default="/tmp/ftunplanned")
    parser.add_argument("--only", default=",".join(FAMILIES))
    parser.add_argument("--quant", default="none", help="none, nf4 (GPU), comma-separated")
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    work = Path(args.work)
    with open(args.out, "a", buffering=1) as out:
        out.write(json.dumps(bench.versions() | {"date": time.strftime("%Y-%m-%d")}))
        out.write("\n")
        for model_type in args.only.split(","):
            folder = bench.build_from_config(config_of(model_type), work / model_type)
            for quant in args.quant.split(","):
                run = work / "runs" / f"{model_type}-{quant}"
                row = {"model_type": model_type} | train(folder, quant, run, args.steps)
                print(json.dumps(row), flush=True)
                out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
