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
  mask is materialised ((micro-batch x length)^2 elements) and attention computes the
  whole row's square (throughput.packed_cost).
A padded or grouped micro-batch is padded to its longest sample (TRL's collator), and a
step costs a fixed part whatever its tokens (throughput.step_shares): on short
samples, grouping wins back most of the padding, packing most of the fixed part.
"""

from __future__ import annotations

import bisect

PACKED_FILL = 0.97  # best-fit-decreasing leaves a few per cent of each bin empty
GROUPED_MEGABATCHES = 50  # transformers' length-grouped sampler sorts 50 micro-batches at once
MIN_GAIN = 1.10  # grouping and packing change the order or mixing of samples: only for this
# Unsloth's packed step over its full unpacked one (same micro-batch and length), measured
# on 12-step runs (docs/BENCHMARKS.md, "Real sample lengths"; full-length speed from the
# planner's curve through the measured b16, 10,409 tokens/s): b4 3.37x, b8 2.26x, b16 2.03x,
# b32 2.71x: U-shaped, about a second a step more than the row's square accounts for on
# small micro-batches (Unsloth compiles each new shape). Fitted on b8..b32 as a + s*b + c/b.
# No Unsloth packed run has been run whole; Liger's (throughput.packed_cost) took no such
# extra.
UNSLOTH_PACKED_SHAPE = (0.21, 0.066, 12.2)  # a, s, c
UNSLOTH_PACKED_AT_16 = 2.03
# The mask's memory: Liger + sdpa kept 3 bytes per mask element for every layer whose
# activations are kept (49.78 GiB reserved against 43.40 predicted without it; one row);
# Unsloth, which recomputes every layer, held 1.8 (b16) and 3.8 (b32) bytes per element
# more than planned: 3.5 taken (b16 over-predicted by 4 %, b32 under by 1.5 %).
MASK_BYTES_PER_LAYER = 3.0
UNSLOTH_MASK_BYTES = 3.5


def clipped_mean(lengths: list[int], max_length: int) -> float:
    """Mean sample length once cut at max_length: the real tokens a sample brings."""
    return sum(min(n, max_length) for n in lengths) / len(lengths) if lengths else max_length


def padded_length(
    lengths: list[int], max_length: int, micro_batch: int, grouped: bool, records: int
) -> float:
    """Mean padded length of a sample: TRL's collator pads a micro-batch to its longest
    sample. Padded: the expected longest of `micro_batch` random samples. Grouped: the
    Trainer's sampler sorts megabatches of up to 50 micro-batches (`records` decides how
    many fit), so the k-th micro-batch of a megabatch is as long as its quantile 1 - k/50.
    `lengths`: an even sample of the dataset's (TokenStats.sample), in any order."""
    ordered = sorted(min(n, max_length) for n in lengths)
    if not ordered or micro_batch <= 1:
        return clipped_mean(lengths, max_length)
    n = len(ordered)
    if grouped:
        tops = _grouped_tops(ordered, micro_batch, records)
        return max(sum(tops) / len(tops), clipped_mean(ordered, max_length))
    # P(longest <= x_k) = (k / n) ** micro_batch over the sample's values x_1 <= ... <= x_n
    return sum(
        x * ((k / n) ** micro_batch - ((k - 1) / n) ** micro_batch)
        for k, x in enumerate(ordered, start=1)
    )


def full_length_share(
    lengths: list[int], max_length: int, micro_batch: int, grouped: bool, records: int
) -> float:
    """The share of micro-batches padded to max_length itself, as padded_length fills them:
    those steps all have one shape, a full-length step's (samples cut at the length: long
    documents), which the speed model's full-length factors measured; the others vary."""
    ordered = sorted(min(n, max_length) for n in lengths)
    if not ordered:
        return 1.0
    short = sum(n < max_length for n in ordered) / len(ordered)
    if micro_batch <= 1:
        return 1 - short
    if grouped:
        tops = _grouped_tops(ordered, micro_batch, records)
        return sum(top >= max_length for top in tops) / len(tops)
    return 1 - short**micro_batch


def _grouped_tops(ordered: list[int], micro_batch: int, records: int) -> list[int]:
    """The longest sample of each micro-batch of a sorted megabatch (their quantiles)."""
    n = len(ordered)
    mult = max(1, min(records // (micro_batch * 4), GROUPED_MEGABATCHES))
    return [ordered[min(n - 1, int((1 - k / mult) * n))] for k in range(mult)]


def unsloth_packed_cost(micro_batch: int) -> float:
    """Unsloth's packed step over a full unpacked one, along its measured shape."""
    a, s, c = UNSLOTH_PACKED_SHAPE
    shape = (a + s * micro_batch + c / micro_batch) / (a + s * 16 + c / 16)
    return UNSLOTH_PACKED_AT_16 * shape


def packed_fill(sample: list[int], length: int) -> float:
    """Real tokens over the bins' room when best-fit-decreasing packs these lengths (clipped
    to `length`) into bins of `length`: at most PACKED_FILL; samples longer than half the
    length share no bin (uniform 300-token samples fill 384-token bins to 78 %)."""
    if not sample:
        return PACKED_FILL
    room: list[int] = []  # each bin's space left, kept sorted: the best fit is a bisection
    for size in sorted((min(x, length) for x in sample), reverse=True):
        best = bisect.bisect_left(room, size)  # the tightest bin it fits, or a new one
        left = (room.pop(best) if best < len(room) else length) - size
        bisect.insort(room, left)
    used = len(room) * length - sum(room)
    return min(PACKED_FILL, used / (len(room) * length))


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
