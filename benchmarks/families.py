"""Family x backend x quantisation matrix on a real GPU, through the product's runner.

Every family of the catalog (layers cut where the model is large: memory is per layer and
the plan is made for the cut model), every backend the plan offers for it, NF4 and 16-bit:
a few steps each in its own process (benchmarks/backends.py `one`), recording predicted vs
measured peak reserved, the LoRA modules actually adapted and the trainable parameters.
A backend the plan refuses is recorded as refused, with the plan's reason, and not run.

Families run side by side (--parallel): each process has its own torch pool, so peak
allocated / reserved are per process and exact, but tokens/s of a parallel matrix is not a
speed measurement (rows say `parallel`).

    python benchmarks/families.py --out families.jsonl --parallel 6
    python benchmarks/families.py --only gemma-3-1b,phi-3-mini --backends unsloth --mbs 8,32
    python benchmarks/families.py --only llama-3.2-1b --objective dpo,orpo --backends hf,liger
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import backends as bench  # noqa: E402

# short name -> (catalog ID, layers kept; None = all)
FAMILIES = {
    "llama-3.2-1b": ("meta-llama/Llama-3.2-1B", None),
    "qwen2.5-1.5b": ("Qwen/Qwen2.5-1.5B", None),
    "gemma-2-2b": ("google/gemma-2-2b", None),
    "gemma-3-1b": ("google/gemma-3-1b-pt", None),
    "gemma-3-4b": ("google/gemma-3-4b-pt", None),
    "phi-3-mini": ("microsoft/Phi-3-mini-4k-instruct", None),
    "phi-4-8l": ("microsoft/phi-4", 8),
    "mistral-7b-8l": ("mistralai/Mistral-7B-v0.3", 8),
    "mistral-nemo-8l": ("mistralai/Mistral-Nemo-Base-2407", 8),
    "qwen3-8b-8l": ("Qwen/Qwen3-8B", 8),
    "qwen3-30b-a3b-4l": ("Qwen/Qwen3-30B-A3B", 4),
    "mixtral-8x7b-2l": ("mistralai/Mixtral-8x7B-v0.1", 2),
    "olmoe-1b-7b-4l": ("allenai/OLMoE-1B-7B-0924", 4),
    "deepseek-v2-lite-4l": ("deepseek-ai/DeepSeek-V2-Lite", 4),
    "phi-3.5-moe-2l": ("microsoft/Phi-3.5-MoE-instruct", 2),
    "pythia-1b": ("EleutherAI/pythia-1b", None),
    "falcon-7b-8l": ("tiiuae/falcon-7b", 8),
    "starcoder2-3b-8l": ("bigcode/starcoder2-3b", 8),
    "qwen3.5-9b-4l": ("Qwen/Qwen3.5-9B", 4),  # 3 gated DeltaNet layers, 1 full attention
    "qwen3.5-27b-4l": ("Qwen/Qwen3.5-27B", 4),
    "qwen3.5-35b-a3b-4l": ("Qwen/Qwen3.5-35B-A3B", 4),  # 256 experts, top 8, a shared expert
    "qwen3-next-80b-a3b-4l": ("Qwen/Qwen3-Next-80B-A3B-Instruct", 4),  # 512 experts, top 10
    "llama-4-scout-2l": ("meta-llama/Llama-4-Scout-17B-16E", 2),  # every expert, every token
    # 3 sliding layers (head width 256), 1 full (512), per-layer embeddings, both towers
    "gemma-4-e2b-4l": ("google/gemma-4-E2B", 4),
}
QUANT = {"nf4": {"quantization.mode": "nf4"}, "bf16": {"quantization.mode": "none"}}
CHECKPOINTING = {"hf": "on", "liger": "on", "unsloth": "unsloth"}


def add_catalog_families() -> None:
    """A model type of the catalog not named above (a new family) joins the matrix with its
    first catalog entry, cut to 4 layers."""
    from finetune_tui.engine.inspect.catalog import CATALOG

    known = {CATALOG[cid]["model_type"] for cid, _ in FAMILIES.values()}
    for cid, config in CATALOG.items():
        if config["model_type"] not in known:
            known.add(config["model_type"])
            FAMILIES[cid.split("/")[-1].lower() + "-4l"] = (cid, 4)


def build(name: str, root: Path) -> Path:
    """A random-weight model of the family (the catalog's config, cut), saved once."""
    return bench.build_from_config(bench.family_config(*FAMILIES[name]), root / name)


def offered_backends(model_dir: Path) -> dict[str, str | None]:
    """Backend -> None when the plan offers it for this model, else the plan's reason."""
    from finetune_tui.engine.inspect.models import inspect_model

    return dict(inspect_model(str(model_dir)).supported_backends)


def write_preference_dataset(path: Path, seq_len: int, samples: int, paired: bool) -> Path:
    """Preference records whose prompt + answer fill seq_len tokens (byte-level tokenizer):
    prompt / chosen / rejected, or KTO's prompt / completion / label when not paired."""
    import random

    rng = random.Random(0)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]

    def text(tokens: int) -> str:
        return " ".join(rng.choice(words) for _ in range(tokens // 6 + 2))

    with path.open("w") as file:
        for index in range(samples):
            prompt = text(seq_len // 4)
            if paired:
                record = {"prompt": prompt, "chosen": text(seq_len), "rejected": text(seq_len)}
            else:
                record = {"prompt": prompt, "completion": text(seq_len), "label": index % 2 == 0}
            file.write(json.dumps(record) + "\n")
    return path


def cells(args, model_dir: Path, data: Path, name: str):
    """Every quantisation x backend x micro-batch cell, once per objective (a preference
    objective's cell reads that objective's records)."""
    offered = offered_backends(model_dir)
    for objective in args.objective.split(","):
        for label, backend, refusal, settings in sft_cells(args, model_dir, data, name, offered):
            if objective != "sft":
                label = f"{objective} {label}"
                settings["training.objective"] = objective
                settings["dataset.path"] = str(data.with_name(f"{objective}-{data.name}"))
                settings["output.dir"] += f"-{objective}"
            yield label, backend, refusal, settings


def sft_cells(args, model_dir: Path, data: Path, name: str, offered: dict):
    runs = model_dir.parent / "runs"
    for quant in args.quant.split(","):
        for backend in args.backends.split(","):
            for mbs in [int(b) for b in args.mbs.split(",")]:
                label = f"{backend} {quant} b{mbs}"
                settings = {
                    **bench.BASE,
                    **QUANT[quant],
                    "memory.backend": backend,
                    "memory.gradient_checkpointing": CHECKPOINTING[backend],
                    "training.micro_batch_size": mbs,
                    "training.max_seq_length": args.seq,
                    "model.name_or_path": str(model_dir),
                    "dataset.path": str(data),
                    "training.max_steps": args.steps,
                    "output.dir": str(runs / f"{name}-{label.replace(' ', '-')}"),
                    **dict(pair.split("=", 1) for pair in args.set),
                }
                yield label, backend, offered.get(backend), settings


def build_in_child(name: str, root: Path, timeout: int) -> tuple[Path | None, str]:
    """Build in a process of its own (threads building CUDA models side by side hung)."""
    catalog_id, layers = FAMILIES[name]  # a preset's entry exists only in this process
    cmd = [sys.executable, __file__, "--build", name, "--work", str(root)]
    cmd += ["--build-catalog", catalog_id, "--build-layers", str(layers or 0)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"build: timeout after {timeout}s"
    if proc.returncode:
        return None, "build: " + ((proc.stderr or proc.stdout).strip().splitlines() or ["?"])[-1]
    return root / name, ""


def run_family(args, name: str, root: Path) -> list[dict]:
    model_dir, error = build_in_child(name, root, args.timeout)
    if model_dir is None:  # an architecture this transformers cannot build: one row
        row = {"family": name, "catalog": FAMILIES[name][0], "ok": False, "error": error[:400]}
        emit(args.out, row)
        return [row]
    data = bench.write_dataset(root / f"data-{name}.jsonl", args.seq, samples=256)
    for objective in set(args.objective.split(",")) - {"sft"}:
        target = data.with_name(f"{objective}-{data.name}")
        write_preference_dataset(target, args.seq, samples=256, paired=objective != "kto")
    with ThreadPoolExecutor(max_workers=args.cells) as pool:  # each cell is its own process
        rows = list(
            pool.map(lambda cell: run_cell(args, name, *cell), cells(args, model_dir, data, name))
        )
    if not args.keep:
        shutil.rmtree(model_dir, ignore_errors=True)
    return rows


def run_cell(args, name: str, label: str, backend: str, refusal, settings: dict) -> dict:
    """One cell: refused with the plan's reason, or trained a few steps in its own process."""
    row = {
        "config": bench.family_config(*FAMILIES[name]),  # as built: the catalog may change
        "family": name,
        "catalog": FAMILIES[name][0],
        "layers": FAMILIES[name][1],
        "label": label,
        "backend": backend,
        "parallel": args.parallel * args.cells,
    }
    if refusal:
        row.update(ok=False, refused=refusal)
    else:
        spec = {"arch": name, "card_gib": 0, "label": label, "settings": settings}
        row.update(bench.run_child(spec, args.timeout))
        row.pop("settings", None)
        row["settings"] = {k: v for k, v in settings.items() if not k.endswith("path")}
    row["date"] = time.strftime("%Y-%m-%d")
    emit(args.out, row)
    return row


def run_preset(args, preset: str, root: Path) -> None:
    """A one-GPU preset as shipped: its architecture with random weights, its own settings,
    torch's pool capped at its card less that card's CUDA context, a few steps."""
    import yaml

    from finetune_tui.engine.plan.memory import cuda_context_gib

    path = Path(preset)
    raw = yaml.safe_load(path.read_text())
    flat = {
        f"{section}.{key}": value
        for section, fields in raw.items()
        for key, value in fields.items()
        if not isinstance(value, (list, dict))
    }
    name = f"preset-{path.stem}"
    FAMILIES[name] = (flat["model.name_or_path"], None)
    model_dir, error = build_in_child(name, root, args.timeout)
    row = {"family": name, "catalog": FAMILIES[name][0], "layers": None, "preset": path.name}
    if model_dir is None:
        emit(args.out, {**row, "ok": False, "error": error[:400]})
        return
    row["config"] = bench.family_config(*FAMILIES[name])
    seq = int(flat.get("training.max_seq_length", 1024))
    data = bench.write_dataset(root / f"data-{name}.jsonl", seq, samples=256)
    settings = {
        **flat,
        "model.name_or_path": str(model_dir),
        "dataset.path": str(data),
        "dataset.format": "auto",
        "dataset.eval_fraction": 0.0,
        "training.max_steps": args.steps,
        "training.logging_steps": 1,
        "training.exact_match_samples": 0,
        "output.dir": str(root / "runs" / name),
    }
    cap = args.card - cuda_context_gib(args.card)
    spec = {"arch": name, "card_gib": args.card, "pool_cap_gib": cap, "label": "preset"}
    row.update(bench.run_child({**spec, "settings": settings}, args.timeout))
    row["settings"] = {k: v for k, v in settings.items() if not k.endswith("path")}
    row["date"] = time.strftime("%Y-%m-%d")
    emit(args.out, row)
    if not args.keep:
        shutil.rmtree(model_dir, ignore_errors=True)


def predicted_reserved(row: dict) -> float:
    """This checkout's planner for a row that trained: the config it was built from, its
    settings (the run folder aside), its samples unpadded (they fill the length)."""
    from finetune_tui.engine.inspect.models import inspect_config
    from finetune_tui.engine.plan.peak import predict_memory
    from finetune_tui.engine.settings.preset import settings_from_overrides

    model = inspect_config(row["catalog"], row["config"])
    overrides = [f"{k}={v}" for k, v in row["settings"].items() if not k.startswith("output.")]
    return predict_memory(model, settings_from_overrides(overrides), padded=False).reserved_gib


def table(files: list[str], fitted: set[str]) -> None:
    """Markdown rows of the matrix: trained or refused, predicted vs measured peak reserved
    (the planner of this checkout, for the config each row was built from)."""
    print(
        "| family | backend, quant, batch | result | predicted | measured | error | "
        "LoRA params | adapted | fit |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for file in files:
        for line in Path(file).read_text().splitlines():
            row = json.loads(line)
            if "family" not in row:
                continue
            label = row.get("label", "")
            summary = row.get("summary") or {}
            if not row.get("ok"):
                verdict = f"refused: {row['refused']}" if row.get("refused") else "failed: "
                verdict += "" if row.get("refused") else row.get("error", "")
                print(f"| {row['family']} | {label} | {verdict[:100]} | | | | | | |")
                continue
            predicted = predicted_reserved(row)
            measured = summary["peak_reserved_gib"]
            error = (predicted / measured - 1) * 100
            adapted = ", ".join(summary.get("lora_target_modules") or [])
            print(
                f"| {row['family']} | {label} | trained | {predicted:.2f} | {measured:.2f} | "
                f"{error:+.1f} % | {summary.get('trainable_params') or 0:,} | {adapted} | "
                f"{'fit' if row['family'] in fitted else 'held out'} |"
            )


def emit(out: str, row: dict) -> None:
    line = json.dumps(row, default=str)
    print(line[:300], flush=True)
    with open(out, "a") as file:
        file.write(line + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="family short names, comma-separated")
    parser.add_argument("--backends", default="hf,liger,unsloth")
    parser.add_argument("--quant", default="nf4,bf16")
    parser.add_argument("--mbs", default="4", help="micro-batch sizes, comma-separated")
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--objective", default="sft", help="sft, dpo, orpo, kto, comma-separated")
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE for every cell")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--parallel", type=int, default=1, help="families side by side")
    parser.add_argument("--cells", type=int, default=1, help="cells of a family side by side")
    parser.add_argument("--timeout", type=int, default=300)
    parser.add_argument("--work", default="/tmp/ftfamilies")
    parser.add_argument("--out", default="families.jsonl")
    parser.add_argument("--keep", action="store_true", help="keep the built models")
    parser.add_argument("--build", default="", help=argparse.SUPPRESS)  # child: build one
    parser.add_argument("--build-catalog", default="", help=argparse.SUPPRESS)
    parser.add_argument("--build-layers", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--preset", default="", help="run this one-GPU preset as shipped")
    parser.add_argument("--card", type=float, default=24.0, help="--preset: its card, GiB")
    parser.add_argument("--table", nargs="*", help="print the markdown table of these rows")
    parser.add_argument("--fitted", default="", help="--table: families that fit constants")
    args = parser.parse_args()
    add_catalog_families()
    if args.table:
        table(args.table, set(args.fitted.split(",")))
        return
    if args.build:
        FAMILIES[args.build] = (args.build_catalog, args.build_layers or None)
        build(args.build, Path(args.work))
        return
    names = args.only.split(",") if args.only else list(FAMILIES)
    root = Path(args.work)
    root.mkdir(parents=True, exist_ok=True)
    emit(args.out, {"versions": bench.versions()["versions"], "date": time.strftime("%Y-%m-%d")})
    if args.preset:
        run_preset(args, args.preset, root)
        return
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        list(pool.map(lambda n: run_family(args, n, root), names))


if __name__ == "__main__":
    main()
