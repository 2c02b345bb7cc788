"""The Trainer config's arguments that the settings decide, in TRL's own names: the one
place schema names meet Trainer names. SFTConfig's for SFT (the runner passes them on and
the exported script writes them as its TRAINER constant); DPOConfig's, ORPOConfig's or
KTOConfig's for a preference objective (the same, less packing, plus its beta and loss)."""

from __future__ import annotations

from ..settings.options import OPTIMIZERS
from ..settings.schema import TrainSettings

# Where an SFTConfig argument comes from: the schema field whose description explains it,
# or (for the few the settings do not hold) what the value means.
FIXED = "fixed by finetune-tui: "


def trainer_table(settings: TrainSettings) -> dict[str, tuple[object, str]]:
    """SFTConfig argument → (value, schema field it comes from, or a FIXED note)."""
    t, memory = settings.training, settings.memory
    return {
        "per_device_train_batch_size": (t.micro_batch_size, "training.micro_batch_size"),
        "per_device_eval_batch_size": (t.micro_batch_size, "training.micro_batch_size"),
        "gradient_accumulation_steps": (
            t.gradient_accumulation_steps,
            "training.gradient_accumulation_steps",
        ),
        "max_length": (t.max_seq_length, "training.max_seq_length"),
        "learning_rate": (t.learning_rate, "training.learning_rate"),
        "lr_scheduler_type": (t.lr_scheduler, "training.lr_scheduler"),
        # SFTConfig's warmup_steps reads a float below 1 as a share of the total steps
        "warmup_steps": (t.warmup_ratio, "training.warmup_ratio"),
        "num_train_epochs": (t.epochs, "training.epochs"),
        "max_steps": (t.max_steps or NONE_AS["max_steps"], "training.max_steps"),
        "optim": (OPTIMIZERS[t.optimizer].hf_name, "training.optimizer"),
        "weight_decay": (t.weight_decay, "training.weight_decay"),
        "max_grad_norm": (t.max_grad_norm, "training.max_grad_norm"),
        "logging_steps": (t.logging_steps, "training.logging_steps"),
        "logging_first_step": (True, FIXED + "the first step's loss is always logged"),
        "eval_steps": (t.eval_steps, "training.eval_steps"),
        "save_strategy": ("steps" if t.save_steps else "no", "training.save_steps"),
        "save_steps": (t.save_steps or 500, "training.save_steps"),
        "save_total_limit": (t.save_total_limit, "training.save_total_limit"),
        "seed": (t.seed, "training.seed"),
        "data_seed": (t.seed, "training.seed"),
        "packing": (memory.packing, "memory.packing"),
        "train_sampling_strategy": (  # packed batches are never grouped by length
            "group_by_length" if memory.group_by_length and not memory.packing else "random",
            "memory.group_by_length",
        ),
        "report_to": (list(settings.output.report_to) or "none", "output.report_to"),
        "dataloader_num_workers": (0, FIXED + "batches are built in the training process"),
        # Several processes (DDP): every weight LoRA's auto targets add is used in every
        # forward, so DDP need not search each step's graph for unused ones. The Trainer's
        # default for a PEFT model searches, and with reentrant checkpointing that failed at
        # step 1 ("marked as ready twice"). Named targets or full fine-tuning (a vision
        # tower or idle experts hold weights a step may not use): the Trainer's default.
        "ddp_find_unused_parameters": (
            False if t.method == "lora" and settings.lora.target_modules == "auto" else None,
            FIXED + "DDP's search each step for weights it left unused: off where every "
            "trained weight is used every step, the Trainer's default (None) otherwise",
        ),
        # A mixture of experts' load-balancing loss trains its routers, which LoRA leaves
        # frozen: off under LoRA (it also failed Phi-3.5-MoE's first step inside TRL and
        # transformers), the model's own coefficient (None) under full fine-tuning.
        "router_aux_loss_coef": (
            None if t.method == "full" else 0.0,
            FIXED + "an MoE's load-balancing loss: the model's own (None), or off (0.0) "
            "while its routers are frozen",
        ),
    }


# The TRL arguments that hold their setting as it is, in the setting's own range: the
# exported script checks a --set of them by the setting's rule (beta=-1 trained silently
# toward the rejected answers). Not the others: warmup_steps counts steps from 1 up,
# optim and the scheduler take TRL's own names; max_steps is in NONE_AS.
AS_THE_SETTING = frozenset(
    {
        "per_device_train_batch_size",
        "per_device_eval_batch_size",
        "gradient_accumulation_steps",
        "max_length",
        "learning_rate",
        "num_train_epochs",
        "weight_decay",
        "max_grad_norm",
        "logging_steps",
        "save_total_limit",
        "seed",
        "data_seed",
        "beta",
    }
)

# The TRL arguments that hold their setting as it is but for its None, written as TRL's
# word for it: the script checks them by the setting's rule with None as that value
# (max_steps 0 trained nothing and said "adapter saved", -7 trained every epoch).
NONE_AS = {"max_steps": -1}


def objective_table(settings: TrainSettings) -> dict[str, tuple[object, str]]:
    """The arguments of the objective's own config (its trainer_table, with the changes a
    preference objective's config needs)."""
    table = trainer_table(settings)
    t = settings.training
    if t.objective == "sft":
        return table
    del table["packing"]  # refused with a preference objective; their configs have none
    table["beta"] = (t.beta, "training.beta")
    if t.objective == "dpo":
        table["loss_type"] = ([t.dpo_loss], "training.dpo_loss")
    if t.objective == "orpo":  # ORPOConfig weighs no router loss
        del table["router_aux_loss_coef"]
    if t.objective == "kto":  # in split_examples' seeded order: KTO pairs neighbours for its KL
        table["train_sampling_strategy"] = (
            "sequential",
            FIXED + "KTO's KL term pairs each example with its neighbour in a fixed order",
        )
    return table


def trainer_settings(settings: TrainSettings) -> dict:
    """The objective's config arguments that the settings decide, in TRL's own names."""
    return {name: value for name, (value, _) in objective_table(settings).items()}
