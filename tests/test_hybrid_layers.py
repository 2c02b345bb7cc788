"""Qwen3.5's hybrid layers (gated DeltaNet linear attention, gated full attention): the
plan counts their projections as transformers builds them and what each kind of layer keeps
for the backward as the installed transformers' code keeps it (plan/hybrid_bytes.py), and
the H100 rows of the 4-layer cuts of Qwen3.5-9B and -27B hold it (test_family_matrix.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from finetune_tui.engine.inspect.catalog import CATALOG
from finetune_tui.engine.inspect.library_tables import peft_moved_names
from finetune_tui.engine.inspect.models import inspect_config, inspect_model

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from layer_trace import saved_bytes_per_token  # noqa: E402

# a Qwen3.5 layer at its published head widths, narrowed to run in seconds on the CPU
SMALL = {
    "model_type": "qwen3_5_text",
    "hidden_size": 1024,
    "intermediate_size": 3072,
    "num_attention_heads": 16,
    "num_key_value_heads": 4,
    "head_dim": 256,
    "vocab_size": 256,
    "linear_num_key_heads": 16,
    "linear_num_value_heads": 32,
    "linear_key_head_dim": 128,
    "linear_value_head_dim": 128,
}
LLAMA = {k: v for k, v in SMALL.items() if not k.startswith("linear_")} | {"model_type": "llama"}


# Qwen3-Next's DeltaNet fuses its input projections; its first layer kept dense here so a
# Llama layer of the same MLP is the reference (its experts are the MoE terms' business)
NEXT = SMALL | {
    "model_type": "qwen3_next",
    "num_experts": 8,
    "num_experts_per_tok": 2,
    "moe_intermediate_size": 512,
    "shared_expert_intermediate_size": 512,
    "mlp_only_layers": [0],
}


@pytest.mark.parametrize("config", [SMALL, NEXT], ids=lambda c: c["model_type"])
def test_each_kind_of_layer_is_planned_as_transformers_code_keeps_it(config):
    """Bytes a token each kind of layer keeps beyond a Llama layer of its widths, traced
    on the installed transformers, against the plan's."""
    from finetune_tui.engine.plan.hybrid_bytes import full_layer_bytes, linear_layer_bytes

    llama = saved_bytes_per_token(LLAMA, 256, device="cpu")
    linear = saved_bytes_per_token(config, 256, device="cpu") - llama
    full = saved_bytes_per_token(config | {"full_attention_interval": 1}, 256, device="cpu")
    model = inspect_config("small", config | {"num_hidden_layers": 4})
    assert model.linear_attention.layers == 3
    assert linear_layer_bytes(model) == pytest.approx(linear, rel=0.02)
    assert full_layer_bytes(model) == pytest.approx(full - llama, rel=0.02)
    assert linear > 5 * (full - llama)  # the DeltaNet's fp32 chunks dominate


def test_the_checkpoint_is_counted_as_transformers_builds_it():
    """Every parameter and every nn.Linear of the text model AutoModelForCausalLM builds
    from the multimodal config (Qwen3_5ForCausalLM, Qwen3_5MoeForCausalLM: the vision tower
    is not loaded), and "auto" LoRA adapts both kinds of layer's projections, not the
    shared expert's one-output gate."""
    import torch
    from transformers import CONFIG_MAPPING, AutoModelForCausalLM

    models = ("Qwen/Qwen3.5-9B", "Qwen/Qwen3.5-27B", "Qwen/Qwen3.5-35B-A3B")
    for model_id in (*models, "Qwen/Qwen3-Next-80B-A3B-Instruct"):
        fields = dict(CATALOG[model_id])
        config = CONFIG_MAPPING[fields.pop("model_type")](**fields)
        with torch.device("meta"):
            built = AutoModelForCausalLM.from_config(config)
        info = inspect_model(model_id)
        assert type(built).__name__ == config.architectures[0].replace(
            "ForConditionalGeneration", "ForCausalLM"
        )
        assert info.params_total == sum(p.numel() for p in built.parameters())
        assert info.params_vision == 0
        linears = [
            m for n, m in built.named_modules() if type(m) is torch.nn.Linear and n != "lm_head"
        ]
        assert info.params_quantised == sum(m.weight.numel() for m in linears)
        names = {n.rsplit(".", 1)[-1] for n, m in built.named_modules() if m in linears}
        assert {linear.name for linear in info.linears} == names
        # not the one-output gate, nor names PEFT moves onto the experts (Qwen3-Next's MLP)
        moved = peft_moved_names(info.model_type)
        assert set(info.lora_targets) == names - {"shared_expert_gate"} - moved
    assert round(inspect_model("Qwen/Qwen3.5-27B").params_total / 1e9, 1) == 26.9


@pytest.mark.parametrize(
    ("change", "line"),
    [
        ({"layer_types": ["linear_attention"]}, "'layer_types' must list 4 entries"),
        ({"layer_types": [1, 2, 3, 4]}, "'layer_types' must list 4 entries"),
        ({"full_attention_interval": 0}, "'full_attention_interval' is 0; it must be at least 1"),
        ({"linear_num_value_heads": "32"}, "'linear_num_value_heads' is '32', not an integer"),
        ({"linear_num_key_heads": -16}, "'linear_num_key_heads' is -16; it must be at least 1"),
    ],
)
def test_a_malformed_hybrid_config_is_one_line_naming_its_field(cli, tmp_path, change, line):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(SMALL | {"num_hidden_layers": 4} | change))
    result = cli("plan", "--model", str(folder), "--gpu", "RTX 4090", "--dataset", "demo")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (message,) = result.stderr.strip().splitlines()
    assert message.startswith(f"finetune-tui: error: {folder}: config.json") and line in message


def test_legacy_layer_type_names_are_read_as_transformers_reads_them():
    legacy = ["mamba", "mamba", "mamba", "attention"]  # transformers' own remapping table
    model = inspect_config("old", SMALL | {"num_hidden_layers": 4, "layer_types": legacy})
    assert model.linear_attention.layers == 3


def test_the_time_counts_softmax_attention_in_its_layers_only_and_says_what_is_untimed():
    """A DeltaNet layer has no quadratic part; its torch loop over 64-token chunks was never
    timed, and the plan's basis says so (Llama-4's every-expert MoE too)."""
    from finetune_tui.engine.plan.throughput import flops_per_token, predicted_throughput
    from finetune_tui.engine.settings.preset import settings_from_overrides

    model = inspect_model("Qwen/Qwen3.5-9B")
    settings = settings_from_overrides(["training.max_seq_length=4096"])
    full = model.num_layers - model.linear_attention.layers
    assert full == 8
    attention = 12 * full * 4096 * model.num_heads * model.head_dim
    assert flops_per_token(model, settings) == 4 * model.params_active + attention
    basis = predicted_throughput(model, settings, None, "H100").basis
    assert "gated DeltaNet layers not timed" in basis
    scout = inspect_model("meta-llama/Llama-4-Scout-17B-16E")
    assert (
        "every expert on every token" in predicted_throughput(scout, settings, None, "H100").basis
    )
    llama = inspect_model("meta-llama/Llama-3.1-8B")
    assert "not timed" not in predicted_throughput(llama, settings, None, "H100").basis


@pytest.mark.parametrize("model_type", ["qwen3_5_text", "qwen3_next"])
def test_attention_biases_are_counted_on_the_full_attention_layers_only(model_type):
    """`attention_bias` puts biases on the full-attention projections (the gated query's
    doubled width included); the DeltaNet's projections never have one."""
    import torch
    from transformers import CONFIG_MAPPING, AutoModelForCausalLM

    config = SMALL | {"model_type": model_type, "num_hidden_layers": 4, "attention_bias": True}
    if model_type == "qwen3_next":
        config |= {k: v for k, v in NEXT.items() if k not in SMALL and k != "mlp_only_layers"}
    fields = dict(config)
    built_config = CONFIG_MAPPING[fields.pop("model_type")](**fields)
    with torch.device("meta"):
        built = AutoModelForCausalLM.from_config(built_config)
    assert inspect_config("biased", config).params_total == sum(
        p.numel() for p in built.parameters()
    )


def test_sizes_a_config_leaves_out_take_transformers_own_defaults():
    """A config.json without the DeltaNet's widths or the experts' width gets what the
    installed transformers' config class declares (read from its source, not copied here):
    the counts still match the model transformers builds."""
    import torch
    from transformers import CONFIG_MAPPING, AutoModelForCausalLM

    from finetune_tui.engine.inspect.library_tables import config_defaults

    assert config_defaults("qwen3_next")["moe_intermediate_size"] == 512
    bare = {k: v for k, v in NEXT.items() if not k.startswith("linear_")}
    bare = {k: v for k, v in bare.items() if k not in ("moe_intermediate_size", "mlp_only_layers")}
    fields = bare | {"num_hidden_layers": 4}
    built_config = CONFIG_MAPPING[fields.pop("model_type")](**fields)
    with torch.device("meta"):
        built = AutoModelForCausalLM.from_config(built_config)
    model = inspect_config("bare", bare | {"num_hidden_layers": 4})
    assert model.params_total == sum(p.numel() for p in built.parameters())
    assert model.linear_attention.value_heads == built_config.linear_num_value_heads
