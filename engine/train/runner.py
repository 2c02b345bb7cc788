"""Run one training in this process: settings → model → data → SFTTrainer → adapter.

`run_training` is blocking and UI-agnostic: the headless CLI calls it on the main thread,
the TUI in a thread worker. Progress leaves only through the event sink (and the run's
`metrics.jsonl`, written from the same events).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..common.errors import FinetuneError, TrainingError, storage_failure
from ..launch.processes import launcher_pid
from ..launch.ranks import accept_indexed_cpu_locations, is_main_process, world_size
from ..plan.oom_policy import is_oom
from ..runs.checkpoints import last_complete_checkpoint
from ..runs.create import finish_replacement, prepare_run_dir, undo_replacement
from ..runs.events import Eval, Event, EventSink, Failed, Finished, Notice
from ..runs.layout import ADAPTER_DIR, EXPORT_DIR, METRICS_FILE, SETTINGS_FILE
from ..runs.metrics import MetricsFile
from ..runs.pid import write_pid
from ..runs.summary import RunSummary, write_summary
from ..settings.preset import save_preset, with_changes
from ..settings.schema import TrainSettings
from . import exact_match
from .run_memory import (
    free_memory,
    memory_check,
    next_attempt,
    peak_memory,
    predicted_peak_gib,
    remember,
)

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


def run_training(
    settings: TrainSettings,
    sink: EventSink,
    stop: threading.Event | None = None,
    run_dir: Path | None = None,
    resume: bool = False,
) -> Finished:
    """Train with these settings; return the Finished event (status finished or stopped).

    With `resume`, `run_dir` is an existing run: training continues from its last
    complete checkpoint (or starts afresh there when it has none yet).
    """
    stop = stop or threading.Event()
    run_dir = Path(run_dir) if run_dir else prepare_run_dir(settings)
    main = is_main_process()  # with several processes, rank 0 owns the run directory
    if main and launcher_pid() is None:  # a launch's settings and run.pid: its launcher's
        save_preset(settings, run_dir / SETTINGS_FILE)
        write_pid(run_dir)  # never through a link
    metrics = MetricsFile(run_dir / METRICS_FILE) if main else None
    started = False

    def emit(event: Event) -> None:
        nonlocal started
        if metrics is not None:
            metrics(event)
        sink(event)
        if event.kind == "started" and not started and main:
            started = True
            finish_replacement(run_dir)  # an overwritten run is deleted only now

    try:
        checkpoint = _resume_point(run_dir, emit, settings) if resume else None
        return _train(settings, run_dir, emit, stop, checkpoint)
    except FinetuneError as exc:
        emit(Failed(message=str(exc)))
        raise
    except Exception as exc:
        error = storage_failure(exc, run_dir) or TrainingError(
            f"training failed: {type(exc).__name__}: {exc}"
        )
        emit(Failed(message=str(error)))
        raise error from exc
    finally:
        if metrics is not None:
            metrics.close()
        if main and not started:
            undo_replacement(run_dir)


def _resume_point(run_dir: Path, emit: EventSink, settings: TrainSettings) -> Path | None:
    """The newest intact checkpoint; damaged newer ones are named and passed over."""
    skipped: list[str] = []
    checkpoint = last_complete_checkpoint(run_dir, skipped, settings)
    for problem in skipped:
        emit(Notice(f"skipping a damaged checkpoint: {problem}", level="warning"))
    if checkpoint is not None:
        emit(Notice(f"resuming from {checkpoint}"))
    elif skipped:
        emit(Notice("no intact checkpoint: starting again from step 0", level="warning"))
    return checkpoint


@dataclass
class _Inputs:
    """What every attempt shares: device, tokenizer, datasets, attention choice."""

    device: object
    model_path: str
    tokenizer: object
    data: object
    attn: str
    match_records: list[dict]


def _train(
    settings: TrainSettings, run_dir: Path, emit: EventSink, stop, checkpoint: Path | None
) -> Finished:
    started_at = time.perf_counter()
    if settings.memory.backend == "unsloth":
        from .backends import import_unsloth_first

        import_unsloth_first()
    inputs = _prepare_inputs(settings, emit)
    if world_size() > 1 and inputs.device.kind == "cpu":
        accept_indexed_cpu_locations()
    exact_before = None
    backoffs: list[str] = []
    free_memory()  # a second run in the same process (the wizard) reports its own peak
    while True:
        trainer, events, stopper, drift = _build_trainer(settings, inputs, run_dir, emit, stop)
        check = memory_check(settings, emit, events)  # the plan checks itself on the GPU
        if check is not None:
            trainer.add_callback(check)
        if exact_before is None and inputs.match_records and is_main_process():
            exact_before = exact_match.measure(
                trainer.model, inputs.tokenizer, inputs.match_records
            )
        try:
            trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
            if check is None or check.decision is None or stopper.stopped:
                break
        except Exception as exc:
            # one rank backing off alone would leave the others waiting at a collective
            if not is_oom(exc) or world_size() > 1:
                raise
            check = None  # the error, not the check, decides
        # Out of the except block the traceback (and the tensors its frames hold) is gone.
        trainer = events = stopper = drift = None
        free_memory()
        settings, line, told = next_attempt(settings, check)
        check = None
        backoffs.append(line)
        save_preset(settings, run_dir / SETTINGS_FILE)  # resume keeps the new batch
        checkpoint = last_complete_checkpoint(run_dir, settings=settings)
        where = f"from {checkpoint.name}" if checkpoint else "from the start"
        emit(Notice(f"{told}; continuing {where}", level="warning"))

    adapter_dir = run_dir / ADAPTER_DIR
    trainer.save_model(str(adapter_dir))  # every rank: sharded weights gather for it
    main = is_main_process()
    if main:
        inputs.tokenizer.save_pretrained(str(adapter_dir))
    state = trainer.state
    eval_loss = exact_after = None
    if inputs.data.eval is not None and not stopper.stopped:
        events.emit_evals = False
        eval_loss = float(trainer.evaluate()["eval_loss"])
        if main:
            exact_after = exact_match.measure(trainer.model, inputs.tokenizer, inputs.match_records)
        emit(Eval(step=state.global_step, eval_loss=eval_loss, exact_match=exact_after))
    summary = RunSummary(
        status="stopped" if stopper.stopped else "finished",
        step=state.global_step,
        total_steps=state.max_steps,
        first_loss=_first_loss(state.log_history),
        final_loss=events.last_loss,
        eval_loss=eval_loss,
        exact_match_before=exact_before,
        exact_match_after=exact_after,
        wall_time_s=round(time.perf_counter() - started_at, 2),
        train_samples=len(inputs.data.train),
        device=inputs.device.name,
        compute_dtype=inputs.device.compute_dtype,
        backend=settings.memory.backend,
        packing=settings.memory.packing,
        method=settings.training.method,
        processes=world_size(),
        micro_batch_size=settings.training.micro_batch_size,
        gradient_accumulation_steps=settings.training.gradient_accumulation_steps,
        gradient_checkpointing=settings.memory.gradient_checkpointing,
        oom_backoffs=backoffs,
        backend_changes=drift.changes,
        lora_target_modules=_lora_targets(trainer.model),
        trainable_params=events.started["trainable_params"],
        adapter_path=str(adapter_dir),
        **peak_memory(),
        # the planner's figure for the settings that trained (computed when the trainer was built)
        predicted_peak_reserved_gib=events.started["predicted_peak_reserved_gib"],
    )
    if main:
        # the script is written for the format this run resolved: no second read of the data
        resolved = with_changes(settings, {"dataset.format": inputs.data.format})
        summary.export = _export_script(resolved, run_dir, emit)
        write_summary(run_dir, summary)
        remember(settings, summary, events.counter, emit)
    finished = Finished(
        status=summary.status,
        step=state.global_step,
        total_steps=state.max_steps,
        final_loss=events.last_loss,
        elapsed_s=summary.wall_time_s,
        adapter_path=str(adapter_dir),
        summary=summary,
    )
    emit(finished)
    return finished


def _prepare_inputs(settings: TrainSettings, emit: EventSink) -> _Inputs:
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
    attn = loading.attention_implementation(settings)  # each keeps packed samples apart
    match_records = exact_match.held_out_records(data.eval, settings.training.exact_match_samples)
    return _Inputs(device, model_path, tokenizer, data, attn, match_records)


def _build_trainer(settings: TrainSettings, inputs: _Inputs, run_dir: Path, emit, stop):
    """Model → LoRA → SFTTrainer, seeded the way the exported script seeds it."""
    import transformers
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTTrainer

    from .callbacks import DriftCallback, EventCallback, StopCallback, count_training_tokens
    from .trainer_config import build_sft_config

    device, data = inputs.device, inputs.data
    # the arguments come first: under DeepSpeed ZeRO-3 they switch on zero.Init, so the
    # model loads already partitioned
    sft_config = build_sft_config(settings, device, run_dir, data.eval is not None)
    transformers.set_seed(settings.training.seed)
    model, peft_config = _load_model_with_backend(settings, inputs, emit)
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
        },
        save_every_epoch=settings.training.save_every_epoch,
    )
    stopper = StopCallback(stop, run_dir, events)
    drift = DriftCallback(
        emit,
        asked={name: getattr(sft_config, name) for name in DRIFT_WATCHED},
        chat_template=getattr(inputs.tokenizer, "chat_template", None),
    )
    transformers.set_seed(settings.training.seed)  # LoRA init identical to the exported script
    trainer = SFTTrainer(
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
    what = (
        f"LoRA r={settings.lora.r} on {', '.join(_lora_targets(trainer.model))}"
        if settings.training.method == "lora"
        else "full fine-tuning"
    )
    emit(
        Notice(
            f"{what}; {trainable:,} trainable of {total:,} parameters; {device.name} "
            f"{device.compute_dtype}"
        )
    )
    return trainer, events, stopper, drift


def _parameter_counts(model) -> tuple[int, int]:
    """(trainable, total) parameters, with or without an adapter. Under ZeRO-3 a rank holds
    only its partition; `ds_numel` is the whole parameter's size (PEFT's count reads it too)."""
    if hasattr(model, "get_nb_trainable_parameters"):
        return model.get_nb_trainable_parameters()
    sizes = [(getattr(p, "ds_numel", p.numel()), p.requires_grad) for p in model.parameters()]
    return sum(n for n, trained in sizes if trained), sum(n for n, _ in sizes)


def _lora_targets(model) -> list[str]:
    """The short names of the modules that really carry LoRA, read back from the model
    (not the config: Unsloth may hand PEFT a pattern string); none under full fine-tuning."""
    from ..recipe.model import lora_module_names

    return sorted({name.rsplit(".", 1)[-1] for name in lora_module_names(model)})


def _load_model_with_backend(settings: TrainSettings, inputs: _Inputs, emit: EventSink):
    """(model, peft_config): plain HF, HF + verified Liger kernels, or Unsloth's own path."""
    from . import backends, loading

    backend = settings.memory.backend
    if backend == "unsloth":
        model, _ = backends.load_unsloth_model(inputs.model_path, settings, inputs.device)
        emit(Notice("Unsloth: FastLanguageModel with its own LoRA and checkpointing"))
        return model, None
    model = loading.load_model(inputs.model_path, settings, inputs.device, inputs.attn)
    if backend == "liger":
        patched = backends.apply_liger(model)
        emit(Notice(f"Liger kernels applied and verified on: {', '.join(patched)}"))
    elif leaked := backends.liger_patched_modules(model):
        emit(Notice(backends.liger_leak_warning(leaked), level="warning"))
    if settings.training.method == "full":
        return model, None  # every weight trains: no adapter
    return model, loading.lora_config(model, settings)


def _quiet_progress_bars() -> None:
    """Library progress bars (map, shard writing) are noise next to our own progress."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


def _export_script(settings: TrainSettings, run_dir: Path, emit: EventSink) -> str | None:
    """Every run directory gets the standalone script that reproduces it (export/train.py).

    A failure here is a warning, never a reason to fail a run that has trained.
    """
    from ..export.files import export_run

    try:
        script = run_dir / EXPORT_DIR / "train.py"
        return str(export_run(settings, script, force=True).script)
    except Exception as exc:
        emit(Notice(f"could not write the training script: {exc}", level="warning"))
        return None


def _first_loss(log_history: list[dict]) -> float | None:
    return next((float(e["loss"]) for e in log_history if "loss" in e), None)
