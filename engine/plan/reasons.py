"""The advisor's reasons: why each field of the chosen configuration has its value, said
with the numbers the choice was scored with, so a reason cannot contradict the choice.
"""

from __future__ import annotations

from ..common.errors import SettingsError
from ..inspect.hardware import GIB
from ..inspect.models import ModelInfo
from ..inspect.stored_quantization import ruled_out_by_storage
from ..settings.preset import with_changes
from ..settings.schema import TrainSettings
from .candidates import MICRO_BATCHES, NOTHING_QUANTISED, Scored, diff, score_one
from .headroom import Fit, smallest_card_gib
from .measured import planned_memory
from .sharding import distributed_reason
from .speed import BATCH_FIELDS, BATCHINGS, SPEED_BASELINE, batch_fill, batching_of
from .throughput import card_of, packed_cost_kind, step_shares

FULL_NOT_MEASURED = (
    "full: every weight trained, with its gradient and optimizer state; full fine-tuning "
    "memory is not measured on a GPU yet (predicted from the measured LoRA activations and "
    "what the libraries allocate): keep headroom"
)


# Mixture-of-experts families whose memory was measured on a GPU (docs/BENCHMARKS.md).
MEASURED_MOE_TYPES = {"mixtral", "qwen3_moe", "olmoe", "deepseek_v2"}


def experts_reason(model: ModelInfo) -> str:
    """What really happens to a mixture-of-experts model's experts, said plainly."""
    moe = model.moe
    shared = " and the shared experts" if moe.shared_intermediate else ""
    return (
        f"{moe.experts} experts, {moe.top_k} per token: all {model.params_experts * 2 / GIB:.1f}"
        " GiB of them stay resident in 16-bit (transformers fuses experts into 3-D tensors; "
        f"bitsandbytes quantises only nn.Linear layers); LoRA adapts attention{shared}"
        + (
            ""
            if model.model_type in MEASURED_MOE_TYPES
            else "; this family's MoE memory is not measured on a GPU yet: keep headroom"
        )
    )


# A preference objective's memory is objective.py's reading of TRL's trainers, fitted on
# H200 rows; its speed is not modelled.
PREFERENCE_PLAN = (
    "{}: memory planned from how TRL runs it (a pair's two sequences in one batch, ORPO's "
    "whole logits, full fine-tuning's reference copies) under expandable segments, which "
    "the run sets; checked on an H200 and an H100 (DPO, ORPO, NF4 and 16-bit; Llama, Qwen2.5, "
    "Gemma-2, Gemma-3): -3.4 to +5.8 %; no time prediction"
)


def field_reasons(
    model, chosen: Scored, scored: list[Scored], hardware, stats=None, fixed=frozenset()
) -> dict[str, str]:
    """Field → why the chosen configuration has its value (and whether it fits). A field
    the user set (`fixed`) was never varied: its reason says so and compares it with
    nothing the advisor did not plan ("no NF4 configuration fits" where NF4 fitted)."""
    s, breakdown, fit = chosen.settings, chosen.breakdown, chosen.fit
    card = f"{fit.usable_gib:.1f} GiB usable on {hardware.primary.name}"

    def peak_with(**changes) -> float:
        return planned_memory(model, with_changes(s, changes), hardware).reserved_gib

    def best_fitting(field: str, value) -> Scored | None:
        pool = [x for x in scored if x.fit.fits and x.settings.value(field) == value]
        return max(pool, key=lambda x: x.speed, default=None)

    rivals = None if "quantization.mode" in fixed else best_fitting  # none planned if set
    reasons = {"quantization.mode": _quantization_reason(model, s, breakdown, chosen, rivals, card)}
    other = "on" if s.memory.gradient_checkpointing == "off" else "off"
    alt = peak_with(**{"memory.gradient_checkpointing": other})
    cost = " and run slower" if other == "on" else ""
    if other == "off" and alt > fit.usable_gib:
        cost = " and not fit"
    reasons["memory.gradient_checkpointing"] = (
        f"{s.memory.gradient_checkpointing}: activations {breakdown.activations_gib:.1f} GiB; "
        f"{other} would peak at {alt:.1f} GiB{cost}"
    )
    fastest = "set by you" if "memory.backend" in fixed else "predicted fastest that fits"
    reasons["memory.backend"] = (
        f"{s.memory.backend}: {fastest}, {chosen.speed:.2f}x {SPEED_BASELINE}"
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
    elif s.lora.dropout:
        reasons["lora.dropout"] = _dropout_reason(s, breakdown, peak_with(**{"lora.dropout": 0.0}))
    if s.training.objective != "sft":
        reasons["training.objective"] = PREFERENCE_PLAN.format(s.training.objective)
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


def _dropout_reason(s: TrainSettings, breakdown, without: float) -> str:
    """LoRA dropout keeps a copy and a mask of every adapted input (plan/lora_dropout.py);
    Unsloth's fast LoRA kernels take dropout 0 only."""
    text = (
        f"{s.lora.dropout:g}: each adapted linear keeps a dropped copy of its input; peak "
        f"{breakdown.reserved_gib:.1f} GiB against {without:.1f} at 0"
    )
    if s.memory.backend == "unsloth":
        text += "; Unsloth's fast LoRA kernels need 0 (its speed above was measured at 0)"
    return text


PACKED_COST_SOURCES = {  # throughput.packed_cost_kind -> how the reason names it
    "flash": "a packed step at a full one's cost: flash attention keeps samples apart",
    "unsloth": "a packed step's cost as Unsloth's short runs measured it",
    "row": "a packed step's attention over its whole row, under the block mask",
}


def batching_reason(model: ModelInfo, s: TrainSettings, stats, hardware) -> str:
    """Which micro-batch filling, from the real tokens each carries for what its step costs
    on the user's card."""
    shares = {}
    for mode, flags in BATCHINGS.items():
        try:
            variant = with_changes(s, dict(zip(BATCH_FIELDS, flags, strict=True)))
        except SettingsError:  # a filling these settings refuse (packing under DPO, say)
            continue
        shares[mode] = batch_fill(variant, stats, step_shares(model, variant, card_of(hardware)))
    chosen = batching_of(s)
    lengths = f"samples average {stats.mean:.0f} tokens (95th percentile {stats.p95})"
    if len(shares) == 1:
        return f"{chosen}: the only filling {s.training.objective} takes; {lengths}"
    named = {"padded": "padded", "grouped": "grouped by length", "packed": "packed"}
    return (
        f"{chosen}: {lengths}; real tokens for a step's cost, against a full micro-batch of "
        f"{s.training.micro_batch_size} x "
        f"{s.training.max_seq_length}: "
        + ", ".join(f"{named[mode]} {share:.0%}" for mode, share in shares.items())
        + " (a step's fixed per-layer part counted"
        + (f", and {PACKED_COST_SOURCES[packed_cost_kind(s)]})" if "packed" in shares else ")")
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


def _quantization_reason(model, s, breakdown, chosen, best_fitting, card) -> str:
    mode = s.quantization.mode
    other = "nf4" if mode == "none" else "none"
    named = {"none": "16-bit", "nf4": "NF4"}
    head = f"{mode}: weights take {breakdown.base_weights_gib:.1f} GiB"
    if model.params_quantised == 0:  # loaded 16-bit whatever the mode (peak.predict_memory)
        return f"{head} in 16-bit; {NOTHING_QUANTISED.format(model.architecture)}"
    if stored := ruled_out_by_storage(model.stored, model.architecture).get(
        f"quantization.mode={other}"
    ):
        return f"{head}; {stored}"
    if s.training.method == "full":
        return f"{head}; full fine-tuning trains 16-bit weights (4-bit is QLoRA, method lora)"
    if best_fitting is None:  # the user's: no other mode was planned
        return f"{head}; set by you (no other mode planned)"
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
            and set(diff(chosen.settings, x.settings)) <= batch_fields
        ),
        None,
    ) or score_one(
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
