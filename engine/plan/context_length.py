"""A sequence longer than the model's context: its positions past max_position_embeddings
were never trained (rotary or learned), so the run goes on but the model may not learn
them. The advisor stays inside the context; a length set past it is said, in the plan and
as the run starts."""

from __future__ import annotations


def past_context(length: int, context: int | None) -> str | None:
    """The warning for a max_seq_length past the model's context, or None."""
    if not context or length <= context:
        return None
    return (
        f"training.max_seq_length {length:,} is past the model's context of {context:,} "
        "tokens (max_position_embeddings): positions beyond it were never trained"
    )
