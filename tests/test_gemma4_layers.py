"""Gemma-4: layers that differ in shape (sliding and full attention at their own head widths,
layers reusing earlier keys and values, a double-wide MLP), per-layer embeddings, a dense
MLP beside its experts, and the vision and audio towers. The plan counts the checkpoint as
transformers builds it, and what each kind of layer keeps as the installed code keeps it
(plan/kinded_bytes.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from finetune_tui.engine.inspect.catalog import CATALOG
from finetune_tui.engine.inspect.models import inspect_config, inspect_model

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from layer_trace import saved_bytes_per_layer  # noqa: E402

SMALL = {
    "model_type": "gemma4_text",
    "hidden_size": 512,
    "intermediate_size": 1024,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "global_head_dim": 128,
    "vocab_size": 1000,
    "vocab_size_per_layer_input": 1000,
    "hidden_size_per_layer_input": 0,
}
ALTERNATING = ["sliding_attention", "full_attention"] * 3
TEXT_CONFIGS = {
    "kv-shared, double-wide": SMALL
    | {
        "num_hidden_layers": 8,
        "num_kv_shared_layers": 3,
        "use_double_wide_mlp": True,
        "hidden_size_per_layer_input": 32,
    },
    "keys are values": SMALL
    | {"num_hidden_layers": 7, "attention_k_eq_v": True, "num_global_key_value_heads": 1},
    "experts beside the MLP": SMALL
    | {
        "num_hidden_layers": 6,
        "enable_moe_block": True,
        "num_experts": 8,
        "top_k_experts": 2,
        "moe_intermediate_size": 64,
    },
    "untied, alternating": SMALL
    | {"num_hidden_layers": 6, "tie_word_embeddings": False, "layer_types": ALTERNATING},
}


def built(config):
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def linear_shapes(model, skip=("lm_head",)) -> dict:
    import torch

    shapes: dict = {}
    for name, module in model.named_modules():
        if type(module) is torch.nn.Linear and name not in skip:
            key = (name.rsplit(".", 1)[-1], module.in_features, module.out_features)
            shapes[key] = shapes.get(key, 0) + 1
    return shapes


def planned_shapes(linears) -> dict:
    shapes: dict = {}
    for x in linears:
        key = (x.name, x.in_features, x.out_features)
        shapes[key] = shapes.get(key, 0) + x.layers
    return shapes


@pytest.mark.parametrize("name", sorted(TEXT_CONFIGS))
def test_the_language_model_is_counted_as_transformers_builds_it(name):
    """Exact: every parameter, every nn.Linear by name and shape, from the config.json
    transformers saves (its `per_layer_config` form) and from the published form
    (`global_head_dim`) alike."""
    from transformers import Gemma4TextConfig

    fields = {k: v for k, v in TEXT_CONFIGS[name].items() if k != "model_type"}
    config = Gemma4TextConfig(**fields)
    model = built(config)
    for form in (TEXT_CONFIGS[name], config.to_dict()):
        info = inspect_config(name, form)
        assert info.params_total == sum(p.numel() for p in model.parameters())
        assert planned_shapes(info.linears) == linear_shapes(model)


def test_the_multimodal_checkpoint_counts_both_towers_and_what_stays_16_bit():
    """Gemma4ForConditionalGeneration as the runner loads it: both towers, the outer
    config's tied embeddings, and the last tower's embedder, which bitsandbytes leaves in
    16-bit (transformers never converts the model's last module)."""
    import torch
    from transformers import CONFIG_MAPPING

    fields = json.loads(json.dumps(CATALOG["google/gemma-4-E2B"]))
    fields.pop("architectures")
    config = CONFIG_MAPPING[fields.pop("model_type")](**fields)
    model = built(config)
    info = inspect_model("google/gemma-4-E2B")
    assert info.params_total == sum(p.numel() for p in model.parameters())
    towers = ("vision_tower", "audio_tower", "embed_vision", "embed_audio")
    assert info.params_vision == sum(
        p.numel() for n, p in model.named_parameters() if any(t in n for t in towers)
    )
    last = list(model.named_parameters())[-1][0].removesuffix(".weight")
    skip = (last, "lm_head")  # the head: tied to the 16-bit embedding
    plain = [m for n, m in model.named_modules() if type(m) is torch.nn.Linear and n not in skip]
    assert info.params_quantised == sum(m.weight.numel() for m in plain)
    assert set(info.lora_targets) == {
        *("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    }
    # the speed model's parameters: not the towers (text never reaches them), not the
    # per-layer embedding table (a lookup)
    language = {n: p.numel() for n, p in model.named_parameters() if "language_model" in n}
    computed = (
        sum(language.values()) - language["model.language_model.embed_tokens_per_layer.weight"]
    )
    assert info.params_computed == computed


def test_defaults_copied_from_the_config_class_match_the_installed_transformers():
    from transformers import Gemma4TextConfig

    from finetune_tui.engine.inspect.layer_kinds import layer_types

    config = Gemma4TextConfig(num_hidden_layers=14)
    assert layer_types({}, 14) == config.layer_types
    info = inspect_config("defaults", SMALL | {"num_hidden_layers": 6, "global_head_dim": None})
    full = [kind for kind in info.layer_kinds.kinds if kind.layer_type == "full_attention"]
    assert full[0].head_dim == Gemma4TextConfig(num_hidden_layers=6).per_layer_config[5].head_dim


def test_each_kind_of_layer_is_planned_as_transformers_code_keeps_it():
    """Bytes a token each layer keeps beyond a Gemma-3 layer of the model's widths, traced
    on the installed transformers (CPU), against the plan's: a sliding layer, a full
    layer of wider heads, the same two reusing earlier keys and values, and the per-layer
    inputs built before the layers."""
    from finetune_tui.engine.plan.kinded_bytes import kind_bytes, kinded_bytes_per_token

    config = SMALL | {
        "num_hidden_layers": 6,
        "layer_types": ALTERNATING,
        "num_kv_shared_layers": 2,
        "hidden_size_per_layer_input": 64,
    }
    gemma3 = {k: v for k, v in config.items() if "per_layer" not in k and "kv_shared" not in k}
    gemma3 |= {"model_type": "gemma3_text"}
    gemma3.pop("global_head_dim")
    traced = saved_bytes_per_layer(config, 256)
    reference = saved_bytes_per_layer(gemma3, 256)
    info = inspect_config("small", config)
    kinds = {(k.layer_type, k.shares_kv): k for k in info.layer_kinds.kinds}
    for layer, key in enumerate(
        [("sliding_attention", False), ("full_attention", False)] * 2
        + [("sliding_attention", True), ("full_attention", True)]
    ):
        if layer in (0, 1):
            continue  # the first two: a Gemma-3 decoder's first layers keep its masks too
        extra = traced[layer] - reference[layer]
        assert kind_bytes(info, kinds[key]) == pytest.approx(extra, rel=0.05, abs=300)
    outside = traced[-1] - reference[-1]
    assert kinded_bytes_per_token(info)[2] == pytest.approx(outside, rel=0.03)


@pytest.mark.parametrize(
    ("change", "line"),
    [
        ({"layer_types": ["full_attention"]}, "'layer_types' must be a list of 4 names"),
        ({"global_head_dim": "512"}, "'global_head_dim' is '512', not an integer"),
        ({"top_k_experts": 0}, "'top_k_experts' is 0; it must be at least 1"),
    ],
)
def test_a_malformed_gemma4_config_is_one_line_naming_its_field(cli, tmp_path, change, line):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(SMALL | {"num_hidden_layers": 4} | change))
    result = cli("plan", "--model", str(folder), "--gpu", "RTX 4090", "--dataset", "demo")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (message,) = result.stderr.strip().splitlines()
    assert line in message


def test_a_gemma4_checkpoint_with_both_towers_trains_its_language_model(tmp_path):
    """Two steps through the product on a tiny Gemma4ForConditionalGeneration (vision and
    audio towers, per-layer embeddings, layers reusing keys and values): the adapter is
    the language model's projections, as many parameters as the plan counted."""
    from conftest import DEMO_PRESET, FEW_RECORDS, call_main, set_args
    from transformers import AutoModelForCausalLM, AutoTokenizer, Gemma4Config

    from finetune_tui.engine.common.demo import ensure_demo_model

    tokenizer = AutoTokenizer.from_pretrained(ensure_demo_model())
    vocab = len(tokenizer)
    text = SMALL | {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_attention_heads": 4,
        "head_dim": 16,
        "global_head_dim": 32,
        "num_hidden_layers": 4,
        "num_kv_shared_layers": 2,
        "hidden_size_per_layer_input": 8,
        "vocab_size": vocab,
        "vocab_size_per_layer_input": vocab,
        "layer_types": ALTERNATING[:4],
    }
    text.pop("model_type")
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1}
    vision |= {"num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 16}
    audio = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
    config = Gemma4Config(
        text_config=text, vision_config=vision, audio_config=audio | {"output_proj_dims": 48}
    )
    folder = tmp_path / "gemma4"
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    result = call_main(
        *("--preset", str(DEMO_PRESET), "--output", str(tmp_path / "run")),
        *set_args(f"model.name_or_path={folder}", "training.max_steps=2", FEW_RECORDS),
        *set_args("dataset.eval_fraction=0", "training.exact_match_samples=0"),
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["step"] == 2
    planned = inspect_model(str(folder))
    assert set(summary["lora_target_modules"]) == set(planned.lora_targets)
    assert f"{planned.lora_params(32):,} trainable" in result.stdout
