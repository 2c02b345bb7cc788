"""`TrainSettings` → TRL `SFTConfig` through the recipe's `trainer_arguments`, the one place
schema names meet Trainer names (the exported script calls the same function)."""

from __future__ import annotations

from pathlib import Path

from .loading import Device
from .options import OPTIMIZERS
from .recipe import trainer_arguments
from .run_dir.layout import CHECKPOINTS_DIR
from .settings import TrainSettings


def sft_config_kwargs(
    settings: TrainSettings, device: Device, has_eval: bool, output_dir: Path = Path(".")
) -> dict:
    """Plain keyword arguments for SFTConfig, for the run's device."""
    t, memory = settings.training, settings.memory
    return trainer_arguments(
        output_dir=output_dir,
        micro_batch_size=t.micro_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        max_seq_length=t.max_seq_length,
        learning_rate=t.learning_rate,
        lr_scheduler=t.lr_scheduler,
        warmup_ratio=t.warmup_ratio,
        epochs=t.epochs,
        max_steps=t.max_steps,
        optimizer=OPTIMIZERS[t.optimizer].hf_name,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        logging_steps=t.logging_steps,
        eval_steps=t.eval_steps,
        has_eval=has_eval,
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        seed=t.seed,
        dtype=device.compute_dtype,
        on_gpu=device.kind == "cuda",
        gradient_checkpointing=memory.gradient_checkpointing,
        use_reentrant=memory.use_reentrant,
        backend=memory.backend,
        packing=memory.packing,
        group_by_length=memory.group_by_length,
        report_to=list(settings.output.report_to) or "none",
        progress_bar=False,  # the runner reports progress through its own events
        method=t.method,
    )


def build_sft_config(settings: TrainSettings, device: Device, run_dir: Path, has_eval: bool):
    from trl import SFTConfig

    return SFTConfig(**sft_config_kwargs(settings, device, has_eval, run_dir / CHECKPOINTS_DIR))
