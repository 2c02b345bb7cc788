"""The real (non-padding) tokens a run trains on, counted the same way for every backend:
what tokens/s and the run's length check are read from."""

from __future__ import annotations

from collections import deque

PAIRED_MASKS = ("chosen_attention_mask", "rejected_attention_mask")


class TokenCounter:
    """Wraps the Trainer's collator and counts the real (non-padding) tokens it batches.

    TRL's own `num_tokens` log is missing under Unsloth, and micro-batch x sequence length
    counts padding: this count is the same for every backend (attention mask when there is
    one, the packed row's length for padding-free batches, as TRL counts).
    """

    def __init__(self, collate):
        self.collate = collate
        self.tokens = 0  # in the batches trained so far
        self.longest = 0  # the longest sample trained on: what the length limit really was
        # counted when batched, added when trained: a loader fetches one batch ahead, except
        # at an epoch's end (its last step would read 0 tokens/s, the next one double)
        self._batched: deque[int] = deque()

    def __call__(self, features):
        batch = self.collate(features)
        counted = _counted(batch) if hasattr(batch, "get") else None
        if counted is not None:
            tokens, longest = counted
            self._batched.append(tokens)
            self.longest = max(self.longest, longest)
        return batch

    def trained(self) -> None:
        """The oldest batched micro-batch went through a training step."""
        if self._batched:
            self.tokens += self._batched.popleft()


def _counted(batch) -> tuple[int, int] | None:
    """(real tokens, longest sample) of one collated batch, None when it says neither."""
    mask, ids = batch.get("attention_mask"), batch.get("input_ids")
    positions = batch.get("position_ids")
    pairs = [batch.get(k) for k in PAIRED_MASKS if batch.get(k) is not None]
    if mask is not None:
        return int(mask.sum()), int(mask.sum(-1).max())
    if pairs:  # ORPO's batches: each chosen and rejected sequence apart, with its prompt
        return sum(int(m.sum()) for m in pairs), max(int(m.sum(-1).max()) for m in pairs)
    if ids is not None:
        # padding-free rows hold several samples whose positions restart at 0
        longest = int(positions.max()) + 1 if positions is not None else ids.shape[-1]
        return int(ids.numel()), int(longest)
    return None


def count_training_tokens(trainer) -> TokenCounter:
    """Count the tokens of training batches only (evaluation reuses the same collator), each
    when its training step runs."""
    build, step = trainer.get_train_dataloader, trainer.training_step
    counter = TokenCounter(trainer.data_collator)

    def counted_train_dataloader(*args, **kwargs):
        plain, trainer.data_collator = trainer.data_collator, counter
        try:
            return build(*args, **kwargs)
        finally:
            trainer.data_collator = plain

    def counted_training_step(*args, **kwargs):
        counter.trained()
        return step(*args, **kwargs)

    trainer.get_train_dataloader = counted_train_dataloader
    trainer.training_step = counted_training_step
    return counter
