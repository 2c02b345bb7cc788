"""Absolute speed: predicted real (non-padding) tokens/s on the user's card, where speed.py
predicts only a ratio to SPEED_BASELINE.

The baseline (HF QLoRA, checkpointing, micro-batch 2) is predicted from the model's size:
a micro-batch's compute at a fixed FLOP efficiency, plus a fixed time per layer and
micro-batch. The second term is what makes small models slower than their FLOPs say
(Llama-3.2-1B: 6.5x fewer FLOPs than Llama-3.1-8B, 2x its tokens/s): at micro-batch 2 an
H100 waits on per-layer work (kernel launches, 4-bit dequantisation, the LoRA wrappers)
as much as it computes. speed.py's measured factors then carry the baseline to the chosen
configuration, and its batch fill to the real tokens. Another card is scaled by its
published dense bf16 peak. Fitted and held-out rows: docs/BENCHMARKS.md, "Absolute
throughput"; benchmarks/throughput_fit.py re-fits the constants from the committed rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..inspect.families import EVERY_EXPERT_TYPES
from ..inspect.hardware import KNOWN_GPUS, KnownGPU, find_known_gpu
from ..inspect.models import ModelInfo
from ..settings.attention import planned_attention
from ..settings.schema import TrainSettings
from . import batching, speed
from .hybrid_bytes import attention_layers

REFERENCE_GPU = "H100 80GB"  # the card every fitted row ran on
# Fitted on the Llama rows only (llama-3.1-8b, llama-3.2-1b; every row that trained with
# samples filling max_seq_length: backends-*-h100-2026-11-2[45], calib-h100-2026-11-24,
# tokens-unsloth-hf-llama1b-h100-2026-11-25; 36 rows), least squares on log tokens/s through
# speed.py's factors. The Llama-3.1-8B rows pin mostly the efficiency, Llama-3.2-1B the
# per-layer time. Re-fit: python benchmarks/throughput_fit.py --fit
BASELINE_EFFICIENCY = 0.16  # model FLOPs of the baseline's compute over the card's peak
LAYER_STEP_S = 0.012  # seconds per layer per micro-batch at the baseline, on REFERENCE_GPU
# A padded or grouped step (samples of every length, as users' data are) costs a fixed
# part whatever its tokens and the compute of its padded tokens. Fitted on nine short runs
# of both Llama sizes under every backend and checkpointing, grouped, on instruction-like
# lengths (run-time-fit-llama-h100-2026-12-06; docs/BENCHMARKS.md, "A step's fixed part, by
# configuration"); re-fit: python benchmarks/throughput_fit.py --fit-steps
STEP_FIXED_S = 0.129  # a step's own work whatever the model (the Trainer, the optimizer)
LAYER_FIXED_S = {  # a layer's small kernels and wrappers, by backend and checkpointing
    ("hf", False): 0.0068,
    ("hf", True): 0.0172,  # the recomputed forward's kernels again, and the checkpoint's
    ("liger", False): 0.0064,
    ("liger", True): 0.0151,
    ("unsloth", False): 0.0071,
    ("unsloth", True): 0.0167,  # not run on varying lengths: checkpointing taken to add what
    # it adds to Liger's
}
# Model FLOPs of the padded tokens over the card's peak: the median of the seven Llama rows
# whose full-length steps carry at least 8,192 tokens, less their fixed part (there the
# tokens' part is most of the step)
TOKEN_EFFICIENCY = 0.79
# Whole runs of the fitting configurations (Llama-3.1-8B, b8 x 1,024, HF with checkpointing
# and Liger: run_time_rows' calibration runs on four H100 machines) ran 0.88-1.26x the pace
# the short fitting runs give, three of four faster: their log-mean. The held-out whole runs
# (other families, lengths, backends) had no part in it; re-fit: python
# benchmarks/throughput_fit.py --fit-whole
WHOLE_RUN_PACE = 1.12
LORA_FLOPS_PER_PARAM = 4  # forward 2 + backward activations 2: frozen weights get no gradient
FULL_FLOPS_PER_PARAM = 6  # ... + weight gradients 2


@dataclass(frozen=True)
class Throughput:
    tokens_per_s: float  # predicted REAL (non-padding) tokens/s on the whole machine
    basis: str  # one short clause for the user: where the figure comes from
    mfu: float  # the model-FLOPs utilisation this implies on that card (0..1)
    correction: float = 1.0  # measured_speed.py's factor from this machine's runs, if any


def flops_per_token(model: ModelInfo, settings: TrainSettings, row: int | None = None) -> float:
    """Model FLOPs of one trained token: k x computed parameters (k = 4 under LoRA, 6 for full
    fine-tuning) plus attention's scores and values over a row of `row` tokens
    (max_seq_length unless given; 12 L s d: forward 4, backward 8, counted over the whole
    square as is usual for MFU; L the softmax-attention layers: a hybrid's linear-attention
    layers have no square)."""
    full = settings.training.method == "full"
    k = FULL_FLOPS_PER_PARAM if full else LORA_FLOPS_PER_PARAM
    length = row or settings.training.max_seq_length
    attention = 12 * attention_layers(model) * length * model.num_heads * model.head_dim
    return k * model.params_computed + attention


def packed_cost_kind(settings: TrainSettings) -> str:
    """How packed_cost takes a packed step: "flash" (samples apart, no extra), "unsloth"
    (its measured curve) or "row" (the row's attention square)."""
    if "flash" in planned_attention(settings.model.attn_implementation):
        return "flash"
    return "unsloth" if settings.memory.backend == "unsloth" else "row"


def packed_cost(model: ModelInfo, settings: TrainSettings) -> float:
    """A packed step's time over a full unpacked one's (same micro-batch and length). With
    flash attention each sample keeps its own square: no more. Without it the micro-batch
    is one row of micro-batch x length tokens under a block mask that attention computes
    whole: the row's square, at the step's efficiency. Qwen3-8B, Liger with checkpointing,
    b4 x 2,048 packed, a whole run (H100, 2026-12-06): 1.58 s a step, 1.16x the full step
    planned (the model's 1.32x; 12- to 30-step rows had measured 1.9-3.4x: their first
    steps of new shapes; docs/BENCHMARKS.md, "Machine D")."""
    kind = packed_cost_kind(settings)
    if kind == "flash":
        return 1.0
    if kind == "unsloth":  # measured on short runs only: its own curve
        return batching.unsloth_packed_cost(settings.training.micro_batch_size)
    row = settings.training.micro_batch_size * settings.training.max_seq_length
    return flops_per_token(model, settings, row) / flops_per_token(model, settings)


def baseline_tokens_per_s(model: ModelInfo, settings: TrainSettings, card: KnownGPU) -> float:
    """SPEED_BASELINE's tokens/s on one card: a micro-batch's compute at BASELINE_EFFICIENCY
    plus LAYER_STEP_S per layer, both scaled from REFERENCE_GPU by the bf16 peak."""
    reference = KNOWN_GPUS[REFERENCE_GPU].bf16_tflops * 1e12
    tokens = speed.BASELINE_MICRO_BATCH * settings.training.max_seq_length
    compute_s = tokens * flops_per_token(model, settings) / (reference * BASELINE_EFFICIENCY)
    step_s = compute_s + model.num_layers * LAYER_STEP_S
    return tokens / step_s * card.bf16_tflops / KNOWN_GPUS[REFERENCE_GPU].bf16_tflops


def step_shares(
    model: ModelInfo, settings: TrainSettings, card: KnownGPU | None = None
) -> speed.StepShares:
    """A step's time as shares of a full-length step's (samples filling max_seq_length, as
    the factors above were measured) on `card` (REFERENCE_GPU if None): a padded or
    grouped step's fixed part and its tokens' part were it padded to the full length (their sum may
    pass 1: on a small model a step of varying shapes costs more than a full one of fixed
    shape. The tokens' part scales by the card's bf16 peak, the fixed part not at all: it
    is launches and small kernels, waited on alike by every card (not measured off H100)."""
    reference = KNOWN_GPUS[REFERENCE_GPU]
    card = card or reference
    tokens = settings.training.micro_batch_size * settings.training.max_seq_length
    full_s = tokens / (
        baseline_tokens_per_s(model, settings, card) * speed.relative_speed(settings)
    )
    checkpointed = settings.memory.gradient_checkpointing != "off"
    quant = speed.QUANT_SPEED[settings.quantization.mode]  # measured on NF4: scaled as full steps
    fixed_s = (
        STEP_FIXED_S + model.num_layers * LAYER_FIXED_S[(settings.memory.backend, checkpointed)]
    )
    peak = card.bf16_tflops * 1e12 * TOKEN_EFFICIENCY
    compute_s = tokens * flops_per_token(model, settings) * recompute_factor(settings) / peak
    return speed.StepShares(
        fixed_s / quant / full_s, compute_s / quant / full_s, packed_cost(model, settings)
    )


def card_of(hardware) -> KnownGPU | None:
    """The user's card among KNOWN_GPUS for step_shares (None: a CPU or an unknown card, whose
    steps are shared out as the reference card's)."""
    name = hardware.card_name
    return find_known_gpu(name) if name is not None else None


def recompute_factor(settings: TrainSettings) -> float:
    """Checkpointing runs each forward twice: 2 FLOPs a parameter more."""
    if settings.memory.gradient_checkpointing == "off":
        return 1.0
    k = FULL_FLOPS_PER_PARAM if settings.training.method == "full" else LORA_FLOPS_PER_PARAM
    return (k + 2) / k


def predicted_throughput(
    model: ModelInfo, settings: TrainSettings, stats, gpu_name: str | None
) -> Throughput | None:
    """Real tokens/s of the whole machine for this configuration on this card (`stats`: the
    dataset's TokenStats, or None for samples that fill max_seq_length). None on a CPU
    (gpu_name None) or a card without a published bf16 peak in KNOWN_GPUS: no prediction."""
    if unpredicted(settings, gpu_name):
        return None
    card = find_known_gpu(gpu_name)
    per_gpu = (
        baseline_tokens_per_s(model, settings, card)
        * speed.relative_speed(settings)
        * speed.batch_fill(settings, stats, step_shares(model, settings, card))
        * WHOLE_RUN_PACE
    )
    processes = settings.distributed.world_size  # above 1 only with a strategy
    mfu = per_gpu * processes / peak_tokens_per_s(model, settings, gpu_name)
    return Throughput(per_gpu * processes, _basis(card, model, settings, processes), mfu)


def peak_tokens_per_s(model: ModelInfo, settings: TrainSettings, gpu_name: str) -> float | None:
    """The whole machine's tokens/s at its cards' published dense bf16 peak: a measured
    tokens/s over this is the run's MFU. None for a card without a published peak."""
    card = find_known_gpu(gpu_name)
    if card is None:
        return None
    processes = settings.distributed.world_size
    return card.bf16_tflops * 1e12 * processes / flops_per_token(model, settings)


def unpredicted(settings: TrainSettings, gpu_name: str | None) -> str | None:
    """Why there is no prediction for this run on this card, or None when there is."""
    if gpu_name is None:
        return "no prediction on a CPU: plan for a card (--gpu, or on the Hardware screen)"
    if find_known_gpu(gpu_name) is None:
        return f"no published throughput for {gpu_name}"
    if settings.training.objective != "sft":  # two sequences a pair, a reference pass
        return f"not predicted for {settings.training.objective} yet: measured for SFT only"
    if settings.distributed.cpu_offload:  # measured on one H200: a 1.5 B model at ~800 tokens/s
        return (
            "not predicted with CPU offload: the optimizer step on the CPU, not the GPU, "
            "sets the pace (docs/BENCHMARKS.md, ZeRO-3 rows)"
        )
    return None


# Kernels no speed row has timed: the time is the speed model's for their FLOPs, said so
UNTIMED_KERNELS = {
    "linear_attention": "its gated DeltaNet layers not timed (without flash-linear-attention "
    "transformers runs them as a torch loop over 64-token chunks: likely slower)",
    "every_expert": "not timed: transformers runs every expert on every token, all counted",
}


def _basis(card: KnownGPU, model: ModelInfo, settings: TrainSettings, processes: int) -> str:
    reference = KNOWN_GPUS[REFERENCE_GPU]
    if card.name == reference.name:
        text = f"fitted to {reference.name.split()[0]} measurements"
    else:
        text = (
            f"scaled from {reference.name.split()[0]} measurements by published bf16 "
            f"throughput ({card.bf16_tflops:g} vs {reference.bf16_tflops:g} TFLOP/s)"
        )
    if model.linear_attention is not None:
        text += f"; {UNTIMED_KERNELS['linear_attention']}"
    if model.model_type in EVERY_EXPERT_TYPES:
        text += f"; {UNTIMED_KERNELS['every_expert']}"
    if settings.training.method == "full":
        text += "; full fine-tuning not measured: LoRA's efficiency at 6 FLOPs a parameter"
    if processes > 1:
        strategy = settings.distributed.strategy
        text += f"; one GPU's x {processes} processes ({strategy}), communication not counted"
    return text
