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
  mask is materialised: (micro-batch x length)^2 bytes, and attention runs over the whole
  flattened micro-batch instead of each sample.
"""

from __future__ import annotations

PACKED_FILL = 0.97  # best-fit-decreasing leaves a few per cent of each bin empty
GROUPED_FILL_LOSS = 0.97  # the sampler sorts within random megabatches, not globally
MASKING_KERNELS = ("sdpa", "eager")


def keeps_samples_apart(attn: str) -> bool:
    """Whether this attention kernel keeps packed samples apart (see the module doc)."""
    return "flash" in attn or attn in MASKING_KERNELS


def padded_fill(lengths: list[int], micro_batch: int, max_length: int) -> float:
    """Expected real / padded tokens of a random micro-batch padded to its longest sample.

    `lengths` are sorted token lengths, cut here at max_length; the longest of
    `micro_batch` random draws has P(max <= l_k) = (k / n) ** micro_batch.
    """
    lengths = [min(n, max_length) for n in lengths]
    if not lengths:
        return 1.0
    n = len(lengths)
    expected_max = sum(
        length * ((k / n) ** micro_batch - ((k - 1) / n) ** micro_batch)
        for k, length in enumerate(lengths, start=1)
    )
    return (sum(lengths) / n) / expected_max


def grouped_fill(lengths: list[int], micro_batch: int, max_length: int) -> float:
    """Real / padded tokens when micro-batches hold neighbours in length order."""
    lengths = [min(n, max_length) for n in lengths]
    if not lengths:
        return 1.0
    padded = sum(
        max(lengths[i : i + micro_batch]) * len(lengths[i : i + micro_batch])
        for i in range(0, len(lengths), micro_batch)
    )
    return sum(lengths) / padded * GROUPED_FILL_LOSS


def clipped_mean(lengths: list[int], max_length: int) -> float:
    """Mean sample length once cut at max_length: the real tokens a sample brings."""
    return sum(min(n, max_length) for n in lengths) / len(lengths) if lengths else max_length


def attention_share(hidden: int, params_per_layer: float, length: int) -> float:
    """Attention's forward FLOPs per token (4 x context x hidden) against the layer's
    matmuls (2 x its parameters), at this context length."""
    return 4 * length * hidden / max(2 * params_per_layer, 1.0)


def packed_attention_cost(share: float, micro_batch: int, attn: str) -> float:
    """How much slower a packed micro-batch runs than separate samples: a materialised
    mask makes attention span all `micro_batch` flattened samples; flash does not."""
    if "flash" in attn:
        return 1.0
    return (1 + share * micro_batch) / (1 + share)


def mask_bytes(micro_batch: int, length: int, attn: str) -> float:
    """The boolean block mask a packed micro-batch needs without flash attention."""
    return 0.0 if "flash" in attn else float(micro_batch * length) ** 2
