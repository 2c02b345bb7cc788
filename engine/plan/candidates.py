"""The advisor's candidates: every configuration it may pick from (the options the user
left free, less what this machine cannot run), and each one scored for memory, fit and speed.
"""

from __future__ import annotations

import importlib.util
import itertools
from dataclasses import dataclass

from ..common.errors import SettingsError
from ..inspect.hardware import Hardware
from ..inspect.models import ModelInfo
from ..inspect.stored_quantization import ruled_out_by_storage
from ..settings.options import NEEDS_CUDA, QUANTIZATIONS, STRATEGIES, cuda_only, unsloth_refusal
from ..settings.preset import with_changes
from ..settings.schema import TrainSettings
from .headroom import Fit, judge
from .measured import planned_memory
from .memory import MemoryBreakdown
from .speed import BATCH_FIELDS, BATCHINGS, batching_of, real_token_speed
from .throughput import card_of, step_shares

MICRO_BATCHES = (1, 2, 4, 8, 16, 32)


@dataclass
class Scored:
    settings: TrainSettings
    breakdown: MemoryBreakdown
    speed: float
    fit: Fit


NOTHING_QUANTISED = (
    "bitsandbytes quantises none of {}'s layers (its own nn.Linear subclass): 4/8-bit saves "
    "no memory here"
)


def ruled_out_by_model(model: ModelInfo) -> dict[str, str]:
    """Option value → why this model rules it out on any machine: a backend without kernels
    (or measured far from the plan) for its family, 4/8-bit where bitsandbytes quantises
    none of its layers, what its stored weights cannot train as. The plan lists them
    unavailable; preflight refuses a run asking."""
    out = {f"memory.backend={b}": why for b, why in model.supported_backends.items() if why}
    out |= ruled_out_by_storage(model.stored, model.architecture)
    if model.params_quantised == 0 and model.stored is None:
        for mode in (m for m in QUANTIZATIONS if m != "none"):
            out[f"quantization.mode={mode}"] = NOTHING_QUANTISED.format(model.architecture)
    return out


def unavailable_options(hardware: Hardware, model: ModelInfo) -> dict[str, str]:
    """Option value → why it cannot be used here."""
    if hardware.primary is None:
        return dict.fromkeys(cuda_only(), NEEDS_CUDA)
    out = ruled_out_by_model(model)
    if why := unsloth_refusal(gpus=len(hardware.gpus)):
        out["memory.backend=unsloth"] = why
    elif importlib.util.find_spec("unsloth") is None and not hardware.simulated:
        out.setdefault("memory.backend=unsloth", "unsloth is not installed")
    if model.model_type == "gemma2":
        out.setdefault(
            "memory.backend=unsloth",
            "Unsloth's compiled Gemma-2 path failed (InductorError) on an 8 GB-capped H100 here",
        )
    gpu = hardware.primary
    if gpu.compute_capability and gpu.compute_capability < (8, 0):
        out["quantization.compute_dtype=bf16"] = (
            f"{gpu.name} (compute {gpu.compute_capability[0]}.{gpu.compute_capability[1]}) "
            "has no bf16: fp16 is used"
        )
    return out


def score_candidates(model, base, fixed, unavailable, hardware, stats=None) -> list[Scored]:
    """Every candidate around `base` (pinned fields kept), scored."""
    return [
        score_one(model, candidate, hardware, stats)
        for candidate in _candidates(
            base, fixed, unavailable, hardware, stats is not None, model.stored
        )
    ]


def score_one(model, settings: TrainSettings, hardware, stats=None) -> Scored:
    """Memory, fit and speed of one configuration: what the choice and every reason that
    compares with it are computed from (real tokens, packing's cost included)."""
    breakdown = planned_memory(model, settings, hardware)
    fit = judge(model, settings, hardware, breakdown.reserved_gib)
    speed = real_token_speed(settings, stats, step_shares(model, settings, card_of(hardware)))
    return Scored(settings, breakdown, speed, fit)


def _candidates(
    base: TrainSettings,
    fixed,
    unavailable: dict[str, str],
    hardware: Hardware,
    lengths: bool,
    stored=None,
):
    def options(field: str, values):
        if field in fixed:
            return [base.value(field)]
        return [v for v in values if f"{field}={v}" not in unavailable]

    effective = base.effective_batch_size
    pinned = set(BATCH_FIELDS) & set(fixed)
    full, d = base.training.method == "full", base.distributed
    quantizations = ("none",) if full else ("none", "nf4")  # full trains 16-bit weights
    if stored is not None and stored.loads_as not in quantizations:  # 8-bit, FP4 as stored
        quantizations += (stored.loads_as,)
    unsloth = unsloth_refusal(base.training.method, d.world_size, d.launched) is None
    backends = ("hf", "liger", "unsloth") if unsloth else ("hf", "liger")
    runs = STRATEGIES[base.distributed.strategy].optimizers
    optimizers = [o for o in ("adamw_8bit", "adamw_torch") if o in runs]
    fills = [BATCHINGS[batching_of(base)]] if pinned or not lengths else BATCHINGS.values()
    for (packing, grouped), quant, backend, ckpt, batch, optim in itertools.product(
        fills,
        options("quantization.mode", quantizations),
        options("memory.backend", backends),
        options("memory.gradient_checkpointing", ("off", "on", "unsloth")),
        options("training.micro_batch_size", MICRO_BATCHES),
        options("training.optimizer", optimizers),
    ):
        if ckpt == "unsloth" and backend != "unsloth":
            continue
        updates = {
            "memory.packing": packing,
            "memory.group_by_length": grouped,
            "quantization.mode": quant,
            "memory.backend": backend,
            "memory.gradient_checkpointing": ckpt,
            "training.micro_batch_size": batch,
            "training.optimizer": optim,
        }
        if "training.gradient_accumulation_steps" not in fixed:
            updates["training.gradient_accumulation_steps"] = max(1, effective // batch)
        if (
            "quantization.compute_dtype=bf16" in unavailable
            and "quantization.compute_dtype" not in fixed
        ):
            updates["quantization.compute_dtype"] = "fp16"
        try:
            yield with_changes(base, updates)
        except SettingsError:  # a combination the settings refuse (packing under DPO, say)
            continue


def diff(a: TrainSettings, b: TrainSettings) -> dict[str, object]:
    """b's values where it differs from a."""
    return {field: theirs for field, (_, theirs) in a.differences(b).items()}
