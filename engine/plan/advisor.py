"""The advisor: the fastest configuration predicted to fit, with a reason for every choice.

Spend spare memory on speed (checkpointing off, bigger micro-batch, 16-bit weights) and
memory savings only where they are needed to fit (measured on H100: docs/BENCHMARKS.md). Options
the user pinned (`fixed`) are never changed; unavailable options are named with the reason.
The candidates and their scores are plan/candidates.py; the reasons, plan/reasons.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..common.errors import SettingsError
from ..inspect.hardware import Hardware
from ..inspect.models import ModelInfo
from ..settings.preset import with_changes
from ..settings.schema import TrainSettings
from . import batching
from .candidates import Scored, diff, ruled_out_by_model, score_candidates, unavailable_options
from .context_length import past_context
from .headroom import judge, usable_gib
from .measured import Correction, explain_correction, planned_memory
from .memory import MemoryBreakdown
from .reasons import batching_reason, experts_reason, field_reasons
from .speed import BATCH_FIELDS, batching_of, relative_speed
from .target_names import target_problem


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
        _explain_what_the_run_checks(plan, model)
        return plan
    base = _fit_sequence(base, dataset_stats, fixed, model.max_context)
    stats = dataset_stats if getattr(dataset_stats, "sample", None) else None

    def score(settings: TrainSettings) -> list[Scored]:
        return score_candidates(model, settings, fixed, unavailable, hardware, stats)

    scored = score(base)
    if not scored:  # every value of a field the user left free is ruled out
        raise SettingsError(_nothing_left(base, unavailable))
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
    plan.reasons = field_reasons(model, chosen, scored, hardware, stats, fixed)
    if stats is not None:
        plan.reasons["memory.packing"] = batching_reason(model, chosen.settings, stats, hardware)
    _explain_length(plan, longest, fixed)
    _explain_what_the_run_checks(plan, model)
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
    return [s for s in score_candidates(model, base, fixed, unavailable, hardware) if s.fit.safe]


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


def _cpu_settings(base: TrainSettings, fixed) -> TrainSettings:
    updates = {
        "quantization.mode": "none",
        "memory.backend": "hf",
        "training.optimizer": "adamw_torch",
        "memory.gradient_checkpointing": "off",
    }
    return with_changes(base, {k: v for k, v in updates.items() if k not in fixed})


def _fit_sequence(base: TrainSettings, stats, fixed, context: int) -> TrainSettings:
    """Sequence length: cover the dataset's 95th percentile, rounded up to 128, inside the
    model's context."""
    if stats is None or "training.max_seq_length" in fixed or not getattr(stats, "p95", 0):
        return base
    length = min(max(128, math.ceil(stats.p95 / 128) * 128), 8192, context)
    return with_changes(base, {"training.max_seq_length": length})


def _nothing_left(settings: TrainSettings, unavailable: dict[str, str]) -> str:
    """Why no candidate is left: the setting of the user's that rules the rest out."""
    for key, why in unavailable.items():
        field, value = key.split("=", 1)
        if field == "training.method" and settings.training.method == value:
            return f"{key.replace('=', ': ')}: {why}"
    return "no configuration is left to plan: " + "; ".join(
        f"{key}: {why}" for key, why in unavailable.items()
    )


def _explain_what_the_run_checks(plan: Plan, model: ModelInfo) -> None:
    """What the user set that the run would warn of or refuse: a length past the model's
    context (the advisor stays inside it), LoRA targets the run refuses, a value this model
    rules out (preflight refuses it)."""
    for key, why in ruled_out_by_model(model).items():
        field, value = key.split("=", 1)
        if str(plan.settings.value(field)) == value:
            plan.reasons[field] = f"{value}: the run refuses it: {why}"
    if warning := past_context(plan.settings.training.max_seq_length, model.max_context):
        before = plan.reasons.get("training.max_seq_length")
        plan.reasons["training.max_seq_length"] = f"{before}; {warning}" if before else warning
    if problem := target_problem(model, plan.settings.lora.target_modules):
        plan.reasons["lora.target_modules"] = problem


def _alternatives(chosen: Scored, scored: list[Scored]) -> list[Alternative]:
    ranked = sorted(scored, key=lambda s: (not s.fit.fits, -s.speed))  # fitting first
    out, seen = [], set()
    for candidate in ranked:
        changes = diff(chosen.settings, candidate.settings)
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
