"""How long a run takes, before its first step: the steps and real tokens the dataset gives,
at the predicted tokens/s, plus starting up, evaluation passes and checkpoint saves.

Starting up (process start, imports, loading and quantising the weights, building the
trainer, the first step's compile or patch) was measured on an H100 for 8-9 B models:
what remains of each benchmark run's wall time once its steps (at the run's own tokens/s)
are taken away
(benchmarks/results/backends-*.jsonl; tests/test_run_time.py recomputes the medians), and
for smaller ones it shrinks only to STARTUP_FLOOR of that (calibration rows of 1-3 B models).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..recipe.examples import split_sizes
from ..settings.schema import TrainSettings
from . import batching
from .disk import checkpoint_bytes, final_bytes, scheduled_saves
from .memory import DTYPE_BYTES, fused_experts

STARTUP_S = {"hf": 25.0, "liger": 26.5, "unsloth": 55.3}  # medians, 8-9 B models, H100
STARTUP_PARAMS = 8e9  # the size those were measured at; loading scales with the weights
# ...but starting Python, importing torch and the training libraries and building the
# trainer do not: models under half that size spent 0.785 x (median of 28 committed rows,
# 1-3 B models and layer-cut mixtures of experts) an 8 B model's start-up outside their steps
STARTUP_FLOOR = 0.75
# Liger's fused MoE experts tune their Triton kernels on a machine's first run of their
# shapes: nine such first steps of the family matrix (Mixtral, DeepSeek-V2-Lite, Qwen3.5-MoE,
# Qwen3-Next cuts; H100 / H200, 2026-12-05/06) took 44-231 s, median 146 s, against 2.2 s
# for the same families under HF, and eight later runs of the same shapes 1.8-6.6 s (Triton
# keeps the tunings: recipe.keep_kernel_tunings). Counted as a first run's, beyond the
# first step STARTUP_S holds (tests/test_run_time.py recomputes it from the rows).
FUSED_EXPERTS_TUNING_S = 144.0
EVAL_SPEEDUP = 2.0  # a forward pass without backward: assumed, not yet measured
SAVE_GB_PER_S = 1.0  # writing a whole model's safetensors to local disk: assumed


@dataclass(frozen=True)
class RunTime:
    total_s: float
    train_s: float
    startup_s: float
    eval_s: float
    save_s: float
    steps: int
    real_tokens: int
    tokens_per_s: float
    basis: str
    tunes_kernels: bool = False  # Liger's fused experts tune on a machine's first run

    def describe(self) -> str:
        """'about 1 h 05 min (1,218 steps, 9.9 M real tokens at 2,530 tokens/s, ...)'"""
        return (
            f"about {clock(self.total_s)} ({self.steps:,} steps, "
            f"{self.real_tokens / 1e6:.1f} M real tokens at {self.tokens_per_s:,.0f} tokens/s, "
            f"{self.basis}; starting up {clock(self.startup_s)}"
            + (" on a first run: Liger tunes its MoE kernels" if self.tunes_kernels else "")
            + (f", evaluation {clock(self.eval_s)}" if self.eval_s >= 1 else "")
            + (f", saving {clock(self.save_s)}" if self.save_s >= 1 else "")
            + ")"
        )


def clock(seconds: float) -> str:
    """'45 s', '12 min', '3 h 10 min', '2 d 4 h': as precise as a prediction is."""
    seconds = max(0, round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def run_time(settings: TrainSettings, stats, model, tokens_per_s: float, basis: str):
    """The whole run's predicted wall time, or None without the dataset's lengths (the
    records to count) unless max_steps fixes the length of the run."""
    t = settings.training
    if stats is None and t.max_steps is None:
        return None
    train_records, eval_records = _split(settings, stats)
    per_sample = _real_tokens_per_sample(settings, stats)
    fill = _bins_filled(settings, stats)
    steps, steps_per_epoch = run_steps(settings, train_records, per_sample, fill)
    full = _samples_per_step(settings, per_sample, fill)
    real_tokens = round(_samples_trained(steps, train_records, full) * per_sample)
    train_s = real_tokens / tokens_per_s
    passes = _eval_passes(settings, steps) if eval_records else 0
    eval_s = passes * eval_records * per_sample / (tokens_per_s * EVAL_SPEEDUP)
    save_s = _save_seconds(model, settings, scheduled_saves(settings, steps, steps_per_epoch))
    size = max(STARTUP_FLOOR, model.params_total / STARTUP_PARAMS)
    startup_s = STARTUP_S[settings.memory.backend] * size
    tuning = fused_experts(model, settings)  # a machine's first run of these shapes
    startup_s += FUSED_EXPERTS_TUNING_S if tuning else 0.0
    total = train_s + eval_s + save_s + startup_s
    return RunTime(
        total, train_s, startup_s, eval_s, save_s, steps, real_tokens, tokens_per_s, basis, tuning
    )


def steps_of(settings: TrainSettings, stats) -> tuple[int, int]:
    """(optimizer steps, steps an epoch) the dataset's lengths give (no stats: max_steps)."""
    train_records, _ = _split(settings, stats)
    per_sample = _real_tokens_per_sample(settings, stats)
    return run_steps(settings, train_records, per_sample, _bins_filled(settings, stats))


def run_steps(
    settings: TrainSettings,
    train_records: int,
    per_sample: float,
    fill: float = batching.PACKED_FILL,
) -> tuple[int, int]:
    """(optimizer steps, steps an epoch) over `train_records` (0: unknown, max_steps alone);
    `fill`: what packed samples fill of their bins."""
    t = settings.training
    per_epoch = _steps_an_epoch(train_records, _samples_per_step(settings, per_sample, fill))
    return t.max_steps or max(1, math.ceil(per_epoch * t.epochs)), per_epoch


def _steps_an_epoch(train_records: int, full: float) -> int:
    """Steps one pass over the records takes (0: records unknown); the last may be short."""
    return max(1, math.ceil(train_records / full)) if train_records else 0


def _samples_trained(steps: int, train_records: int, full: float) -> float:
    """Samples `steps` optimizer steps train on. A step holds `full` samples, but never
    more than the training split has: an epoch's last step takes what its records leave,
    so `max_steps` and `epochs` count the same steps alike (records unknown: all full)."""
    if not train_records:
        return steps * full
    epochs, left = divmod(steps, _steps_an_epoch(train_records, full))
    return epochs * train_records + min(left * full, train_records)


def _samples_per_step(settings: TrainSettings, per_sample: float, fill: float) -> float:
    t = settings.training
    samples = t.micro_batch_size * t.gradient_accumulation_steps * _processes(settings)
    if settings.memory.packing:  # a packed row holds several samples
        samples *= max(1.0, t.max_seq_length * fill / per_sample)
    return samples


def _bins_filled(settings: TrainSettings, stats) -> float:
    """What packed samples fill of their bins (batching.packed_fill), as the speed model
    counts it."""
    if stats is None or not stats.sample:
        return batching.PACKED_FILL
    return batching.packed_fill(stats.sample, settings.training.max_seq_length)


def _processes(settings: TrainSettings) -> int:
    d = settings.distributed
    return d.world_size if d.launched else 1


def _split(settings: TrainSettings, stats) -> tuple[int, int]:
    """Training and evaluation records, as the recipe splits them (no stats: unknown, 0)."""
    if stats is None:
        return 0, 0
    return split_sizes(stats.count, settings.dataset.eval_fraction, settings.dataset.max_samples)


def _real_tokens_per_sample(settings: TrainSettings, stats) -> float:
    """Mean non-padding tokens per sample after truncation (a full sequence without data)."""
    length = settings.training.max_seq_length
    if stats is None or not stats.sample:
        return float(length)
    return max(1.0, batching.clipped_mean(stats.sample, length))


def _eval_passes(settings: TrainSettings, steps: int) -> int:
    """Every eval_steps and once at the end, or only at the end."""
    every = settings.training.eval_steps
    return steps // every + (steps % every > 0) if every else 1


def _save_seconds(model, settings: TrainSettings, checkpoints: int) -> float:
    """Writing the checkpoints and the final adapter or model, as the disk plan sizes them."""
    word = DTYPE_BYTES[settings.quantization.compute_dtype]
    written = checkpoints * checkpoint_bytes(model, settings, word)
    return (written + final_bytes(model, settings, word)) / 1e9 / SAVE_GB_PER_S


def predicted_run_time(model, settings: TrainSettings, stats, gpu_name: str | None):
    """The plan's time on a card: (RunTime or None, the predicted throughput or None).
    None where throughput.unpredicted gives a reason (a CPU, a card without figures ...).
    The tokens/s are corrected by what earlier runs on this card measured (measured_speed)."""
    from .measured_speed import corrected
    from .throughput import predicted_throughput

    speed = predicted_throughput(model, settings, stats, gpu_name)
    speed = corrected(speed, settings, gpu_name, model.model_type)
    if speed is None:
        return None, None
    return run_time(settings, stats, model, speed.tokens_per_s, speed.basis), speed


def time_summary(model, settings: TrainSettings, stats, gpu_name: str | None) -> dict:
    """What `plan` (text and JSON), `plan --compare` and the wizard say about time."""
    from dataclasses import asdict

    from .throughput import unpredicted

    timing, speed = predicted_run_time(model, settings, stats, gpu_name)
    if speed is None:
        text = unpredicted(settings, gpu_name) or "no prediction"
    elif timing is None:
        text = (
            f"{speed.tokens_per_s:,.0f} tokens/s ({speed.basis}); the run's time needs its dataset"
        )
    else:
        text = timing.describe()
    return {
        "tokens_per_s": None if speed is None else round(speed.tokens_per_s),
        "mfu": None if speed is None else round(speed.mfu, 3),
        "time": None if timing is None else {k: _rounded(v) for k, v in asdict(timing).items()},
        "time_text": text,
        "throughput_basis": None if speed is None else speed.basis,
        "speed_correction": None if speed is None else speed.correction,
    }


def _rounded(value):
    return round(value, 1) if isinstance(value, float) else value
