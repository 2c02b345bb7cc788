"""Every family is planned from config.json alone: counts match the published totals and
the module tree transformers builds (on the meta device: no weights, no memory)."""

from __future__ import annotations

import copy
import re

import pytest
from published_sizes import ACTIVE_WITHOUT_INPUT_EMBEDDING, PUBLISHED_ACTIVE, PUBLISHED_SIZES

from finetune_tui.engine.common.errors import ModelError
from finetune_tui.engine.inspect.catalog import CATALOG
from finetune_tui.engine.inspect.models import _info, inspect_config, inspect_model


@pytest.mark.parametrize("model_id", sorted(PUBLISHED_SIZES))
def test_total_parameters_match_the_published_count(model_id):
    assert inspect_model(model_id).params_total == pytest.approx(
        PUBLISHED_SIZES[model_id], rel=0.01
    )


@pytest.mark.parametrize("model_id", sorted(PUBLISHED_ACTIVE))
def test_active_parameters_of_mixtures_of_experts(model_id):
    info = inspect_model(model_id)
    active = info.params_active
    if model_id in ACTIVE_WITHOUT_INPUT_EMBEDDING:
        active -= info.vocab_size * info.hidden_size
    # published to two significant digits: half a unit of the last digit is 1.5-4 %
    assert active == pytest.approx(PUBLISHED_ACTIVE[model_id], rel=0.025)
    assert info.is_moe and info.params_total > 2 * info.params_active


def text_config(model_id: str) -> dict:
    config = copy.deepcopy(CATALOG[model_id])
    return config.get("text_config", config)


def meta_model(config: dict):
    """The model transformers builds from this config, on the meta device."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = {k: v for k, v in config.items() if k not in ("architectures", "model_type")}
    hf_config = AutoConfig.for_model(config["model_type"], **fields)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(hf_config)


FAMILIES = sorted({text_config(m)["model_type"]: m for m in CATALOG}.values())


@pytest.mark.parametrize("model_id", FAMILIES)
def test_counts_and_lora_targets_match_the_module_tree(model_id):
    """Four layers of each family (memory is per layer): exact parameters, expert weights,
    and LoRA targets that are nn.Linear leaves of the real model."""
    import torch

    config = text_config(model_id) | {"num_hidden_layers": 4}  # a hybrid's full layer too
    config.pop("layer_types", None)
    model = meta_model(config)
    info = _info(model_id, config)
    assert info.params_total == sum(p.numel() for p in model.parameters())
    from finetune_tui.engine.recipe.model import point_loss_at_backbone

    point_loss_at_backbone(model)  # as the loader does (Llama-4's prefix names no attribute)
    assert model.base_model is not model  # TRL's chunked loss finds the backbone
    from finetune_tui.engine.recipe.lora_targets import language_linears

    # the planner's "auto" targets are the runner's (routers and gates excluded), layer
    # by layer: as many adapter parameters (Qwen3-Next's k/v projections, 512 wide beside
    # its 512 experts, were once taken for routers at run time)
    chosen = language_linears(model)
    assert set(info.lora_targets) == {n.rsplit(".", 1)[-1] for n in chosen}
    modules = dict(model.named_modules())
    adapted = sum(8 * (modules[n].in_features + modules[n].out_features) for n in chosen)
    assert adapted == info.lora_params(8)
    assert info.params_linear == sum(
        module.weight.numel()
        for module in model.modules()
        if isinstance(module, torch.nn.Linear) and module is not model.get_output_embeddings()
    )
    assert info.params_quantised == sum(  # what bitsandbytes replaces: nn.Linear, no subclass
        module.weight.numel()
        for module in model.modules()
        if type(module) is torch.nn.Linear and module is not model.get_output_embeddings()
    )
    fused = sum(p.numel() for n, p in model.named_parameters() if ".experts." in n)
    assert info.params_experts == fused


def test_nested_text_settings_of_a_multimodal_config():
    nested = inspect_model("google/gemma-3-4b-pt")
    assert nested.model_type == "gemma3_text" and nested.num_layers == 34
    text_only = _info("x", text_config("google/gemma-3-4b-pt")).params_total
    assert nested.params_total == text_only + nested.params_vision  # the vision tower too


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model_type": "mixtral", "num_local_experts": -8}, "'num_local_experts' is -8; it must"),
        (
            {"model_type": "mixtral", "num_local_experts": 8, "num_experts_per_tok": 64},
            "'num_experts_per_tok' is 64, more than the 8 experts",
        ),
        ({"model_type": "qwen2_moe", "decoder_sparse_step": 0}, "'decoder_sparse_step' is 0"),
        ({"tie_word_embeddings": "false"}, "'tie_word_embeddings' is 'false', not true/false"),
        ({"num_hidden_layers": 10**30}, "no model's is above 16,777,216"),
        ({"model_type": ["llama"]}, "'model_type' is ['llama'], not a name"),
        (
            {"model_type": "deepseek_v2", "kv_lora_rank": "512"},
            "'kv_lora_rank' is '512', not an integer",
        ),
        ({"num_key_value_heads": 3}, "3 key/value heads do not divide the 32 attention heads"),
        ({"num_key_value_heads": 64}, "64 key/value heads do not divide the 32"),
        ({"max_position_embeddings": "8192"}, "'max_position_embeddings' is '8192', not an"),
        ({"max_position_embeddings": -5}, "'max_position_embeddings' is -5; it must be at least"),
        # every field the family's config class types: "false" was a true bias
        ({"attention_bias": "false"}, "'attention_bias' is 'false', not true/false"),
        ({"rms_norm_eps": "1e-5"}, "'rms_norm_eps' is '1e-5', not a number"),
        (
            {"model_type": "falcon", "new_decoder_architecture": True, "num_kv_heads": -8},
            "'num_kv_heads' is -8; it must be at least 1",
        ),
        (
            {"model_type": "falcon", "multi_query": "no"},
            "'multi_query' is 'no', not true/false or null",
        ),
        (
            {"model_type": "gpt_oss", "num_local_experts": None},
            "'num_local_experts' is null, not an integer",
        ),
        (
            {"model_type": "qwen3_moe", "num_experts": 8, "mlp_only_layers": 5},
            "'mlp_only_layers' is 5, not a list or null",
        ),
    ],
    ids=[
        "experts",
        "top-k",
        "sparse-step",
        "tie",
        "huge",
        "type",
        "latent-rank",
        "kv-groups",
        "kv-above",
        "context-text",
        "context-negative",
        "declared-bool",
        "declared-float",
        "falcon-kv",
        "falcon-bool",
        "null-experts",
        "dense-layers",
    ],
)
def test_every_size_a_family_reads_is_checked_and_named(change, message):
    """Expert counts, routing, latent ranks and the tie were read as they came: -8 experts
    planned "-6.01 B parameters", top-64 of 8 "51.97 B active", a list model_type was an
    internal error; each is now one line naming its field."""
    config = copy.deepcopy(CATALOG["meta-llama/Llama-3.2-1B"]) | change
    with pytest.raises(ModelError, match=re.escape(message)):
        inspect_config("m", config)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"num_hidden_layers": -1000}, "'vision_config.num_hidden_layers' is -1000; it must be"),
        ({"hidden_size": float("nan")}, "'vision_config.hidden_size' is nan, not an integer"),
        ({"patch_size": 0}, "'vision_config.patch_size' is 0; it must be at least 1"),
        ({"hidden_size": 1152.5}, "'vision_config.hidden_size' is 1152.5, not an integer"),
        ({"num_hidden_layers": 10**400}, "'vision_config.num_hidden_layers' is 1000000"),
    ],
    ids=["negative", "nan", "zero-patch", "fraction", "huge"],
)
def test_a_vision_towers_sizes_are_checked_as_the_language_models(change, message):
    """A Gemma-3 vision_config was read as it came: -1,000 layers planned -3.20 B parameters
    as fitting, NaN and a 400-digit depth were internal errors, a zero patch "lacks what
    planning needs (integer division or modulo by zero)"."""
    config = copy.deepcopy(CATALOG["google/gemma-3-4b-pt"])
    config["vision_config"] = config["vision_config"] | change
    with pytest.raises(ModelError, match=re.escape(message)):
        inspect_config("m", config)


@pytest.mark.parametrize(
    "stray", [{"num_local_experts": 64}, {"num_experts": 64, "moe_intermediate_size": 1}]
)
def test_expert_keys_a_dense_family_does_not_declare_plan_nothing(stray):
    """transformers' LlamaForCausalLM reads no expert count: a Llama config.json carrying one
    (a merge tool's leftover) builds the dense 8 B model, which the plan had as a 363 B
    mixture (or, with a 1-wide expert, 2.43 B)."""
    dense = CATALOG["meta-llama/Llama-3.1-8B"]
    planned = inspect_config("m", copy.deepcopy(dense) | stray)
    assert planned.moe is None
    assert planned.params_total == inspect_config("m", copy.deepcopy(dense)).params_total


def test_architectures_as_one_name_is_not_read_letter_by_letter():
    config = copy.deepcopy(CATALOG["meta-llama/Llama-3.2-1B"]) | {"architectures": "Llama"}
    assert inspect_config("m", config).architecture == "llama"


SIGLIP_896 = {  # the vision_config every published Gemma-3 4B-27B config.json carries
    "hidden_size": 1152,
    "image_size": 896,
    "intermediate_size": 4304,
    "model_type": "siglip_vision_model",
    "num_attention_heads": 16,
    "num_hidden_layers": 27,
    "patch_size": 14,
    "vision_use_head": False,
}
ROPE_8X = {"factor": 8.0, "rope_type": "linear"}


@pytest.mark.parametrize(
    ("text", "published"),
    [
        ({"hidden_size": 2560, "intermediate_size": 10240, "num_hidden_layers": 34}, 4.300e9),
        (
            {
                "hidden_size": 3840,
                "intermediate_size": 15360,
                "num_attention_heads": 16,
                "num_hidden_layers": 48,
                "num_key_value_heads": 8,
            },
            12.19e9,
        ),
        (
            {
                "head_dim": 128,
                "hidden_size": 5376,
                "intermediate_size": 21504,
                "num_attention_heads": 32,
                "num_hidden_layers": 62,
                "num_key_value_heads": 16,
                "query_pre_attn_scalar": 168,
            },
            27.43e9,
        ),
    ],
    ids=["4b", "12b", "27b"],
)
def test_published_gemma3_configs_leave_out_what_their_class_fills_in(text, published):
    """google/gemma-3-{4b,12b,27b}-it's config.json names neither the text model's
    vocabulary nor (4B) its heads: Gemma3TextConfig's defaults fill them, as transformers
    builds it (they were refused: "no integer 'num_attention_heads'")."""
    config = {
        "architectures": ["Gemma3ForConditionalGeneration"],
        "model_type": "gemma3",
        "text_config": text
        | {"model_type": "gemma3_text", "rope_scaling": ROPE_8X, "sliding_window": 1024},
        "vision_config": SIGLIP_896,
    }
    info = inspect_config("gemma-3", config)
    assert info.params_total == pytest.approx(published, rel=0.005)
    assert info.vocab_size == 262208 and info.tie_word_embeddings


def test_experts_are_planned_resident_and_unquantised():
    """All experts stay in memory; NF4 shrinks only nn.Linear layers, which experts are not
    (transformers 5 fuses them), so QLoRA Mixtral keeps ~90 GB of experts in 16-bit."""
    from finetune_tui.engine.plan.memory import base_weight_bytes
    from finetune_tui.engine.settings.preset import settings_from_overrides

    mixtral = inspect_model("mistralai/Mixtral-8x7B-v0.1")
    nf4 = settings_from_overrides(["quantization.mode=nf4", "quantization.compute_dtype=bf16"])
    assert base_weight_bytes(mixtral, nf4) / 2**30 > 0.95 * mixtral.params_experts * 2 / 2**30
    assert set(mixtral.lora_targets) == {"q_proj", "k_proj", "v_proj", "o_proj"}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"model_type": "made_up", "hidden_size": 8}, "model_type 'made_up' is not a family"),
        # transformers knows T5 but builds no causal LM of it: not "training may still work"
        ({"model_type": "t5", "hidden_size": 8}, "'t5' is not a causal language model"),
        (  # left out, a field is the class's default (as transformers builds it); null is not
            {"model_type": "llama", "hidden_size": 8, "num_hidden_layers": None},
            "no integer 'num_hidden_layers'",
        ),
        ({"model_type": "llama", "hidden_size": "8", "num_hidden_layers": 2}, "'hidden_size'"),
    ],
)
def test_an_unknown_family_or_missing_field_is_one_line(config, message):
    with pytest.raises(ModelError, match=message):
        _info("m", config)


def test_moe_memory_terms_follow_the_measurements():
    """What the MoE rows required (docs/BENCHMARKS.md): quantised loading holds one layer
    of experts in 16-bit; DeepSeek-V2's loss no longer holds full logits once LoRA leaves
    its routed experts alone (H200, 2026-12-05): TRL's chunked head, as for every family."""
    from finetune_tui.engine.plan.memory import loading_peak_bytes, logits_bytes
    from finetune_tui.engine.plan.peak import predict_memory
    from finetune_tui.engine.settings.preset import settings_from_overrides

    config = text_config("mistralai/Mixtral-8x7B-v0.1") | {"num_hidden_layers": 4}
    mixtral = _info("mixtral-4l", config)
    nf4 = settings_from_overrides(
        [
            "quantization.mode=nf4",
            "quantization.compute_dtype=bf16",
            "training.micro_batch_size=2",
            "training.max_seq_length=1024",
            "memory.gradient_checkpointing=on",
            "training.optimizer=adamw_8bit",
        ]
    )
    one_layer_of_experts = mixtral.params_experts / 4 * 2
    assert loading_peak_bytes(mixtral, nf4) > one_layer_of_experts
    assert predict_memory(mixtral, nf4).reserved_gib == pytest.approx(14.58, rel=0.03)  # H100
    bf16 = settings_from_overrides(["quantization.mode=none"])
    assert loading_peak_bytes(mixtral, bf16) == 0

    from finetune_tui.engine.plan.memory import COEFFICIENTS as C
    from finetune_tui.engine.plan.memory import head_tile_bytes

    tokens = nf4.training.micro_batch_size * nf4.training.max_seq_length
    for name in ("deepseek-ai/DeepSeek-V2-Lite", "meta-llama/Llama-3.1-8B"):
        model = inspect_model(name)
        chunked = tokens * model.hidden_size * C["head_bytes_per_token_h"]
        assert logits_bytes(model, nf4) == chunked + head_tile_bytes(nf4)


def test_the_head_tile_is_trls_and_grows_with_the_step_tokens_up_to_its_chunk():
    """A micro-batch of one short sample keeps a small tile (traced: 64 MiB at b1 x 1,024,
    256 MiB from b4): the plan charges the share the reserved peak keeps of it."""
    from trl.kernels import chunked_logprob
    from trl.trainer import utils as trl_utils

    from finetune_tui.engine.plan import memory
    from finetune_tui.engine.settings.preset import settings_from_overrides

    assert memory.HEAD_TILE_TOKENS == chunked_logprob.TOKEN_CHUNK_SIZE
    assert memory.HEAD_TILE_VOCAB == trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE

    def tile_mib(batch: int, length: int) -> float:
        overrides = [f"training.micro_batch_size={batch}", f"training.max_seq_length={length}"]
        return memory.head_tile_bytes(settings_from_overrides(overrides)) / 2**20

    share = memory.COEFFICIENTS["head_tile_share"]
    assert tile_mib(1, 1024) == pytest.approx(share * 64)
    assert tile_mib(4, 1024) == tile_mib(8, 1024) == tile_mib(1, 8192) == pytest.approx(share * 256)
    assert tile_mib(2, 512) == tile_mib(1, 1024)


def test_a_family_bitsandbytes_quantises_nothing_of_is_planned_16_bit():
    """transformers' bitsandbytes replaces only `type(module) is nn.Linear`: Falcon's
    FalconLinear projections stay 16-bit under NF4 (H100 rows: 9.58 GiB NF4, 9.60 16-bit).
    The plan said 4-bit (2.4 GiB less on 8 layers, 11 GiB on Falcon-7B): now it plans what
    loads, and the advisor does not offer 4/8-bit for it."""
    from finetune_tui.engine.inspect.hardware import simulated_hardware
    from finetune_tui.engine.plan.advisor import advise
    from finetune_tui.engine.plan.peak import predict_memory
    from finetune_tui.engine.settings.preset import settings_from_overrides

    falcon = inspect_model("tiiuae/falcon-7b")
    assert falcon.params_quantised == 0 and falcon.params_linear > 6e9
    nf4, none = (settings_from_overrides([f"quantization.mode={m}"]) for m in ("nf4", "none"))
    assert predict_memory(falcon, nf4).reserved_gib == predict_memory(falcon, none).reserved_gib
    plan = advise(simulated_hardware(gpu="RTX 4090"), falcon, settings_from_overrides([]))
    assert plan.settings.quantization.mode == "none"
    assert (
        "quantises none of FalconForCausalLM's layers" in plan.unavailable["quantization.mode=nf4"]
    )
    llama = inspect_model("meta-llama/Llama-3.1-8B")
    assert llama.params_quantised == llama.params_linear  # nothing changes for the others


@pytest.mark.parametrize(
    "config",
    [
        # no head_dim: Gemma4TextConfig's 256, not hidden / heads (64 here)
        {"model_type": "gemma4_text", "hidden_size": 256, "num_attention_heads": 4},
        # its attention's biases follow attention_bias (the class's default: on)
        {"model_type": "gpt_neox", "hidden_size": 256, "num_attention_heads": 4},
        {
            "model_type": "gpt_neox",
            "hidden_size": 256,
            "num_attention_heads": 4,
            "attention_bias": False,
        },
    ],
    ids=["gemma4-no-head-dim", "gpt-neox", "gpt-neox-no-attention-bias"],
)
def test_sizes_a_config_leaves_out_are_the_config_classs_defaults(config):
    """What config.json leaves out is counted as transformers fills it in: the installed
    config class's declared defaults (read from its source, never copied here)."""
    from transformers import CONFIG_MAPPING

    fields = config | {"num_hidden_layers": 2, "intermediate_size": 512, "vocab_size": 1000}
    model = meta_model(fields)
    built = CONFIG_MAPPING[config["model_type"]](
        **{k: v for k, v in fields.items() if k != "model_type"}
    )
    info = _info("sparse", fields)
    assert info.params_total == sum(p.numel() for p in model.parameters())
    if config["model_type"] == "gemma4_text":  # its sliding layers' width, per layer
        assert info.head_dim == built.per_layer_config[0].head_dim == 256


@pytest.mark.parametrize(
    "model_id", ["google/gemma-2-2b", "google/gemma-3-1b-pt", "meta-llama/Llama-3.1-8B"]
)
def test_a_config_without_tie_word_embeddings_ties_as_its_class_declares(model_id):
    """transformers' Gemma config classes tie the embeddings by default, Llama's does not:
    the default is read from the installed class, so leaving the key out changes nothing."""
    config = copy.deepcopy(CATALOG[model_id])
    written = inspect_config(model_id, copy.deepcopy(config)).params_total
    config.pop("tie_word_embeddings")
    assert inspect_config(model_id, config).params_total == written
