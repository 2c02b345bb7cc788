"""Combinations of settings the libraries refuse, named before anything loads (the
schema's cross-field check; each message names its field first, `section.key: why`).
"""

from __future__ import annotations

from .attention import keeps_samples_apart, planned_attention
from .options import (
    STRATEGIES,
    UNSLOTH_RULE,
    UNSLOTH_SFT_ONLY,
    least_micro_batch,
    objective_format_problem,
    unsloth_refusal,
)

OFFLOADING = ("fsdp", "deepspeed")  # the strategies that can keep state in CPU memory


def refused_combination(s) -> str | None:
    """The first combination of these settings (a TrainSettings) that the libraries
    refuse, or None."""
    d = s.distributed
    problems = (
        (
            s.training.method == "full" and s.quantization.mode != "none",
            "training.method: full fine-tuning trains every weight in 16-bit; set "
            "quantization.mode: none (QLoRA is method lora with 4-bit weights)",
        ),
        (
            d.world_size > 1 and d.strategy == "none",
            "distributed.strategy: several processes need ddp, fsdp or deepspeed",
        ),
        (
            s.memory.backend == "unsloth"
            and unsloth_refusal(s.training.method, d.world_size, d.launched),
            f"memory.backend: {UNSLOTH_RULE}",
        ),
        (
            s.memory.packing
            and not keeps_samples_apart(planned_attention(s.model.attn_implementation)),
            "memory.packing: this attention kernel would let packed samples see each other",
        ),
        (
            s.training.optimizer not in STRATEGIES[d.strategy].optimizers,
            f"training.optimizer: {d.strategy} runs its own AdamW (CPU Adam when "
            "offloaded); set training.optimizer: " + " or ".join(STRATEGIES[d.strategy].optimizers),
        ),
        (
            s.training.eval_steps is not None and s.dataset.eval_fraction == 0,
            "training.eval_steps: no records are held out to evaluate "
            "(dataset.eval_fraction is 0); set one or drop eval_steps",
        ),
        (
            d.cpu_offload and d.strategy not in OFFLOADING,
            f"distributed.cpu_offload: {_without_offload(d.strategy)}; offload needs "
            "distributed.strategy fsdp or deepspeed",
        ),
    )
    return next((message for failed, message in problems if failed), None) or _objective_problem(s)


def _objective_problem(s) -> str | None:
    """What a preference objective cannot run with, and the preference settings an SFT run
    would silently ignore."""
    t, memory, fmt = s.training, s.memory, s.dataset.format
    preference = t.objective != "sft"
    changed = {k: getattr(t, k) != f.default for k, f in type(t).model_fields.items()}
    if fmt != "auto" and (problem := objective_format_problem(t.objective, fmt)):
        return problem
    problems = (
        (
            preference and memory.backend == "unsloth",
            f"memory.backend: {UNSLOTH_SFT_ONLY}",
        ),
        (
            preference and memory.packing,
            "memory.packing: TRL's preference trainers do not pack samples; set "
            "memory.packing: false",
        ),
        (
            preference and memory.group_by_length,
            "memory.group_by_length: TRL's preference batches have no single length to "
            "group by; set memory.group_by_length: false",
        ),
        (
            preference and t.exact_match_samples > 0,
            "training.exact_match_samples: measures SFT answers; a preference run reports "
            "its held-out preference accuracy instead; set it to 0",
        ),
        (
            not preference and changed["beta"],
            "training.beta: only the preference objectives (dpo, orpo, kto) read it",
        ),
        (
            t.objective != "dpo" and changed["dpo_loss"],
            "training.dpo_loss: only training.objective: dpo reads it",
        ),
        (
            t.micro_batch_size < least_micro_batch(t.objective),
            f"training.micro_batch_size: {t.objective} trains at "
            f"{least_micro_batch(t.objective)} or more (its KL reference point pairs each "
            "completion with another of the micro-batch)",
        ),
    )
    return next((message for failed, message in problems if failed), None)


def _without_offload(strategy: str) -> str:
    if strategy == "ddp":
        return "DDP keeps a whole copy per GPU"
    return "one process without a strategy keeps everything on its GPU"
