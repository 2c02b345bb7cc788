"""Text from outside the program (paths, names, messages, file contents) as the wizard
shows it: it can neither style the screen (Rich markup) nor move the terminal's cursor
(control characters), the same rule the headless lines follow."""

from __future__ import annotations

from finetune_tui.engine.runs.event_text import printable


def shown(text: object) -> str:
    """One line of outside text, safe inside Textual markup: every `[` is escaped, not
    only the ones that look like tags (`[31m"` is a markup error to Textual)."""
    return printable(text).replace("[", "\\[")


def shown_lines(text: str) -> str:
    """Several lines of outside text: each line as `shown`, the line breaks kept."""
    return "\n".join(shown(line) for line in str(text).split("\n"))
