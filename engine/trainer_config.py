"""`TrainSettings` → TRL `SFTConfig`: the one place schema names meet Trainer names."""

from __future__ import annotations

from pathlib import Path

from .loading import Device
from .options import OPTIMIZERS
from .run_dir.layout import CHECKPOINTS_DIR
from .settings import TrainSettings


def sft_config_kwargs(
    settings: TrainSettings, device: Device, packing: bool, has_eval: bool
) -> dict:
    """Plain keyword arguments for SFTConfig (also rendered into exported scripts)."""
    t = settings.training
    # Unsloth applies its own checkpointing inside get_peft_model.
    checkpointing = (
        settings.memory.gradient_checkpointing == "on" and settings.memory.backend != "unsloth"
    )
    kwargs = {
        "per_device_train_batch_size": t.micro_batch_size,
        "per_device_eval_batch_size": t.micro_batch_size,
        "gradient_accumulation_steps": t.gradient_accumulation_steps,
        "max_length": t.max_seq_length,
        "learning_rate": t.learning_rate,
        "lr_scheduler_type": t.lr_scheduler,
        "warmup_steps": t.warmup_ratio,  # a float in [0, 1) is a ratio of total steps
        "num_train_epochs": t.epochs,
        "max_steps": t.max_steps or -1,
        "optim": OPTIMIZERS[t.optimizer].hf_name,
        "weight_decay": t.weight_decay,
        "max_grad_norm": t.max_grad_norm,
        "logging_steps": t.logging_steps,
        "logging_first_step": True,
        "eval_strategy": "steps" if (has_eval and t.eval_steps) else "no",
        "eval_steps": t.eval_steps,
        "save_strategy": "steps" if t.save_steps else "no",
        "save_steps": t.save_steps or 500,
        "save_total_limit": t.save_total_limit,
        "seed": t.seed,
        "data_seed": t.seed,
        "bf16": device.compute_dtype == "bf16" and device.kind == "cuda",
        "fp16": device.compute_dtype == "fp16" and device.kind == "cuda",
        "use_cpu": device.kind == "cpu",
        "gradient_checkpointing": checkpointing,
        "gradient_checkpointing_kwargs": (
            {"use_reentrant": settings.memory.use_reentrant} if checkpointing else None
        ),
        "packing": packing,
        "train_sampling_strategy": (
            "group_by_length" if settings.memory.group_by_length and not packing else "random"
        ),
        "report_to": list(settings.output.report_to) or "none",
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
    }
    return kwargs


def build_sft_config(
    settings: TrainSettings, device: Device, run_dir: Path, packing: bool, has_eval: bool
):
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(run_dir / CHECKPOINTS_DIR),
        **sft_config_kwargs(settings, device, packing, has_eval),
    )
