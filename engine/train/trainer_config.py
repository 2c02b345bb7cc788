"""`TrainSettings` → TRL's `SFTConfig` (or the preference objective's `DPOConfig`,
`ORPOConfig`, `KTOConfig`): the one place schema names meet Trainer names.

`trainer_settings` renames the settings into SFTConfig's own arguments; the exported script
writes that dict as its TRAINER constant and the runner passes it on, both through the
recipe's `trainer_arguments`, which adds what only the machine that trains knows.
"""

from __future__ import annotations

from pathlib import Path

from finetune_tui.engine.settings.trainer_names import trainer_settings

from ..recipe.trainer import trainer_arguments, trainer_classes
from ..runs.layout import CHECKPOINTS_DIR
from ..settings.schema import TrainSettings
from .loading import Device


def sft_config_kwargs(
    settings: TrainSettings, device: Device, has_eval: bool, output_dir: Path = Path(".")
) -> dict:
    """Plain keyword arguments for SFTConfig, for the run's device."""
    memory = settings.memory
    arguments = trainer_arguments(
        trainer_settings(settings),
        output_dir,
        has_eval,
        device.compute_dtype,
        device.kind == "cuda",
        memory.gradient_checkpointing,
        memory.use_reentrant,
        memory.backend,
    )
    arguments["disable_tqdm"] = True  # the runner reports progress through its own events
    # a NaN loss is logged as NaN (the filter logged a diverged run's as 0.0000): the runner
    # stops there (divergence.py)
    arguments["logging_nan_inf_filter"] = False
    return arguments


def build_trainer_config(settings: TrainSettings, device: Device, run_dir: Path, has_eval: bool):
    """The objective's config (SFTConfig for SFT) for this run's device and folder."""
    config, _ = trainer_classes(settings.training.objective)
    return config(**sft_config_kwargs(settings, device, has_eval, run_dir / CHECKPOINTS_DIR))
