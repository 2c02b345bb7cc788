"""Unsloth's rule (one GPU, one process, LoRA only) is one function: every place that
applies it says the same words."""

from __future__ import annotations

import pytest

from finetune_tui.engine.common.errors import SettingsError
from finetune_tui.engine.inspect.hardware import GPU, Hardware, simulated_hardware
from finetune_tui.engine.inspect.models import inspect_model
from finetune_tui.engine.plan.advisor import advise
from finetune_tui.engine.plan.gpu_count import on_layout, plans_per_strategy
from finetune_tui.engine.settings.options import UNSLOTH_RULE, unsloth_refusal
from finetune_tui.engine.settings.preset import settings_from_overrides


def test_the_rule_itself():
    assert unsloth_refusal() is None
    assert unsloth_refusal("lora", 1, launched=False) is None
    assert unsloth_refusal("full") == UNSLOTH_RULE
    assert unsloth_refusal("lora", gpus=2) == UNSLOTH_RULE
    assert unsloth_refusal("lora", 1, launched=True) == UNSLOTH_RULE


@pytest.mark.parametrize(
    "overrides",
    [
        ["training.method=full"],
        ["distributed.strategy=ddp", "distributed.processes=2"],
        ["distributed.strategy=deepspeed", "distributed.cpu_offload=true"],  # one launched GPU
    ],
)
def test_settings_refuse_with_the_rules_words(overrides):
    with pytest.raises(SettingsError) as error:
        settings_from_overrides(["memory.backend=unsloth", *overrides])
    assert f"memory.backend: {UNSLOTH_RULE}" in str(error.value)


def test_the_advisor_and_the_layouts_apply_the_same_rule():
    llama = inspect_model("meta-llama/Llama-3.1-8B")
    two = Hardware([GPU(i, "H100", 80, 80, (9, 0), True, None, None) for i in range(2)])
    plan = advise(two, llama, settings_from_overrides(["quantization.mode=nf4"]))
    assert plan.unavailable["memory.backend=unsloth"] == UNSLOTH_RULE
    full = advise(
        simulated_hardware("H100"), llama, settings_from_overrides(["training.method=full"])
    )
    assert full.settings.memory.backend != "unsloth"
    unsloth = settings_from_overrides(
        ["memory.backend=unsloth", "memory.gradient_checkpointing=unsloth"]
    )
    launched = on_layout(unsloth, "deepspeed", True, 1, 1)
    assert launched.memory.backend == "hf" and launched.memory.gradient_checkpointing == "on"
    assert on_layout(unsloth, "none", False, 1, 1).memory.backend == "unsloth"
    pinned = {"memory.backend"}
    hardware = simulated_hardware("H100")
    assert plans_per_strategy(hardware, llama, unsloth, 2, fixed=pinned) == []
    assert len(plans_per_strategy(hardware, llama, unsloth, 1, fixed=pinned)) == 1


def test_plan_gpus_says_the_rule(cli):
    result = cli(
        "plan", "--model", "demo", "--vram", "24", "--gpus", "2", "--set", "memory.backend=unsloth"
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().endswith(f"memory.backend unsloth (pinned): {UNSLOTH_RULE}")
