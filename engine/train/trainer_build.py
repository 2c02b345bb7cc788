"""What every training attempt shares (device, tokenizer, datasets, attention) and the
trainer built from it: model → backend → LoRA → TRL's trainer of the objective (SFTTrainer,
DPOTrainer, ORPOTrainer, KTOTrainer), with our callbacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..launch.ranks import world_size
from ..runs.events import EventSink, Notice
from ..settings.schema import TrainSettings
from . import exact_match
from .run_memory import predicted_peak_gib
from .run_speed import predicted_speed

# SFTConfig arguments a backend could change behind our back (see callbacks.DriftCallback).
DRIFT_WATCHED = (
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "max_length",
    "packing",
    "gradient_checkpointing",
    "learning_rate",
    "num_train_epochs",
    "max_steps",
)


@dataclass
class RunInputs:
    """What every attempt shares: device, tokenizer, datasets, attention choice."""

    device: object
    model_path: str
    tokenizer: object
    data: object
    attn: str
    match_records: list[dict]


def prepare_inputs(settings: TrainSettings, emit: EventSink) -> RunInputs:
    """Device, model folder, tokenizer, datasets: read once, whatever the attempts."""
    from ..data.dataset import prepare_datasets
    from . import loading

    _quiet_progress_bars()
    device = loading.choose_device(settings)
    loading.check_backend_support(settings, device)
    model_path = loading.resolve_model_path(settings.model.name_or_path)
    warning = loading.check_remote_code(model_path, settings)
    if warning:
        emit(Notice(warning, level="warning"))
    tokenizer = loading.load_tokenizer(model_path, settings)
    data = prepare_datasets(settings, tokenizer.eos_token)
    attn = loading.attention_implementation(settings, model_path)  # each keeps samples apart
    match_records = exact_match.held_out_records(data.eval, settings.training.exact_match_samples)
    return RunInputs(device, model_path, tokenizer, data, attn, match_records)


def build_trainer(settings: TrainSettings, inputs: RunInputs, run_dir: Path, emit, stop):
    """Model → LoRA → the objective's trainer, seeded the way the exported script seeds it.

    TRL's preference trainers find their reference themselves: under LoRA the model with
    its adapter switched off (no second copy); under full fine-tuning DPO and KTO load a
    second copy from the model's folder; ORPO has none."""
    import transformers
    from transformers.trainer_callback import PrinterCallback

    from ..recipe.trainer import trainer_classes
    from .callbacks import DriftCallback, EventCallback, StopCallback
    from .token_count import count_training_tokens
    from .trainer_config import build_trainer_config

    device, data = inputs.device, inputs.data
    # the arguments come first: under DeepSpeed ZeRO-3 they switch on zero.Init, so the
    # model loads already partitioned
    sft_config = build_trainer_config(settings, device, run_dir, data.eval is not None)
    _, trainer_class = trainer_classes(settings.training.objective)
    transformers.set_seed(settings.training.seed)
    model, peft_config = _load_model_with_backend(settings, inputs, emit)
    _warn_past_context(settings, model, emit)
    events = EventCallback(
        emit,
        samples_per_step=settings.effective_batch_size * world_size(),
        started={
            "run_dir": str(run_dir),
            "train_samples": len(data.train),
            "eval_samples": len(data.eval) if data.eval is not None else 0,
            "model": settings.model.name_or_path,
            "device": device.name,
            "trainable_params": 0,
            "total_params": 0,
            "predicted_peak_reserved_gib": predicted_peak_gib(settings),
            **predicted_speed(settings, inputs.tokenizer),
        },
        save_every_epoch=settings.training.save_every_epoch,
    )
    stopper = StopCallback(stop, run_dir, events)
    asked = {name: getattr(sft_config, name) for name in DRIFT_WATCHED if hasattr(sft_config, name)}
    drift = DriftCallback(
        emit, asked=asked, chat_template=getattr(inputs.tokenizer, "chat_template", None)
    )
    transformers.set_seed(settings.training.seed)  # LoRA init identical to the exported script
    trainer = trainer_class(
        model=model,
        args=sft_config,
        train_dataset=data.train,
        eval_dataset=data.eval,
        processing_class=inputs.tokenizer,
        peft_config=peft_config,
        callbacks=[events, stopper, drift],
    )
    trainer.remove_callback(PrinterCallback)
    events.counter = drift.counter = count_training_tokens(trainer)
    trainable, total = _parameter_counts(trainer.model)
    events.started.update(trainable_params=trainable, total_params=total)
    emit(Notice(_what_trains(settings, trainer.model, trainable, total, device)))
    return trainer, events, stopper, drift


FIRST_USE_TUNING = (
    "Liger's fused MoE kernels time their variants on first use on this machine: the first "
    "step may take minutes; later runs reuse the timings"
)


def _what_trains(settings: TrainSettings, model, trainable: int, total: int, device) -> str:
    """The run's first notice: what is trained, how many parameters, on what."""
    what = (
        f"LoRA r={settings.lora.r} on {', '.join(lora_targets(model))}"
        if settings.training.method == "lora"
        else "full fine-tuning"
    )
    return (
        f"{what}; {trainable:,} trainable of {total:,} parameters; {device.name} "
        f"{device.compute_dtype}"
    )


def _parameter_counts(model) -> tuple[int, int]:
    """(trainable, total) parameters, with or without an adapter. Under ZeRO-3 a rank holds
    only its partition; `ds_numel` is the whole parameter's size (PEFT's count reads it too)."""
    if hasattr(model, "get_nb_trainable_parameters"):
        return model.get_nb_trainable_parameters()
    sizes = [(getattr(p, "ds_numel", p.numel()), p.requires_grad) for p in model.parameters()]
    return sum(n for n, trained in sizes if trained), sum(n for n, _ in sizes)


def lora_targets(model) -> list[str]:
    """The short names of the modules that really carry LoRA, read back from the model
    (not the config: Unsloth may hand PEFT a pattern string); none under full fine-tuning."""
    from ..recipe.lora_targets import lora_module_names

    return sorted({name.rsplit(".", 1)[-1] for name in lora_module_names(model)})


def _load_model_with_backend(settings: TrainSettings, inputs: RunInputs, emit: EventSink):
    """(model, peft_config): plain HF, HF + verified Liger kernels, or Unsloth's own path."""
    from . import backends, loading

    backend = settings.memory.backend
    if backend == "unsloth":
        model, _ = backends.load_unsloth_model(inputs.model_path, settings, inputs.device)
        emit(Notice("Unsloth: FastLanguageModel with its own LoRA and checkpointing"))
        return model, None
    model = loading.load_model(inputs.model_path, settings, inputs.device, inputs.attn)
    loading.check_loss_reads_the_backbone(model, settings)  # a Hub model preflight never built
    if backend == "liger":
        patched = backends.apply_liger(model)
        emit(Notice(f"Liger kernels applied and verified on: {', '.join(patched)}"))
        if backends.tunes_on_first_use(model):
            emit(Notice(FIRST_USE_TUNING))
    elif leaked := backends.liger_patched_modules(model):
        emit(Notice(backends.liger_leak_warning(leaked), level="warning"))
    if settings.training.method == "full":
        return model, None  # every weight trains: no adapter
    return model, loading.lora_config(model, settings)


def _warn_past_context(settings: TrainSettings, model, emit: EventSink) -> None:
    """The plan says it too; a preset run headless may never have been planned."""
    from ..plan.context_length import past_context

    context = getattr(model.config.get_text_config(), "max_position_embeddings", None)
    if warning := past_context(settings.training.max_seq_length, context):
        emit(Notice(warning, level="warning"))


def _quiet_progress_bars() -> None:
    """Library progress bars (map, shard writing) are noise next to our own progress."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
