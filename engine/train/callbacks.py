"""Trainer callbacks: Trainer logs → our events, and one stop path for every caller.

The Stop button, SIGINT/SIGTERM in headless mode and the on-demand trigger file all end
up here: a `threading.Event` checked after each step that asks the Trainer to save and stop.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

from transformers import TrainerCallback

from ..inspect.hardware import GIB
from ..launch.processes import launcher_gone
from ..launch.ranks import any_rank, is_main_process, sum_over_ranks
from ..runs.events import Checkpoint, Eval, EventSink, MemoryCheck, Notice, Started, Step
from ..runs.layout import STOP_FILE, TRIGGER_FILE
from .preference_eval import from_metrics
from .run_control import discard_stop_request, stop_file_problem
from .token_count import TokenCounter


class EventCallback(TrainerCallback):
    """Turns Trainer log dicts into `Step` / `Eval` / `Checkpoint` events."""

    def __init__(
        self, sink: EventSink, samples_per_step: int, started: dict, save_every_epoch=False
    ):
        self.sink = sink
        self.save_every_epoch = save_every_epoch
        self.started = started  # fields of the Started event known before training
        self.samples_per_step = samples_per_step
        self.save_reason = "interval"
        self.last_loss: float | None = None
        self.emit_evals = True  # the runner reports the final eval itself, with exact-match
        self._start = time.perf_counter()
        self._last_time = self._start
        self._last_step = self._last_step_at_start = 0
        self._last_tokens = 0.0
        self.counter: TokenCounter | None = None  # set by the runner once the Trainer exists
        # (time, tokens, step) at the end of the first step: rates leave its compiling out
        self._steady: tuple[float, float, int] | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._steady = None
        self._start = self._last_time = time.perf_counter()
        self._last_step = self._last_step_at_start = state.global_step
        self._last_tokens = self._tokens_seen({})
        per_epoch = _steps_per_epoch(kwargs.get("train_dataloader"), args)
        self.sink(Started(total_steps=state.max_steps, steps_per_epoch=per_epoch, **self.started))

    def on_step_end(self, args, state, control, **kwargs):
        if self._steady is None:  # the first step pays compiling and patching: left out
            self._steady = (time.perf_counter(), self._tokens_seen({}), state.global_step)
        if state.global_step >= state.max_steps:  # the run's final loss is its last step's
            control.should_log = True  # (8 steps at logging_steps 10 reported step 1's)
        return control

    def _seconds_per_step(self, step: int, now: float, elapsed: float) -> float:
        """Since the first step once there are more (its compiling would inflate the ETA
        of a long run), else over everything so far."""
        if self._steady is not None and step > self._steady[2]:
            return (now - self._steady[0]) / (step - self._steady[2])
        return elapsed / max(step - self._last_step_at_start, 1)

    def steady_tokens_per_s(self) -> float | None:
        """Real tokens/s from the end of the first step to the last logged one: what the
        plan predicts (its start-up time is counted apart)."""
        if self._steady is None or self._last_time <= self._steady[0]:
            return None
        return (self._last_tokens - self._steady[1]) / (self._last_time - self._steady[0])

    def steady_seconds(self) -> float:
        """How long steady_tokens_per_s was measured over (0 before the second step)."""
        return 0.0 if self._steady is None else max(self._last_time - self._steady[0], 0.0)

    def on_epoch_end(self, args, state, control, **kwargs):
        # The Trainer's save_strategy is "steps" or "epoch", never both; asking for a save
        # here gives "every N steps and once per epoch".
        if self.save_every_epoch and state.global_step > 0:
            control.should_save = True
            self.save_reason = "epoch"
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "eval_loss" in logs and self.emit_evals:  # a preference run's held-out pairs too
            score = from_metrics(logs)
            self.sink(
                Eval(
                    step=state.global_step,
                    eval_loss=float(logs["eval_loss"]),
                    reward_accuracy=score.accuracy,
                    reward_margin=score.margin,
                )
            )
        if "loss" in logs:
            self.sink(self._step_event(state, logs))

    def _step_event(self, state, logs: dict) -> Step:
        now = time.perf_counter()
        dt = max(now - self._last_time, 1e-9)
        tokens = self._tokens_seen(logs)
        steps = state.global_step - self._last_step
        new_tokens = tokens - self._last_tokens
        elapsed = now - self._start
        remaining = max(state.max_steps - state.global_step, 0)
        self._last_time, self._last_step, self._last_tokens = now, state.global_step, tokens
        self.last_loss = float(logs["loss"])
        return Step(
            step=state.global_step,
            total_steps=state.max_steps,
            epoch=float(logs.get("epoch", state.epoch or 0.0)),
            loss=self.last_loss,
            learning_rate=float(logs.get("learning_rate", 0.0)),
            grad_norm=_float_or_none(logs.get("grad_norm")),
            tokens_per_second=new_tokens / dt,
            tokens_seen=int(tokens),
            reward_accuracy=_float_or_none(logs.get("rewards/accuracies")),
            reward_margin=_float_or_none(logs.get("rewards/margins")),
            samples_per_second=steps * self.samples_per_step / dt,
            elapsed_s=elapsed,
            eta_s=self._seconds_per_step(state.global_step, now, elapsed) * remaining,
            **{key: value for key, value in cuda_memory().items() if key in STEP_MEMORY},
        )

    def _tokens_seen(self, logs: dict) -> float:
        """Real tokens batched so far: our own count, else TRL's log."""
        if self.counter is not None:  # every rank counts its own batches
            return sum_over_ranks(float(self.counter.tokens))
        return float(logs.get("num_tokens", self._last_tokens))

    def on_save(self, args, state, control, **kwargs):
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        self.sink(Checkpoint(step=state.global_step, path=str(path), reason=self.save_reason))
        self.save_reason = "interval"


class DriftCallback(TrainerCallback):
    """What a backend changed without saying so, found by comparison when training starts.

    Unsloth patches the Trainer and may adjust arguments (gradient accumulation, packing)
    or a tokenizer's chat template; whatever the cause, a run must not claim settings it
    does not train with. Each difference becomes a warning and a line of the summary.
    """

    def __init__(self, sink: EventSink, asked: dict, chat_template: str | None):
        self.sink = sink
        self.asked = asked  # SFTConfig argument -> the value finetune-tui passed
        self.chat_template = chat_template
        self.changes: list[str] = []
        self.counter: TokenCounter | None = None  # sees the batches: the enforced length

    def on_train_begin(self, args, state, control, processing_class=None, **kwargs):
        # max_length is judged by what trains, not by the argument: Unsloth moves the
        # limit to its own field and truncates the dataset itself (see on_step_end).
        found = [
            f"{name}: asked {want!r}, training with {getattr(args, name)!r}"
            for name, want in self.asked.items()
            if name != "max_length" and getattr(args, name, want) != want
        ]
        template = getattr(processing_class, "chat_template", self.chat_template)
        if template != self.chat_template:
            found.append("chat template: replaced")
        self._report(found)

    def on_step_end(self, args, state, control, **kwargs):
        limit = self.asked.get("max_length")
        if limit and self.counter is not None and self.counter.longest > limit:
            longest = self.counter.longest
            self._report([f"max_length: asked {limit}, trained on samples of {longest} tokens"])

    def _report(self, found: list[str]) -> None:
        for change in found:
            if change.split(":")[0] not in {c.split(":")[0] for c in self.changes}:
                self.changes.append(change)
                self.sink(Notice(f"changed by the backend: {change}", level="warning"))


class EvaluationStopped(Exception):
    """A stop asked during the evaluation after training: that evaluation is skipped."""


class StopCallback(TrainerCallback):
    """Checks the stop event and the trigger files after every optimizer step.

    STOP_NOW is how the process that launched several workers stops them: signalling
    accelerate's launcher would make its agent terminate the workers, killing them in the
    middle of a large checkpoint once its grace period ends. A worker whose launcher is
    gone (killed outright) saves and stops too, rather than train on with no one to
    answer to.
    """

    def __init__(self, stop: threading.Event, run_dir: Path, events: EventCallback):
        self.stop = stop
        self.run_dir = run_dir
        self.trigger = run_dir / TRIGGER_FILE
        self.stop_file = run_dir / STOP_FILE
        self.events = events
        self.stopped = False
        self.warned = False
        self.warned_stop = False
        self.final_evaluation = False  # set by the runner once the adapter is saved

    def on_step_end(self, args, state, control, **kwargs):
        # with several processes every rank stops and saves at the same step
        if any_rank(self._stop_wanted()):
            self.stopped = True
            control.should_training_stop = True
            control.should_save = True
            control.should_log = True  # where it stopped, and at what loss
            self.events.save_reason = "stop"
            if is_main_process():  # every rank has read it: consumed once
                discard_stop_request(self.run_dir)
        elif any_rank(self._triggered()):
            control.should_save = True
            self.events.save_reason = "trigger"
        return control

    def on_prediction_step(self, args, state, control, **kwargs):
        """In the evaluation after training (the adapter already saved) a stop ends the
        evaluation: the run then writes its summary without it, rather than make the user
        wait out the pass or press Ctrl-C again and lose the summary."""
        if self.final_evaluation and any_rank(self._stop_wanted()):
            raise EvaluationStopped
        return control

    def _stop_wanted(self) -> bool:
        return self.stop.is_set() or self._stop_asked() or launcher_gone()

    def _stop_asked(self) -> bool:
        """A plain file named STOP_NOW; anything else under that name is named once."""
        problem = stop_file_problem(self.run_dir)
        if problem and not self.warned_stop and is_main_process():
            self.warned_stop = True
            self.events.sink(
                Notice(f"{self.stop_file}: {problem}, not a stop request", level="warning")
            )
        return problem is None and self.stop_file.exists()  # absent, or a plain file

    def _triggered(self) -> bool:
        """A regular file named CHECKPOINT_NOW, consumed; anything else is left alone."""
        if self.trigger.is_symlink() or not self.trigger.is_file():
            if self.trigger.exists() and not self.warned:
                self.warned = True
                self.events.sink(
                    Notice(
                        f"{self.trigger}: not a file; `touch` it to save a checkpoint",
                        level="warning",
                    )
                )
            return False
        try:
            self.trigger.unlink()
        except OSError:
            return False
        return True


STEP_MEMORY = ("memory_allocated_gib", "memory_reserved_gib", "memory_peak_gib")


def cuda_memory() -> dict:
    """The one reader of torch.cuda's memory: allocated, reserved and peak reserved GiB (the
    Step event's fields), peak allocated, what this process may reserve at most (its own
    pool plus what the card has free: its CUDA context is already taken) and the card's
    name. Empty on CPU."""
    import torch

    if not torch.cuda.is_available():
        return {}
    free, _ = torch.cuda.mem_get_info()
    reserved = torch.cuda.memory_reserved()
    return {
        "memory_allocated_gib": torch.cuda.memory_allocated() / GIB,
        "memory_reserved_gib": reserved / GIB,
        "memory_peak_gib": torch.cuda.max_memory_reserved() / GIB,
        "memory_peak_allocated_gib": torch.cuda.max_memory_allocated() / GIB,
        "usable_gib": (free + reserved) / GIB,
        "card": torch.cuda.get_device_name(),
    }


class MemoryCheckCallback(TrainerCallback):
    """The plan checking itself (engine/plan/self_check.py): after the attempt's first optimizer
    step, and whenever a longer batch than any before has trained. To back off it saves a
    checkpoint and stops; the runner continues from it with `decision.settings`."""

    def __init__(self, sink: EventSink, settings, predict, events: EventCallback):
        self.sink = sink
        self.settings = settings
        self.predict = predict  # (settings, sequence length, card) -> planned peak GiB
        self.events = events
        self.decision = None  # set when the run must back off, at `step`
        self.step = 0
        self.checked_length = 0
        self.reported = self.warned = False

    def on_step_end(self, args, state, control, **kwargs):
        from ..plan.self_check import decide

        reading = cuda_memory()
        length = self._length_trained()
        if not reading or self.decision or length <= self.checked_length:
            return control
        if state.global_step >= state.max_steps:
            return control  # nothing left to protect
        self.checked_length = length
        card, full = reading["card"], self.settings.training.max_seq_length
        predicted = self.predict(self.settings, length, card)
        decision = decide(
            self.settings,
            reading["memory_peak_gib"],
            predicted,
            reading["usable_gib"],
            planned=lambda s: self.predict(s, full, card),
        )
        self._report(state.global_step, reading, predicted, decision)
        if decision.backs_off:
            self.decision, self.step = decision, state.global_step
            control.should_training_stop = control.should_save = True
            self.events.save_reason = "memory check"
        return control

    def _length_trained(self) -> int:
        """The longest batch so far, in tokens per sequence (a packed row is always full)."""
        full = self.settings.training.max_seq_length
        counter = self.events.counter
        if self.settings.memory.packing or counter is None:
            return full if counter is None or counter.tokens else 0
        return min(counter.longest, full)

    def _report(self, step: int, reading: dict, predicted: float, decision) -> None:
        from ..plan.headroom import WORST_UNDERPREDICTION
        from ..plan.self_check import Decision

        d: Decision = decision
        over_band = d.over > WORST_UNDERPREDICTION
        news = not self.reported or d.backs_off or (over_band and not self.warned)
        if not news:
            return  # a longer batch that changes nothing is not worth a line
        self.reported, self.warned = True, self.warned or over_band
        self.sink(
            MemoryCheck(
                step=step,
                measured_gib=round(reading["memory_peak_gib"], 3),
                predicted_gib=round(predicted, 3),
                usable_gib=round(reading["usable_gib"], 3),
                projected_gib=round(d.projected_gib, 3),
                band=WORST_UNDERPREDICTION,
                change=d.change or None,
                note=d.stuck,
                level="warning" if over_band else "info",
            )
        )


def _steps_per_epoch(dataloader, args) -> int | None:
    """Optimizer steps per epoch from the Trainer's own loader (already split across GPUs)."""
    try:
        batches = len(dataloader)
    except TypeError:  # no loader, or an iterable dataset without a length
        return None
    return max(math.ceil(batches / args.gradient_accumulation_steps), 1)


def _float_or_none(value) -> float | None:
    return None if value is None else float(value)
