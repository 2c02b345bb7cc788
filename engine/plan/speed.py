"""The speed model: predicted tokens/s relative to a baseline, from the configuration and
the dataset's sample lengths (measured on H100: docs/BENCHMARKS.md)."""

from __future__ import annotations

from typing import NamedTuple

from ..settings.schema import TrainSettings
from . import batching

# Relative tokens/s factors, measured on H100 (Llama-3.1-8B, seq 1024, docs/BENCHMARKS.md):
# hf ckpt b2 3130, hf nockpt b4 8352, liger ckpt b4 6314, liger nockpt b8 12745,
# unsloth offloaded-ckpt b4 8171, bf16 liger nockpt b8 10974 tokens/s.
CHECKPOINT_COST = {"off": 1.0, "on": 1 / 2.1, "unsloth": 1 / 1.9}
BACKEND_GAIN = {
    ("hf", True): 1.0,
    ("liger", True): 1.59,
    ("unsloth", True): 1.78,
    ("hf", False): 1.0,
    ("liger", False): 1.32,
    ("unsloth", False): 1.78 / 1.9,  # not measured: assumed no faster than with its offloading
}
QUANT_SPEED = {"none": 0.86, "nf4": 1.0, "fp4": 1.0, "8bit": 0.6}
# Tokens per micro-batch at which the GPU is half-saturated. HF and Liger keep gaining with
# batch (Gemma-2-9B, Liger: checkpointed b16 7323 tokens/s, uncheckpointed b2 3621);
# Unsloth's fused kernels saturate early (Llama-3.1-8B: b4 8171-9389, b16 10409, b32 10740).
SATURATION_TOKENS = {"hf": 3000, "liger": 3000, "unsloth": 1000}

SPEED_BASELINE = "HF QLoRA + checkpointing, batch 2, same sequence length"
BASELINE_MICRO_BATCH = 2  # SPEED_BASELINE's


def relative_speed(settings: TrainSettings) -> float:
    """Tokens/s relative to SPEED_BASELINE, samples filling max_seq_length."""
    memory = settings.memory
    checkpointed = memory.gradient_checkpointing != "off"
    tokens = settings.training.micro_batch_size * settings.training.max_seq_length
    saturation = tokens / (tokens + SATURATION_TOKENS[memory.backend])
    value = (
        saturation
        * CHECKPOINT_COST[memory.gradient_checkpointing]
        * BACKEND_GAIN[(memory.backend, checkpointed)]
        * QUANT_SPEED[settings.quantization.mode]
    )
    baseline = BASELINE_MICRO_BATCH * settings.training.max_seq_length
    reference = baseline / (baseline + SATURATION_TOKENS["hf"]) * CHECKPOINT_COST["on"]
    return value / reference


class StepShares(NamedTuple):
    """What a step of real lengths costs, as shares of a full-length step's (samples filling
    max_seq_length, as the factors above were measured): throughput.step_shares."""

    fixed: float = 0.0  # a padded or grouped step's part whatever its tokens
    per_token: float = 1.0  # ... and its tokens' part, were it padded to the full length
    packed: float = 1.0  # a packed step, whole


FULL_STEP = StepShares()  # every step costs what a full-length one does


BATCH_FIELDS = ("memory.packing", "memory.group_by_length")
BATCHINGS = {  # how micro-batches are filled: (memory.packing, memory.group_by_length)
    "padded": (False, False),
    "grouped": (False, True),
    "packed": (True, False),
}


def batching_of(settings: TrainSettings) -> str:
    if settings.memory.packing:
        return "packed"
    return "grouped" if settings.memory.group_by_length else "padded"


def batch_fill(settings: TrainSettings, stats, shares: StepShares = FULL_STEP) -> float:
    """Real (non-padding) tokens a step carries over what the step costs, each as a share
    of a full micro-batch's (samples filling max_seq_length). A padded or grouped
    micro-batch is padded to its longest sample and costs its fixed share and its tokens'
    share in proportion to its padded length, but for those padded to the full length:
    one shape, a full step's cost. A packed one carries what its samples fill
    of the bins (batching.packed_fill) at its share. Without a dataset every sample is
    taken as full."""
    if stats is None:
        return 1.0
    mode = batching_of(settings)
    length = settings.training.max_seq_length
    if mode == "packed":
        return batching.packed_fill(stats.sample, length) / shares.packed
    real = batching.clipped_mean(stats.sample, length) / length
    shape = (stats.sample, length, settings.training.micro_batch_size, mode == "grouped")
    padded = batching.padded_length(*shape, stats.count) / length
    full = batching.full_length_share(*shape, stats.count)  # steps of one shape: a full one's
    return real / (full + (1 - full) * shares.fixed + shares.per_token * (padded - full))


def real_token_speed(settings: TrainSettings, stats, shares: StepShares = FULL_STEP) -> float:
    """Non-padding tokens/s relative to SPEED_BASELINE (whose samples fill the length)."""
    return relative_speed(settings) * batch_fill(settings, stats, shares)
