"""'auto' LoRA targets mean the same on every family and backend: the language model's
attention and MLP projections, never an MoE router or gate, never a vision tower
(issue 26). Tiny configs of the real architectures, built by transformers on the CPU."""

from __future__ import annotations

import sys
import types

import pytest

from finetune_tui.engine.inspect.catalog import UNPLANNED
from finetune_tui.engine.recipe import lora_targets as recipe
from finetune_tui.engine.recipe import model as recipe_model

SMALL = {
    "hidden_size": 64,
    "intermediate_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 32064,
}
LLAMA_NAMES = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
ATTENTION = ["k_proj", "o_proj", "q_proj", "v_proj"]
GEMMA3_VL = {
    "text_config": SMALL | {"model_type": "gemma3_text", "vocab_size": 300, "head_dim": 16},
    "vision_config": {
        "hidden_size": 32,
        "intermediate_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": 28,
        "patch_size": 14,
    },
    "mm_tokens_per_image": 4,
}
# Gemma-4: sliding and full layers of different head widths, the last two reusing earlier
# keys and values, per-layer embeddings (a gate and projection on each layer, not adapted)
GEMMA4 = SMALL | {
    "num_hidden_layers": 4,
    "head_dim": 16,
    "global_head_dim": 32,
    "num_kv_shared_layers": 2,
    "hidden_size_per_layer_input": 8,
    "vocab_size_per_layer_input": 300,
    "vocab_size": 300,
}
GEMMA4_MOE = GEMMA4 | {  # a dense MLP beside the experts; the router's `proj` not adapted
    "enable_moe_block": True,
    "num_experts": 4,
    "top_k_experts": 2,
    "moe_intermediate_size": 16,
    "hidden_size_per_layer_input": 0,
}
# model_type, tiny config, the short names "auto" adapts
FAMILIES = [
    ("llama", SMALL, LLAMA_NAMES),
    ("qwen2", SMALL, LLAMA_NAMES),
    ("phi3", SMALL, ["down_proj", "gate_up_proj", "o_proj", "qkv_proj"]),
    # its MLP one gate_up_proj (read from its modeling file: gate_proj and up_proj were named)
    (
        "glm4",
        SMALL | {"pad_token_id": 0},  # its default (151,329) is past the tiny vocabulary
        ["down_proj", "gate_up_proj", "k_proj", "o_proj", "q_proj", "v_proj"],
    ),
    ("mixtral", SMALL | {"num_local_experts": 4}, ATTENTION),  # not the `gate` router
    ("phimoe", SMALL | {"num_local_experts": 4}, ATTENTION),  # not the `router`
    (
        "qwen3_moe",
        SMALL | {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 16},
        ATTENTION,
    ),
    (  # the shared expert's MLP, not the router nor shared_expert_gate
        "qwen2_moe",
        SMALL
        | {"num_experts": 4, "moe_intermediate_size": 16, "shared_expert_intermediate_size": 32},
        LLAMA_NAMES,
    ),
    ("gemma3", GEMMA3_VL, LLAMA_NAMES),  # the language model's, not the vision tower's
    ("gemma4_text", GEMMA4, LLAMA_NAMES),
    ("gemma4_text", GEMMA4_MOE, LLAMA_NAMES),
    (  # attention only: PEFT would move the dense and shared-expert MLP names onto the experts
        "deepseek_v2",
        SMALL
        | {
            "n_routed_experts": 4,
            "num_experts_per_tok": 2,
            "n_shared_experts": 1,
            "moe_intermediate_size": 16,
            "first_k_dense_replace": 1,
            "kv_lora_rank": 16,
            "q_lora_rank": None,
            "qk_rope_head_dim": 8,
            "qk_nope_head_dim": 8,
            "v_head_dim": 16,
            "num_key_value_heads": 4,
        },
        ["kv_a_proj_with_mqa", "kv_b_proj", "o_proj", "q_proj"],
    ),
]
DENSE = {"llama", "qwen2", "phi3", "gemma3"}
MOE = [f for f in FAMILIES if f[0] not in DENSE and f[1] is not GEMMA4]


def build(model_type: str, config: dict, meta: bool = True):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    hf_config = AutoConfig.for_model(model_type, **config)
    if not meta:
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_config(hf_config)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(hf_config)


def short_names(names) -> list[str]:
    return sorted({name.rsplit(".", 1)[-1] for name in names})


def matched(model, targets) -> set[str]:
    """The modules PEFT would wrap for these targets (its own matcher)."""
    from peft.tuners.tuners_utils import check_target_module_exists

    config = recipe.lora_config(targets, 4, 8, 0.0, False)
    return {name for name, _ in model.named_modules() if check_target_module_exists(config, name)}


@pytest.mark.parametrize(
    ("model_type", "config", "expected"), FAMILIES, ids=[family[0] for family in FAMILIES]
)
def test_auto_targets_are_the_language_models_projections(model_type, config, expected):
    from finetune_tui.engine.inspect.models import inspect_config

    model = build(model_type, config)
    chosen = recipe.language_linears(model)
    assert short_names(chosen) == expected
    planned = inspect_config(model_type, {"model_type": model_type, **config})
    # every decoder layer's (Gemma-4's KV-sharing layers have no k/v projections), no other
    assert len(chosen) == sum(x.layers for x in planned.linears if x.name in expected)
    assert not any(word in name for name in chosen for word in ("router", "gate.", "vision"))
    assert matched(model, recipe.auto_lora_targets(model)) == set(chosen)


HYBRID = SMALL | {
    "num_hidden_layers": 4,  # every 4th layer full attention, the others gated DeltaNet
    "head_dim": 16,
    "linear_num_value_heads": 4,
    "linear_num_key_heads": 2,
    "linear_key_head_dim": 16,
    "linear_value_head_dim": 16,
}


@pytest.mark.parametrize(
    ("model_type", "config", "expected"),
    [
        (
            "qwen3_5_text",
            HYBRID,
            ["in_proj_a", "in_proj_b", "in_proj_qkv", "in_proj_z", "out_proj"],
        ),
        (
            "qwen3_next",
            HYBRID | {"num_experts": 4, "moe_intermediate_size": 16},
            ["in_proj_ba", "in_proj_qkvz", "out_proj"],
        ),
    ],
)
def test_linear_attention_layers_are_adapted_beside_the_full_attention(
    model_type, config, expected
):
    """Qwen3.5 and Qwen3-Next mix gated-DeltaNet layers with full attention. Their
    projections sit beside a causal Conv1d whose 3-D weight was read as fused experts, so
    "auto" adapted one token-mixing layer of four (GPU, 2026-12-06): a convolution is not."""
    model = build(model_type, config)
    chosen = recipe.language_linears(model)
    linear_attention = [name for name in chosen if ".linear_attn." in name]
    assert short_names(linear_attention) == expected
    assert {name.split(".")[2] for name in linear_attention} == {"0", "1", "2"}
    assert matched(model, recipe.auto_lora_targets(model)) == set(chosen)


@pytest.mark.parametrize(("model_type", "config", "expected"), MOE, ids=[f[0] for f in MOE])
def test_peft_adapts_exactly_the_auto_layers_and_the_plan_counts_them(model_type, config, expected):
    """PEFT itself applied, not only its matcher: on the MoE families transformers 5
    rebuilt, PEFT moves `gate_proj` / `up_proj` / `down_proj` onto every routed expert
    (DeepSeek-V2 trained 41.5 M LoRA parameters on experts where 2.4 M were planned, H200).
    "auto" leaves those names out, and the plan counts the parameters PEFT trains."""
    from peft import get_peft_model

    from finetune_tui.engine.inspect.library_tables import peft_moved_names
    from finetune_tui.engine.inspect.models import inspect_config

    model = build(model_type, config, meta=False)
    wanted = recipe.language_linears(model)
    peft_model = get_peft_model(
        model, recipe.lora_config(recipe.auto_lora_targets(model), 4, 8, 0.0, False)
    )
    assert recipe.lora_module_names(peft_model) == wanted
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    planned = inspect_config(model_type, {"model_type": model_type, **config}).lora_params(4)
    assert planned == trainable
    names = {"gate_proj", "up_proj", "down_proj", "q_proj"}  # the plan's reading = PEFT's answer
    assert (
        recipe.peft_moved_names(build(model_type, config), names)
        == peft_moved_names(model_type) & names
    )


def test_a_vision_tower_reusing_the_names_gets_an_exact_pattern():
    """Gemma-3's vision encoder has its own q_proj / out_proj / fc1: short names would
    reach it, so "auto" is a pattern over the language model's layers only."""
    model = build("gemma3", GEMMA3_VL)
    targets = recipe.auto_lora_targets(model)
    assert isinstance(targets, str) and "language_model" in targets
    assert not any("vision" in name for name in matched(model, targets))


def test_a_model_that_is_its_own_decoder_is_walked_too():
    """get_decoder() of a base model returns itself: its layers are still found."""
    model = build("llama", SMALL).model
    assert short_names(recipe.language_linears(model)) == LLAMA_NAMES


def train_step(model, targets, tokens: int = 8) -> object:
    """One LoRA forward and backward on random tokens; returns the PEFT model."""
    import torch
    from peft import get_peft_model

    peft_model = get_peft_model(model, recipe.lora_config(targets, 4, 8, 0.0, False))
    ids = torch.randint(0, 200, (2, tokens))
    loss = peft_model(input_ids=ids, labels=ids).loss
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for n, p in peft_model.named_parameters() if "lora_" in n]
    assert grads and all(g is not None for g in grads)
    return peft_model


def test_lora_trains_a_step_on_phi_3_5_moe():
    """Was: "'tuple' object has no attribute 'dtype'" at step 1 (LoRA on PhimoeRouter)."""
    model = build("phimoe", SMALL | {"num_local_experts": 4}, meta=False)
    wanted = recipe.language_linears(model)
    peft_model = train_step(model, recipe.auto_lora_targets(model))
    assert recipe.lora_module_names(peft_model) == wanted


def test_lora_trains_a_step_on_falcon_h1_without_its_mamba_out_proj():
    """Falcon-H1 (listed as a family with no memory model) failed before its first step:
    "auto" named its Mamba mixer's out_proj, which PEFT refuses on Mamba-based models. The
    names PEFT refuses are asked of PEFT and left out; the rest train."""
    config = SMALL | {"head_dim": 16, "mamba_d_ssm": 64, "mamba_n_heads": 4}
    config |= {"mamba_d_head": 16, "mamba_n_groups": 1, "mamba_d_state": 16}
    model = build("falcon_h1", config, meta=False)
    wanted = recipe.language_linears(model)
    assert "in_proj" in short_names(wanted) and "out_proj" not in short_names(wanted)
    peft_model = train_step(model, recipe.auto_lora_targets(model))
    assert recipe.lora_module_names(peft_model) == wanted


def test_lora_trains_a_step_on_deepseek_v4_without_its_grouped_projection():
    """DeepSeek-V4's grouped output projection subclasses nn.Linear and declares a tensor
    return, but maps its input block by block: LoRA wrapped it and the first step failed
    ("size of tensor a (1024) must match ... (8192)"). A subclass must compute a linear's
    shape to be adapted; the rest of the layer trains."""
    model = build("deepseek_v4", SMALL | {"head_dim": 16}, meta=False)
    wanted = recipe.language_linears(model)
    assert "o_a_proj" not in short_names(wanted) and "o_b_proj" in short_names(wanted)
    # its compressed attention's projections run only past 128 tokens
    peft_model = train_step(model, recipe.auto_lora_targets(model), tokens=300)
    assert recipe.lora_module_names(peft_model) == wanted


def test_lora_trains_a_step_on_gemma_3_text_only():
    model = build("gemma3", GEMMA3_VL, meta=False)
    wanted = recipe.language_linears(model)
    peft_model = train_step(model, recipe.auto_lora_targets(model))
    assert recipe.lora_module_names(peft_model) == wanted


def test_the_recorded_targets_are_read_back_from_the_model():
    """summary.json and the headless line name real modules, even when the config holds
    a pattern string (never a string sorted into characters)."""
    from peft import get_peft_model

    from finetune_tui.engine.train.trainer_build import lora_targets

    model = build("gemma3", GEMMA3_VL, meta=False)
    peft_model = get_peft_model(
        model, recipe.lora_config(recipe.auto_lora_targets(model), 4, 8, 0, False)
    )
    assert lora_targets(peft_model) == LLAMA_NAMES
    assert lora_targets(build("llama", SMALL)) == []  # full fine-tuning: no adapter


class FakeFastLanguageModel:
    """Unsloth's loader as it behaves on Phi-3 (its FastModel path): get_peft_model turns
    an explicit name list into its own language-layer pattern; `default_only` mimics the
    old call, which passed Llama's names and so adapted only o_proj and down_proj."""

    model = None
    received = None

    @classmethod
    def from_pretrained(cls, **kwargs):
        return cls.model, object()

    @classmethod
    def get_peft_model(cls, model, target_modules, **kwargs):
        from peft import get_peft_model

        cls.received = target_modules
        config = recipe.lora_config(target_modules, kwargs["r"], 8, 0.0, False)
        return get_peft_model(model, config)


@pytest.fixture
def fake_unsloth(monkeypatch):
    module = types.ModuleType("unsloth")
    module.FastLanguageModel = FakeFastLanguageModel
    monkeypatch.setitem(sys.modules, "unsloth", module)
    return FakeFastLanguageModel


def load_with_unsloth(targets="auto"):
    return recipe_model.load_unsloth_model(
        "phi3-path", 64, "fp32", "none", targets, 4, 8, 0.0, False, "off", 0
    )


def test_unsloth_gets_the_same_explicit_names_as_hf(fake_unsloth):
    """Phi-3 trained 8.9 M LoRA parameters under Unsloth against 25.2 M under HF: Unsloth
    was given Llama's names, and Phi-3's fused qkv_proj / gate_up_proj were left out."""
    fake_unsloth.model = build("phi3", SMALL, meta=False)
    wanted = recipe.language_linears(fake_unsloth.model)
    model, _ = load_with_unsloth()
    assert fake_unsloth.received == ["down_proj", "gate_up_proj", "o_proj", "qkv_proj"]
    assert recipe.lora_module_names(model) == wanted


@pytest.fixture
def unsloth_adapting_llama_names(fake_unsloth, monkeypatch):
    """A Phi-3 whose Unsloth adapts only the Llama names it has (o_proj, down_proj)."""
    fake_unsloth.model = build("phi3", SMALL, meta=False)
    real = FakeFastLanguageModel.get_peft_model.__func__

    def llama_names_only(cls, model, target_modules, **kwargs):
        return real(cls, model, ["o_proj", "down_proj"], **kwargs)

    monkeypatch.setattr(FakeFastLanguageModel, "get_peft_model", classmethod(llama_names_only))
    return fake_unsloth


def test_unsloth_adapting_other_layers_is_refused(unsloth_adapting_llama_names):
    with pytest.raises(ValueError, match=r"missing: gate_up_proj, qkv_proj.*memory.backend"):
        load_with_unsloth()


def test_liger_families_are_read_from_the_installed_library():
    """library_tables.liger_model_types reads liger-kernel's own table without importing it; if
    the library changes the table's shape, this fails (the planner would say None)."""
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    from finetune_tui.engine.inspect.library_tables import liger_model_types
    from finetune_tui.engine.inspect.models import inspect_model

    assert liger_model_types() == set(MODEL_TYPE_TO_APPLY_LIGER_FN)
    # the old hand copy said "no kernels" for these two, which liger-kernel 0.8 patches
    for model_id in ("Qwen/Qwen3-30B-A3B", "deepseek-ai/DeepSeek-V2-Lite"):
        assert inspect_model(model_id).supported_backends["liger"] is None
    assert "gpt_neox" in inspect_model("EleutherAI/pythia-1b").supported_backends["liger"]


def test_without_liger_kernel_the_plan_says_so(monkeypatch):
    import importlib.util

    from finetune_tui.engine.inspect import library_tables, models

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "liger_kernel" else real(name, *a),
    )
    library_tables.liger_model_types.cache_clear()
    try:
        why = models.inspect_model("meta-llama/Llama-3.1-8B").supported_backends["liger"]
    finally:
        library_tables.liger_model_types.cache_clear()
    assert "liger-kernel is not installed" in why


def test_reading_liger_families_keeps_plan_torch_free():
    from conftest import run_python

    run_python(
        "import sys\n"
        "from finetune_tui.engine.inspect.models import inspect_model\n"
        "assert inspect_model('Qwen/Qwen3-30B-A3B').supported_backends['liger'] is None\n"
        "assert 'torch' not in sys.modules and 'liger_kernel' not in sys.modules\n"
    )


def batch_gain(plan) -> float | None:
    """The doubled micro-batch's predicted gain, as the alternatives list scores it."""
    bigger = plan.settings.training.micro_batch_size * 2
    for alternative in plan.alternatives:
        if (
            set(alternative.changes) - {"training.gradient_accumulation_steps"}
            == {"training.micro_batch_size"}
            and alternative.changes["training.micro_batch_size"] == bigger
        ):
            return alternative.relative_speed / plan.relative_speed - 1
    return None


@pytest.mark.parametrize(
    ("model_id", "gpu", "lengths"),
    [
        ("google/gemma-3-4b-pt", "RTX 4070", [33] * 200),  # the reported case (demo data)
        ("meta-llama/Llama-3.2-1B", "RTX 4070", [300] * 200),
        ("Qwen/Qwen2.5-1.5B", "RTX 3060", [40, 900, 120, 2000, 60] * 40),
        ("microsoft/Phi-3-mini-4k-instruct", "RTX 4090", [33] * 200),
    ],
)
def test_the_batch_reason_is_scored_like_the_choice(model_id, gpu, lengths):
    """Was: "32 would also fit (4.1 GiB, +20% predicted speed)" beside a pick of 16: the
    doubled batch's gain left out the packing cost the choice was scored with."""
    import re

    from finetune_tui.engine.data.lengths import stats_from_lengths
    from finetune_tui.engine.inspect.hardware import simulated_hardware
    from finetune_tui.engine.inspect.models import inspect_model
    from finetune_tui.engine.plan.advisor import advise
    from finetune_tui.engine.settings.preset import settings_from_overrides

    plan = advise(
        simulated_hardware(gpu=gpu),
        inspect_model(model_id),
        settings_from_overrides([]),
        dataset_stats=stats_from_lengths(lengths, 4096),
    )
    reason = plan.reasons["training.micro_batch_size"]
    said = re.search(r"([+-]\d+)%", reason)
    if "would also fit" in reason:
        assert "no faster" in reason, reason  # else the advisor would have picked it
    gain = batch_gain(plan)
    if said and gain is not None:
        assert abs(int(said.group(1)) - gain * 100) <= 1.5, (reason, gain)  # 2-digit speeds


def meta_count(config: dict) -> tuple[int, int]:
    """(all parameters, those in nn.Linear layers outside the language model) of the
    model transformers builds from this config, on the meta device."""
    import torch

    fields = {k: v for k, v in config.items() if k not in ("architectures", "model_type")}
    model = build(config["model_type"], fields)
    decoder = model.get_decoder()
    inside = {id(m) for m in decoder.modules()}
    tower = sum(
        m.weight.numel()
        for m in model.modules()
        if isinstance(m, torch.nn.Linear) and id(m) not in inside
        if m is not model.get_output_embeddings()
    )
    return sum(p.numel() for p in model.parameters()), tower


@pytest.mark.parametrize(
    "config",
    [
        "google/gemma-3-4b-pt",  # the published config: 4.30 B, of which 0.42 B vision
        {"model_type": "gemma3", **GEMMA3_VL},
        {
            "model_type": "gemma3",
            **GEMMA3_VL,
            "vision_config": GEMMA3_VL["vision_config"] | {"vision_use_head": True},
        },
    ],
    ids=["gemma-3-4b", "tiny", "tiny-with-head"],
)
def test_a_multimodal_plan_counts_what_the_checkpoint_holds(config):
    """Was: 3.88 B planned for Gemma-3-4B, whose checkpoint holds 4.30 B."""
    from finetune_tui.engine.inspect.catalog import CATALOG
    from finetune_tui.engine.inspect.models import inspect_config

    config = CATALOG[config] if isinstance(config, str) else config
    info = inspect_config("m", config)
    total, tower_linear = meta_count(config)
    assert info.params_total == total
    assert sum(lin.params for lin in info.vision_linears) == tower_linear  # quantised too
    assert info.lora_params(16) < info.lora_params(16, ["q_proj"]) + info.lora_params(16)


def test_a_vision_tower_it_cannot_count_is_one_line():
    from finetune_tui.engine.common.errors import ModelError
    from finetune_tui.engine.inspect.models import inspect_config

    config = {"model_type": "gemma3", **GEMMA3_VL}
    config["vision_config"] = GEMMA3_VL["vision_config"] | {"model_type": "pixtral"}
    with pytest.raises(ModelError, match=r"vision tower \(pixtral\).*cannot be counted"):
        inspect_config("m", config)


NEW_FAMILIES = {  # catalog ID → the published total (model cards), issue 26
    "HuggingFaceTB/SmolLM3-3B": 3.08e9,
    "ibm-granite/granite-3.3-8b-instruct": 8.17e9,
    "allenai/Olmo-3-1025-7B": 7.30e9,
    "openai/gpt-oss-20b": 20.9e9,
}


@pytest.mark.parametrize("model_id", sorted(NEW_FAMILIES))
def test_families_people_fine_tune_now_are_planned_exactly(model_id):
    """Whole published configs on the meta device (no memory): every parameter counted."""
    from finetune_tui.engine.inspect.catalog import CATALOG
    from finetune_tui.engine.inspect.models import inspect_model

    info = inspect_model(model_id)
    assert info.params_total == meta_count(CATALOG[model_id])[0]
    assert info.params_total == pytest.approx(NEW_FAMILIES[model_id], rel=0.01)
    assert info.supported_backends["liger"] is None  # liger-kernel 0.8 patches all four


def test_gpt_oss_active_parameters_match_its_card():
    from finetune_tui.engine.inspect.models import inspect_model

    info = inspect_model("openai/gpt-oss-20b")
    without_input_embedding = info.params_active - info.vocab_size * info.hidden_size
    assert without_input_embedding == pytest.approx(3.6e9, rel=0.02)  # "3.6B active"


@pytest.mark.parametrize("model_id", sorted(UNPLANNED))
def test_families_without_a_memory_model_are_one_line(model_id):
    from transformers import CONFIG_MAPPING

    from finetune_tui.engine.common.errors import ModelError
    from finetune_tui.engine.inspect.models import inspect_model

    assert UNPLANNED[model_id].split(":")[0] in CONFIG_MAPPING  # transformers builds it
    with pytest.raises(ModelError, match="cannot plan its memory yet") as error:
        inspect_model(model_id)
    assert "\n" not in str(error.value)


def test_unsloth_adapting_other_layers_is_one_line_before_training(unsloth_adapting_llama_names):
    from finetune_tui.engine.common.errors import InputError
    from finetune_tui.engine.settings.schema import TrainSettings
    from finetune_tui.engine.train.backends import load_unsloth_model
    from finetune_tui.engine.train.loading import Device

    with pytest.raises(InputError, match=r"^memory.backend: Unsloth adapted 4 layers where"):
        load_unsloth_model("phi3-path", TrainSettings(), Device("cuda", "GPU", "fp32"))


@pytest.mark.parametrize("model_type", ["gpt_oss", "llama", "gemma2", "qwen3_moe", "phi3"])
def test_the_plan_reads_which_classes_support_sdpa_as_the_classes_declare(model_type):
    """ "auto" loads eager attention where the class supports no sdpa (gpt-oss failed to load
    under sdpa on the H200); the plan reads the same fact from the source, torch-free, and
    counts eager's materialised scores."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    from finetune_tui.engine.inspect.library_tables import sdpa_unsupported

    declared = MODEL_FOR_CAUSAL_LM_MAPPING[type(AutoConfig.for_model(model_type))]._supports_sdpa
    assert sdpa_unsupported(model_type) is (not declared)


def test_eager_attention_is_planned_with_its_scores():
    from finetune_tui.engine.inspect.models import inspect_model
    from finetune_tui.engine.plan.peak import predict_memory
    from finetune_tui.engine.settings.preset import settings_from_overrides

    gpt_oss = inspect_model("openai/gpt-oss-20b")
    assert not gpt_oss.sdpa and inspect_model("meta-llama/Llama-3.1-8B").sdpa

    def activations(attention: str, checkpointing: str) -> float:
        settings = settings_from_overrides(
            [
                f"model.attn_implementation={attention}",
                f"memory.gradient_checkpointing={checkpointing}",
            ]
        )
        return predict_memory(gpt_oss, settings, padded=False).activations_gib

    t = settings_from_overrides([]).training
    one_layer = t.micro_batch_size * gpt_oss.num_heads * t.max_seq_length**2 * 10 / 2**30
    # eager repeats K and V to every head, sdpa without a padding mask does not
    heads = gpt_oss.num_heads - gpt_oss.num_kv_heads
    one_layer += t.micro_batch_size * t.max_seq_length * 2 * 2 * heads * gpt_oss.head_dim / 2**30
    for checkpointing, layers in (("on", 1), ("off", gpt_oss.num_layers)):
        scores = activations("eager", checkpointing) - activations("sdpa", checkpointing)
        assert scores == pytest.approx(layers * one_layer)
        assert activations("auto", checkpointing) == activations("eager", checkpointing)
