"""How a micro-batch is filled: padded to its longest sample, grouped by length, or packed.

Real instruction data is mostly short with a long tail, so a padded micro-batch is often
mostly padding. Two remedies, both through the libraries' own switches:
- *grouped*: the Trainer's length-grouped sampler (`train_sampling_strategy=
  "group_by_length"`) puts samples of similar length together; nothing else changes;
- *packed*: TRL's best-fit-decreasing packing in padding-free form: the collator gives
  `position_ids` that restart at every sample and no attention mask. transformers 5 turns
  restarting positions into a block-diagonal mask for sdpa and eager attention, and
  flash-attention reads the boundaries itself, so packed samples never see each other
  (tests/test_batching.py checks the logits against unpacked samples). Without flash the
  mask is materialised ((micro-batch x length)^2 elements) and a packed step measured about
  twice as long as a full unpacked one; on short samples packing still wins 3x and more,
  because a QLoRA step costs about the same whatever its real tokens.
"""

from __future__ import annotations

PACKED_FILL = 0.97  # best-fit-decreasing leaves a few per cent of each bin empty
MASKING_KERNELS = ("sdpa", "eager")
# Measured on an H100 with Alpaca-like lengths (docs/BENCHMARKS.md, "Real sample lengths"):
# a QLoRA step takes about as long with short padded samples as with full ones (Liger b8:
# 0.65 s padded, 0.52 s grouped, 0.66 s full-length), so what decides speed is the real
# tokens a step carries. Grouping was 1.25x (Liger b8) and 2.15x (Unsloth b16) padding's
# speed: as if it won back 4 % (the lower) of the padding.
GROUPED_PADDING_WON = 0.04
MIN_GAIN = 1.10  # grouping and packing change the order or mixing of samples: only for this
# A packed step took about twice a full unpacked one (same micro-batch, same 1024 tokens):
# Liger + sdpa with its materialised block mask b8 1.93x (6,234 real tokens/s against
# 12,745 full-length), Unsloth b16 2.05x (4,936 against 10,409). Two rows: the cost is
# taken as a constant per attention path, not modelled per micro-batch.
PACKED_STEP_COST = {"masked": 1.93, "unsloth": 2.05, "flash": 1.0}
# ...and it kept 3 bytes per mask element for every layer whose activations are kept
# (49.78 GiB reserved against 43.40 predicted without it; one row, fitted).
MASK_BYTES_PER_LAYER = 3.0


def planned_attention(setting: str) -> str:
    """The kernel the planner assumes: 'auto' is planned as sdpa (flash is rarely installed)."""
    return "sdpa" if setting == "auto" else setting


def keeps_samples_apart(attn: str) -> bool:
    """Whether this attention kernel keeps packed samples apart (see the module doc)."""
    return "flash" in attn or attn in MASKING_KERNELS


def clipped_mean(lengths: list[int], max_length: int) -> float:
    """Mean sample length once cut at max_length: the real tokens a sample brings."""
    return sum(min(n, max_length) for n in lengths) / len(lengths) if lengths else max_length


def packed_step_cost(attn: str, backend: str) -> float:
    """How much longer a packed step takes than a full unpacked one (PACKED_STEP_COST)."""
    if "flash" in attn:
        return PACKED_STEP_COST["flash"]
    return PACKED_STEP_COST["unsloth" if backend == "unsloth" else "masked"]


def mask_bytes(micro_batch: int, length: int, attn: str, backend: str, kept_layers: int) -> float:
    """The block mask a packed micro-batch needs without flash attention: one boolean
    copy, and MASK_BYTES_PER_LAYER for each layer that keeps its activations."""
    if "flash" in attn or backend == "unsloth":
        return 0.0
    return float(micro_batch * length) ** 2 * (1 + MASK_BYTES_PER_LAYER * kept_layers)
