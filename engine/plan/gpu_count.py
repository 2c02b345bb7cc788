"""How many GPUs a run needs: each strategy's plan on N cards of one kind, and the smallest
count (1, 2, 4, 8 on one node, then whole nodes of 8) at which a strategy fits.

Each GPU's memory under a strategy is engine/plan/sharding.py's (predicted, not measured); the
advisor picks the rest of the configuration as it does for one GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..inspect.hardware import GPU, Hardware
from ..inspect.models import ModelInfo
from ..settings.options import STRATEGIES as STRATEGY_INFO
from ..settings.options import unsloth_refusal
from ..settings.preset import with_changes
from ..settings.schema import TrainSettings
from .advisor import Plan, advise, fitting

# In the order preferred when several fit: DDP moves only gradients; FSDP also gathers every
# layer's weights, and comes with torch (DeepSpeed is a separate install, not a dependency);
# offloading runs the optimizer step on the CPU. Where a DeepSpeed layout fits, the FSDP one
# beside it fits too (the same shards; FSDP's offload also moves the frozen weights).
STRATEGIES = (
    ("ddp", False),
    ("fsdp", False),
    ("fsdp", True),
    ("deepspeed", False),
    ("deepspeed", True),
)
# On one GPU a launcher helps only by offloading to CPU memory: DeepSpeed ZeRO-3 moves the
# optimizer step there (measured on one H200, docs/BENCHMARKS.md); FSDP's offload on one
# process is not offered until it is measured.
ONE_GPU = (("none", False), ("deepspeed", True))
PER_NODE = (1, 2, 4, 8)
MAX_NODES = 32
LAYOUTS = [(p, 1) for p in PER_NODE] + [(8, n) for n in range(2, MAX_NODES + 1)]
DISTRIBUTED_FIELDS = frozenset(
    f"distributed.{key}" for key in ("strategy", "processes", "nodes", "cpu_offload")
)


@dataclass
class StrategyPlan:
    strategy: str
    cpu_offload: bool
    plan: Plan

    @property
    def label(self) -> str:
        return _label(self.strategy, self.cpu_offload)


@dataclass
class GpuCount:
    """The smallest layout at which something fits, and with what."""

    processes: int
    nodes: int
    strategy: str
    cpu_offload: bool
    peak_vram_gib: float

    @property
    def gpus(self) -> int:
        return self.processes * self.nodes

    def describe(self, gpu: GPU) -> str:
        how = "" if self.strategy == "none" else f" with {_label(self.strategy, self.cpu_offload)}"
        nodes = f" ({self.nodes} nodes of {self.processes})" if self.nodes > 1 else ""
        return f"{self.gpus} x {card_name(gpu)}{nodes}{how}"

    def command(self) -> str:
        if self.strategy == "none":
            return "plan"
        nodes = f" --nodes {self.nodes}" if self.nodes > 1 else ""
        return f"plan --gpus {self.processes}{nodes}"


def card_name(gpu: GPU) -> str:
    """A known card by name, any other by its size."""
    return f"{gpu.total_gib:g} GiB" if gpu.name.startswith("GPU with") else gpu.name


def _label(strategy: str, cpu_offload: bool) -> str:
    if strategy == "none":
        return "one process"
    return f"{strategy} + cpu offload" if cpu_offload else strategy


def on_layout(
    base: TrainSettings, strategy: str, cpu_offload: bool, processes: int, nodes: int
) -> TrainSettings:
    """The settings on `processes` x `nodes` GPUs with this strategy; on one GPU, a layout
    outside ONE_GPU is the plain one-process run. Unsloth (one process, never launched)
    gives way to the Hugging Face backend, and an optimizer the strategy does not run to
    the one it does."""
    alone = processes * nodes == 1 and (strategy, cpu_offload) not in ONE_GPU
    launched = "none" if alone else strategy
    changes = {
        "distributed.processes": processes,
        "distributed.nodes": nodes,
        "distributed.strategy": launched,
        "distributed.cpu_offload": cpu_offload and launched != "none",
    }
    if base.memory.backend == "unsloth" and unsloth_refusal(
        base.training.method, processes * nodes, launched != "none"
    ):
        changes["memory.backend"] = "hf"
        if base.memory.gradient_checkpointing == "unsloth":
            changes["memory.gradient_checkpointing"] = "on"
    runs = STRATEGY_INFO[launched].optimizers
    if base.training.optimizer not in runs:
        changes["training.optimizer"] = runs[0]
    return with_changes(base, changes)


def _allowed(base: TrainSettings, fixed, gpus: int) -> list[tuple[str, bool]]:
    """The strategies the user's pins leave open on `gpus` cards (Unsloth or an optimizer
    the strategy does not run pinned: not that strategy). On one card: ONE_GPU."""
    if "memory.backend" in fixed and base.memory.backend == "unsloth":
        return [] if unsloth_refusal(base.training.method, gpus) else [("none", False)]
    d = base.distributed
    layouts = STRATEGIES if gpus > 1 else ONE_GPU
    return [
        (strategy, offload)
        for strategy, offload in layouts
        if ("distributed.strategy" not in fixed or strategy == d.strategy)
        and ("distributed.cpu_offload" not in fixed or offload == d.cpu_offload)
        and (
            "training.optimizer" not in fixed
            or base.training.optimizer in STRATEGY_INFO[strategy].optimizers
        )
    ]


def plans_per_strategy(
    hardware: Hardware,
    model: ModelInfo,
    base: TrainSettings,
    processes: int,
    nodes: int = 1,
    fixed=frozenset(),
    dataset_stats=None,
) -> list[StrategyPlan]:
    """The advisor's plan under each strategy on `processes` x `nodes` cards."""
    pins = set(fixed) | DISTRIBUTED_FIELDS
    return [
        StrategyPlan(
            strategy,
            offload,
            advise(
                hardware,
                model,
                on_layout(base, strategy, offload, processes, nodes),
                fixed=pins,
                dataset_stats=dataset_stats,
            ),
        )
        for strategy, offload in _allowed(base, fixed, processes * nodes)
    ]


def preferred(plans: list[StrategyPlan]) -> StrategyPlan:
    """The first in STRATEGIES' order that fits at the longest length any reached (the
    advisor shortens only what fits nowhere else), outside the planner's error band where
    one does; else the one with the smallest peak."""
    length = max(p.plan.settings.training.max_seq_length for p in plans)

    def rank(p: StrategyPlan) -> tuple[bool, bool, bool]:
        shorter = p.plan.settings.training.max_seq_length < length
        return (not p.plan.fits, shorter, p.plan.tight)

    best = min(plans, key=rank)  # min keeps the first of a tie: STRATEGIES' order
    return best if best.plan.fits else min(plans, key=lambda p: p.plan.peak_vram_gib)


def smallest_count(
    hardware: Hardware, model: ModelInfo, base: TrainSettings, fixed=frozenset()
) -> GpuCount | None:
    """The fewest cards of this kind on which some configuration safely fits at the asked
    length; None when even MAX_NODES nodes of 8 are not enough."""
    alone = fitting(hardware, model, on_layout(base, "none", False, 1, 1), fixed)
    if alone:
        return GpuCount(1, 1, "none", False, min(s.breakdown.reserved_gib for s in alone))
    found = []
    for strategy, offload in _allowed(base, fixed, gpus=2):
        if strategy == "ddp":  # a whole copy per GPU: never less than one GPU's peak
            continue
        hit = _first_fitting_layout(hardware, model, base, strategy, offload, fixed)
        if hit is not None:
            (processes, nodes), peak = hit
            found.append(GpuCount(processes, nodes, strategy, offload, peak))
    return min(found, key=lambda c: c.gpus, default=None)  # min keeps the first of a tie


def _first_fitting_layout(hardware, model, base, strategy, offload, fixed):
    """Binary search over the layouts: each GPU's share only shrinks as GPUs are added. One
    GPU (already tried alone) is tried again only where ONE_GPU has the layout."""
    low, high, best = 0 if (strategy, offload) in ONE_GPU else 1, len(LAYOUTS) - 1, None
    while low <= high:
        middle = (low + high) // 2
        processes, nodes = LAYOUTS[middle]
        settings = on_layout(base, strategy, offload, processes, nodes)
        fits = fitting(hardware, model, settings, fixed)
        if fits:
            best = (LAYOUTS[middle], min(s.breakdown.reserved_gib for s in fits))
            high = middle - 1
        else:
            low = middle + 1
    return best
