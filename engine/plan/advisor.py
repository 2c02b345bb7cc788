"""The advisor: the fastest configuration predicted to fit, with a reason for every choice.

Spend spare memory on speed (checkpointing off, bigger micro-batch, 16-bit weights) and
memory savings only where they are needed to fit (measured on H100: docs/BENCHMARKS.md). Options
the user pinned (`fixed`) are never changed; unavailable options are named with the reason.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
from dataclasses import dataclass, field

from ..inspect.hardware import Hardware
from ..inspect.models import ModelInfo
from ..settings.options import NEEDS_CUDA, STRATEGIES, cuda_only, unsloth_refusal
from ..settings.preset import with_changes
from ..settings.schema import TrainSettings
from . import batching
from .headroom import Fit, judge, smallest_card_gib, usable_gib
from .measured import Correction, explain_correction, planned_memory
from .memory import MemoryBreakdown
from .sharding import distributed_reason
from .speed import (
    BATCH_FIELDS,
    BATCHINGS,
    SPEED_BASELINE,
    batch_fill,
    batching_of,
    real_token_speed,
    relative_speed,
)

MICRO_BATCHES = (1, 2, 4, 8, 16, 32)
FULL_NOT_MEASURED = (
    "full: every weight trained, with its gradient and optimizer state; full fine-tuning "
    "memory is not measured on a GPU yet (predicted from the measured LoRA activations and "
    "what the libraries allocate): keep headroom"
)


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
    tight: bool = False
    correction: Correction | None = None  # what runs measured on this card changed


@dataclass
class Scored:
    settings: TrainSettings
    breakdown: MemoryBreakdown
    speed: float
    fit: Fit


def unavailable_options(hardware: Hardware, model: ModelInfo) -> dict[str, str]:
    """Option value → why it cannot be used here."""
    out: dict[str, str] = {}
    if hardware.primary is None:
        return dict.fromkeys(cuda_only(), NEEDS_CUDA)
    for backend, why in model.supported_backends.items():
        if why:
            out[f"memory.backend={backend}"] = why
    if why := unsloth_refusal(gpus=len(hardware.gpus)):
        out["memory.backend=unsloth"] = why
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
    breakdown = planned_memory(model, settings, hardware)
    fit = judge(model, settings, hardware, breakdown.reserved_gib)
    plan = Plan(
        settings,
        fit.fits,
        breakdown.reserved_gib,
        usable_gib(hardware),
        breakdown,
        unavailable=unavailable_options(hardware, model),
        relative_speed=relative_speed(settings),
        tight=fit.tight,
    )
    explain_correction(plan, model, hardware)
    return plan


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
    stats = dataset_stats if getattr(dataset_stats, "sample", None) else None
    score = lambda settings: _score(model, settings, fixed, unavailable, hardware, stats)  # noqa: E731
    scored = score(base)
    longest = None
    if not any(s.fit.safe for s in scored):
        longest = _longest_fitting_length(base, score)
        if longest and "training.max_seq_length" not in fixed:
            base = with_changes(base, {"training.max_seq_length": longest})
            scored = score(base)
    fitting = [s for s in scored if s.fit.safe] or [s for s in scored if s.fit.fits]
    pool = fitting or sorted(scored, key=lambda s: s.breakdown.reserved_gib)[:1]
    chosen = _padded_unless_faster(
        max(pool, key=lambda s: (s.speed, -s.breakdown.reserved_gib)), pool
    )
    plan = Plan(
        chosen.settings,
        chosen.fit.fits,
        chosen.breakdown.reserved_gib,
        usable_gib(hardware),
        chosen.breakdown,
        unavailable=unavailable,
        relative_speed=chosen.speed,
        tight=chosen.fit.tight,
    )
    plan.reasons = _reasons(model, chosen, scored, hardware, stats)
    if stats is not None:
        plan.reasons["memory.packing"] = _batching_reason(chosen.settings, stats)
    _explain_length(plan, longest, fixed)
    plan.alternatives = _alternatives(chosen, scored)
    if model.is_moe:
        plan.reasons["model.experts"] = experts_reason(model)
    explain_correction(plan, model, hardware)
    return plan


def fitting(
    hardware: Hardware, model: ModelInfo, base: TrainSettings, fixed=frozenset()
) -> list[Scored]:
    """Every candidate predicted to fit safely at the asked length (how many GPUs)."""
    unavailable = unavailable_options(hardware, model)
    return [s for s in _score(model, base, fixed, unavailable, hardware) if s.fit.safe]


def _padded_unless_faster(chosen: Scored, pool: list[Scored]) -> Scored:
    """Grouping or packing only where it is predicted batching.MIN_GAIN faster than the
    same configuration padded (it changes which samples share a step)."""
    if batching_of(chosen.settings) == "padded":
        return chosen
    padded = with_changes(chosen.settings, dict.fromkeys(BATCH_FIELDS, False))
    same = [s for s in pool if s.settings == padded]
    if same and chosen.speed < same[0].speed * batching.MIN_GAIN:
        return same[0]
    return chosen


def _longest_fitting_length(base: TrainSettings, score) -> int | None:
    """The longest max_seq_length, a multiple of 128 up to the asked one, where a
    candidate safely fits (fitting is monotone in length: activations only grow)."""
    low, high, best = 1, base.training.max_seq_length // 128, None
    while low <= high:
        middle = (low + high) // 2
        shorter = with_changes(base, {"training.max_seq_length": middle * 128})
        if any(s.fit.safe for s in score(shorter)):
            best, low = middle * 128, middle + 1
        else:
            high = middle - 1
    return best


def _explain_length(plan: Plan, longest: int | None, fixed) -> None:
    pinned = "training.max_seq_length" in fixed
    if plan.fits and longest is not None and not pinned:
        plan.reasons["training.max_seq_length"] = (
            f"{longest}: the longest (in steps of 128) at which anything fits this card"
        )
    elif longest is not None:
        plan.reasons["training.max_seq_length"] = (
            f"pinned at {plan.settings.training.max_seq_length}: the longest that safely fits "
            f"with the other choices free is {longest}"
        )
    elif not plan.fits:
        plan.reasons["training.max_seq_length"] = "nothing fits even at 128 tokens"


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


def _score(model, base, fixed, unavailable, hardware, stats=None) -> list[Scored]:
    return [
        _score_one(model, candidate, hardware, stats)
        for candidate in _candidates(base, fixed, unavailable, hardware, stats is not None)
    ]


def _score_one(model, settings: TrainSettings, hardware, stats=None) -> Scored:
    """Memory, fit and speed of one configuration: what the choice and every reason that
    compares with it are computed from (real tokens, packing's cost included)."""
    breakdown = planned_memory(model, settings, hardware)
    fit = judge(model, settings, hardware, breakdown.reserved_gib)
    return Scored(settings, breakdown, real_token_speed(settings, stats), fit)


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


def _candidates(
    base: TrainSettings, fixed, unavailable: dict[str, str], hardware: Hardware, lengths: bool
):
    def options(field: str, values):
        if field in fixed:
            return [base.value(field)]
        return [v for v in values if f"{field}={v}" not in unavailable]

    effective = base.effective_batch_size
    pinned = set(BATCH_FIELDS) & set(fixed)
    full, d = base.training.method == "full", base.distributed
    quantizations = ("none",) if full else ("none", "nf4")  # full trains 16-bit weights
    unsloth = unsloth_refusal(base.training.method, d.world_size, d.launched) is None
    backends = ("hf", "liger", "unsloth") if unsloth else ("hf", "liger")
    runs = STRATEGIES[base.distributed.strategy].optimizers
    optimizers = [o for o in ("adamw_8bit", "adamw_torch") if o in runs]
    fills = [BATCHINGS[batching_of(base)]] if pinned or not lengths else BATCHINGS.values()
    for (packing, grouped), quant, backend, ckpt, batch, optim in itertools.product(
        fills,
        options("quantization.mode", quantizations),
        options("memory.backend", backends),
        options("memory.gradient_checkpointing", ("off", "on", "unsloth")),
        options("training.micro_batch_size", MICRO_BATCHES),
        options("training.optimizer", optimizers),
    ):
        if ckpt == "unsloth" and backend != "unsloth":
            continue
        updates = {
            "memory.packing": packing,
            "memory.group_by_length": grouped,
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


def _reasons(model, chosen: Scored, scored: list[Scored], hardware, stats=None) -> dict[str, str]:
    s, breakdown, fit = chosen.settings, chosen.breakdown, chosen.fit
    card = f"{fit.usable_gib:.1f} GiB usable on {hardware.primary.name}"

    def peak_with(**changes) -> float:
        return planned_memory(model, with_changes(s, changes), hardware).reserved_gib

    def best_fitting(field: str, value) -> Scored | None:
        pool = [x for x in scored if x.fit.fits and x.settings.value(field) == value]
        return max(pool, key=lambda x: x.speed, default=None)

    reasons = {"quantization.mode": _quantization_reason(s, breakdown, chosen, best_fitting, card)}
    other = "on" if s.memory.gradient_checkpointing == "off" else "off"
    alt = peak_with(**{"memory.gradient_checkpointing": other})
    cost = " and run slower" if other == "on" else ""
    if other == "off" and alt > fit.usable_gib:
        cost = " and not fit"
    reasons["memory.gradient_checkpointing"] = (
        f"{s.memory.gradient_checkpointing}: activations {breakdown.activations_gib:.1f} GiB; "
        f"{other} would peak at {alt:.1f} GiB{cost}"
    )
    reasons["memory.backend"] = (
        f"{s.memory.backend}: predicted fastest that fits, {chosen.speed:.2f}x {SPEED_BASELINE}"
    )
    reasons["training.micro_batch_size"] = _batch_reason(model, chosen, scored, hardware, stats)
    reasons["training.optimizer"] = (
        f"{s.training.optimizer}: gradients and optimizer state "
        f"{breakdown.gradients_optimizer_gib:.2f} GiB"
        if s.training.method == "full"
        else f"{s.training.optimizer}: LoRA state {breakdown.lora_gib:.2f} GiB"
    )
    if s.training.method == "full":
        reasons["training.method"] = FULL_NOT_MEASURED
    if s.distributed.launched:
        reasons["distributed.strategy"] = distributed_reason(s, breakdown)
    if fit.fits:
        reasons["fits"] = f"fits, {fit.spare_gib:.1f} GiB to spare of {card}" + _tight_note(fit)
    else:
        reasons["fits"] = (
            f"nothing fits {card}: smallest peak {breakdown.reserved_gib:.1f} GiB; it needs a "
            f"card of at least {smallest_card_gib(breakdown.reserved_gib):.0f} GB"
        )
    return reasons


def _batching_reason(s: TrainSettings, stats) -> str:
    """Which micro-batch filling, from the real share of tokens each would compute."""
    shares = {}
    for mode, flags in BATCHINGS.items():
        variant = with_changes(s, dict(zip(BATCH_FIELDS, flags, strict=True)))
        shares[mode] = batch_fill(variant, stats)
    chosen = batching_of(s)
    return (
        f"{chosen}: samples average {stats.mean:.0f} tokens (95th percentile {stats.p95}); "
        f"real tokens per micro-batch of {s.training.micro_batch_size} x "
        f"{s.training.max_seq_length}: padded {shares['padded']:.0%}, grouped by length "
        f"{shares['grouped']:.0%}, packed {shares['packed']:.0%} (a packed step's measured "
        "cost counted)"
    )


def _tight_note(fit: Fit) -> str:
    if not fit.tight:
        return ""
    if fit.backed:
        return "; tight: inside the planner's measured error, out-of-memory back-off is armed"
    return (
        "; tight: inside the planner's measured error with nothing left to back off to "
        "(micro-batch 1, checkpointing on): if it runs out of memory, lower max_seq_length"
    )


def _quantization_reason(s, breakdown, chosen, best_fitting, card) -> str:
    mode = s.quantization.mode
    other = "nf4" if mode == "none" else "none"
    named = {"none": "16-bit", "nf4": "NF4"}
    head = f"{mode}: weights take {breakdown.base_weights_gib:.1f} GiB"
    if s.training.method == "full":
        return f"{head}; full fine-tuning trains 16-bit weights (4-bit is QLoRA, method lora)"
    rival = best_fitting("quantization.mode", other)
    if rival is None:
        return f"{head}; no {named.get(other, other)} configuration fits {card}"
    why = " (NF4 measured faster than 16-bit at the same batch on an H100)" if mode == "nf4" else ""
    return (
        f"{head}; the fastest {named.get(other, other)} configuration that fits "
        f"({rival.breakdown.reserved_gib:.1f} GiB) is predicted {rival.speed / chosen.speed:.0%} "
        f"as fast{why}"
    )


def _batch_reason(model, chosen: Scored, scored: list[Scored], hardware, stats=None) -> str:
    """The doubled micro-batch as the advisor scored it (its accumulation, its batch
    filling's cost), so the reason cannot contradict the choice."""
    t = chosen.settings.training
    head = (
        f"{t.micro_batch_size} x {t.max_seq_length} tokens per micro-batch, accumulation "
        f"{t.gradient_accumulation_steps} (effective batch "
        f"{t.micro_batch_size * t.gradient_accumulation_steps})"
    )
    bigger = t.micro_batch_size * 2
    if bigger > MICRO_BATCHES[-1]:
        return f"{head}: the largest micro-batch tried"
    batch_fields = {"training.micro_batch_size", "training.gradient_accumulation_steps"}
    doubled = next(
        (
            x
            for x in scored
            if x.settings.training.micro_batch_size == bigger
            and set(_diff(chosen.settings, x.settings)) <= batch_fields
        ),
        None,
    ) or _score_one(
        model, with_changes(chosen.settings, {"training.micro_batch_size": bigger}), hardware, stats
    )
    peak = doubled.breakdown.reserved_gib
    if not doubled.fit.fits:
        return f"{head}: {bigger} would peak at {peak:.1f} GiB and not fit"
    gain = doubled.speed / chosen.speed - 1
    if gain > 0 and not doubled.fit.safe:
        return (
            f"{head}: {bigger} would peak at {peak:.1f} GiB, {gain:+.0%} predicted speed, but "
            "inside the planner's error of this card"
        )
    verdict = "no faster" if gain <= 0 else "faster"
    return (
        f"{head}: {bigger} would also fit ({peak:.1f} GiB) but is predicted {verdict} ({gain:+.0%})"
    )


def _alternatives(chosen: Scored, scored: list[Scored]) -> list[Alternative]:
    ranked = sorted(scored, key=lambda s: (not s.fit.fits, -s.speed))  # fitting first
    out, seen = [], set()
    for candidate in ranked:
        changes = _diff(chosen.settings, candidate.settings)
        key = tuple(sorted(changes.items()))
        if not changes or key in seen:
            continue
        seen.add(key)
        label = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in changes.items())
        out.append(
            Alternative(
                label,
                changes,
                round(candidate.breakdown.reserved_gib, 2),
                candidate.fit.fits,
                round(candidate.speed, 2),
            )
        )
        if len(out) == 8:
            break
    return out


def _diff(a: TrainSettings, b: TrainSettings) -> dict[str, object]:
    """b's values where it differs from a."""
    return {field: theirs for field, (_, theirs) in a.differences(b).items()}
