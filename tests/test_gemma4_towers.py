"""inspect/towers.py's Gemma-4 counts against Gemma4ForConditionalGeneration as
transformers builds it (on the meta device: shapes only, no memory): every parameter
outside the language model and lm_head, and every nn.Linear there by leaf name, shape,
count and whether bitsandbytes would quantise it (exactly nn.Linear, not a subclass)."""

from __future__ import annotations

from collections import Counter

import pytest

from finetune_tui.engine.inspect.towers import audio_tower, vision_tower

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
gemma4 = pytest.importorskip("transformers.models.gemma4.configuration_gemma4")

# A one-layer language model: only its hidden size reaches the towers' embedders.
TEXT = dict(
    hidden_size=2304,
    intermediate_size=64,
    num_hidden_layers=1,
    layer_types=["full_attention"],
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=32,
    global_head_dim=32,
    vocab_size=128,
    vocab_size_per_layer_input=128,
    hidden_size_per_layer_input=8,
)
VISION_SMALL = dict(  # q_proj's width (heads × head_dim) differs from hidden_size
    hidden_size=96,
    intermediate_size=160,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    patch_size=8,
    position_embedding_size=64,
    use_clipped_linears=True,
    standardize=True,
)
AUDIO_SMALL = dict(  # 70 // 4 heads: q/k/v are 68 wide, not 70
    hidden_size=70,
    num_hidden_layers=3,
    num_attention_heads=4,
    subsampling_conv_channels=[16, 8],
    conv_kernel_size=3,
    output_proj_dims=48,
    use_clipped_linears=False,
)
VISION_SQUARE = dict(  # q, k, v, o, gate and up all 64 × 64: one merged entry
    hidden_size=64,
    intermediate_size=64,
    num_hidden_layers=1,
    num_attention_heads=2,
    num_key_value_heads=2,
    head_dim=32,
    patch_size=4,
    position_embedding_size=16,
)
AUDIO_SQUARE = dict(  # output_proj 32 → 32, as wide as the attention's post
    hidden_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    subsampling_conv_channels=[8, 4],
    output_proj_dims=32,
    use_clipped_linears=True,
)

CASES = {
    "defaults": ({}, {}),
    "small": (VISION_SMALL, AUDIO_SMALL),
    "square": (VISION_SQUARE, AUDIO_SQUARE),
    "vision only": (VISION_SMALL, None),
    "audio only": (None, AUDIO_SQUARE),
}


def _built(vision: dict | None, audio: dict | None):
    config = transformers.Gemma4Config(text_config=TEXT, vision_config=vision, audio_config=audio)
    with torch.device("meta"):
        return transformers.AutoModelForCausalLM.from_config(config)


def _outside_language_model(name: str) -> bool:
    return not name.startswith(("model.language_model.", "lm_head"))


def _from_model(model) -> tuple[Counter, int]:
    """(leaf name, in, out, quantised) → count for every nn.Linear of the towers and
    embedders, and the numel of all their parameters."""
    linears = Counter(
        (name.rsplit(".", 1)[-1], m.in_features, m.out_features, type(m) is torch.nn.Linear)
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and _outside_language_model(name)
    )
    total = sum(p.numel() for n, p in model.named_parameters() if _outside_language_model(n))
    return linears, total


def _counted(vision: dict | None, audio: dict | None) -> tuple[Counter, int]:
    hidden = TEXT["hidden_size"]
    (v_lin, v_other), (a_lin, a_other) = vision_tower(vision, hidden), audio_tower(audio, hidden)
    linears = Counter()
    for lin in v_lin + a_lin:
        assert not lin.auto_lora
        linears[lin.name, lin.in_features, lin.out_features, lin.quantised] += lin.layers
    total = sum(lin.params for lin in v_lin + a_lin) + v_other + a_other
    return linears, total


@pytest.mark.parametrize("vision, audio", CASES.values(), ids=CASES.keys())
def test_towers_match_the_built_model(vision, audio):
    assert _counted(vision, audio) == _from_model(_built(vision, audio))


@pytest.mark.parametrize("vision, audio", [CASES["small"], CASES["square"]], ids=["small", "sq"])
def test_a_config_json_dict_counts_the_same(vision, audio):
    """What a checkpoint's config.json holds: every field written out, model_type and all."""
    as_saved = (
        gemma4.Gemma4VisionConfig(**vision).to_dict(),
        gemma4.Gemma4AudioConfig(**audio).to_dict(),
    )
    assert _counted(*as_saved) == _counted(vision, audio) == _from_model(_built(*as_saved))


def test_defaults_resolve_without_the_config_classes():
    """The defaults come from reading configuration_gemma4.py, arithmetic defaults included."""
    linears, other = vision_tower({}, 2304)
    assert other == 2 * gemma4.Gemma4VisionConfig().position_embedding_size * 768 + 16 * (
        4 * 768 + 2 * 64
    )
    assert all(lin.quantised and not lin.auto_lora for lin in linears)
