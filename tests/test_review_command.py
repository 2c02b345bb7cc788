"""The Review screen's "same run headless" command trains exactly the wizard's settings."""

from __future__ import annotations

import shlex

import pytest

from finetune_tui.engine.settings.preset import settings_from_arguments, with_changes
from finetune_tui.engine.settings.schema import TrainSettings
from finetune_tui.tui.screens.review import headless_command

CHANGES = [
    {},  # the schema's defaults: the command printed the demo preset's r=32, lr 3e-3, 4 epochs
    {"lora.target_modules": ["q_proj", "v_proj"], "memory.gradient_checkpointing": "on"},
    {"output.run_name": "it's a run", "training.max_steps": 7, "output.report_to": []},
]


@pytest.mark.parametrize("changes", CHANGES)
def test_the_printed_command_reproduces_the_settings(changes):
    settings = with_changes(TrainSettings(), changes) if changes else TrainSettings()
    args = shlex.split(headless_command(settings))
    assert args[:2] == ["finetune-tui", "--preset"]
    overrides = [args[i + 1] for i, arg in enumerate(args) if arg == "--set"]
    again = settings_from_arguments(args[2], overrides, absolute=False)
    assert again.differences(settings) == {}
