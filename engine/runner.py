"""Run one training in this process: settings → model → data → SFTTrainer → adapter.

`run_training` is blocking and UI-agnostic: the headless CLI calls it on the main thread,
the TUI in a thread worker. Progress leaves only through the event sink (and the run's
`metrics.jsonl`, written from the same events).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from .checkpoints import last_complete_checkpoint
from .errors import FinetuneError, TrainingError
from .events import Eval, Event, EventSink, Failed, Finished, Notice
from .preset import save_preset
from .rundir import (
    ADAPTER_DIR,
    METRICS_FILE,
    PID_FILE,
    SETTINGS_FILE,
    SUMMARY_FILE,
    prepare_run_dir,
    write_json,
)
from .settings import TrainSettings


class MetricsFile:
    """Appends every event as one JSON line, flushed so `attach` and `tail -f` see it live."""

    def __init__(self, path: Path):
        self.file = path.open("a", encoding="utf-8")

    def __call__(self, event: Event) -> None:
        self.file.write(json.dumps(event.to_json(), default=str) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


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
    save_preset(settings, run_dir / SETTINGS_FILE)
    (run_dir / PID_FILE).write_text(f"{os.getpid()}\n")
    metrics = MetricsFile(run_dir / METRICS_FILE)

    def emit(event: Event) -> None:
        metrics(event)
        sink(event)

    try:
        checkpoint = last_complete_checkpoint(run_dir) if resume else None
        if checkpoint is not None:
            emit(Notice(f"resuming from {checkpoint}"))
        return _train(settings, run_dir, emit, stop, checkpoint)
    except FinetuneError as exc:
        emit(Failed(message=str(exc)))
        raise
    except Exception as exc:
        emit(Failed(message=f"{type(exc).__name__}: {exc}"))
        raise TrainingError(f"training failed: {type(exc).__name__}: {exc}") from exc
    finally:
        metrics.close()


def _train(
    settings: TrainSettings, run_dir: Path, emit: EventSink, stop, checkpoint: Path | None
) -> Finished:
    import transformers
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTTrainer

    from . import loading
    from .callbacks import EventCallback, StopCallback
    from .data import prepare_datasets
    from .trainer_config import build_sft_config

    started_at = time.perf_counter()
    device = loading.choose_device(settings)
    loading.check_backend_support(settings, device)
    model_path = loading.resolve_model_path(settings.model.name_or_path)
    tokenizer = loading.load_tokenizer(model_path, settings)
    data = prepare_datasets(settings, tokenizer.eos_token)
    attn = loading.attention_implementation(settings)
    packing = settings.memory.packing and loading.packing_allowed(attn)
    if settings.memory.packing and not packing:
        emit(
            Notice(
                f"packing off: {attn} attention would let packed samples see each other; "
                "install flash-attention to pack",
                level="warning",
            )
        )

    transformers.set_seed(settings.training.seed)
    model = loading.load_model(model_path, settings, device, attn)
    peft_config = loading.lora_config(model, settings)
    match_records = _exact_match_records(data.eval, settings.training.exact_match_samples)
    exact_before = _exact_match(model, tokenizer, match_records)

    sft_config = build_sft_config(settings, device, run_dir, packing, data.eval is not None)
    events = EventCallback(
        emit,
        samples_per_step=settings.effective_batch_size,
        started={
            "run_dir": str(run_dir),
            "train_samples": len(data.train),
            "eval_samples": len(data.eval) if data.eval is not None else 0,
            "model": settings.model.name_or_path,
            "device": device.name,
            "trainable_params": 0,
            "total_params": 0,
        },
    )
    stopper = StopCallback(stop, run_dir, events)
    transformers.set_seed(settings.training.seed)  # LoRA init identical to the exported script
    trainer = SFTTrainer(
        model=model,
        args=sft_config,
        train_dataset=data.train,
        eval_dataset=data.eval,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[events, stopper],
    )
    trainer.remove_callback(PrinterCallback)
    trainable, total = trainer.model.get_nb_trainable_parameters()
    events.started.update(trainable_params=trainable, total_params=total)
    emit(
        Notice(
            f"LoRA r={settings.lora.r} on {', '.join(peft_config.target_modules)}; "
            f"{trainable:,} trainable of {total:,} parameters; {device.name} "
            f"{device.compute_dtype}"
        )
    )

    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    adapter_dir = run_dir / ADAPTER_DIR
    trainer.save_model(str(adapter_dir))
    tokenizer.save_pretrained(str(adapter_dir))

    state = trainer.state
    eval_loss = exact_after = None
    if data.eval is not None and not stopper.stopped:
        eval_loss = float(trainer.evaluate()["eval_loss"])
        exact_after = _exact_match(trainer.model, tokenizer, match_records)
        emit(Eval(step=state.global_step, eval_loss=eval_loss, exact_match=exact_after))
    summary = {
        "status": "stopped" if stopper.stopped else "finished",
        "step": state.global_step,
        "total_steps": state.max_steps,
        "first_loss": _first_loss(state.log_history),
        "final_loss": events.last_loss,
        "eval_loss": eval_loss,
        "exact_match_before": exact_before,
        "exact_match_after": exact_after,
        "wall_time_s": round(time.perf_counter() - started_at, 2),
        "train_samples": len(data.train),
        "device": device.name,
        "compute_dtype": device.compute_dtype,
        "packing": packing,
        "lora_target_modules": list(peft_config.target_modules),
        "trainable_params": trainable,
        "adapter_path": str(adapter_dir),
        **_peak_memory(),
    }
    write_json(run_dir / SUMMARY_FILE, summary)
    finished = Finished(
        status=summary["status"],
        step=state.global_step,
        total_steps=state.max_steps,
        final_loss=events.last_loss,
        elapsed_s=summary["wall_time_s"],
        adapter_path=str(adapter_dir),
        summary=summary,
    )
    emit(finished)
    return finished


def _exact_match_records(eval_dataset, limit: int) -> list[dict]:
    """Held-out conversational examples as chat records (prompt + expected answer)."""
    if eval_dataset is None or limit == 0 or "completion" not in eval_dataset.column_names:
        return []
    rows = eval_dataset.select(range(min(limit, len(eval_dataset))))
    return [
        {"messages": list(row["prompt"]) + list(row["completion"])}
        for row in rows
        if isinstance(row["prompt"], list)
    ]


def _exact_match(model, tokenizer, records: list[dict]) -> float | None:
    if not records:
        return None
    from .demo import exact_match

    was_training = model.training
    model.eval()
    try:
        return float(exact_match(model, tokenizer, records))
    finally:
        model.train(was_training)


def _first_loss(log_history: list[dict]) -> float | None:
    return next((float(e["loss"]) for e in log_history if "loss" in e), None)


def _peak_memory() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {}
    gib = 2**30
    return {
        "peak_allocated_gib": round(torch.cuda.max_memory_allocated() / gib, 3),
        "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / gib, 3),
    }
