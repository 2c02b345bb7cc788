"""Checkpoints whose config.json says their weights are stored quantised: planned and
trained as they load (bitsandbytes 4/8-bit as is, MXFP4 / FP8 dequantised to 16-bit), other
formats refused in one line; the plan never picks what the run cannot load."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import DEMO_PRESET, FEW_RECORDS

from finetune_tui.engine.common.demo import ensure_demo_model
from finetune_tui.engine.common.errors import ModelError, SettingsError
from finetune_tui.engine.inspect.catalog import CATALOG
from finetune_tui.engine.inspect.hardware import simulated_hardware
from finetune_tui.engine.inspect.models import inspect_config, inspect_model
from finetune_tui.engine.plan.advisor import advise
from finetune_tui.engine.settings.preset import load_preset, with_changes

LLAMA = CATALOG["meta-llama/Llama-3.1-8B"]
BNB_NF4 = {
    "quant_method": "bitsandbytes",
    "load_in_4bit": True,
    "bnb_4bit_quant_type": "nf4",
    "bnb_4bit_use_double_quant": True,
}


def plan(config: dict, gpu: str = "RTX 4090", **changes):
    settings = with_changes(load_preset(DEMO_PRESET), {"model.name_or_path": "m", **changes})
    return advise(
        simulated_hardware(gpu), inspect_config("m", config), settings, frozenset(changes)
    )


def test_a_bitsandbytes_4bit_checkpoint_is_planned_as_it_loads():
    """unsloth's *-bnb-4bit copies: planned 16-bit before (none offered at 20.8 GiB), while
    transformers loads them 4-bit whatever the run asks."""
    chosen = plan(LLAMA | {"quantization_config": BNB_NF4})
    assert chosen.settings.quantization.mode == "nf4"
    assert "stored nf4 by bitsandbytes" in chosen.reasons["quantization.mode"]
    assert "quantization.mode=none" in chosen.unavailable
    assert all("mode=none" not in str(a.changes) for a in chosen.alternatives)
    pinned = plan(LLAMA | {"quantization_config": BNB_NF4}, **{"quantization.mode": "none"})
    assert pinned.reasons["quantization.mode"].startswith("none: the run refuses it: ")


@pytest.mark.parametrize(
    ("stored", "mode"),
    [
        ({"quant_method": "bitsandbytes", "load_in_8bit": True}, "8bit"),
        ({"quant_method": "bitsandbytes", "load_in_4bit": True}, "fp4"),  # the type's default
    ],
)
def test_8bit_and_fp4_copies_are_planned_as_stored(stored, mode):
    """Only NF4 was a candidate: every other mode ruled out left nothing to plan."""
    chosen = plan(LLAMA | {"quantization_config": stored}, gpu="H100")
    assert chosen.settings.quantization.mode == mode
    assert f"stored {mode} by bitsandbytes" in chosen.reasons["quantization.mode"]


def test_full_fine_tuning_of_stored_4bit_weights_is_one_line_not_a_crash():
    """Every value of a free field ruled out left no candidate: max() of an empty list."""
    with pytest.raises(SettingsError) as caught:
        plan(LLAMA | {"quantization_config": BNB_NF4}, **{"training.method": "full"})
    assert str(caught.value).startswith("training.method: full: ")
    assert "take no gradient" in str(caught.value)


def test_mxfp4_weights_load_dequantised_so_bitsandbytes_is_never_picked():
    """gpt-oss on the Hub: a BitsAndBytesConfig for an MXFP4 checkpoint is a load error in
    transformers, and MXFP4's own kernels train nothing."""
    model = inspect_model("openai/gpt-oss-20b")
    assert model.stored is not None and model.stored.loads_as == "none"
    chosen = plan(CATALOG["openai/gpt-oss-20b"], gpu="H100")
    assert chosen.settings.quantization.mode == "none"
    assert {"quantization.mode=nf4", "quantization.mode=8bit"} <= set(chosen.unavailable)
    assert "dequantised to 16-bit" in chosen.reasons["quantization.mode"]


@pytest.mark.parametrize("method", ["awq", "gptq", "hqq", "some-new-format"])
def test_formats_that_train_only_through_their_own_kernels_are_one_line(method):
    with pytest.raises(ModelError) as caught:
        inspect_config("org/model-AWQ", LLAMA | {"quantization_config": {"quant_method": method}})
    message = str(caught.value)
    assert message.startswith(
        f"org/model-AWQ: config.json: quantization_config: weights stored as {method}"
    )
    assert "use the unquantised model" in message


@pytest.mark.parametrize(
    ("stored", "problem"),
    [
        ("4bit", "must be a JSON object, not str"),
        ({"bits": 4}, "no quant_method"),
        ({"quant_method": "bitsandbytes"}, "neither load_in_4bit nor load_in_8bit"),
        ({"load_in_4bit": True, "bnb_4bit_quant_type": "int4"}, "'int4' is not nf4 or fp4"),
    ],
)
def test_a_damaged_quantization_config_names_the_field(stored, problem):
    with pytest.raises(ModelError, match=problem):
        inspect_config("m", LLAMA | {"quantization_config": stored})


def fp8_checkpoint(folder, block: int = 8):
    """The demo model stored as transformers' fine-grained FP8 checkpoints are (float8
    weights, one inverse scale per block), written by hand: quantising needs a GPU."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(ensure_demo_model(), folder)
    weights = load_file(folder / "model.safetensors")
    stored = {}
    for name, tensor in weights.items():
        if not name.endswith("proj.weight"):
            stored[name] = tensor
            continue
        rows, cols = tensor.shape
        blocks = tensor.float().reshape(rows // block, block, cols // block, block)
        scale = blocks.abs().amax(dim=(1, 3)) / 448.0  # float8_e4m3fn's largest value
        quantised = (blocks / scale[:, None, :, None]).reshape(rows, cols)
        stored[name] = quantised.to(torch.float8_e4m3fn)
        stored[name.replace("weight", "weight_scale_inv")] = scale
    save_file(stored, folder / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = {
        "quant_method": "fp8",
        "activation_scheme": "dynamic",
        "weight_block_size": [block, block],
    }
    (folder / "config.json").write_text(json.dumps(config))
    return weights


def test_an_fp8_checkpoint_trains_dequantised_and_4bit_is_refused_before_the_run(tmp_path, cli):
    original = fp8_checkpoint(tmp_path / "demo-fp8")
    from finetune_tui.engine.recipe.model import load_model

    model = load_model(str(tmp_path / "demo-fp8"), "fp32", "sdpa", "none", False, False)
    q_proj = model.model.layers[0].self_attn.q_proj
    assert type(q_proj).__name__ == "Linear" and not getattr(model, "is_quantized", False)
    want = original["model.layers.0.self_attn.q_proj.weight"].float()
    assert (q_proj.weight.float() - want).abs().max() < 0.07 * want.abs().max()  # 3-bit mantissa

    common = ["--preset", str(DEMO_PRESET), "--set", f"model.name_or_path={tmp_path / 'demo-fp8'}"]
    common += ["--set", FEW_RECORDS, "--set", "training.exact_match_samples=0"]
    run = cli(*common, "--set", "training.max_steps=2", "--output", str(tmp_path / "run"))
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["step"] == 2

    refused = cli(*common, "--set", "quantization.mode=nf4", "--output", str(tmp_path / "r2"))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "quantization.mode: nf4: LlamaForCausalLM's weights are stored as fp8" in refused.stderr
    assert not (tmp_path / "r2").exists()


def test_the_formats_plan_reads_from_source_are_the_ones_the_recipe_loads_dequantised():
    """plan reads transformers' tables without importing it (torch-free); the run asks the
    imported library: both must name the same formats."""
    from transformers.quantizers.auto import AUTO_QUANTIZATION_CONFIG_MAPPING

    from finetune_tui.engine.inspect.library_tables import dequantizing_formats
    from finetune_tui.engine.recipe.model import dequantizing_config

    read = dequantizing_formats()
    assert {"mxfp4", "fp8"} <= read
    for method in AUTO_QUANTIZATION_CONFIG_MAPPING:
        if method == "compressed-tensors":  # its config is built only with its own library
            continue
        assert (method in read) == (dequantizing_config(method) is not None), method


def test_the_model_screen_says_how_stored_weights_train():
    from finetune_tui.tui.screens.model import model_summary

    assert "Weights stored as mxfp4: they train as 16-bit" in model_summary("openai/gpt-oss-20b")
    assert "Weights stored" not in model_summary("meta-llama/Llama-3.1-8B")
