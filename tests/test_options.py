"""One table per option family: the schema, the planner and the loader read the same one."""

from __future__ import annotations

import pytest

from finetune_tui.engine.common.errors import InputError
from finetune_tui.engine.inspect.hardware import Hardware
from finetune_tui.engine.inspect.models import inspect_model
from finetune_tui.engine.plan.candidates import unavailable_options
from finetune_tui.engine.plan.memory import lora_state_bytes
from finetune_tui.engine.settings import options
from finetune_tui.engine.settings.preset import settings_from_overrides
from finetune_tui.engine.train.loading import Device, check_backend_support
from finetune_tui.engine.train.trainer_config import sft_config_kwargs


@pytest.mark.parametrize("name", list(options.OPTIMIZERS))
def test_an_optimizer_row_states_what_transformers_builds_for_it(name, tmp_path):
    """The table against the library's own facts: the optimizer transformers makes for the
    row's name, its state precision (AdamW keeps two moments), paging, and whether it is
    bitsandbytes' (CUDA kernels)."""
    from transformers import Trainer, TrainingArguments

    info = options.OPTIMIZERS[name]
    arguments = TrainingArguments(output_dir=str(tmp_path), optim=info.hf_name, use_cpu=True)
    optimizer, kwargs = Trainer.get_optimizer_cls_and_kwargs(arguments)
    assert optimizer.__name__ == "AdamW"
    assert info.state_bytes == 2 * kwargs.get("optim_bits", 32) / 8
    assert info.paged == kwargs.get("is_paged", False)
    assert info.needs_cuda == optimizer.__module__.startswith("bitsandbytes.")


@pytest.mark.parametrize("mode", list(options.QUANTIZATIONS))
def test_a_quantization_row_is_a_mode_bitsandbytes_knows(mode):
    """The loader's config for each row names a bitsandbytes data type that exists; only
    'none' loads without bitsandbytes (whose kernels need CUDA)."""
    import bitsandbytes.functional

    from finetune_tui.engine.recipe.model import quantization_config

    config = quantization_config(mode, double_quant=True, dtype="bf16")
    assert (config is not None) == options.QUANTIZATIONS[mode].needs_cuda
    if config is not None and config.load_in_4bit:
        assert config.bnb_4bit_quant_type == mode
        bitsandbytes.functional.get_4bit_type(mode, device="cpu")  # raises for unknown types
    elif config is not None:
        assert config.load_in_8bit and mode == "8bit"


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
