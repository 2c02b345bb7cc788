"""Inside a launched process: its rank, and the collectives that keep every rank
in step (a stop agreed at the same step, token counts summed)."""

from __future__ import annotations

import functools
import os


def rank() -> int:
    """This process's rank under a launcher (0 when alone)."""
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    return rank() == 0


def world_size() -> int:
    """How many processes train this run together (1 when alone)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on any: a stop asked of one rank stops all of
    them at the same step (a rank that stopped alone would leave the others waiting)."""
    return bool(_all_reduce(float(flag), "MAX"))


def sum_over_ranks(value: float) -> float:
    """The total of a count every rank keeps for itself (tokens each rank trained on)."""
    return _all_reduce(value, "SUM")


def _all_reduce(value: float, op: str) -> float:
    """One collective every rank calls at the same point; the value itself when alone."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return value
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=getattr(dist.ReduceOp, op))
    return float(tensor.item())


@functools.cache  # registered once per process
def accept_indexed_cpu_locations() -> None:
    """Let torch.load restore to 'cpu:N'. With several CPU processes the Trainer's device is
    `cpu:0` and it resumes the optimizer with `map_location=args.device`, which torch cannot
    map ("don't know how to restore data location ... cpu:0"); CPU memory has no index, so
    such a location is the CPU itself, registered through torch's own extension point."""
    import torch.serialization

    def tag(storage):
        return None  # saving is unchanged

    def restore(storage, location):
        return storage if location.startswith("cpu:") else None

    torch.serialization.register_package(30, tag, restore)
