"""The live panel's preference line (DPO, ORPO, KTO): how often the chosen answer earns the
higher reward, and by how much, for the last training step's pairs and for the held-out
pairs. Hidden until a preference event arrives, so an SFT run's panel is unchanged."""

from __future__ import annotations

from textual.widgets import Static

from finetune_tui.engine.runs.events import Eval, Event, Finished, Step


class PreferenceLine(Static):
    """Two lines: the training pairs (every logged step), the held-out pairs (TRL's
    evaluation during the run, then the run's before -> after)."""

    def on_mount(self) -> None:
        self.display = False
        self.lines = ["", ""]

    def show(self, event: Event) -> None:
        line = preference_text(event)
        if line is None:
            return
        self.display = True
        self.lines[0 if isinstance(event, Step) else 1] = line
        self.update("\n".join(self.lines))


def preference_text(event: Event) -> str | None:
    """A preference step's, evaluation's or finished run's pairs in one line, else None."""
    if isinstance(event, Finished):
        s = event.summary
        if s.reward_margin is None:
            return None
        before, after = s.preference_accuracy_before, s.preference_accuracy_after
        start = f"{before:.1%} → " if before is not None else ""
        accuracy = f"accuracy [b]{start}{after:.1%}[/b], " if after is not None else ""
        return f"held-out pairs: {accuracy}reward margin [b]{s.reward_margin:+.3f}[/b]"
    if not isinstance(event, Step | Eval) or event.reward_margin is None:
        return None
    accuracy = event.reward_accuracy
    chosen = f"chosen ahead [b]{accuracy:.1%}[/b], " if accuracy is not None else ""
    where = "training pairs" if isinstance(event, Step) else f"held-out at step {event.step}"
    return f"{where}: {chosen}reward margin [b]{event.reward_margin:+.3f}[/b]"
