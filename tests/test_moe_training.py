"""Mixtures of experts train under LoRA: tiny models of the real architectures, built from
their configs, take steps through the product (Phi-3.5-MoE failed at step 1 on a GPU:
its router's tuple output inside PEFT, then the router load-balancing loss inside TRL)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DEMO_PRESET, FEW_RECORDS, call_main, cli_env, set_args

TINY = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
)
# Phi-3.5-MoE is the family that failed; the router rule for the others is in
# tests/test_family_targets.py (one training run here costs about 30 s)
FAMILIES = {
    "phimoe": dict(num_local_experts=4, num_experts_per_tok=2),
    "qwen3_moe": dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32),
    # gpt-oss failed to load on a GPU: its class supports no sdpa ("auto" picks eager)
    "gpt_oss": dict(num_local_experts=4, num_experts_per_tok=2, head_dim=16),
    # every expert computes every token; its class names a backbone attribute it lacks
    "llama4_text": dict(
        num_local_experts=4, num_experts_per_tok=1, intermediate_size_mlp=128, head_dim=16
    ),
}
TRAINED = ["phimoe", "gpt_oss"]


def tiny_model(folder, model_type: str) -> str:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from finetune_tui.engine.common.demo import ensure_demo_model

    tokenizer = AutoTokenizer.from_pretrained(ensure_demo_model())
    config = AutoConfig.for_model(
        model_type, vocab_size=len(tokenizer), **TINY, **FAMILIES.get(model_type, {})
    )
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def train_demo_on(tmp_path, model, *pairs: str):
    """The demo preset on another model, into tmp_path/run: the CLI's result."""
    return call_main(
        "--preset",
        str(DEMO_PRESET),
        "--output",
        str(tmp_path / "run"),
        *set_args(f"model.name_or_path={model}", *pairs),
    )


def two_steps(tmp_path, model) -> dict:
    """The demo preset's first two steps on `model`, no evaluation: its summary.json."""
    result = train_demo_on(
        tmp_path,
        model,
        "training.max_steps=2",
        FEW_RECORDS,
        "dataset.eval_fraction=0",
        "training.exact_match_samples=0",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["step"] == 2
    return summary


@pytest.mark.parametrize("model_type", TRAINED)
def test_a_mixture_of_experts_trains_with_auto_targets(tmp_path, model_type):
    summary = two_steps(tmp_path, tiny_model(tmp_path / model_type, model_type))
    adapted = set(summary["lora_target_modules"])
    assert adapted and not adapted & {"router", "gate"}


def test_llama4_trains_with_its_loss_pointed_at_its_backbone(tmp_path):
    """transformers 5.17's Llama4ForCausalLM names its backbone "language_model" and keeps it
    at `model`: TRL's chunked loss got the whole model and the run failed at step 1 (then
    preflight refused it). The loaded model's prefix now names its backbone and it trains;
    the class itself is untouched."""
    from transformers import AutoModelForCausalLM

    model = tiny_model(tmp_path / "llama4", "llama4_text")
    summary = two_steps(tmp_path, model)
    assert summary["final_loss"] < summary["first_loss"] + 1.0  # a real loss, not a crash value
    assert {"q_proj", "o_proj"} <= set(summary["lora_target_modules"])
    fresh = AutoModelForCausalLM.from_pretrained(model)
    assert fresh.base_model is fresh  # the class still says "language_model"
    # the exported script carries the same rule (the recipe's loader): it trains too
    script = Path(summary["export"])
    script = script if script.is_absolute() else tmp_path / "run" / script
    ran = subprocess.run(
        [sys.executable, str(script), "--max-steps", "1", "--output", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=cli_env(tmp_path),
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]


def test_a_class_whose_backbone_trl_cannot_find_is_refused(tmp_path):
    """A class whose prefix names no attribute and which holds no single transformers
    model to point it at is refused in one line (before the run folder: preflight builds
    the empty model), never failed at step 1."""
    import torch
    from transformers import LlamaConfig, LlamaModel

    from finetune_tui.engine.common.errors import ModelError
    from finetune_tui.engine.settings.preset import settings_from_overrides
    from finetune_tui.engine.train.loading import check_loss_reads_the_backbone

    class TwoBackbones(torch.nn.Module):
        base_model_prefix = "language_model"
        base_model = property(lambda self: self)

        def __init__(self):
            super().__init__()
            config = LlamaConfig(
                hidden_size=16,
                num_hidden_layers=1,
                num_attention_heads=2,
                intermediate_size=32,
                vocab_size=32,
            )
            self.text, self.other = LlamaModel(config), LlamaModel(config)

    settings = settings_from_overrides(["model.name_or_path=demo"])
    with pytest.raises(ModelError, match="TwoBackbones cannot be trained with the sft objective"):
        check_loss_reads_the_backbone(TwoBackbones(), settings)
    orpo = settings_from_overrides(["model.name_or_path=demo", "training.objective=orpo"])
    check_loss_reads_the_backbone(TwoBackbones(), orpo)  # the model's own logits: no refusal


@pytest.mark.parametrize(
    ("model_type", "setting", "line"),
    [  # Liger has no kernels for GPT-NeoX; bitsandbytes replaces only nn.Linear itself, so
        # Falcon's FalconLinear layers would load 16-bit under NF4, as the plan now says
        (
            "gpt_neox",
            "memory.backend=liger",
            "memory.backend: liger: Liger has no kernels for gpt_neox",
        ),
        (
            "falcon",
            "quantization.mode=nf4",
            "quantization.mode: nf4: bitsandbytes quantises none of FalconForCausalLM's layers "
            "(its own nn.Linear subclass): 4/8-bit saves no memory here (set it to none)",
        ),
    ],
)
def test_an_option_the_plan_does_not_offer_is_refused_before_the_run_folder(
    cli, tmp_path, model_type, setting, line
):
    """One line with the plan's own reason, nothing written."""
    model = tiny_model(tmp_path / model_type, model_type)
    sets = set_args(f"model.name_or_path={model}", setting)
    result = cli("--preset", str(DEMO_PRESET), "--output", str(tmp_path / "run"), *sets)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"finetune-tui: error: {line}"]
    assert not (tmp_path / "run").exists()


def test_unsloth_is_offered_only_where_its_own_kernels_train():
    from finetune_tui.engine.inspect.models import inspect_model

    assert inspect_model("meta-llama/Llama-3.1-8B").supported_backends["unsloth"] is None
    for name in ("google/gemma-3-1b-pt", "microsoft/Phi-3-mini-4k-instruct"):
        why = inspect_model(name).supported_backends["unsloth"]
        assert "generic compiled path" in why and "use liger" in why


def test_targets_peft_would_move_onto_the_experts_are_refused_before_the_run_folder(cli, tmp_path):
    """On Qwen3-MoE PEFT moves `gate_proj` / `up_proj` onto every routed expert's fused
    weights: naming them trains another adapter than the one named and planned."""
    model = tiny_model(tmp_path / "qwen3_moe", "qwen3_moe")
    sets = set_args(f"model.name_or_path={model}", "lora.target_modules=[q_proj,gate_proj,up_proj]")
    result = cli("--preset", str(DEMO_PRESET), "--output", str(tmp_path / "run"), *sets)
    assert result.returncode == 2, result.stderr
    assert "PEFT moves gate_proj, up_proj of" in result.stderr and "'auto' does" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()
