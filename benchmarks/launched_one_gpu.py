"""Launched runs through the product, on one GPU or two: DeepSpeed ZeRO-3 (with and without
the optimizer offloaded to CPU), FSDP, DDP, full fine-tuning and LoRA / QLoRA, each measured
against the planner (per GPU). Prints / appends JSON lines:

    python benchmarks/launched_one_gpu.py --case zero3-offload-full --out launched.jsonl
    python benchmarks/launched_one_gpu.py --case cpu-smoke   # CPU: ddp x 2 on the demo
    python benchmarks/launched_one_gpu.py --case 2gpu-ddp-qlora-8b --interrupt --exported

Each case runs `finetune-tui --preset P` (headless, the product's own launch through
accelerate) on a random-weight model of a real architecture and a synthetic Alpaca-shaped
dataset. With `--interrupt`, SIGINT is sent once the first per-epoch checkpoint is written,
then `finetune-tui --resume RUN_DIR` finishes the run. Measured while each command runs:
NVML's used GPU memory (what nvidia-smi shows), the machine's used CPU memory above what it
used before the run (MemTotal - MemAvailable: pinned and pageable memory of every rank),
and the largest summed RSS of the run's process tree; from the run directory: torch's peaks
(summary.json, rank 0), tokens/s per step (metrics.jsonl) and the checkpoints.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from backends import ARCHS, NvmlPeak, build_model, versions  # noqa: E402

GIB = 2**30
TWO_GPU_LORA = {
    "training.method": "lora",
    "quantization.mode": "nf4",
    "distributed.processes": 2,
    "distributed.cpu_offload": False,
    "training.micro_batch_size": 2,
    "training.gradient_accumulation_steps": 1,
    "training.learning_rate": 2.0e-4,
}
CASES = {  # name -> (architecture, overrides on presets/full-zero3-offload.yaml)
    "zero3-offload-full": ("llama-3.2-1b", {}),
    "zero3-full": ("llama-3.2-1b", {"distributed.cpu_offload": False}),
    "zero3-lora": (
        "llama-3.2-1b",
        {"training.method": "lora", "distributed.cpu_offload": False},
    ),
    "zero3-offload-qlora": (
        "llama-3.2-1b",
        {"training.method": "lora", "quantization.mode": "nf4"},
    ),
    "fsdp-lora": (
        "llama-3.2-1b",
        {
            "training.method": "lora",
            "distributed.strategy": "fsdp",
            "distributed.cpu_offload": False,
        },
    ),
    "fsdp-qlora": (
        "llama-3.2-1b",
        {
            "training.method": "lora",
            "quantization.mode": "nf4",
            "distributed.strategy": "fsdp",
            "distributed.cpu_offload": False,
        },
    ),
    # two GPUs (issue 31's three): the advisor's 80 GB pick under DDP; FSDP over a 70 B
    # architecture cut to 8 layers (memory per GPU follows per layer); ZeRO-3 offload
    "2gpu-ddp-qlora-8b": (
        "llama-3.1-8b",
        TWO_GPU_LORA
        | {
            "distributed.strategy": "ddp",
            "memory.backend": "liger",
            "memory.gradient_checkpointing": "off",
            "training.micro_batch_size": 8,
        },
    ),
    "2gpu-fsdp-qlora-70b": ("llama-3.1-70b-8l", TWO_GPU_LORA | {"distributed.strategy": "fsdp"}),
    "2gpu-fsdp-lora-70b": (
        "llama-3.1-70b-8l",
        TWO_GPU_LORA | {"distributed.strategy": "fsdp", "quantization.mode": "none"},
    ),
    "2gpu-zero3-offload-full": ("llama-3.2-1b", {"distributed.processes": 2}),
    "cpu-smoke": (
        "tiny",
        {
            "distributed.strategy": "ddp",
            "distributed.processes": 2,
            "distributed.cpu_offload": False,
            "training.max_seq_length": 512,
            "training.gradient_accumulation_steps": 2,
            "training.learning_rate": 1e-3,
        },
    ),
}


def write_alpaca(path: Path, samples: int, max_chars: int, seed: int = 0) -> Path:
    """Alpaca records (instruction, input, output) of varied lengths under max_chars bytes
    (the demo's byte-level tokenizer: one byte, one token)."""
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]

    def text(n):
        return " ".join(rng.choice(words) for _ in range(n))

    with path.open("w") as file:
        for _ in range(samples):
            budget = rng.randint(max_chars // 4, max_chars - 300) // 6  # the template: ~200
            record = {
                "instruction": text(max(2, budget // 4)),
                "input": text(max(1, budget // 4)),
                "output": text(max(2, budget // 2)),
            }
            file.write(json.dumps(record) + "\n")
    return path


class HostMemory:
    """Peak used CPU memory of the machine above its level at start, and the peak summed
    RSS of a process tree, polled every 0.2 s."""

    def __init__(self, root_pid: int):
        self.root = root_pid
        self.base = self._used()
        self.peak_used = 0.0
        self.peak_rss = 0.0
        self.done = threading.Event()
        threading.Thread(target=self._poll, daemon=True).start()

    @staticmethod
    def _used() -> float:
        info = {}
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, value = line.split(":", 1)
            info[key] = int(value.split()[0]) * 1024
        return info["MemTotal"] - info["MemAvailable"]

    def _tree_rss(self) -> float:
        children: dict[int, list[int]] = {}
        rss: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            pid, ppid = int(entry.name), int(fields.get("PPid", "0").strip())
            children.setdefault(ppid, []).append(pid)
            rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
        total, stack = 0, [self.root]
        while stack:
            pid = stack.pop()
            total += rss.get(pid, 0)
            stack.extend(children.get(pid, []))
        return total

    def _poll(self):
        while not self.done.is_set():
            self.peak_used = max(self.peak_used, self._used() - self.base)
            self.peak_rss = max(self.peak_rss, self._tree_rss())
            time.sleep(0.2)

    def stop(self) -> dict:
        self.done.set()
        return {
            "cpu_used_above_start_gib": round(self.peak_used / GIB, 2),
            "cpu_tree_rss_gib": round(self.peak_rss / GIB, 2),
        }


def run_cli(args: list[str], log: Path, interrupt_on: str | None = None) -> dict:
    """One finetune-tui command; with `interrupt_on`, SIGINT when a line contains it."""
    return run_command([sys.executable, "-m", "finetune_tui", *args], log, interrupt_on)


def run_command(command: list[str], log: Path, interrupt_on: str | None = None) -> dict:
    """One command, its GPU and host memory watched; with `interrupt_on`, SIGINT when a
    line contains it."""
    started = time.time()
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    gpu, host = NvmlPeak(), HostMemory(proc.pid)
    lines, interrupted_at = [], None
    with log.open("a") as out:
        out.write(f"$ {' '.join(command)}\n")
        for line in proc.stdout:
            out.write(line)
            lines.append(line.rstrip("\n"))
            if interrupt_on and interrupted_at is None and interrupt_on in line:
                interrupted_at = round(time.time() - started, 1)
                proc.send_signal(signal.SIGINT)
    code = proc.wait()
    return {
        "exit": code,
        "wall_s": round(time.time() - started, 1),
        "interrupted_at_s": interrupted_at,
        "nvml_peak_gib": gpu.stop(),
        "nvml_peak_per_gpu_gib": gpu.per_gpu,
        **host.stop(),
        "last_lines": lines[-4:],
        "lines": lines,
    }


def step_speed(run_dir: Path) -> dict:
    """Tokens/s after the first two steps of each attempt (warm-up and compile excluded)."""
    steps = []
    for line in (run_dir / "metrics.jsonl").open():
        event = json.loads(line)
        if event.get("kind") == "step":
            steps.append(event)
    warm = [s for s in steps if s["step"] > 2]
    rate = [s["tokens_per_second"] for s in warm if s["tokens_per_second"]]
    return {
        "steps_logged": len(steps),
        "tokens_per_s": round(sum(rate) / len(rate), 1) if rate else None,
        "first_loss": steps[0]["loss"] if steps else None,
        "last_loss": steps[-1]["loss"] if steps else None,
        "peak_reserved_per_step_gib": max(
            (s.get("memory_reserved_gib") or 0 for s in steps), default=None
        ),
    }


def predicted(preset: Path) -> dict:
    from finetune_tui.engine.inspect.models import inspect_model
    from finetune_tui.engine.plan.peak import predict_memory
    from finetune_tui.engine.settings.preset import load_preset

    settings = load_preset(preset)
    b = predict_memory(inspect_model(settings.model.name_or_path), settings, padded=False)
    return {
        "predicted_reserved_gib": round(b.reserved_gib, 2),
        "predicted_nvidia_smi_gib": round(b.nvidia_smi_gib, 2),
        "predicted_cpu_ram_gib": round(b.cpu_ram_gib, 2),
    }


def run_exported(preset: Path, work: Path, log: Path) -> dict:
    """The preset exported as a script, run with the `accelerate launch` line the export
    prints: the path a user without finetune-tui takes."""
    import shlex

    folder = work / "exported"
    out = work / "runs" / "exported"
    export = subprocess.run(
        [sys.executable, "-m", "finetune_tui", "export", "--preset", str(preset)]
        + ["-o", str(folder / "train.py"), "--force", "--set", f"output.dir={out}"],
        capture_output=True,
        text=True,
    )
    launch = [line.strip() for line in export.stdout.splitlines() if "accelerate launch" in line]
    if export.returncode != 0 or not launch:
        return {"exit": export.returncode, "error": export.stderr.strip().splitlines()[-1:]}
    result = run_command(shlex.split(launch[0]), log)
    return {k: v for k, v in result.items() if k != "lines"} | {"command": launch[0]}


def write_preset(case: str, work: Path, samples: int, extra: list[str], arch: str | None) -> Path:
    """presets/full-zero3-offload.yaml with this case's model (or `arch`), data and overrides."""
    from finetune_tui.engine.settings.preset import load_preset, save_preset, with_changes

    own_arch, overrides = CASES[case]
    arch = arch or own_arch
    model = build_model(arch, work / "models")
    seq = overrides.get("training.max_seq_length", 1024)
    data = write_alpaca(work / f"alpaca-{samples}-{seq}.jsonl", samples, seq)
    changes = {
        "model.name_or_path": str(model),
        "dataset.path": str(data),
        "training.epochs": 2,
        "training.save_total_limit": 2,
        "training.logging_steps": 1,
        **overrides,
    }
    for pair in extra:
        key, value = pair.split("=", 1)
        changes[key] = yaml.safe_load(value)
    settings = with_changes(load_preset(Path("presets/full-zero3-offload.yaml")), changes)
    preset = work / f"{case}.yaml"
    save_preset(settings, preset)
    return preset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=list(CASES), default="zero3-offload-full")
    parser.add_argument("--arch", choices=list(ARCHS), help="another architecture for the case")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--interrupt", action="store_true", help="SIGINT at the first epoch")
    parser.add_argument(
        "--exported", action="store_true", help="then the exported script, launched as printed"
    )
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE override")
    parser.add_argument("--work", default="/tmp/ftlaunch")
    parser.add_argument("--out", default="launched.jsonl")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    preset = write_preset(args.case, work, args.samples, args.set, args.arch)
    arch = args.arch or CASES[args.case][0]
    run_dir = work / "runs" / f"{args.case}-{arch}"
    log = Path(args.out).with_suffix(".log")
    row = {"case": args.case, "arch": arch, "date": time.strftime("%Y-%m-%d"), **versions()}
    row.update(predicted(preset))
    first = run_cli(
        ["--preset", str(preset), "--output", str(run_dir), "--overwrite"],
        log,
        interrupt_on="checkpoint (epoch)" if args.interrupt else None,
    )
    row["first"] = {k: v for k, v in first.items() if k != "lines"}
    if args.interrupt:
        resumed = run_cli(["--resume", str(run_dir)], log)
        row["resumed"] = {k: v for k, v in resumed.items() if k != "lines"}
        row["resumed_from"] = next(
            (line for line in resumed["lines"] if "resuming from" in line), None
        )
    if args.exported:
        row["exported"] = run_exported(preset, work, log)
    summary_file = run_dir / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    keep = ("status", "step", "total_steps", "processes", "method", "peak_allocated_gib")
    row["summary"] = {k: summary.get(k) for k in (*keep, "peak_reserved_gib", "wall_time_s")}
    row.update(step_speed(run_dir) if (run_dir / "metrics.jsonl").exists() else {})
    checkpoints = run_dir / "checkpoints"
    row["checkpoints"] = sorted(p.name for p in checkpoints.glob("checkpoint-*"))
    row["checkpoint_gib"] = {p.name: folder_gib(p) for p in checkpoints.glob("checkpoint-*")}
    row["planned_checkpoint_gib"] = planned_checkpoint_gib(run_dir)
    if first["exit"] not in (0, 130) or row.get("resumed", {}).get("exit", 0) != 0:
        train_log = run_dir / "train.log"  # the libraries' own words on a failure
        row["train_log_tail"] = (
            train_log.read_text(errors="replace")[-4000:] if train_log.exists() else None
        )
    print(json.dumps(row))
    with open(args.out, "a") as out:
        out.write(json.dumps(row) + "\n")


def folder_gib(folder: Path) -> float:
    """What a checkpoint takes on disk, to set beside engine/plan/disk.py's plan."""
    return round(sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**30, 3)


def planned_checkpoint_gib(run_dir: Path) -> float | None:
    """The disk plan's checkpoint for the run's own settings (16-bit weights on a GPU)."""
    from finetune_tui.engine.inspect.models import inspect_model
    from finetune_tui.engine.plan import disk
    from finetune_tui.engine.settings.preset import load_preset

    if not (run_dir / "settings.yaml").exists():
        return None
    settings = load_preset(run_dir / "settings.yaml")
    model = inspect_model(settings.model.name_or_path)
    return round(disk.checkpoint_bytes(model, settings, 2.0) / 2**30, 3)


if __name__ == "__main__":
    main()
