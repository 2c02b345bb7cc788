"""What runs measured on this machine, and the correction the planner takes from it.

Every one-process GPU run appends one line to `measured.jsonl` in the user's data folder
(beside the run registry): model family, backend, objective, card, measured and predicted
peak reserved memory, and measured and predicted tokens/s (measured_speed.py reads those).
The next plan for the same family, backend, objective and card (a
preference objective's memory, and its allocator, are not SFT's) scales its peak by
the median of the last RECENT ratios where they say the planner predicted too little: a
plan corrects itself upward only (a tight fit stays the back-off's job).

The file is a cache, never a reason for a plan or a run to fail: it is read bounded (its
newest STORE_LIMIT bytes), line by line, and a line that is not a well-formed entry
(damaged, forged, absurd) is skipped; when it cannot be written, the run says so and goes on.
Cards match by model, not by the form of their name: a simulated `--gpu H100` and NVML's
"NVIDIA H100 80GB HBM3" are one card (hardware.card_key).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
import time
from dataclasses import dataclass

from ..common.errors import InputError
from ..common.places import data_dir
from ..common.safe_io import open_append, open_regular
from ..inspect.hardware import card_key
from ..inspect.models import ModelInfo
from ..settings.options import OBJECTIVES
from ..settings.schema import TrainSettings
from .memory import MemoryBreakdown
from .peak import predict_memory

STORE_FILE = "measured.jsonl"
STORE_LIMIT = 1024 * 1024  # the newest bytes read: ~5,000 entries
LINE_LIMIT = 1024
TEXT_LIMIT = 200
RECENT = 10  # a correction is the median of the last RECENT runs of its key
MIN_PREDICTED_GIB = 1.0  # a smaller run (the demo) is all overhead: it says nothing of a model
RATIO_RANGE = (0.25, 4.0)  # outside it a line is damaged or forged, not a measurement
MIN_CORRECTION = 1.01  # within 1 % of the plan: no correction


@dataclass(frozen=True)
class Measurement:
    family: str  # the model's model_type
    backend: str
    card: str
    measured_gib: float  # peak reserved, torch.cuda.max_memory_reserved()
    predicted_gib: float  # the planner's, uncorrected, at the longest length trained
    tokens_per_second: float | None = None  # real tokens/s after the first step
    objective: str = "sft"  # lines from before objectives were kept are SFT runs
    # the speed model's tokens/s for this run, before any correction by earlier runs
    predicted_tokens_per_second: float | None = None

    @property
    def ratio(self) -> float:
        return self.measured_gib / self.predicted_gib


@dataclass(frozen=True)
class Correction:
    factor: float  # measured / predicted peak, > 1
    runs: int

    def describe(self) -> str:
        runs = f"{self.runs} run{'s' if self.runs != 1 else ''}"
        return (
            f"corrected by your runs ({runs}, measured {(self.factor - 1) * 100:+.0f} % over plan)"
        )


def store_path():
    return data_dir() / STORE_FILE


def record(measurement: Measurement) -> str | None:
    """Append one measurement; a problem is returned as one line (never raised)."""
    fields = dataclasses.asdict(measurement)
    if measurement.predicted_gib < MIN_PREDICTED_GIB or _entry(fields) is None:
        return None  # too small to say anything about a model, or not a measurement
    path = store_path()
    line = json.dumps({**fields, "time": round(time.time())})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = open_append(path, "measured-memory store")
        try:
            torn = os.fstat(fd).st_size and _last_byte(path) != b"\n"
            os.write(fd, (("\n" if torn else "") + line + "\n").encode())
        finally:
            os.close(fd)
    except (OSError, InputError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return f"{path}: cannot remember this run's measured memory ({reason}); the run goes on"
    return None


def _last_byte(path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        return os.pread(fd, 1, os.fstat(fd).st_size - 1)
    finally:
        os.close(fd)


_cache: dict = {}


def measurements() -> list[Measurement]:
    """Every well-formed entry of the newest STORE_LIMIT bytes, oldest first; never raises."""
    path = store_path()
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return []
    key = (str(path), info.st_mtime_ns, info.st_size, info.st_ino)
    if _cache.get("key") != key:
        entries = _read(path)
        ratios: dict[tuple[str, str, str, str], list[float]] = {}
        for m in entries:
            group = (m.family, m.backend, m.objective, card_key(m.card))
            ratios.setdefault(group, []).append(m.ratio)
        _cache.update(key=key, entries=entries, ratios=ratios)
    return _cache["entries"]


def _read(path) -> list[Measurement]:
    try:
        with open_regular(path, "measured-memory store", mode="rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size > STORE_LIMIT:
                file.seek(size - STORE_LIMIT)
                file.readline(LINE_LIMIT + 1)  # most likely the tail of a line: dropped
            data = file.read(STORE_LIMIT)
    except (OSError, InputError):
        return []
    return [m for line in data.split(b"\n") if (m := _parse(line)) is not None]


def _parse(line: bytes) -> Measurement | None:
    if not line.strip() or len(line) > LINE_LIMIT:
        return None
    try:
        data = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    return _entry(data) if isinstance(data, dict) else None


def _entry(data: dict) -> Measurement | None:
    """A Measurement when every field holds what it should, else None."""
    texts = [data.get(k) for k in ("family", "backend", "card")]
    if not all(isinstance(t, str) and 0 < len(t) <= TEXT_LIMIT and t.isprintable() for t in texts):
        return None
    numbers = [data.get(k) for k in ("measured_gib", "predicted_gib")]
    if not all(_finite(n) and 0 < n < 1e6 for n in numbers):
        return None
    speeds = [data.get(k) for k in ("tokens_per_second", "predicted_tokens_per_second")]
    if not all(speed is None or (_finite(speed) and 0 <= speed < 1e9) for speed in speeds):
        return None
    objective = data.get("objective", "sft")
    if objective not in OBJECTIVES:
        return None
    entry = Measurement(*texts, *numbers, speeds[0], objective, speeds[1])
    return entry if RATIO_RANGE[0] <= entry.ratio <= RATIO_RANGE[1] else None


def _finite(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def correction_for(
    family: str, backend: str, card: str | None, objective: str = "sft"
) -> Correction | None:
    """The median ratio of the last RECENT runs of this family, backend, objective and card,
    where it says the planner predicted too little."""
    if not card:
        return None
    if not measurements():  # also brings the index up to date
        return None
    ratios = _cache["ratios"].get((family, backend, objective, card_key(card)), [])[-RECENT:]
    if not ratios or (factor := statistics.median(ratios)) < MIN_CORRECTION:
        return None
    return Correction(round(factor, 3), len(ratios))


def correction(model: ModelInfo, settings: TrainSettings, card: str | None) -> Correction | None:
    """What this configuration's runs say; only one process is measured (rank 0's peak)."""
    if settings.distributed.launched:
        return None
    backend, objective = settings.memory.backend, settings.training.objective
    return correction_for(model.model_type, backend, card, objective)


def planned_memory(
    model: ModelInfo, settings: TrainSettings, hardware=None, card: str | None = None
) -> MemoryBreakdown:
    """The memory model's prediction, corrected by what runs measured on this card: the
    excess counts as overhead, so the breakdown's parts still sum to what nvidia-smi shows."""
    breakdown = predict_memory(model, settings, hardware)
    if card is None and hardware is not None:
        card = hardware.card_name
    found = correction(model, settings, card)
    if found is None:
        return breakdown
    extra = breakdown.reserved_gib * (found.factor - 1)
    return dataclasses.replace(
        breakdown,
        reserved_gib=breakdown.reserved_gib + extra,
        nvidia_smi_gib=breakdown.nvidia_smi_gib + extra,
        overhead_gib=breakdown.overhead_gib + extra,
    )


def explain_correction(plan, model: ModelInfo, hardware) -> None:
    """Say where a plan's peak is not the memory model's alone: runs measured more on this
    card (the reason 'measured', and `plan.correction`)."""
    card = hardware.card_name
    plan.correction = correction(model, plan.settings, card)
    if plan.correction is not None:
        raw = plan.peak_vram_gib / plan.correction.factor
        plan.reasons["measured"] = (
            f"{plan.correction.describe()}: peak {raw:.1f} -> {plan.peak_vram_gib:.1f} GiB for "
            f"{model.model_type} with {plan.settings.memory.backend} on {card}"
        )
