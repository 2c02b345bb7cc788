"""Side-by-side training benchmark of backends × checkpointing × micro-batch on real GPUs.

Each configuration trains through finetune-tui's own runner (the product path) in its own
process, on a random-weight model built from a real architecture's config.json, with a
synthetic dataset whose samples fill `max_seq_length` tokens. Prints / appends JSON lines:

    python benchmarks/backends.py matrix --arch llama-3.1-8b --cards 80,24 --out results.jsonl
    python benchmarks/backends.py matrix --arch tiny --cards 0 --steps 4   # CPU smoke test

A card size below the GPU's memory is emulated with
`torch.cuda.set_per_process_memory_fraction`; an OOM then behaves as on that card.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ARCHS = {  # short name -> catalog ID (engine/inspect/catalog.py); "tiny" = the embedded demo model
    "llama-3.1-8b": "meta-llama/Llama-3.1-8B",
    "gemma-2-9b": "google/gemma-2-9b",
    "llama-3.2-1b": "meta-llama/Llama-3.2-1B",
    "qwen2.5-1.5b": "Qwen/Qwen2.5-1.5B",
    "qwen2.5-7b": "Qwen/Qwen2.5-7B",
    "gemma-2-2b": "google/gemma-2-2b",
    "qwen3-8b": "Qwen/Qwen3-8B",
    "mistral-7b": "mistralai/Mistral-7B-v0.3",
    "tiny": None,
    # mixtures of experts, layers cut to fit the lent GPU's disk and time (memory is per layer)
    "mixtral-8x7b-4l": "mistralai/Mixtral-8x7B-v0.1",
    "qwen3-30b-a3b-8l": "Qwen/Qwen3-30B-A3B",
    "olmoe-1b-7b": "allenai/OLMoE-1B-7B-0924",
    "deepseek-v2-lite-6l": "deepseek-ai/DeepSeek-V2-Lite",
    # a 70 B dense model cut to 8 of its 80 layers: several-GPU runs on a machine's disk
    "llama-3.1-70b-8l": "meta-llama/Llama-3.1-70B",
    "llama-3.1-8b-v32k": "meta-llama/Llama-3.1-8B",
}
# one field changed from the catalog's config: which part of a family's pace it explains
OVERRIDES = {"llama-3.1-8b-v32k": {"vocab_size": 32768}}  # Llama-3.1-8B with Mistral's vocabulary
LAYERS = {
    "mixtral-8x7b-4l": 4,
    "qwen3-30b-a3b-8l": 8,
    "deepseek-v2-lite-6l": 6,
    "llama-3.1-70b-8l": 8,
}

# (label, settings overrides): hand-picked configurations measured on every card.
HAND_PICKED = [
    (
        "hf ckpt b2",
        {
            "memory.backend": "hf",
            "memory.gradient_checkpointing": "on",
            "training.micro_batch_size": 2,
        },
    ),
    (
        "hf ckpt b4",
        {
            "memory.backend": "hf",
            "memory.gradient_checkpointing": "on",
            "training.micro_batch_size": 4,
        },
    ),
    (
        "hf nockpt b4",
        {
            "memory.backend": "hf",
            "memory.gradient_checkpointing": "off",
            "training.micro_batch_size": 4,
        },
    ),
    (
        "liger ckpt b4",
        {
            "memory.backend": "liger",
            "memory.gradient_checkpointing": "on",
            "training.micro_batch_size": 4,
        },
    ),
    (
        "liger nockpt b4",
        {
            "memory.backend": "liger",
            "memory.gradient_checkpointing": "off",
            "training.micro_batch_size": 4,
        },
    ),
    (
        "liger nockpt b8",
        {
            "memory.backend": "liger",
            "memory.gradient_checkpointing": "off",
            "training.micro_batch_size": 8,
        },
    ),
    (
        "liger ckpt b16",
        {
            "memory.backend": "liger",
            "memory.gradient_checkpointing": "on",
            "training.micro_batch_size": 16,
        },
    ),
    (
        "liger ckpt b1",
        {
            "memory.backend": "liger",
            "memory.gradient_checkpointing": "on",
            "training.micro_batch_size": 1,
            "training.gradient_accumulation_steps": 4,
        },
    ),
    (
        "unsloth uckpt b2",
        {
            "memory.backend": "unsloth",
            "memory.gradient_checkpointing": "unsloth",
            "training.micro_batch_size": 2,
            "training.gradient_accumulation_steps": 2,
        },
    ),
    (
        "liger ckpt b1 s512",
        {
            "memory.backend": "liger",
            "memory.gradient_checkpointing": "on",
            "training.micro_batch_size": 1,
            "training.max_seq_length": 512,
            "training.gradient_accumulation_steps": 4,
        },
    ),
    (
        "unsloth uckpt b4",
        {
            "memory.backend": "unsloth",
            "memory.gradient_checkpointing": "unsloth",
            "training.micro_batch_size": 4,
        },
    ),
    (
        "unsloth uckpt b16",
        {
            "memory.backend": "unsloth",
            "memory.gradient_checkpointing": "unsloth",
            "training.micro_batch_size": 16,
        },
    ),
    (
        "unsloth nockpt b8",
        {
            "memory.backend": "unsloth",
            "memory.gradient_checkpointing": "off",
            "training.micro_batch_size": 8,
        },
    ),
]
# The same configurations filling micro-batches by length groups or by packing.
FILLINGS = {
    "grouped": {"memory.group_by_length": True},
    "packed": {"memory.packing": True},
}
HAND_PICKED += [
    (f"{label} {fill}", {**overrides, **extra})
    for label, overrides in list(HAND_PICKED)
    for fill, extra in FILLINGS.items()
]

# Real instruction data is mostly short with a long tail. A lognormal between two published
# figures of Stanford Alpaca (52,002 records, 22.7 MB of JSON: ~436 bytes, ~140 tokens a
# record with its prompt template; its training script cuts at 512 tokens, taken as the 99th
# percentile): mean 140, median 113, p99 512 tokens. A model of the shape, not a measurement.
ALPACA_LIKE = {"mu": 4.73, "sigma": 0.648}

# Memory calibration / validation: vary one thing at a time around QLoRA defaults.
CALIB = [
    ("nf4 ckpt b2", {"memory.gradient_checkpointing": "on", "training.micro_batch_size": 2}),
    ("nf4 nockpt b2", {"memory.gradient_checkpointing": "off", "training.micro_batch_size": 2}),
    (
        "nf4 nockpt b4 s512",
        {
            "memory.gradient_checkpointing": "off",
            "training.micro_batch_size": 4,
            "training.max_seq_length": 512,
        },
    ),
    (
        "nf4 noDQ ckpt b4",
        {
            "quantization.double_quant": False,
            "memory.gradient_checkpointing": "on",
            "training.micro_batch_size": 4,
        },
    ),
    (
        "bf16 ckpt b2",
        {
            "quantization.mode": "none",
            "memory.gradient_checkpointing": "on",
            "training.micro_batch_size": 2,
        },
    ),
    (
        "bf16 nockpt b1 adamw32",
        {
            "quantization.mode": "none",
            "training.optimizer": "adamw_torch",
            "memory.gradient_checkpointing": "off",
            "training.micro_batch_size": 1,
        },
    ),
    (
        "8bit ckpt b2",
        {
            "quantization.mode": "8bit",
            "memory.gradient_checkpointing": "on",
            "training.micro_batch_size": 2,
        },
    ),
    (
        "liger nockpt b2 r64",
        {
            "memory.backend": "liger",
            "memory.gradient_checkpointing": "off",
            "training.micro_batch_size": 2,
            "lora.r": 64,
        },
    ),
]

BASE = {  # QLoRA NF4 + DQ, r16 all-linear, 8-bit AdamW, seq 1024 (docs/BENCHMARKS.md's setting)
    "quantization.mode": "nf4",
    "quantization.double_quant": True,
    "training.optimizer": "adamw_8bit",
    "training.max_seq_length": 1024,
    "training.gradient_accumulation_steps": 1,
    "training.learning_rate": 1e-4,
    "training.logging_steps": 1,
    "training.exact_match_samples": 0,
    "dataset.eval_fraction": 0.0,
    "lora.r": 16,
    "lora.alpha": 16,
}
CPU_BASE = {
    "training.max_seq_length": 64,
    "training.logging_steps": 1,
    "training.exact_match_samples": 0,
    "dataset.eval_fraction": 0.0,
}


def arch_config(arch: str) -> dict:
    """The catalog's config of this architecture, its layers cut where LAYERS says, its
    fields changed where OVERRIDES says."""
    config = family_config(ARCHS[arch], LAYERS.get(arch))
    config.get("text_config", config).update(OVERRIDES.get(arch, {}))
    return config


def family_config(catalog_id: str, layers: int | None) -> dict:
    """The catalog's config.json, with the language model's layers cut to `layers`."""
    from finetune_tui.engine.inspect.catalog import CATALOG

    config = json.loads(json.dumps(CATALOG[catalog_id]))
    config.pop("quantization_config", None)  # random weights are saved 16-bit (gpt-oss: MXFP4)
    if layers:
        text = config.get("text_config", config)
        text["num_hidden_layers"] = layers
        for key in ("layer_types", "mlp_only_layers"):  # per-layer lists follow the cut
            if isinstance(text.get(key), list):
                text[key] = text[key][:layers]
    return config


def build_model(arch: str, root: Path) -> Path:
    """Random-weight model of a real architecture, saved once, with the demo tokenizer."""
    from finetune_tui.engine.common.demo import ensure_demo_model

    if ARCHS[arch] is None:
        return ensure_demo_model()
    return build_from_config(arch_config(arch), root / arch)


def build_from_config(config: dict, folder: Path) -> Path:
    """A config.json's model with random weights (memory and speed do not depend on their
    values), built on the GPU in bf16 and saved once, with the demo tokenizer."""
    import torch
    from bench_tokenizer import save_byte_tokenizer
    from transformers import AutoConfig, AutoModelForCausalLM

    if (folder / "config.json").exists():
        return folder
    config = dict(config)
    config.pop("architectures", None)
    built = AutoConfig.for_model(config.pop("model_type"), **config)
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForCausalLM.from_config(built, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    save_byte_tokenizer(folder)
    del model
    torch.cuda.empty_cache()
    return folder


def write_dataset(path: Path, seq_len: int, samples: int) -> Path:
    """Plain-text samples of at least seq_len bytes (byte-level tokenizer: 1 byte ≈ 1 token)."""
    import random

    rng = random.Random(0)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    with path.open("w") as file:
        for _ in range(samples):
            text = " ".join(rng.choice(words) for _ in range(seq_len // 4 + 8))
            file.write(json.dumps({"text": text}) + "\n")
    return path


def realistic_lengths(samples: int, seed: int = 0) -> list[int]:
    """Token lengths drawn from ALPACA_LIKE, at least 8 tokens."""
    import random

    rng = random.Random(seed)
    return [max(8, int(rng.lognormvariate(**ALPACA_LIKE))) for _ in range(samples)]


def write_realistic_dataset(path: Path, samples: int) -> Path:
    """Plain-text samples whose byte (= token) lengths follow ALPACA_LIKE."""
    import random

    rng = random.Random(1)
    letters = "abcdefghij klmnopqrst "
    with path.open("w") as file:
        for length in realistic_lengths(samples):
            text = "".join(rng.choice(letters) for _ in range(length))
            file.write(json.dumps({"text": text}) + "\n")
    return path


def run_one(args: argparse.Namespace) -> None:
    """Child process: one configuration, one JSON line on stdout."""
    spec = json.loads(args.spec)
    import torch

    cap = spec.get("pool_cap_gib") or spec["card_gib"]
    if torch.cuda.is_available() and cap:
        total = torch.cuda.get_device_properties(0).total_memory / 2**30
        torch.cuda.set_per_process_memory_fraction(min(cap / total, 1.0))
    from finetune_tui.engine.common.errors import FinetuneError
    from finetune_tui.engine.runs.create import prepare_run_dir
    from finetune_tui.engine.settings.preset import settings_from_overrides
    from finetune_tui.engine.train.runner import run_training

    overrides = [f"{k}={v}" for k, v in spec["settings"].items()]
    settings = settings_from_overrides(overrides)
    steps = []
    nvml = NvmlPeak()
    record = {**spec, "ok": False}
    start = time.perf_counter()
    try:
        run_dir = prepare_run_dir(settings, overwrite=True)  # a rerun replaces its own run
        finished = run_training(
            settings, lambda e: e.kind == "step" and steps.append(e), run_dir=run_dir
        )
        record.update(ok=True, summary=finished.summary.to_json())
    except FinetuneError as exc:
        record["error"] = str(exc)[:300]
    except torch.OutOfMemoryError as exc:
        record["error"] = f"OOM: {str(exc)[:200]}"
    record["wall_s"] = round(time.perf_counter() - start, 1)
    record["nvml_peak_used_gib"] = nvml.stop()
    record["predicted"] = predicted_memory(settings)
    record.update(step_stats(steps, settings))
    print("RESULT " + json.dumps(record, default=str), flush=True)


def predicted_memory(settings) -> dict | None:
    from finetune_tui.engine.inspect.models import inspect_model
    from finetune_tui.engine.plan.peak import predict_memory

    try:
        padded = "realistic" in str(settings.dataset.path)  # other datasets fill the length
        model = inspect_model(settings.model.name_or_path)
        return predict_memory(model, settings, padded=padded).as_dict()
    except Exception as exc:
        return {"error": str(exc)}


def step_stats(steps, settings) -> dict:
    if not steps:
        return {"steps": 0}
    warm = steps[2:] or steps[-1:]
    span = warm[-1].elapsed_s - (steps[1].elapsed_s if len(steps) > 2 else 0.0)
    tokens_per_step = (
        settings.training.micro_batch_size
        * settings.training.gradient_accumulation_steps
        * settings.training.max_seq_length
    )
    tokens_per_s = tokens_per_step * len(warm) / span if span > 0 else None
    seen = [s.tokens_seen for s in (steps[1], warm[-1])]
    real = (seen[1] - seen[0]) / span if span > 0 and None not in seen else None
    return {
        "real_tokens_per_s": round(real, 1) if real else None,  # non-padding, counted
        "steps": len(steps),
        "first_step_s": round(steps[0].elapsed_s, 2),
        "tokens_per_s": round(tokens_per_s, 1) if tokens_per_s else None,
        "tokens_per_s_trl": round(sum(s.tokens_per_second for s in warm) / len(warm), 1),
        "final_loss": steps[-1].loss,
    }


class NvmlPeak:
    """Polls NVML's used memory (what nvidia-smi shows, paged allocations included) on every
    GPU of the machine: `stop()` gives the largest, `per_gpu` each one's."""

    def __init__(self):
        self.peaks: list[float] = []
        self.done = threading.Event()
        try:
            import pynvml

            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            self.pynvml = pynvml
        except Exception:
            self.handles = []
            return
        self.peaks = [0.0] * len(self.handles)
        threading.Thread(target=self._poll, daemon=True).start()

    def _poll(self):
        while not self.done.is_set():
            for index, handle in enumerate(self.handles):
                used = self.pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**30
                self.peaks[index] = max(self.peaks[index], used)
            time.sleep(0.1)

    @property
    def per_gpu(self) -> list[float]:
        return [round(peak, 2) for peak in self.peaks]

    def stop(self) -> float | None:
        self.done.set()
        return round(max(self.peaks), 2) if self.peaks else None


def advisor_pick(
    model_dir: Path, card_gib: float, base: dict, lengths: list[int] | None = None
) -> dict | None:
    """The advisor's automatic configuration for this card (and these sample lengths), as
    overrides (None if absent)."""
    try:
        from finetune_tui.engine.data.lengths import stats_from_lengths
        from finetune_tui.engine.inspect.hardware import simulated_hardware
        from finetune_tui.engine.inspect.models import inspect_model
        from finetune_tui.engine.plan.advisor import advise
        from finetune_tui.engine.settings.preset import settings_from_overrides
    except ImportError:
        return None
    settings = settings_from_overrides([f"{k}={v}" for k, v in base.items()])
    plan = advise(
        simulated_hardware(vram_gib=card_gib),
        inspect_model(str(model_dir)),
        settings,
        fixed={"training.max_seq_length", "lora.r"},
        dataset_stats=stats_from_lengths(lengths, settings.training.max_seq_length)
        if lengths
        else None,
    )
    chosen = plan.settings.model_dump()
    flat = {f"{s}.{k}": v for s, fields in chosen.items() for k, v in fields.items()}
    return {
        k: v
        for k, v in flat.items()
        if v is not None and not isinstance(v, list) and not k.startswith("output.")
    }


def matrix(args: argparse.Namespace) -> None:
    root = Path(args.work)
    root.mkdir(parents=True, exist_ok=True)
    model_dir = build_model(args.arch, root)
    base = dict(CPU_BASE if args.arch == "tiny" else BASE)
    if args.seq:
        base["training.max_seq_length"] = args.seq
    seq = int(base["training.max_seq_length"])
    lengths = realistic_lengths(args.samples) if args.lengths == "realistic" else None
    if lengths:
        data = write_realistic_dataset(root / "data-realistic.jsonl", args.samples)
    else:
        data = write_dataset(root / f"data-{seq}.jsonl", seq, samples=512)
    out = Path(args.out)
    chosen = CALIB if args.set == "calib" else HAND_PICKED
    for card in [float(c) for c in args.cards.split(",")]:
        configs = [(label, {**base, **o}) for label, o in chosen]
        if args.only:
            configs = [c for c in configs if c[0] in args.only.split("|")]
        wanted = not args.only or "advisor pick" in args.only.split("|")
        pick = (
            advisor_pick(model_dir, card, base, lengths)
            if card and args.set == "hand" and wanted
            else None
        )
        if pick:
            configs.insert(0, ("advisor pick", {**base, **pick}))
        for label, overrides in configs:
            overrides = {
                **overrides,
                "model.name_or_path": str(model_dir),
                "dataset.path": str(data),
                "training.max_steps": args.steps,
                "output.dir": str(root / "runs" / f"{card}-{label.replace(' ', '-')}"),
            }
            if args.arch == "tiny":  # CPU: only the plain backend runs
                if (
                    overrides.get("memory.backend", "hf") != "hf"
                    or overrides.get("quantization.mode", "none") != "none"
                ):
                    continue
            spec = {"arch": args.arch, "card_gib": card, "label": label, "settings": overrides}
            if args.real_context and card:
                from finetune_tui.engine.plan.memory import cuda_context_gib

                spec["pool_cap_gib"] = card - cuda_context_gib(card)
            record = run_child(spec, args.timeout)
            record["date"] = time.strftime("%Y-%m-%d")
            record.update(versions())
            line = json.dumps(record, default=str)
            print(line, flush=True)
            with out.open("a") as file:
                file.write(line + "\n")


def run_child(spec: dict, timeout: int) -> dict:
    cmd = [sys.executable, __file__, "one", "--spec", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**spec, "ok": False, "error": f"timeout after {timeout}s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (proc.stderr or proc.stdout)[-600:]
    return {**spec, "ok": False, "error": f"exit {proc.returncode}: {tail}"}


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("torch", "transformers", "trl", "peft", "bitsandbytes", "liger-kernel", "unsloth"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    try:
        import torch

        found["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except Exception:
        pass
    found["host_cpu"] = host_cpu()
    return {"versions": found}


def host_cpu() -> str:
    """The host's CPU model and core count: a step's fixed part (launches, the Python
    around them) runs on it, so hosts with one GPU model may still differ in speed."""
    import os

    try:
        with open("/proc/cpuinfo") as info:
            lines = [line for line in info if line.startswith("model name")]
        names = [line.split(":", 1)[1].strip() for line in lines]
    except OSError:
        names = []
    return f"{names[0] if names else 'unknown'} x {os.cpu_count()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("matrix")
    m.add_argument("--arch", choices=list(ARCHS), default="llama-3.1-8b")
    m.add_argument("--cards", default="80", help="card sizes in GiB; 0 = no cap")
    m.add_argument("--steps", type=int, default=12)
    m.add_argument("--set", choices=["hand", "calib"], default="hand", help="which matrix")
    m.add_argument("--only", default="", help="labels to run, separated by |")
    m.add_argument("--seq", type=int, default=0, help="max_seq_length instead of 1024")
    m.add_argument(
        "--lengths",
        choices=["full", "realistic"],
        default="full",
        help="samples that fill max_seq_length, or lengths like an instruction set's",
    )
    m.add_argument("--samples", type=int, default=4096, help="realistic dataset size")
    m.add_argument(
        "--real-context",
        action="store_true",
        help="cap torch's pool at the card less a card of that class's CUDA context, as on "
        "a real card (by default the H100's own context comes on top of the cap)",
    )
    m.add_argument("--work", default="/tmp/ftbench")
    m.add_argument("--out", default="backends.jsonl")
    m.add_argument("--timeout", type=int, default=300)
    o = sub.add_parser("one")
    o.add_argument("--spec", required=True)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    matrix(args) if args.cmd == "matrix" else run_one(args)


if __name__ == "__main__":
    main()
