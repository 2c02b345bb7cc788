"""What a merge needs before it starts: the dtype, the device, and the memory and disk it
will use, checked against what this machine has so that a merge never dies halfway.

The base's size is the planner's (`inspect_model`, `base_weight_bytes` with the
quantisation off): no second count of parameters. The adapter's is its files' size.

Either way the host maps the checkpoint's own files while they load (every shard stays
mapped until the last is read; measured, Llama-3.2-1B fp32 from a bf16 checkpoint in one
file and in five: docs/BENCHMARKS.md, "Merge"). On a CPU the process also holds the base in
the merge's dtype; writing the merged shards streams them. On a GPU the weights go to the
GPU as they are read and the host holds the larger of those files and one merged shard
on its way to disk (Llama-3.1-8B from one 15 GiB file on an H200: +15.07 GiB measured).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..common.errors import InputError
from ..inspect.hardware import GIB
from ..inspect.models import inspect_model
from ..plan.disk import existing_parent, free_bytes
from ..plan.memory import base_weight_bytes
from ..recipe.merging import merge_dtype
from ..settings.preset import with_changes
from ..settings.schema import TrainSettings
from ..train.loading import weight_file_bytes

DEFAULT_SHARD = "5GB"  # the Hub's usual shard size: every loader streams shards this big
GPU_MARGIN = 0.10  # the generation of the parity check, CUDA's context, fragmentation
GPU_CONTEXT_BYTES = 0.5 * GIB


@dataclass
class MergePlan:
    """Where and in what precision the merge runs, and the bytes it will hold."""

    device: str  # "cuda" or "cpu"
    dtype: str  # "bf16" or "fp32"
    base_bytes: float  # the base's weights, unquantised, in `dtype`
    adapter_bytes: int
    read_bytes: float  # the checkpoint's files, mapped while they load (GPU: or one merged
    # shard on its way to disk, if larger)
    host_needed: float
    host_available: int
    gpu_needed: float = 0.0
    gpu_available: int = 0
    note: str = ""  # why the merge runs on the CPU although there is a GPU

    def to_json(self) -> dict:
        gib = {k: round(v / GIB, 3) for k, v in vars(self).items() if isinstance(v, int | float)}
        return {"device": self.device, "dtype": self.dtype, **gib, "note": self.note}


def available_host_bytes() -> int:
    """Memory a new allocation can have now (MemAvailable): the one place it is read."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return int(psutil.virtual_memory().available)
    with open("/proc/meminfo", encoding="ascii") as file:
        for line in file:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise InputError("/proc/meminfo: no MemAvailable line; cannot plan the merge's memory")


def resident_bytes() -> tuple[int, int]:
    """(now, peak so far) resident memory of this process, what a merge's host plan is
    measured against (`Meter`)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak *= 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return int(psutil.Process().memory_info().rss), peak
    import os

    with open("/proc/self/statm", encoding="ascii") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"), peak


class Meter:
    """What a merge really used, to set beside its plan: the host memory it added to the
    process (peak resident less resident at the start: the plan is of what the merge
    needs beyond what runs already), the GPU's peak reserved, and the time."""

    def __init__(self, device: str):
        import time

        self.device, self.started = device, time.monotonic()
        self.resident_at_start = resident_bytes()[0]
        if device == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats()

    def read(self) -> dict:
        import time

        peak = resident_bytes()[1]
        measured = {
            "host_added_gib": round(max(0, peak - self.resident_at_start) / GIB, 3),
            "host_peak_gib": round(peak / GIB, 3),
            "seconds": round(time.monotonic() - self.started, 1),
        }
        if self.device == "cuda":
            import torch

            measured["gpu_peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / GIB, 3)
        return measured


def measured_line(plan: MergePlan, measured: dict) -> str:
    """The plan beside what the merge used, in one line."""
    line = (
        f"measured: host memory +{measured['host_added_gib']:.2f} GiB "
        f"(planned {plan.host_needed / GIB:.2f})"
    )
    if "gpu_peak_reserved_gib" in measured:
        line += (
            f", GPU {measured['gpu_peak_reserved_gib']:.2f} GiB reserved "
            f"(planned {plan.gpu_needed / GIB:.2f})"
        )
    return line + f", {measured['seconds']:.0f} s"


def available_gpu_bytes() -> int:
    """Free memory on this process's GPU; 0 without one."""
    import torch

    if not torch.cuda.is_available():
        return 0
    free, _total = torch.cuda.mem_get_info()
    return int(free)


def shard_bytes(max_shard_size: str | int) -> int:
    """`max_shard_size` ("5GB", "500MB", bytes) as transformers reads it; one line if bad."""
    from transformers.utils.hub import convert_file_size_to_int

    try:
        size = int(convert_file_size_to_int(max_shard_size))
    except (ValueError, TypeError):
        size = 0
    if size <= 0:
        raise InputError(f"--max-shard-size {max_shard_size}: expected a size like 5GB or 500MB")
    return size


def plan_merge(
    settings: TrainSettings, model_path: str, adapter_files: list[Path], max_shard: int
) -> MergePlan:
    """The merge on the GPU when it fits there, else on the CPU when the host has room;
    else InputError with the numbers, before anything is loaded."""
    import torch

    info = inspect_model(model_path)
    adapter = sum(path.stat().st_size for path in adapter_files)
    checkpoint = weight_file_bytes(model_path)
    host = available_host_bytes()
    plans = []
    for device in ("cuda", "cpu") if torch.cuda.is_available() else ("cpu",):
        dtype = merge_dtype(device == "cuda")
        unquantised = with_changes(
            settings, {"quantization.mode": "none", "quantization.compute_dtype": dtype}
        )
        base = base_weight_bytes(info, unquantised)
        read = checkpoint or base  # a hub ID not yet downloaded: as large as the base
        if device == "cuda":  # the weights load onto the GPU; the host maps the files
            read = max(read, min(float(max_shard), base))
            gpu = (base + adapter) * (1 + GPU_MARGIN) + GPU_CONTEXT_BYTES
            plan = MergePlan(device, dtype, base, adapter, read, read + adapter, host, gpu)
            plan.gpu_available = available_gpu_bytes()
        else:
            plan = MergePlan(device, dtype, base, adapter, read, base + adapter + read, host)
        plans.append(plan)
        if _fits(plan):
            if device == "cpu" and len(plans) > 1:
                plan.note = f"the GPU lacks room ({_gpu_words(plans[0])}); merging on the CPU"
            return plan
    raise InputError(_refusal(plans))


def check_disk(plan: MergePlan, output: Path) -> None:
    """The merged model's files must fit where they are written (the disk of the nearest
    folder that exists)."""
    parent = existing_parent(output.parent)
    free = free_bytes(parent)
    if plan.base_bytes > free:
        raise InputError(
            f"{output}: the merged model needs {plan.base_bytes / GIB:.2f} GiB of disk "
            f"({plan.dtype}), {parent} has {free / GIB:.2f} GiB free; choose another -o"
        )


def _fits(plan: MergePlan) -> bool:
    if plan.host_needed > plan.host_available:
        return False
    return plan.device == "cpu" or plan.gpu_needed <= plan.gpu_available


def _gpu_words(plan: MergePlan) -> str:
    return f"needs {plan.gpu_needed / GIB:.2f} GiB, {plan.gpu_available / GIB:.2f} GiB free"


def _refusal(plans: list[MergePlan]) -> str:
    """One line: what each place would need, and what it has."""
    cpu = plans[-1]
    words = (
        f"merge needs {cpu.host_needed / GIB:.2f} GiB of host memory ({cpu.dtype} base "
        f"{cpu.base_bytes / GIB:.2f} GiB + adapter {cpu.adapter_bytes / GIB:.2f} GiB + the "
        f"checkpoint's files while they load {cpu.read_bytes / GIB:.2f} GiB), "
        f"{cpu.host_available / GIB:.2f} GiB available"
    )
    if len(plans) > 1:
        words += f"; on the GPU it {_gpu_words(plans[0])}"
    return words + "; nothing was loaded (free memory, or merge on a larger machine)"
