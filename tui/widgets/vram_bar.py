"""The predicted-VRAM bar: breakdown against the card's limit, fits / does not fit."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

PARTS = (
    ("base_weights_gib", "weights", "dodger_blue1"),
    ("lora_gib", "LoRA+opt", "magenta"),
    ("gradients_optimizer_gib", "grads+opt", "medium_purple"),
    ("distributed_gib", "gathered", "cyan"),
    ("activations_gib", "activations", "dark_orange"),
    ("logits_gib", "logits", "yellow"),
    ("overhead_gib", "overhead", "grey50"),
)

# full fine-tuning's and several GPUs' parts: absent from a one-GPU LoRA plan, not zero
ONLY_WHEN_USED = {"gradients_optimizer_gib", "distributed_gib"}


class VramBar(Static):
    """Renders a MemoryBreakdown-like object (or a message when there is no prediction)."""

    def show(self, breakdown, budget_gib: float | None, fits: bool | None, width: int = 60) -> None:
        if breakdown is None:
            self.update(Text("VRAM prediction not available for these settings", style="dim"))
            return
        total = breakdown.reserved_gib
        scale = max(breakdown.nvidia_smi_gib, budget_gib or 0.0, 1e-9)  # the parts sum to it
        bar = Text()
        legend = Text()
        for attr, label, colour in PARTS:
            value = getattr(breakdown, attr, 0.0) or 0.0
            if attr in ONLY_WHEN_USED and not value:
                continue
            cells = int(round(value / scale * width))
            bar.append("█" * cells, style=colour)
            legend.append(f"■ {label} {value:.2f}  ", style=colour)
        bar.append("░" * max(0, width - len(bar.plain)), style="grey23")
        head = Text(
            f"predicted peak {total:.2f} GiB reserved "
            f"({breakdown.nvidia_smi_gib:.2f} GiB in nvidia-smi)",
            style="bold",
        )
        if budget_gib is None:  # no GPU (a card too small for anything has a budget of 0)
            head.append("  CPU only: plan for a GPU on the Hardware screen", style="dim")
        else:
            head.append(f" / {budget_gib:.1f} GiB usable  ")
            head.append(
                "fits" if fits else "DOES NOT FIT", style="bold green" if fits else "bold red"
            )
        self.update(Text("\n").join([head, bar, legend]))
