"""Which attention kernels keep packed samples apart: a fact the schema validates
(packing without one is refused) and the planner prices."""

from __future__ import annotations

MASKING_KERNELS = ("sdpa", "eager")


def planned_attention(setting: str) -> str:
    """The kernel the planner assumes: 'auto' is planned as sdpa (flash is rarely installed)."""
    return "sdpa" if setting == "auto" else setting


def keeps_samples_apart(attn: str) -> bool:
    """Whether this attention kernel keeps packed samples apart (see the module doc)."""
    return "flash" in attn or attn in MASKING_KERNELS
