"""The training recipe's trainer side, written once: the allocator a run trains under, the
TRL config's arguments, TRL's classes of an objective and the final save. Same rules as
model.py: the runner calls these and the exported script carries their source verbatim."""


def planned_allocator(objective):
    """The CUDA allocator setting the run trains under, set before CUDA is first used.
    Preference objectives hold vocabulary-wide blocks whose sizes change from step to step:
    torch's default allocator kept them cached (reserved 1.2-1.6x allocated on an H200),
    expandable segments 1.03-1.28x, so those runs get `expandable_segments:True` (the
    plan's memory model assumes it) unless the user set PYTORCH_CUDA_ALLOC_CONF."""
    import os

    if objective != "sft":
        os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    return os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "")


def trainer_arguments(
    trainer, output_dir, has_eval, dtype, on_gpu, gradient_checkpointing, use_reentrant, backend
):
    """The TRL config's arguments: `trainer` (the settings, in TRL's own names) and what
    only the machine that trains knows: the folder, whether the split left an evaluation
    set, the device's precision. Unsloth applies its own gradient checkpointing inside
    get_peft_model, so the Trainer's is off under it."""
    checkpointing = gradient_checkpointing == "on" and backend != "unsloth"
    return {
        **trainer,
        "output_dir": str(output_dir),
        "eval_strategy": "steps" if (has_eval and trainer["eval_steps"]) else "no",
        "bf16": on_gpu and dtype == "bf16",
        "fp16": on_gpu and dtype == "fp16",
        "use_cpu": not on_gpu,
        "gradient_checkpointing": checkpointing,
        "gradient_checkpointing_kwargs": {"use_reentrant": use_reentrant}
        if checkpointing
        else None,
    }


def trainer_classes(objective):
    """TRL's (config, trainer) classes of a training objective, from where the installed TRL
    publishes them (ORPO in trl.experimental since TRL 1.0, its warning silenced). Under
    LoRA the preference trainers' reference is the model with its adapter switched off;
    under full fine-tuning DPO and KTO load a second copy; ORPO has none."""
    import importlib
    import warnings

    module, config, trainer = {
        "sft": ("trl", "SFTConfig", "SFTTrainer"),
        "dpo": ("trl", "DPOConfig", "DPOTrainer"),
        "orpo": ("trl.experimental.orpo", "ORPOConfig", "ORPOTrainer"),
        "kto": ("trl", "KTOConfig", "KTOTrainer"),
    }[objective]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        library = importlib.import_module(module)
    return getattr(library, config), getattr(library, trainer)


def save_whole(trainer, folder):
    """The trained weights, whole, into `folder` (every process calls it: sharded weights
    gather). FSDP's sharded checkpoints make the Trainer's save_model write nothing, so the
    final save gathers a full state dict, as PEFT's FSDP examples do."""
    if trainer.is_fsdp_enabled:
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(str(folder))


# What the exported script copies after the model side, in order.
TRAINER_FUNCTIONS = (planned_allocator, trainer_arguments, trainer_classes, save_whole)
