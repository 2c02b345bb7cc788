"""What a training objective adds to one step's memory, read from how TRL's trainers run it
(TRL 1.15-1.16), before any GPU row: the model's SFT terms scale with the sequences that
go through it, and the objectives differ in their logits and their reference model.

- DPO concatenates chosen and rejected into one batch of twice the micro-batch; the
  reference pass runs under no_grad (LoRA: the adapter switched off, no second copy);
  TRL's fused, chunked LM head never holds the logits (`add_fused_lm_head`).
- ORPO (trl.experimental) concatenates the pair too but takes `outputs.logits` whole:
  bf16 logits, fp32 log-softmax rows for every token and the chosen half's cross-entropy,
  then their gradients in the backward pass. It has no reference model.
- KTO runs the micro-batch's completions with gradients (its KL batch under no_grad),
  through the same fused head as DPO.
- Under full fine-tuning DPO and KTO load the reference as a second 16-bit model.

The constants below were then checked and fitted on an H200 (benchmarks/results/
preference-h200-2026-12-05.jsonl; docs/BENCHMARKS.md, "Preference objectives").
"""

from __future__ import annotations

from ..inspect.hardware import GIB
from ..inspect.models import ModelInfo
from ..settings.schema import TrainSettings

SEQUENCES_PER_SAMPLE = {"sft": 1, "dpo": 2, "orpo": 2, "kto": 1}
FULL_LOGITS_OBJECTIVES = {"orpo"}
# Bytes per token and vocabulary entry of ORPO's whole logits. Read from the code: bf16
# logits (2), fp32 log-softmax rows (4), the chosen half's fp32 cross-entropy (2 a token of
# the pair), the logits' bf16 gradient (2) = 10, which the rows' peak *allocated* matched
# (-1.5 to +2 %). What torch *reserves* is far more: blocks of these vocabulary-wide tensors
# stay cached (reserved / allocated 1.20-1.60). Fitted on the reserved of 16 ORPO rows
# (Llama-3.2-1B, Qwen2.5-1.5B, H200 2026-12-05) so that none is planned low.
FULL_LOGITS_BYTES = 17.0
# DPO's chunked head leaves cached blocks too (reserved / allocated up to 1.31 at b2): the
# least that keeps 12 DPO rows (Llama-3.2-1B, Qwen2.5-1.5B, sequence 1024) within 5 % below,
# taken as growing with the length.
DPO_HEAD_SLACK_GIB_PER_1K = 0.37
REFERENCE_COPY_OBJECTIVES = {"dpo", "kto"}
# Full fine-tuning DPO and KTO measured two 16-bit copies above the trained model (Llama-3.2-1B
# b2: 2.2-2.8 GiB over one copy's plan): the reference, and one more not yet explained (full
# SFT is not measured on a GPU either), so both are planned.
REFERENCE_COPIES = 2


def sequences(settings: TrainSettings) -> int:
    """Sequences one micro-batch puts through the model with gradients."""
    t = settings.training
    return t.micro_batch_size * SEQUENCES_PER_SAMPLE[t.objective]


def step_tokens(settings: TrainSettings) -> int:
    """Token positions one micro-batch computes with gradients (padded to the length)."""
    return sequences(settings) * settings.training.max_seq_length


def full_logits_bytes(model: ModelInfo, settings: TrainSettings) -> float | None:
    """The whole logits of an objective whose trainer materialises them, else None."""
    if settings.training.objective not in FULL_LOGITS_OBJECTIVES:
        return None
    return step_tokens(settings) * model.vocab_size * FULL_LOGITS_BYTES


def head_slack_bytes(settings: TrainSettings) -> float:
    """Cached blocks of DPO's chunked head beyond what it holds (DPO_HEAD_SLACK_GIB_PER_1K)."""
    if settings.training.objective != "dpo":
        return 0.0
    return DPO_HEAD_SLACK_GIB_PER_1K * settings.training.max_seq_length / 1024 * GIB


def reference_bytes(model: ModelInfo, settings: TrainSettings, word: int) -> float:
    """A second, frozen copy of the model in the compute dtype, where the objective keeps
    a reference under full fine-tuning (LoRA switches its adapter off instead)."""
    t = settings.training
    if t.method != "full" or t.objective not in REFERENCE_COPY_OBJECTIVES:
        return 0.0
    return REFERENCE_COPIES * model.params_total * word
