"""One table per option family: what each value is called by the libraries, what it costs
in memory, whether it needs CUDA.

The settings' `Literal` types, the planner, the loader, the advisor and the exporter all
read these tables, so a value is added, renamed or restricted in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

NEEDS_CUDA = "needs an NVIDIA GPU (CUDA); this machine has none"
UNSLOTH_RULE = "open-source Unsloth trains LoRA adapters on one GPU only; use hf or liger"
# Unsloth patches TRL's preference trainers for the TRL versions it pins; finetune-tui runs it
# with SFTTrainer only.
UNSLOTH_SFT_ONLY = (
    "finetune-tui runs Unsloth with SFTTrainer only (its patches of TRL's preference trainers "
    "are not verified with this TRL); use hf or liger"
)


def unsloth_refusal(method: str = "lora", gpus: int = 1, launched: bool = False) -> str | None:
    """Why Unsloth cannot train this, or None: the one statement of its rule (one GPU, in
    one process no launcher starts, LoRA only) that settings, advisor and `plan` all ask."""
    return UNSLOTH_RULE if method != "lora" or gpus > 1 or launched else None


@dataclass(frozen=True)
class OptimizerInfo:
    hf_name: str  # TrainingArguments.optim
    state_bytes: float  # optimizer state per trainable parameter
    paged: bool  # state pages out to CPU memory under pressure (not on the GPU's books)
    needs_cuda: bool


OPTIMIZERS = {
    "adamw_torch": OptimizerInfo("adamw_torch", 8.0, paged=False, needs_cuda=False),
    "adamw_8bit": OptimizerInfo("adamw_bnb_8bit", 2.0, paged=False, needs_cuda=True),
    "paged_adamw_8bit": OptimizerInfo("paged_adamw_8bit", 2.0, paged=True, needs_cuda=True),
    "paged_adamw_32bit": OptimizerInfo("paged_adamw_32bit", 8.0, paged=True, needs_cuda=True),
}


@dataclass(frozen=True)
class QuantizationInfo:
    needs_cuda: bool  # bitsandbytes' 4/8-bit kernels


QUANTIZATIONS = {
    "none": QuantizationInfo(needs_cuda=False),
    "8bit": QuantizationInfo(needs_cuda=True),
    "nf4": QuantizationInfo(needs_cuda=True),
    "fp4": QuantizationInfo(needs_cuda=True),
}


@dataclass(frozen=True)
class BackendInfo:
    needs_cuda: bool  # Triton kernels


BACKENDS = {
    "hf": BackendInfo(needs_cuda=False),
    "liger": BackendInfo(needs_cuda=True),
    "unsloth": BackendInfo(needs_cuda=True),
}


@dataclass(frozen=True)
class StrategyInfo:
    needs_cuda: bool  # tested here on CPU processes (gloo) only for ddp
    package: str | None = None  # an optional extra it needs
    optimizers: tuple[str, ...] = tuple(OPTIMIZERS)  # the training.optimizer values it runs


STRATEGIES = {
    "none": StrategyInfo(needs_cuda=False),
    "ddp": StrategyInfo(needs_cuda=False),
    "fsdp": StrategyInfo(needs_cuda=True),
    # DeepSpeed steps its own AdamW (deepspeed_config.json): CPU Adam when offloaded
    "deepspeed": StrategyInfo(needs_cuda=True, package="deepspeed", optimizers=("adamw_torch",)),
}

SFT_FORMATS = ("messages", "alpaca", "sharegpt", "text")
PAIRED = "preference"  # prompt / chosen / rejected (strings, or message lists)
UNPAIRED = "unpaired_preference"  # KTO's prompt / completion / label


@dataclass(frozen=True)
class ObjectiveInfo:
    """What an objective trains on (its TRL classes: engine/recipe/trainer.trainer_classes)."""

    formats: tuple[str, ...]  # the dataset formats it trains on
    what: str  # for messages: what the objective learns from
    means: str  # what it trains the model to do, for the wizard


OBJECTIVES = {
    "sft": ObjectiveInfo(
        SFT_FORMATS, "answers", "learns to write the answers, token by token (SFTTrainer)"
    ),
    "dpo": ObjectiveInfo(
        (PAIRED,),
        "preference pairs",
        "raises the chosen answer's likelihood over the rejected one's, measured against a "
        "frozen reference (under LoRA the model with its adapter off); beta: how far it may "
        "move from it (DPOTrainer)",
    ),
    "orpo": ObjectiveInfo(
        (PAIRED,),
        "preference pairs",
        "learns the chosen answer as SFT does, and an odds-ratio penalty pushes the rejected "
        "one down; no reference model; beta weighs the penalty (ORPOTrainer)",
    ),
    # KTOTrainer unpairs prompt / chosen / rejected records itself
    "kto": ObjectiveInfo(
        (UNPAIRED, PAIRED),
        "labelled completions",
        "raises good completions and lowers bad ones, each against a frozen reference; "
        "needs no pairs, only a true / false label (KTOTrainer)",
    ),
}
# DPOConfig.loss_type values offered (TRL's own names; the ones that need nothing more:
# exo_pair needs a label_smoothing above 0, which the settings do not hold)
DPO_LOSSES = ("sigmoid", "hinge", "ipo", "robust", "bco_pair", "sppo_hard", "nca_pair")


# LoRA on the output layer: TRL's trainers (SFT, DPO, KTO...) refuse it, since their loss
# multiplies the hidden states by its weight directly
OUTPUT_LAYER_RULE = (
    "the model's output layer, whose weight TRL's trainers read directly (an adapter "
    "there would never train: they refuse it); leave it out"
)


def least_micro_batch(objective: str) -> int:
    """The smallest micro-batch an objective trains at: KTO's KL reference point pairs each
    completion with another of its micro-batch (KTOTrainer refuses 1)."""
    return 2 if objective == "kto" else 1


def objective_format_problem(objective: str, data_format: str) -> str | None:
    """Why records of this format cannot train this objective, or None: a preference record
    never trains as SFT, nor an SFT record as a preference."""
    info = OBJECTIVES[objective]
    if data_format in info.formats:
        return None
    wanted = _either(info.formats)
    suits = _either([name for name, other in OBJECTIVES.items() if data_format in other.formats])
    return (
        f"training.objective: {objective} trains on {info.what} ({wanted} records), but the "
        f"dataset is {data_format} records, which train {suits}; set training.objective or "
        "use another dataset"
    )


def _either(names) -> str:
    """'a', 'a or b', 'a, b or c'."""
    names = list(names)
    return " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


# Gradient checkpointing: "unsloth" is Unsloth's own, offloading to CPU (the mapping to
# Unsloth's argument is part of the recipe: engine/recipe/model.py load_unsloth_model).
CHECKPOINTING = ("off", "on", "unsloth")

TABLES = {
    "quantization.mode": QUANTIZATIONS,
    "memory.backend": BACKENDS,
    "training.optimizer": OPTIMIZERS,
    "distributed.strategy": STRATEGIES,
}


def cuda_only() -> list[str]:
    """Every `field=value` that needs CUDA, from the tables."""
    return [
        f"{field}={value}"
        for field, table in TABLES.items()
        for value, info in table.items()
        if info.needs_cuda
    ]
