"""The advisor: the fastest configuration predicted to fit, with a reason for every choice.

Spend spare memory on speed (checkpointing off, bigger micro-batch, 16-bit weights) and
memory savings only where they are needed to fit (DESIGN.md, measured on H100). Options
the user pinned (`fixed`) are never changed; unavailable options are named with the reason.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
from dataclasses import dataclass, field

from .hardware import Hardware
from .memory import MemoryBreakdown, predict_memory
from .models import ModelInfo
from .preset import with_changes
from .settings import TrainSettings

SAFETY_MARGIN = 0.93  # of what is left after the CUDA context: the worst held-out
# under-prediction measured is 6.5 % (Liger, checkpointing, batch 16: allocator fragmentation)
MICRO_BATCHES = (1, 2, 4, 8, 16, 32)
# Relative tokens/s factors, measured on H100 (Llama-3.1-8B, seq 1024, docs/BENCHMARKS.md):
# hf ckpt b2 3130, hf nockpt b4 8352, liger ckpt b4 6314, liger nockpt b8 12745,
# unsloth offloaded-ckpt b4 8171, bf16 liger nockpt b8 10974 tokens/s.
CHECKPOINT_COST = {"off": 1.0, "on": 1 / 2.1, "unsloth": 1 / 1.9}
BACKEND_GAIN = {
    ("hf", True): 1.0,
    ("liger", True): 1.59,
    ("unsloth", True): 1.78,
    ("hf", False): 1.0,
    ("liger", False): 1.32,
    ("unsloth", False): 1.78 / 1.9,  # not measured: assumed no faster than with its offloading
}
QUANT_SPEED = {"none": 0.86, "nf4": 1.0, "fp4": 1.0, "8bit": 0.6}
# Tokens per micro-batch at which the GPU is half-saturated. HF and Liger keep gaining with
# batch (Gemma-2-9B, Liger: checkpointed b16 7323 tokens/s, uncheckpointed b2 3621);
# Unsloth's fused kernels saturate early (Llama-3.1-8B: b4 8171-9389, b16 10409, b32 10740).
SATURATION_TOKENS = {"hf": 3000, "liger": 3000, "unsloth": 1000}


@dataclass
class Alternative:
    label: str
    changes: dict[str, object]
    peak_vram_gib: float
    fits: bool
    relative_speed: float


@dataclass
class Plan:
    settings: TrainSettings
    fits: bool
    peak_vram_gib: float
    budget_gib: float | None
    breakdown: MemoryBreakdown
    reasons: dict[str, str] = field(default_factory=dict)
    alternatives: list[Alternative] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)
    relative_speed: float = 1.0


def relative_speed(settings: TrainSettings) -> float:
    """Tokens/s relative to plain HF QLoRA, checkpointing on, 2 × 1024 tokens."""
    memory = settings.memory
    checkpointed = memory.gradient_checkpointing != "off"
    tokens = settings.training.micro_batch_size * settings.training.max_seq_length
    saturation = tokens / (tokens + SATURATION_TOKENS[memory.backend])
    value = (
        saturation
        * CHECKPOINT_COST[memory.gradient_checkpointing]
        * BACKEND_GAIN[(memory.backend, checkpointed)]
        * QUANT_SPEED[settings.quantization.mode]
    )
    reference = 2048 / (2048 + SATURATION_TOKENS["hf"]) * CHECKPOINT_COST["on"]
    return value / reference


TIGHT_GIB = 0.5  # less headroom than this is called tight (the planner's worst miss is ~7 %)


def budget_gib(hardware: Hardware) -> float | None:
    """What torch may reserve: the card less the CUDA context, with a safety margin.

    The context measured 1.8 GiB on an H100 (CUDA 13); consumer cards load far less.
    """
    gpu = hardware.primary
    if gpu is None:
        return None
    context = 1.85 if gpu.total_gib >= 40 else 0.6
    return (gpu.total_gib - context) * SAFETY_MARGIN


def smallest_card_gib(reserved_gib: float) -> float:
    """The card size whose budget (budget_gib) holds this peak: the inverse of budget_gib."""
    small = reserved_gib / SAFETY_MARGIN + 0.6
    return small if small < 40 else reserved_gib / SAFETY_MARGIN + 1.85


def unavailable_options(hardware: Hardware, model: ModelInfo) -> dict[str, str]:
    """Option value → why it cannot be used here."""
    out: dict[str, str] = {}
    if hardware.primary is None:
        for option in (
            "quantization.mode=nf4",
            "quantization.mode=8bit",
            "memory.backend=liger",
            "memory.backend=unsloth",
            "training.optimizer=adamw_8bit",
        ):
            out[option] = "needs an NVIDIA GPU (CUDA); this machine has none"
        return out
    for backend, why in model.supported_backends.items():
        if why:
            out[f"memory.backend={backend}"] = why
    if len(hardware.gpus) > 1:
        out["memory.backend=unsloth"] = "open-source Unsloth trains on one GPU only"
    elif importlib.util.find_spec("unsloth") is None and not hardware.simulated:
        out.setdefault("memory.backend=unsloth", "unsloth is not installed")
    if model.model_type == "gemma2":
        out.setdefault(
            "memory.backend=unsloth",
            "Unsloth's compiled Gemma-2 path failed (InductorError) on an 8 GB-capped H100 here",
        )
    gpu = hardware.primary
    if gpu.compute_capability and gpu.compute_capability < (8, 0):
        out["quantization.compute_dtype=bf16"] = (
            f"{gpu.name} (compute {gpu.compute_capability[0]}.{gpu.compute_capability[1]}) "
            "has no bf16: fp16 is used"
        )
    return out


def evaluate(hardware: Hardware, model: ModelInfo, settings: TrainSettings) -> Plan:
    """Prediction for exactly these settings: the TUI's live bar and `plan --set`."""
    breakdown = predict_memory(model, settings, hardware)
    budget = budget_gib(hardware)
    fits = budget is None or breakdown.reserved_gib <= budget
    return Plan(
        settings,
        fits,
        breakdown.reserved_gib,
        budget,
        breakdown,
        unavailable=unavailable_options(hardware, model),
        relative_speed=relative_speed(settings),
    )


def advise(
    hardware: Hardware,
    model: ModelInfo,
    base: TrainSettings,
    fixed: set[str] | frozenset[str] = frozenset(),
    dataset_stats=None,
) -> Plan:
    """The fastest candidate that fits; every choice explained; alternatives ranked."""
    unavailable = unavailable_options(hardware, model)
    if hardware.primary is None:
        plan = evaluate(hardware, model, _cpu_settings(base, fixed))
        plan.reasons = {
            "quantization.mode": "CPU only: 4/8-bit bitsandbytes kernels need CUDA, fp32 weights",
            "memory.backend": "CPU only: Liger and Unsloth kernels need CUDA (Triton)",
        }
        return plan
    base = _fit_sequence(base, dataset_stats, fixed)
    budget = budget_gib(hardware)
    scored, fitting = _score(model, base, fixed, unavailable, hardware, budget)
    shortened = None
    while not fitting and "training.max_seq_length" not in fixed:
        length = base.training.max_seq_length // 2
        if length < 256:
            break
        shortened = base = with_changes(base, {"training.max_seq_length": length})
        scored, fitting = _score(model, base, fixed, unavailable, hardware, budget)
    pool = fitting or sorted(scored, key=lambda s: s[1].reserved_gib)[:1]
    chosen, breakdown, speed = max(pool, key=lambda s: (s[2], -s[1].reserved_gib))
    plan = Plan(
        chosen,
        bool(fitting),
        breakdown.reserved_gib,
        budget,
        breakdown,
        unavailable=unavailable,
        relative_speed=speed,
    )
    plan.reasons = _reasons(model, chosen, breakdown, budget, hardware, bool(fitting))
    if shortened is not None:
        plan.reasons["training.max_seq_length"] = (
            f"{shortened.training.max_seq_length}: nothing fits at longer sequences on this card"
        )
    plan.alternatives = _alternatives(chosen, scored, budget)
    if model.is_moe:
        plan.reasons["model.experts"] = experts_reason(model)
    return plan


# Mixture-of-experts families whose memory was measured on a GPU (docs/BENCHMARKS.md).
MEASURED_MOE_TYPES = {"mixtral", "qwen3_moe", "olmoe", "deepseek_v2"}


def experts_reason(model: ModelInfo) -> str:
    """What really happens to a mixture-of-experts model's experts, said plainly."""
    moe = model.moe
    shared = " and the shared experts" if moe.shared_intermediate else ""
    return (
        f"{moe.experts} experts, {moe.top_k} per token: all {model.params_experts * 2 / 2**30:.1f}"
        " GiB of them stay resident in 16-bit (transformers fuses experts into 3-D tensors; "
        f"bitsandbytes quantises only nn.Linear layers); LoRA adapts attention{shared}"
        + (
            ""
            if model.model_type in MEASURED_MOE_TYPES
            else "; this family's MoE memory is not measured on a GPU yet: keep headroom"
        )
    )


def _score(model, base, fixed, unavailable, hardware, budget):
    scored = [
        (candidate, predict_memory(model, candidate, hardware), relative_speed(candidate))
        for candidate in _candidates(base, fixed, unavailable, hardware)
    ]
    return scored, [s for s in scored if s[1].reserved_gib <= budget]


def _cpu_settings(base: TrainSettings, fixed) -> TrainSettings:
    updates = {
        "quantization.mode": "none",
        "memory.backend": "hf",
        "training.optimizer": "adamw_torch",
        "memory.gradient_checkpointing": "off",
    }
    return with_changes(base, {k: v for k, v in updates.items() if k not in fixed})


def _fit_sequence(base: TrainSettings, stats, fixed) -> TrainSettings:
    """Sequence length: cover the dataset's 95th percentile, rounded up to 128."""
    if stats is None or "training.max_seq_length" in fixed or not getattr(stats, "p95", 0):
        return base
    length = min(max(128, math.ceil(stats.p95 / 128) * 128), 8192)
    return with_changes(base, {"training.max_seq_length": length})


def _candidates(base: TrainSettings, fixed, unavailable: dict[str, str], hardware: Hardware):
    def options(field: str, values):
        if field in fixed:
            return [base.value(field)]
        return [v for v in values if f"{field}={v}" not in unavailable]

    effective = base.effective_batch_size
    for quant, backend, ckpt, batch, optim in itertools.product(
        options("quantization.mode", ("none", "nf4")),
        options("memory.backend", ("hf", "liger", "unsloth")),
        options("memory.gradient_checkpointing", ("off", "on", "unsloth")),
        options("training.micro_batch_size", MICRO_BATCHES),
        options("training.optimizer", ("adamw_8bit", "adamw_torch")),
    ):
        if ckpt == "unsloth" and backend != "unsloth":
            continue
        updates = {
            "quantization.mode": quant,
            "memory.backend": backend,
            "memory.gradient_checkpointing": ckpt,
            "training.micro_batch_size": batch,
            "training.optimizer": optim,
        }
        if "training.gradient_accumulation_steps" not in fixed:
            updates["training.gradient_accumulation_steps"] = max(1, effective // batch)
        if (
            "quantization.compute_dtype=bf16" in unavailable
            and "quantization.compute_dtype" not in fixed
        ):
            updates["quantization.compute_dtype"] = "fp16"
        yield with_changes(base, updates)


def _reasons(model, chosen, breakdown, budget, hardware, fits) -> dict[str, str]:
    gpu = hardware.primary
    card = f"{budget:.1f} GiB usable on {gpu.name}"
    s = chosen

    def peakwith_changes(**changes) -> float:
        return predict_memory(model, with_changes(s, changes), hardware).reserved_gib

    reasons = {}
    other_quant = "nf4" if s.quantization.mode == "none" else "none"
    alt = peakwith_changes(**{"quantization.mode": other_quant})
    reasons["quantization.mode"] = (
        f"{s.quantization.mode}: weights take {breakdown.base_weights_gib:.1f} GiB; "
        f"{other_quant} would peak at {alt:.1f} GiB ({card})"
    )
    other = "on" if s.memory.gradient_checkpointing == "off" else "off"
    alt = peakwith_changes(**{"memory.gradient_checkpointing": other})
    reasons["memory.gradient_checkpointing"] = (
        f"{s.memory.gradient_checkpointing}: activations {breakdown.activations_gib:.1f} GiB; "
        f"{other} would peak at {alt:.1f} GiB"
        + (" and run slower" if other == "on" else " and may not fit" if alt > budget else "")
    )
    reasons["memory.backend"] = (
        f"{s.memory.backend}: predicted fastest that fits "
        f"(relative speed {relative_speed(s):.2f}x plain HF QLoRA with checkpointing, batch 2)"
    )
    reasons["training.micro_batch_size"] = (
        f"{s.training.micro_batch_size} x {s.training.max_seq_length} tokens, accumulation "
        f"{s.training.gradient_accumulation_steps}: the largest micro-batch the memory allows "
        "keeps the GPU busy"
    )
    reasons["training.optimizer"] = (
        f"{s.training.optimizer}: LoRA state {breakdown.lora_gib:.2f} GiB"
    )
    if fits:
        spare = budget - breakdown.reserved_gib
        tight = spare < TIGHT_GIB
        reasons["fits"] = f"fits, {spare:.1f} GiB to spare of {card}" + (
            "; tight: out-of-memory back-off is armed" if tight else ""
        )
    if not fits:
        reasons["fits"] = (
            f"nothing fits {card}: smallest peak {breakdown.reserved_gib:.1f} GiB; it needs a "
            f"card of at least {smallest_card_gib(breakdown.reserved_gib):.0f} GB"
        )
    return reasons


def _alternatives(chosen, scored, budget) -> list[Alternative]:
    ranked = sorted(scored, key=lambda s: (s[1].reserved_gib > budget, -s[2]))  # fitting first
    out, seen = [], set()
    for settings, breakdown, speed in ranked:
        changes = _diff(chosen, settings)
        key = tuple(sorted(changes.items()))
        if not changes or key in seen:
            continue
        seen.add(key)
        label = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in changes.items())
        out.append(
            Alternative(
                label,
                changes,
                round(breakdown.reserved_gib, 2),
                breakdown.reserved_gib <= budget,
                round(speed, 2),
            )
        )
        if len(out) == 8:
            break
    return out


def _diff(a: TrainSettings, b: TrainSettings) -> dict[str, object]:
    da, db = a.model_dump(), b.model_dump()
    return {
        f"{sec}.{k}": v for sec, fields in db.items() for k, v in fields.items() if da[sec][k] != v
    }
