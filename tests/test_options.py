"""One table per option family: the schema, the planner and the loader read the same one."""

from __future__ import annotations

import typing

import pytest

from finetune_tui.engine import options
from finetune_tui.engine.errors import InputError
from finetune_tui.engine.hardware import Hardware
from finetune_tui.engine.loading import Device, check_backend_support
from finetune_tui.engine.memory import lora_state_bytes
from finetune_tui.engine.models import inspect_model
from finetune_tui.engine.preset import settings_from_overrides
from finetune_tui.engine.settings import Backend, Optimizer, Quantization
from finetune_tui.engine.strategy import unavailable_options
from finetune_tui.engine.trainer_config import sft_config_kwargs


def test_the_schema_offers_exactly_the_tables_values():
    assert typing.get_args(Optimizer) == tuple(options.OPTIMIZERS)
    assert typing.get_args(Quantization) == tuple(options.QUANTIZATIONS)
    assert typing.get_args(Backend) == tuple(options.BACKENDS)


@pytest.mark.parametrize("option", options.cuda_only())
def test_what_needs_cuda_is_refused_on_a_cpu_by_plan_and_runner_alike(option):
    cpu = Device("cpu", "CPU", "fp32")
    settings = settings_from_overrides([option])
    with pytest.raises(InputError) as refused:
        check_backend_support(settings, cpu)
    planned = unavailable_options(Hardware([]), inspect_model("demo"))
    assert str(refused.value) == f"{option.replace('=', ': ')} {planned[option]}"


@pytest.mark.parametrize("name", list(options.OPTIMIZERS))
def test_an_optimizer_is_named_and_sized_from_its_table(name):
    settings = settings_from_overrides([f"training.optimizer={name}"])
    info = options.OPTIMIZERS[name]
    kwargs = sft_config_kwargs(settings, Device("cuda", "GPU", "bf16"), has_eval=False)
    assert kwargs["optim"] == info.hf_name
    on_device, paged = lora_state_bytes(inspect_model("demo"), settings)
    assert (paged > 0) == info.paged
