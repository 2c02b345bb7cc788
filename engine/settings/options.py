"""One table per option family: what each value is called by the libraries, what it costs
in memory, whether it needs CUDA.

The settings' `Literal` types, the planner, the loader, the advisor and the exporter all
read these tables, so a value is added, renamed or restricted in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

NEEDS_CUDA = "needs an NVIDIA GPU (CUDA); this machine has none"
UNSLOTH_RULE = "open-source Unsloth trains LoRA adapters on one GPU only; use hf or liger"


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
