"""Llama-4 as transformers 5.17 runs it: every token through every expert (Llama4TextMoe),
a router that subclasses nn.Linear (16-bit under NF4, never adapted), a shared expert as wide
as one expert, dense layers of their own width where MoE layers are interleaved. The plan
counts it as built and keeps what one layer keeps as the installed code keeps it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from finetune_tui.engine.inspect.catalog import CATALOG
from finetune_tui.engine.inspect.models import inspect_config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from layer_trace import saved_bytes_per_token  # noqa: E402

SCOUT = "meta-llama/Llama-4-Scout-17B-16E"


def test_a_layer_keeps_every_experts_input_as_planned():
    from finetune_tui.engine.plan.every_expert_bytes import every_expert_bytes_per_token

    small = {
        "model_type": "llama4_text",
        "hidden_size": 512,
        "intermediate_size": 1024,
        "intermediate_size_mlp": 2048,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "vocab_size": 256,
        "num_local_experts": 8,
        "num_experts_per_tok": 1,
    }
    llama = {  # a Llama layer of the MLP width the plan gives it: every expert's and the shared
        k: v for k, v in small.items() if k in ("hidden_size", "num_attention_heads", "vocab_size")
    } | {"model_type": "llama", "num_key_value_heads": 2, "head_dim": 64}
    llama["intermediate_size"] = inspect_config(
        "s", small | {"num_hidden_layers": 1}
    ).intermediate_size
    assert llama["intermediate_size"] == 8 * 1024 + 1024
    traced = saved_bytes_per_token(small, 256, "cpu") - saved_bytes_per_token(llama, 256, "cpu")
    model = inspect_config("small", small | {"num_hidden_layers": 2})
    assert every_expert_bytes_per_token(model) == pytest.approx(traced, rel=0.02)


@pytest.mark.parametrize("experts, step", [(16, 1), (128, 2)], ids=["scout", "interleaved"])
def test_counted_as_transformers_builds_it(experts, step):
    """Scout, and a Maverick-shaped interleave (128 experts every other layer, dense layers
    of intermediate_size_mlp): every parameter, what bitsandbytes quantises (not the router,
    not the fused experts), and "auto" LoRA's names."""
    import torch
    from transformers import CONFIG_MAPPING, AutoModelForCausalLM

    config = json.loads(json.dumps(CATALOG[SCOUT]))
    config["text_config"] |= {
        "num_hidden_layers": 4,
        "num_local_experts": experts,
        "interleave_moe_layer_step": step,
    }
    fields = dict(config)
    built_config = CONFIG_MAPPING[fields.pop("model_type")](**fields)
    with torch.device("meta"):
        built = AutoModelForCausalLM.from_config(built_config)
    info = inspect_config(SCOUT, config)
    assert type(built).__name__ == "Llama4ForCausalLM" and info.params_vision == 0
    assert info.params_total == sum(p.numel() for p in built.parameters())
    plain = [m for n, m in built.named_modules() if type(m) is torch.nn.Linear and n != "lm_head"]
    assert info.params_quantised == sum(m.weight.numel() for m in plain)
    llama = inspect_config("llama", CATALOG["meta-llama/Llama-3.1-8B"])
    assert info.lora_targets == llama.lora_targets  # attention and the shared / dense MLPs
    assert info.moe.sparse_layers == 4 // step


@pytest.mark.parametrize("named", ["all", [True, 1], [0.5]])
def test_moe_layers_that_name_no_layers_are_one_line(named):
    from finetune_tui.engine.common.errors import ModelError

    config = json.loads(json.dumps(CATALOG[SCOUT]))
    config["text_config"]["moe_layers"] = named
    said = "'moe_layers' (is 'all', not a list or null|must be a list of layer indices)"
    with pytest.raises(ModelError, match=said):
        inspect_config(SCOUT, config)
