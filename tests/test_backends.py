"""Backend selection and refusals on a machine without CUDA; Liger patch verification."""

from __future__ import annotations

import pytest
from conftest import run_python

from finetune_tui.engine.common.errors import InputError
from finetune_tui.engine.settings.schema import TrainSettings
from finetune_tui.engine.train.loading import Device, check_backend_support, lora_target_modules

CPU = Device("cpu", "CPU", "fp32")


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"quantization": {"mode": "nf4"}}, "quantization.mode: nf4 needs an NVIDIA GPU"),
        ({"quantization": {"mode": "8bit"}}, "quantization.mode: 8bit needs an NVIDIA GPU"),
        (
            {"training": {"optimizer": "adamw_8bit"}},
            "training.optimizer: adamw_8bit needs an NVIDIA GPU",
        ),
        ({"memory": {"backend": "liger"}}, "memory.backend: liger needs an NVIDIA GPU"),
        ({"memory": {"backend": "unsloth"}}, "memory.backend: unsloth needs an NVIDIA GPU"),
    ],
)
def test_gpu_only_options_are_refused_on_cpu_with_the_reason(update, message):
    settings = TrainSettings.model_validate(update)
    with pytest.raises(InputError, match=message):
        check_backend_support(settings, CPU)


def test_unsloth_not_installed_is_named_even_on_cuda(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "unsloth" else real(name, *a)
    )
    settings = TrainSettings.model_validate({"memory": {"backend": "unsloth"}})
    with pytest.raises(InputError, match="unsloth is not installed"):
        check_backend_support(settings, Device("cuda", "H100", "bf16"))


def test_plain_hf_runs_on_cpu():
    check_backend_support(TrainSettings(), CPU)


@pytest.fixture(scope="module")
def demo_model():
    from transformers import AutoModelForCausalLM

    from finetune_tui.engine.common.demo import ensure_demo_model

    return AutoModelForCausalLM.from_pretrained(ensure_demo_model())


def test_lora_targets_come_from_the_model(demo_model):
    targets = lora_target_modules(demo_model, TrainSettings())
    assert targets == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    pinned = TrainSettings.model_validate({"lora": {"target_modules": ["q_proj", "v_proj"]}})
    assert lora_target_modules(demo_model, pinned) == ["q_proj", "v_proj"]


def test_gpt_neox_targets_are_its_own_names():
    from transformers import AutoModelForCausalLM, GPTNeoXConfig

    config = GPTNeoXConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        vocab_size=300,
    )
    model = AutoModelForCausalLM.from_config(config)
    assert lora_target_modules(model, TrainSettings()) == [
        "dense",
        "dense_4h_to_h",
        "dense_h_to_4h",
        "query_key_value",
    ]


def test_liger_patch_is_verified_on_the_instance_and_a_left_over_is_detected():
    """In a subprocess: Liger also patches transformers' module-level classes, which would
    leak into every later training in this test process (and fail on a CPU). There, the
    patch is verified on the instance it was applied to; and a second, plain model in the
    same process (a second run in the TUI) is found still carrying Liger's classes. A
    mixture of experts gets Liger's fused experts, whose kernels tune themselves on first
    use: their timings are kept (TRITON_CACHE_AUTOTUNING, set before Liger is imported)."""
    code = (
        "import os, sys\n"
        "from transformers import AutoModelForCausalLM, MixtralConfig\n"
        "from finetune_tui.engine.train.backends import apply_liger, liger_leak_warning, "
        "liger_patched_modules, tunes_on_first_use\n"
        "from finetune_tui.engine.common.demo import ensure_demo_model\n"
        "os.environ.pop('TRITON_CACHE_AUTOTUNING', None)\n"
        "model = AutoModelForCausalLM.from_pretrained(ensure_demo_model())\n"
        "assert liger_patched_modules(model) == []\n"
        "patched = apply_liger(model)\n"
        "assert 'LlamaRMSNorm' in patched and 'LlamaMLP' in patched, patched\n"
        "assert os.environ['TRITON_CACHE_AUTOTUNING'] == '1' and not tunes_on_first_use(model)\n"
        "moe = AutoModelForCausalLM.from_config(MixtralConfig(hidden_size=32, "
        "intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, "
        "num_key_value_heads=1, num_local_experts=4, vocab_size=64))\n"
        "apply_liger(moe)\n"
        "assert tunes_on_first_use(moe)\n"
        "plain = AutoModelForCausalLM.from_pretrained(ensure_demo_model())\n"
        "print(liger_leak_warning(liger_patched_modules(plain)))\n"
    )
    result = run_python(code)
    assert "Liger kernels from an earlier run in this process are still active on" in (
        result.stdout
    )
    assert "LigerRMSNorm" in result.stdout  # the class itself was replaced module-wide


def test_liger_refuses_an_architecture_it_has_no_kernels_for():
    from transformers import AutoModelForCausalLM, GPTNeoXConfig

    from finetune_tui.engine.train.backends import apply_liger

    model = AutoModelForCausalLM.from_config(
        GPTNeoXConfig(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            vocab_size=100,
        )
    )
    with pytest.raises(InputError, match="Liger has no kernels for the gpt_neox"):
        apply_liger(model)


def test_a_backend_changing_trainer_arguments_or_the_template_is_reported():
    """Unsloth's patched trainer may adjust arguments silently; the run says so."""
    from transformers import AutoTokenizer
    from trl import SFTConfig

    from finetune_tui.engine.common.demo import ensure_demo_model
    from finetune_tui.engine.train.callbacks import DriftCallback

    tokenizer = AutoTokenizer.from_pretrained(ensure_demo_model())
    asked = {"gradient_accumulation_steps": 4, "packing": True, "max_length": 512}
    events = []
    drift = DriftCallback(events.append, asked, tokenizer.chat_template)
    unchanged = SFTConfig(output_dir="unused", use_cpu=True, bf16=False, **asked)
    drift.on_train_begin(unchanged, None, None, processing_class=tokenizer)
    assert drift.changes == [] and events == []

    adjusted = SFTConfig(
        output_dir="unused", use_cpu=True, bf16=False, **{**asked, "gradient_accumulation_steps": 1}
    )
    adjusted.packing = False
    tokenizer.chat_template = "{{ messages }}"
    drift.on_train_begin(adjusted, None, None, processing_class=tokenizer)
    assert drift.changes == [
        "gradient_accumulation_steps: asked 4, training with 1",
        "packing: asked True, training with False",
        "chat template: replaced",
    ]
    assert [e.level for e in events] == ["warning"] * 3
    assert events[0].message.startswith("changed by the backend: gradient_accumulation_steps")
