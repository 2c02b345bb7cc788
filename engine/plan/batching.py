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
  mask is materialised ((micro-batch x length)^2 elements) and a packed step measured 1.9x
  to 3.4x as long as a full unpacked one, least near micro-batch 16; on short
  samples packing still wins 3x and more, because a QLoRA step costs about the same
  whatever its real tokens.
"""

from __future__ import annotations

PACKED_FILL = 0.97  # best-fit-decreasing leaves a few per cent of each bin empty
# Measured on an H100 with Alpaca-like lengths (docs/BENCHMARKS.md, "Real sample lengths"):
# a QLoRA step takes about as long with short padded samples as with full ones (Liger b8:
# 0.65 s padded, 0.52 s grouped, 0.66 s full-length), so what decides speed is the real
# tokens a step carries. Grouping was 1.25x (Liger b8) and 2.15x (Unsloth b16) padding's
# speed: as if it won back 4 % (the lower) of the padding.
GROUPED_PADDING_WON = 0.04
MIN_GAIN = 1.10  # grouping and packing change the order or mixing of samples: only for this
# Without flash attention a packed micro-batch is one row of micro-batch x length tokens
# under a materialised block mask. Its step's cost over a full unpacked one (same
# micro-batch, same length) is U-shaped in the micro-batch: a fixed extra per step weighs
# on small batches, the masked attention's square on large ones. Measured with Unsloth
# (docs/BENCHMARKS.md, "Real sample lengths"; full-length speed from the planner's
# curve through the measured b16, 10,409 tokens/s): b4 3.37x, b8 2.26x, b16 2.03x, b32
# 2.71x. Fitted on b8..b32 as a + s*b + c/b (b4 then reads 3.51x). Liger + sdpa measured
# 1.93x at b8, one row: the same shape, scaled.
PACKED_COST_SHAPE = (0.21, 0.066, 12.2)  # a, s, c
PACKED_STEP_COST = {"masked": 1.73, "unsloth": 2.03, "flash": 1.0}  # at micro-batch 16
# The mask's memory: Liger + sdpa kept 3 bytes per mask element for every layer whose
# activations are kept (49.78 GiB reserved against 43.40 predicted without it; one row);
# Unsloth, which recomputes every layer, held 1.8 (b16) and 3.8 (b32) bytes per element
# more than planned: 3.5 taken (b16 over-predicted by 4 %, b32 under by 1.5 %).
MASK_BYTES_PER_LAYER = 3.0
UNSLOTH_MASK_BYTES = 3.5


def clipped_mean(lengths: list[int], max_length: int) -> float:
    """Mean sample length once cut at max_length: the real tokens a sample brings."""
    return sum(min(n, max_length) for n in lengths) / len(lengths) if lengths else max_length


def packed_step_cost(attn: str, backend: str, micro_batch: int) -> float:
    """How much longer a packed step takes than a full unpacked one: the attention path's
    cost at micro-batch 16, along the measured shape (see PACKED_COST_SHAPE)."""
    if "flash" in attn:
        return PACKED_STEP_COST["flash"]
    a, s, c = PACKED_COST_SHAPE
    shape = (a + s * micro_batch + c / micro_batch) / (a + s * 16 + c / 16)
    return PACKED_STEP_COST["unsloth" if backend == "unsloth" else "masked"] * shape


def mask_bytes(micro_batch: int, length: int, attn: str, backend: str, kept_layers: int) -> float:
    """The block mask a packed micro-batch needs without flash attention: one boolean
    copy, and MASK_BYTES_PER_LAYER for each layer that keeps its activations (Unsloth:
    UNSLOTH_MASK_BYTES, measured)."""
    if "flash" in attn:
        return 0.0
    per_element = (
        UNSLOTH_MASK_BYTES if backend == "unsloth" else 1 + MASK_BYTES_PER_LAYER * kept_layers
    )
    return float(micro_batch * length) ** 2 * per_element
