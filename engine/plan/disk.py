"""What a run writes to its output folder, planned so that a disk too small is found before
the first step, not at a save hours in: a save that fails loses every step since the last.

A checkpoint holds the trained weights as the run keeps them and the optimizer's state in
the dtype memory.optimizer_state_bytes gives it: LoRA's adapters as memory.adapter_word
keeps them (bf16 over quantised weights, else fp32) and full fine-tuning's weights in the
compute dtype; ZeRO-3 and FSDP also save the fp32 master copy of every trained weight they
hold (sharding.SHARD_WEIGHT_BYTES). The run's end writes the adapter, or the whole model in
the compute dtype. The Trainer writes a new checkpoint before it deletes those beyond
save_total_limit, so one more than the limit lies on disk for a moment; a run with no saves
scheduled still writes one when it is stopped.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..common.errors import InputError
from ..inspect.models import ModelInfo
from ..settings.schema import TrainSettings
from .memory import DTYPE_BYTES, GIB, adapter_word, optimizer_state_bytes, trained_params
from .sharding import SHARD_WEIGHT_BYTES

# Beside the weights a checkpoint holds the tokenizer (tokenizer.json: 7-9 MB for Qwen2.5's
# and Llama-3's 128-152 k entries, 33 MB for Gemma-3's 262 k) and a few small files (trainer
# state, scheduler, RNG states, arguments): an allowance on the safe side
TOKENIZER_BYTES_PER_ENTRY = 128
SMALL_FILES_BYTES = 2**20


def small_files_bytes(model: ModelInfo) -> float:
    return TOKENIZER_BYTES_PER_ENTRY * model.vocab_size + SMALL_FILES_BYTES


@dataclass(frozen=True)
class DiskPlan:
    checkpoint: float  # bytes of one checkpoint
    final: float  # bytes of the adapter or model written at the end
    at_once: int  # checkpoints on disk at the fullest moment
    final_what: str = "the adapter"  # or "the whole model"
    scheduled: bool = True  # False: the one checkpoint is a stop's
    download: float = 0.0  # a Hub model's weights still to come into a cache on this disk

    @property
    def needed(self) -> float:
        return self.at_once * self.checkpoint + self.final + self.download

    def describe(self) -> str:
        """'2.31 GiB: 3 checkpoints of 0.75 GiB (...) and the adapter, 0.06 GiB'"""
        what = "trained weights and optimizer state" + ("" if self.scheduled else ", if stopped")
        fetched = f", after the model's download, about {size(self.download)}"
        return (
            f"{size(self.needed)}: {self.at_once} checkpoint{'s' if self.at_once > 1 else ''} "
            f"of {size(self.checkpoint)} ({what}) and {self.final_what}, {size(self.final)}"
            f"{fetched if self.download else ''}"
        )


def size(nbytes: float) -> str:
    """'2.31 GiB', or '4.6 MiB' below a GiB."""
    return f"{nbytes / GIB:.2f} GiB" if nbytes >= GIB else f"{nbytes / 2**20:.1f} MiB"


def checkpoint_bytes(model: ModelInfo, settings: TrainSettings, word: float) -> float:
    """One checkpoint, `word` bytes a 16-bit (or fp32, on a CPU) weight."""
    params = trained_params(model, settings)
    full = settings.training.method == "full"
    weights = word * params if full else adapter_word(settings) * params
    sharded = settings.distributed.strategy in ("fsdp", "deepspeed")
    master = SHARD_WEIGHT_BYTES * params if sharded else 0.0
    state_word = SHARD_WEIGHT_BYTES if sharded else (word if full else adapter_word(settings))
    return (
        weights
        + master
        + optimizer_state_bytes(model, settings, state_word)
        + small_files_bytes(model)
    )


def final_bytes(model: ModelInfo, settings: TrainSettings, word: float) -> float:
    """The adapter (LoRA) or the whole model (full fine-tuning) the run's end writes."""
    if settings.training.method == "full":
        return word * model.params_total + small_files_bytes(model)
    return adapter_word(settings) * trained_params(model, settings) + small_files_bytes(model)


def scheduled_saves(settings: TrainSettings, steps: int, steps_per_epoch: int) -> int:
    """Checkpoints the settings ask for over `steps` (every save_steps, every epoch). With
    no dataset to count (steps_per_epoch 0, no max_steps) every epoch's save is counted, and
    save_steps as often as the limit keeps them."""
    t = settings.training
    unknown = steps_per_epoch == 0 and t.max_steps is None
    saves = 0
    if t.save_steps:
        saves += t.save_total_limit + 1 if unknown else steps // t.save_steps
    if t.save_every_epoch:
        per_epoch = steps // steps_per_epoch if steps_per_epoch else 0
        saves += math.ceil(t.epochs) if unknown else per_epoch
    return saves


def checkpoints_at_once(settings: TrainSettings, steps: int, steps_per_epoch: int) -> int:
    """At the fullest moment: the kept ones and the one being written, or the one a stop
    writes where none is scheduled."""
    saves = scheduled_saves(settings, steps, steps_per_epoch)
    return max(1, min(saves, settings.training.save_total_limit + 1))


def disk_plan(
    model: ModelInfo, settings: TrainSettings, word: float, steps: int, steps_per_epoch: int
) -> DiskPlan:
    full = settings.training.method == "full"
    return DiskPlan(
        checkpoint_bytes(model, settings, word),
        final_bytes(model, settings, word),
        checkpoints_at_once(settings, steps, steps_per_epoch),
        "the whole model" if full else "the adapter",
        scheduled_saves(settings, steps, steps_per_epoch) > 0,
    )


def existing_parent(folder: Path) -> Path:
    """`folder`, or its nearest parent that exists: where it will be made."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def free_bytes(folder: Path) -> float:
    """Free space on the disk `folder` will be made on (its nearest existing parent)."""
    return shutil.disk_usage(existing_parent(folder)).free


def check_room(plan: DiskPlan, run_dir: Path, kept: float = 0.0) -> None:
    """Refuse, in one line, a run whose saves would not fit; `kept`: bytes of checkpoints
    already in the run folder (a resumed run), which the Trainer deletes as new ones come."""
    free = free_bytes(run_dir)
    if plan.needed - kept <= free:
        return
    way = "free space or choose another output.dir"
    if plan.at_once > 1:
        way = "lower training.save_total_limit, save less often, " + way
    raise InputError(
        f"output.dir: {run_dir} would hold up to {plan.describe()}; its disk has "
        f"{size(free)} free{f' beside {size(kept)} of checkpoints' if kept else ''}"
        f"; {way}"
    )


def disk_summary(model: ModelInfo, settings: TrainSettings, steps: int, per_epoch: int) -> dict:
    """What `plan` says of the disk: the run's saves at their fullest, in the plan's dtype."""
    word = DTYPE_BYTES[settings.quantization.compute_dtype]
    plan = disk_plan(model, settings, word, steps, per_epoch)
    return {"disk_gib": round(plan.needed / GIB, 2), "disk_text": plan.describe()}
