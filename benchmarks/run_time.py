"""Predicted against measured: real tokens/s and the whole run's wall time, on held-out
configurations (architectures, sequence lengths and backends the speed model was not fitted
on: docs/BENCHMARKS.md, "Absolute throughput"). Each case is one real `finetune-tui --preset`
process, timed from its start to its exit, on a random-weight model of a real architecture
and a dataset with instruction-set-like lengths, long enough to run for minutes. Prints /
appends one JSON line per case:

    python benchmarks/run_time.py --out run_time.jsonl              # on a GPU
    python benchmarks/run_time.py --cases tiny --samples 300   # CPU smoke test (no prediction)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import backends  # noqa: E402  (the same random-weight models and datasets)
from machine_state import MachineState, cpu_model  # noqa: E402

# name -> (arch, settings); none of these architectures fitted a speed constant (the
# Llama ones below are the fitting set)
CASES = {
    "qwen7b-liger-2048": (
        "qwen2.5-7b",
        {
            "memory.backend": "liger",
            "training.max_seq_length": 2048,
            "training.micro_batch_size": 4,
        },
    ),
    "qwen7b-hf-ckpt-512": (
        "qwen2.5-7b",
        {
            "memory.backend": "hf",
            "memory.gradient_checkpointing": "on",
            "training.max_seq_length": 512,
        },
    ),
    "gemma9b-liger-1024": (
        "gemma-2-9b",
        {"memory.backend": "liger", "training.max_seq_length": 1024},
    ),
    "llama8b-liger-2048": (  # qwen7b-liger-2048's configuration on the fitting family
        "llama-3.1-8b",
        {
            "memory.backend": "liger",
            "training.max_seq_length": 2048,
            "training.micro_batch_size": 4,
        },
    ),
    "llama8b-liger-1024": (
        "llama-3.1-8b",
        {"memory.backend": "liger", "training.max_seq_length": 1024},
    ),
    "qwen1.5b-unsloth-1024": (
        "qwen2.5-1.5b",
        {"memory.backend": "unsloth", "training.max_seq_length": 1024},
    ),
    "gemma2b-hf-ckpt-padded-1024": (
        "gemma-2-2b",
        {
            "memory.backend": "hf",
            "memory.gradient_checkpointing": "on",
            "memory.group_by_length": False,
            "training.max_seq_length": 1024,
        },
    ),
    # packed full-length steps: the tokens' part, not a step's fixed part, sets the pace
    "qwen3-8b-liger-ckpt-packed-2048": (
        "qwen3-8b",
        {
            "memory.backend": "liger",
            "memory.gradient_checkpointing": "on",
            "memory.packing": True,
            "training.max_seq_length": 2048,
            "training.micro_batch_size": 4,
        },
    ),
    # Unsloth's packed curve came from 12-step runs (about a second a step over the row's
    # square at small micro-batches): a whole run tells whether it lasts
    "qwen3-8b-unsloth-packed-1024": (
        "qwen3-8b",
        {
            "memory.backend": "unsloth",
            "memory.gradient_checkpointing": "unsloth",
            "memory.packing": True,
            "training.max_seq_length": 1024,
            "training.micro_batch_size": 16,
        },
    ),
    "mistral7b-hf-ckpt-1024": (
        "mistral-7b",
        {
            "memory.backend": "hf",
            "memory.gradient_checkpointing": "on",
            "training.max_seq_length": 1024,
        },
    ),
    # the fitting family's HF run with Mistral's 32,768-entry vocabulary: on one machine
    # Llama-3.1-8B ran 0.63x Mistral-7B under HF + checkpointing, which the plan sees alike
    "llama8b-v32k-hf-ckpt-1024": (
        "llama-3.1-8b-v32k",
        {
            "memory.backend": "hf",
            "memory.gradient_checkpointing": "on",
            "training.max_seq_length": 1024,
        },
    ),
    "tiny": ("tiny", {"training.max_seq_length": 256}),
}
# The speed model's fitting set: each backend and checkpointing on the two Llama sizes,
# grouped (a window of ten steps then holds samples of one length): each run's windows give
# its fixed time a step and its time a token (`step_line`), short runs suffice
FIT_CONFIGS = {
    "hf-ckpt": {"memory.backend": "hf", "memory.gradient_checkpointing": "on"},
    "hf": {"memory.backend": "hf", "memory.gradient_checkpointing": "off"},
    "liger-ckpt": {"memory.backend": "liger", "memory.gradient_checkpointing": "on"},
    "liger": {"memory.backend": "liger", "memory.gradient_checkpointing": "off"},
    "unsloth": {"memory.backend": "unsloth"},
}
for _arch, _short in (("llama-3.2-1b", "llama1b"), ("llama-3.1-8b", "llama8b")):
    for _config, _own in FIT_CONFIGS.items():
        CASES.setdefault(
            f"fit-{_short}-{_config}", (_arch, _own | {"training.max_seq_length": 1024})
        )
# Micro-batch against maximum length, one model and backend: the b4 x 2,048 whole runs took
# ~0.45 s a step whatever their tokens, the b8 x 1,024 fitting run 0.36 s (docs/BENCHMARKS.md,
# "Micro-batch 4 at 2,048"); short runs, cut off like the fitting set's
for _b in (4, 8):
    for _length in (1024, 2048):
        CASES[f"sweep-llama8b-liger-b{_b}-{_length}"] = (
            "llama-3.1-8b",
            FIT_CONFIGS["liger"]
            | {"training.micro_batch_size": _b, "training.max_seq_length": _length},
        )
COMMON = {
    "quantization.mode": "nf4",
    "training.optimizer": "adamw_8bit",
    "training.micro_batch_size": 8,
    "training.epochs": 1,
    "training.logging_steps": 10,
    "training.exact_match_samples": 0,
    "dataset.eval_fraction": 0.02,
    "memory.packing": False,
    "memory.group_by_length": True,
}


def case_settings(name: str, model: Path, data: Path, samples: int) -> list[str]:
    """The case's settings as `--set` pairs (KEY=VALUE)."""
    arch, own = CASES[name]
    values = (
        COMMON
        | own
        | {
            "model.name_or_path": str(model),
            "dataset.path": str(data),
            "dataset.max_samples": samples,
        }
    )
    if arch == "tiny":
        values |= {"quantization.mode": "none", "training.optimizer": "adamw_torch"}
    return [f"{key}={value}" for key, value in values.items()]


def settings_of(pairs: list[str]):
    from finetune_tui.engine.settings.preset import settings_from_arguments

    return settings_from_arguments(None, pairs, {}, absolute=True)


def token_stats(settings):
    """The dataset's lengths counted by the model folder's own tokenizer, as the run counts
    them (the bench's byte-level tokenizer makes every byte a token: 3.4x the characters'
    estimate `plan` makes without a tokenizer on this data)."""
    from transformers import AutoTokenizer

    from finetune_tui.engine.data.dataset import dataset_stats

    tokenizer = AutoTokenizer.from_pretrained(settings.model.name_or_path)
    return dataset_stats(settings, tokenizer)


def predicted(settings) -> dict:
    """What `plan` says for exactly these settings on this machine's card, at the lengths
    the run's tokenizer gives."""
    from finetune_tui.engine.inspect.hardware import detect_hardware
    from finetune_tui.engine.inspect.models import inspect_model
    from finetune_tui.engine.plan.run_time import time_summary

    card = detect_hardware().primary
    return time_summary(
        inspect_model(settings.model.name_or_path),
        settings,
        token_stats(settings),
        card.name if card else None,
    )


RECORDS = 20000  # the dataset a run draws its records from (--samples' default)


def sized(name: str, model: Path, data: Path, samples: int, budget: int):
    """(settings, plan) with as many of `samples` records as the plan says finish within
    `budget` seconds: a case that would outrun the device's call limit writes no row."""
    settings = settings_of(case_settings(name, model, data, samples))
    plan = predicted(settings)
    total = (plan["time"] or {}).get("total_s")
    if budget and total and total > budget:
        samples = max(64, int(samples * budget / total))
        settings = settings_of(case_settings(name, model, data, samples))
        plan = predicted(settings)
    return settings, plan, samples


def logged_steps(run: Path) -> list:
    """The run's step events, read as the product reads metrics.jsonl (a cut-off run's
    half-written last line skipped)."""
    from finetune_tui.engine.runs.metrics import read_events

    return [e for e in read_events(run) if e.kind == "step"]


def steady_speed(steps: list) -> float | None:
    """Real tokens/s from the end of the first step to the last logged one: what a cut-off
    run measured, as summary.json would have put it (a progress line's tok/s is its last
    window's, under group-by-length the shortest records)."""
    if len(steps) < 2 or steps[-1].elapsed_s <= steps[0].elapsed_s:
        return None
    tokens = steps[-1].tokens_seen - steps[0].tokens_seen
    return round(tokens / (steps[-1].elapsed_s - steps[0].elapsed_s), 1)


def step_line(steps: list, skip: int = 10) -> dict | None:
    """A line through the run's logged windows after its first `skip` steps: seconds a step
    against the real tokens it carried (each window's mean), what the speed model's fixed
    part and per-token part are fitted against (docs/BENCHMARKS.md, "Whole runs")."""
    import statistics

    kept = [e for e in steps if e.step >= skip and e.tokens_seen]
    windows = [(a, b) for a, b in zip(kept, kept[1:], strict=False) if b.step > a.step]
    if len(windows) < 3:
        return None
    xs = [(b.tokens_seen - a.tokens_seen) / (b.step - a.step) for a, b in windows]
    ys = [(b.elapsed_s - a.elapsed_s) / (b.step - a.step) for a, b in windows]
    slope, fixed = statistics.linear_regression(xs, ys)
    sd = statistics.fmean((y - fixed - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    return {
        "windows": len(windows),
        "fixed_s": round(fixed, 4),
        "per_token_us": round(slope * 1e6, 2),
        "residual_sd_s": round(sd**0.5, 4),
        "mean_tokens_a_step": round(statistics.fmean(xs), 1),
    }


def outside_steps(steps: list, wall: float) -> float | None:
    """The process's seconds before its first step and after its last (starting up, loading,
    the first step's compile, evaluation and saving at the end): its wall time less the
    steps' own (the step events' elapsed_s)."""
    return round(wall - steps[-1].elapsed_s, 1) if steps else None


def run_case(name: str, work: Path, samples: int, timeout: int, budget: int, logs: Path) -> dict:
    arch = CASES[name][0]
    model = backends.build_model(arch, work / "models")
    data = backends.write_realistic_dataset(work / "data-realistic.jsonl", samples)
    out = work / "runs" / name
    from finetune_tui.engine.settings.preset import save_preset

    settings, plan, samples = sized(name, model, data, samples, budget)
    total = (plan["time"] or {}).get("total_s")
    speed = plan["tokens_per_s"]
    print(f"{name}: {samples} records, planned {total} s, {speed} tokens/s", flush=True)
    preset = work / f"{name}.yaml"
    save_preset(settings, preset)
    args = ["--preset", str(preset), "--output", str(out), "--overwrite"]
    log = logs / f"run_time-{name}.log"
    state = MachineState()  # clocks, use, throttling and stolen CPU while it runs
    started = time.perf_counter()
    try:
        with open(log, "w") as sink, state:  # the progress lines, kept if the run is cut off
            code = subprocess.run(
                [sys.executable, "-m", "finetune_tui", *args],
                stdout=sink,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            ).returncode
    except subprocess.TimeoutExpired:
        code = None
    wall = time.perf_counter() - started
    steps = logged_steps(out)
    if (out / "metrics.jsonl").exists():  # every logged step's time and tokens, for fitting
        (logs / f"run_time-{name}-metrics.jsonl").write_bytes((out / "metrics.jsonl").read_bytes())
    summary = json.loads((out / "summary.json").read_text()) if code == 0 else {}
    tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
    return {
        "case": name,
        "arch": arch,
        "samples": samples,
        "ok": code == 0,
        "error": None if code == 0 else (tail or [f"cut off after {timeout} s"]),
        "process_wall_s": round(wall, 1),
        "predicted_total_s": total,
        "predicted_tokens_per_s": plan["tokens_per_s"],
        "measured_tokens_per_s": summary.get("tokens_per_s") or steady_speed(steps),
        "steps": summary.get("step"),
        "step_line": step_line(steps),
        "outside_steps_s": outside_steps(steps, wall),
        "predicted_steps": (plan["time"] or {}).get("steps"),
        "basis": plan["throughput_basis"],
        "speed_correction": plan["speed_correction"],  # this machine's earlier runs' factor
        "settings": COMMON | CASES[name][1],
        "machine_state": state.summary() | {"cpu": cpu_model()},
    }


def host_pace() -> dict | None:
    """benchmarks/host_pace.py's reading, taken in a process of its own; None without a GPU."""
    probe = Path(__file__).resolve().parent / "host_pace.py"
    try:
        done = subprocess.run(
            [sys.executable, str(probe)], capture_output=True, text=True, timeout=180
        )
        return json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(c for c in CASES if c != "tiny"))
    parser.add_argument("--samples", type=int, default=RECORDS, help="records per run")
    parser.add_argument("--work", default="/tmp/ftbench")
    parser.add_argument("--out", default="run_time.jsonl")
    parser.add_argument("--timeout", type=int, default=480, help="seconds a run may take")
    parser.add_argument(
        "--budget", type=int, default=420, help="fewer records where the plan says longer"
    )
    parser.add_argument("--logs", default=".", help="folder for each run's progress lines")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a", buffering=1) as out:  # a line per case, as it ends
        out.write(json.dumps(backends.versions() | {"date": time.strftime("%Y-%m-%d")}) + "\n")
        for name in args.cases.split(","):
            probe = host_pace()  # just before the run: a host's pace drifts between calls
            row = run_case(
                name.strip(), work, args.samples, args.timeout, args.budget, Path(args.logs)
            )
            row["host_pace"] = probe
            print(json.dumps(row), flush=True)
            out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
