"""Run one training in this process: settings → model → data → TRL trainer → adapter.

`run_training` is blocking and UI-agnostic: the headless CLI calls it on the main thread,
the TUI in a thread worker. Progress leaves only through the event sink (and the run's
`metrics.jsonl`, written from the same events). A run's phases, in order: load_inputs,
train_with_backoff, save_outputs, evaluate, summarise, finish; the trainer each attempt
trains is built in train/trainer_build.py.
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
from ..recipe.trainer import save_whole
from ..runs.adapter_save import put_in_place, staging_dir
from ..runs.checkpoints import last_complete_checkpoint
from ..runs.create import finish_replacement, prepare_run_dir, undo_replacement
from ..runs.events import Eval, Event, EventSink, Failed, Finished, Notice
from ..runs.layout import ADAPTER_DIR, ADAPTER_STAGING, EXPORT_DIR, METRICS_FILE, SETTINGS_FILE
from ..runs.metrics import MetricsFile
from ..runs.pid import claim_run, clear_pid, release_run, write_pid
from ..runs.summary import RunSummary, read_summary, write_summary
from ..settings.preset import save_preset, with_changes
from ..settings.schema import TrainSettings
from . import exact_match, preference_eval
from .callbacks import EvaluationStopped
from .divergence import DivergenceCallback
from .preference_eval import PreferenceScore
from .run_memory import (
    allocator_warning,
    free_memory,
    memory_check,
    next_attempt,
    peak_memory,
    planned_at_longest,
    remember,
    use_planned_allocator,
)
from .run_speed import speed_reading
from .trainer_build import RunInputs, build_trainer, lora_targets, prepare_inputs


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
    claimed = False  # taken here (the wizard's run): released here, the wizard lives on
    if main and launcher_pid() is None:  # a launch's settings and run.pid: its launcher's
        try:
            claimed = claim_run(run_dir)  # its lock says the run is alive (runs/pid.py)
        except FinetuneError as exc:  # a link given for the folder: said as any failure is
            sink(Failed(message=str(exc)))
            raise
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
        if main and launcher_pid() is None:  # a launch's run.pid and folder: its launcher's
            clear_pid(run_dir)  # trained, stopped or failed: no longer this process's run
            if not started:  # (a launcher undoes it once it has read the workers' error)
                undo_replacement(run_dir)
        if claimed:
            release_run(run_dir)


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
    elif _has_events(run_dir):  # stopped before its first save: said, not a silent fresh start
        emit(Notice("no checkpoint saved yet: starting again from step 0", level="warning"))
    return checkpoint


def _has_events(run_dir: Path) -> bool:
    """An earlier process wrote to the run's metrics: a run nothing ran in yet (the new run
    `--detach` starts as a resume) starts at step 0 as any new run, without a warning."""
    try:
        return (run_dir / METRICS_FILE).stat().st_size > 0
    except OSError:
        return False


@dataclass
class Trained:
    """What the back-off loop leaves: the trainer that ran to the end (or was stopped), its
    callbacks, the settings it trained with, and what the attempts measured on the way."""

    settings: TrainSettings
    trainer: object
    events: object  # callbacks.EventCallback
    stopper: object  # callbacks.StopCallback
    drift: object  # callbacks.DriftCallback
    exact_before: float | None
    backoffs: list[str]
    preference_before: PreferenceScore | None = None


def _train(
    settings: TrainSettings, run_dir: Path, emit: EventSink, stop, checkpoint: Path | None
) -> Finished:
    """The run's phases, in order."""
    started_at = time.perf_counter() - _earlier_wall_time(run_dir, checkpoint)
    use_planned_allocator(settings)  # before anything touches CUDA (resumes, launched ranks)
    if warning := allocator_warning(settings):
        emit(Notice(warning, level="warning"))
    inputs = load_inputs(settings, emit)
    trained = train_with_backoff(settings, inputs, run_dir, emit, stop, checkpoint)
    adapter_dir = save_outputs(trained, inputs, run_dir)
    evaluation = evaluate(trained, inputs, emit)
    summary = summarise(trained, inputs, adapter_dir, evaluation, started_at)
    return finish(trained, inputs, summary, run_dir, emit)


def load_inputs(settings: TrainSettings, emit: EventSink) -> RunInputs:
    """Unsloth before the libraries it patches; then device, tokenizer and datasets."""
    if settings.memory.backend == "unsloth":
        from .backends import import_unsloth_first

        import_unsloth_first()
    inputs = prepare_inputs(settings, emit)
    if world_size() > 1 and inputs.device.kind == "cpu":
        accept_indexed_cpu_locations()
    return inputs


def train_with_backoff(
    settings: TrainSettings,
    inputs: RunInputs,
    run_dir: Path,
    emit: EventSink,
    stop,
    checkpoint: Path | None,
) -> Trained:
    """Train; when the GPU runs out of memory, or the self-check foresees it, back off
    (plan/oom_policy.py) and continue from the last complete checkpoint."""
    exact_before = preference_before = None
    backoffs: list[str] = []
    free_memory()  # a second run in the same process (the wizard) reports its own peak
    while True:
        trainer, events, stopper, drift = build_trainer(settings, inputs, run_dir, emit, stop)
        check = memory_check(settings, emit, events)  # the plan checks itself on the GPU
        if check is not None:
            trainer.add_callback(check)
        divergence = DivergenceCallback()  # last: it can call off a save the others asked
        trainer.add_callback(divergence)
        if exact_before is None and inputs.match_records and is_main_process():
            exact_before = exact_match.measure(
                trainer.model, inputs.tokenizer, inputs.match_records
            )
        if preference_before is None and _scores_preferences(settings, inputs):
            preference_before = preference_eval.before_training(trainer, events)
        try:
            trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
            if divergence.found:
                raise diverged(divergence.found, settings, run_dir)
            if check is None or check.decision is None or stopper.stopped:
                return Trained(
                    settings,
                    trainer,
                    events,
                    stopper,
                    drift,
                    exact_before,
                    backoffs,
                    preference_before,
                )
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
        checkpoint = _continue_after_backoff(settings, run_dir, told, emit)


def diverged(found: str, settings: TrainSettings, run_dir: Path) -> TrainingError:
    """The run's end when its loss turned NaN: what was kept, and what to change."""
    kept = last_complete_checkpoint(run_dir, settings=settings)
    last = f"the last good checkpoint is {kept.name}" if kept else "no checkpoint was saved"
    return TrainingError(
        f"training diverged at {found}: nothing after it was saved ({last}); lower "
        f"training.learning_rate (now {settings.training.learning_rate:g}) and train again"
    )


def _scores_preferences(settings: TrainSettings, inputs: RunInputs) -> bool:
    """A preference run with a held-out split scores its pairs before and after."""
    return settings.training.objective != "sft" and inputs.data.eval is not None


def _continue_after_backoff(
    settings: TrainSettings, run_dir: Path, told: str, emit: EventSink
) -> Path | None:
    """Save the backed-off settings (a resume keeps the new batch); the checkpoint the next
    attempt continues from, said in a warning."""
    save_preset(settings, run_dir / SETTINGS_FILE)  # resume keeps the new batch
    checkpoint = last_complete_checkpoint(run_dir, settings=settings)
    where = f"from {checkpoint.name}" if checkpoint else "from the start"
    emit(Notice(f"{told}; continuing {where}", level="warning"))
    return checkpoint


def save_outputs(trained: Trained, inputs: RunInputs, run_dir: Path) -> Path:
    """The adapter (or the whole model) and, from the main process, the tokenizer beside it:
    written beside the run's adapter folder and renamed in (runs/adapter_save.py). Only the
    main process writes; the others take part in gathering sharded weights."""
    main = is_main_process()
    staging = staging_dir(run_dir) if main else run_dir / ADAPTER_STAGING
    save_whole(trained.trainer, staging)  # every rank: sharded weights gather for it
    if not main:
        return run_dir / ADAPTER_DIR
    inputs.tokenizer.save_pretrained(str(staging))
    return put_in_place(run_dir)


@dataclass
class Evaluation:
    """The held-out split after training (all None without one, or when stopped)."""

    loss: float | None = None
    exact_match: float | None = None
    preference: PreferenceScore | None = None


def evaluate(trained: Trained, inputs: RunInputs, emit: EventSink) -> Evaluation:
    """Eval loss, exact match (SFT) and the preference score (preference objectives) on the
    held-out split after training."""
    if inputs.data.eval is None or trained.stopper.stopped:
        return Evaluation()
    trainer, stopper = trained.trainer, trained.stopper
    trained.events.emit_evals = False
    stopper.final_evaluation = True  # from here a stop skips what is left of the evaluation
    try:
        reused = _evaluated_at_the_end(trainer)
        metrics = reused or trainer.evaluate()
        exact_after = None
        if is_main_process():
            stop = stopper.stop
            records = inputs.match_records
            exact_after = exact_match.measure(trainer.model, inputs.tokenizer, records, stop)
    except EvaluationStopped:
        emit(Notice("stopped during the evaluation after training: evaluation skipped"))
        return Evaluation()
    score = preference_eval.from_metrics(metrics)
    result = Evaluation(float(metrics["eval_loss"]), exact_after, score)
    if reused is None or exact_after is not None:  # else the step's own Eval said it all
        emit(
            Eval(
                step=trainer.state.global_step,
                eval_loss=result.loss,
                exact_match=exact_after,
                reward_accuracy=score.accuracy,
                reward_margin=score.margin,
            )
        )
    return result


def _earlier_wall_time(run_dir: Path, checkpoint: Path | None) -> float:
    """What a run resumed from a checkpoint took before this process (its stopped segments'
    summary, itself counting the ones before): summary.json and the finished line give the
    whole run's time, which its prediction is of (they gave the last segment's)."""
    summary = read_summary(run_dir) if checkpoint is not None else None
    return (summary.wall_time_s or 0.0) if summary is not None else 0.0


def _evaluated_at_the_end(trainer) -> dict | None:
    """The Trainer's own evaluation at the last step (eval_steps dividing the steps), which
    the evaluation after training would only repeat: the same weights, the same split."""
    step = trainer.state.global_step
    return next(
        (
            e
            for e in reversed(trainer.state.log_history)
            if "eval_loss" in e and e.get("step") == step
        ),
        None,
    )


def summarise(
    trained: Trained,
    inputs: RunInputs,
    adapter_dir: Path,
    evaluation: Evaluation,
    started_at: float,
) -> RunSummary:
    """summary.json's record of the run: what trained, how it went, what it measured."""
    settings, state, events = trained.settings, trained.trainer.state, trained.events
    before, after = trained.preference_before, evaluation.preference
    return RunSummary(
        status="stopped" if trained.stopper.stopped else "finished",
        step=state.global_step,
        total_steps=state.max_steps,
        first_loss=_first_loss(state.log_history),
        final_loss=events.last_loss,
        eval_loss=evaluation.loss,
        exact_match_before=trained.exact_before,
        exact_match_after=evaluation.exact_match,
        objective=settings.training.objective,
        preference_accuracy_before=_rounded(before and before.accuracy, 4),
        preference_accuracy_after=_rounded(after and after.accuracy, 4),
        reward_margin=_rounded(after and after.margin, 4),
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
        oom_backoffs=trained.backoffs,
        backend_changes=trained.drift.changes,
        lora_target_modules=lora_targets(trained.trainer.model),
        trainable_params=events.started["trainable_params"],
        adapter_path=str(adapter_dir),
        **peak_memory(),
        # the planner's figures for the settings that trained (computed when the trainer was built)
        predicted_peak_reserved_gib=events.started["predicted_peak_reserved_gib"],
        tokens_per_s=_rounded(events.steady_tokens_per_s()),
        predicted_tokens_per_s=events.started.get("predicted_tokens_per_s"),
        predicted_wall_time_s=events.started.get("predicted_wall_time_s"),
    )


def _rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def finish(
    trained: Trained, inputs: RunInputs, summary: RunSummary, run_dir: Path, emit: EventSink
) -> Finished:
    """The main process writes the script and summary.json and remembers the measured peak;
    every process ends with the Finished event."""
    if is_main_process():
        # the script is written for the format this run resolved: no second read of the data
        resolved = with_changes(trained.settings, {"dataset.format": inputs.data.format})
        summary.export = _export_script(resolved, run_dir, emit)
        if summary.predicted_peak_reserved_gib is not None:  # a GPU run the planner read
            counter = trained.events.counter
            summary.predicted_peak_at_longest_gib = planned_at_longest(trained.settings, counter)
        write_summary(run_dir, summary)
        speeds = speed_reading(trained.events)
        remember(trained.settings, summary, emit, speeds)
    state = trained.trainer.state
    finished = Finished(
        status=summary.status,
        step=state.global_step,
        total_steps=state.max_steps,
        final_loss=trained.events.last_loss,
        elapsed_s=summary.wall_time_s,
        adapter_path=summary.adapter_path,
        summary=summary,
    )
    emit(finished)
    return finished


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
