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
preference-h200-2026-12-05.jsonl under the default allocator, preference-expandable-h200-
2026-12-05.jsonl under expandable segments, which preference runs now set; docs/
BENCHMARKS.md, "Preference objectives").
"""

from __future__ import annotations

from ..inspect.models import ModelInfo
from ..settings.schema import TrainSettings

SEQUENCES_PER_SAMPLE = {"sft": 1, "dpo": 2, "orpo": 2, "kto": 1}
FULL_LOGITS_OBJECTIVES = {"orpo"}
# Bytes per token and vocabulary entry of ORPO's whole logits. Read from the code: bf16
# logits (2), fp32 log-softmax rows (4), the chosen half's fp32 cross-entropy (2 a token of
# the pair), the logits' bf16 gradient (2) = 10, which the rows' peak *allocated* matched
# (-1.5 to +2 %). Preference runs train under expandable segments (recipe.trainer.
# planned_allocator), which keep about one bf16 copy of them cached: 2.1-2.3 bytes measured
# on Llama-3.2-1B at b2 and b4, 2.08 on Gemma-3-1B; the default allocator kept 2.6-7.4,
# depending on the batch (H200 2026-12-05, docs/BENCHMARKS.md). Beyond the fragmentation
# every plan carries (4 % of what is held) that is 1.5 bytes: fitted on Llama's two rows.
FULL_LOGITS_BYTES = 10.0
FULL_LOGITS_CACHED_BYTES = 1.5
# Final-logit softcapping (Gemma-2: logits / cap, tanh, x cap) saves tanh's bf16 output for
# the backward pass (read from the code) and leaves one more copy cached (Gemma-2-2B ORPO
# b4: +1.53 GiB allocated, +1.9 cached over Gemma-3's pattern, 0.98 G entries; fitted).
SOFTCAP_LOGITS_BYTES = 4.0
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
    per_entry = FULL_LOGITS_BYTES + FULL_LOGITS_CACHED_BYTES
    per_entry += SOFTCAP_LOGITS_BYTES if model.logit_softcapping else 0.0
    return step_tokens(settings) * model.vocab_size * per_entry


def reference_bytes(model: ModelInfo, settings: TrainSettings, word: int) -> float:
    """A second, frozen copy of the model in the compute dtype, where the objective keeps
    a reference under full fine-tuning (LoRA switches its adapter off instead)."""
    t = settings.training
    if t.method != "full" or t.objective not in REFERENCE_COPY_OBJECTIVES:
        return 0.0
    return REFERENCE_COPIES * model.params_total * word
