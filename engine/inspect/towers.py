"""The towers a multimodal checkpoint holds beside its language model, counted from a config
dict the way transformers builds them (Gemma-3's SigLIP vision tower and projection;
Gemma-4's vision and audio towers and their embedders), without importing torch: nn.Linear
layers apart (what bitsandbytes quantises and what PEFT could target), every other
parameter as one number (convolutions, norms, position tables, biases, per_dim_scale).
Gemma4ClippableLinear's clip bounds and the vision tower's std_bias/std_scale are buffers,
not parameters, so they count nowhere."""

from __future__ import annotations

from .library_tables import with_defaults
from .shapes import Linear, merged


def _linears(shapes: list[tuple[str, int, int, int]]) -> list[Linear]:
    """One Linear per distinct (leaf name, in, out); none adapted by "auto" LoRA. All are
    plain nn.Linear (Gemma4ClippableLinear wraps one as `.linear`), so bitsandbytes
    quantises every one."""
    return merged(Linear(n, i, o, times, auto_lora=False) for n, i, o, times in shapes)


def _embedder(width: int, text_hidden: int) -> tuple[str, int, int, int]:
    """Gemma4MultimodalEmbedder: a scale-free RMSNorm, then width → text hidden."""
    return ("embedding_projection", width, text_hidden, 1)


def vision_tower(vision: dict | None, text_hidden: int) -> tuple[list[Linear], int]:
    """(the tower's and its embedder's nn.Linear layers, every other parameter)"""
    if vision is None:
        return [], 0
    c = with_defaults("gemma4_vision", vision)
    hidden, inter, layers = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    heads, kv_heads, head_dim = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    shapes = [
        ("input_proj", 3 * c["patch_size"] ** 2, hidden, 1),  # patch embedder
        ("linear", hidden, heads * head_dim, layers),  # q_proj
        ("linear", hidden, kv_heads * head_dim, 2 * layers),  # k_proj, v_proj
        ("linear", heads * head_dim, hidden, layers),  # o_proj
        ("linear", hidden, inter, 2 * layers),  # gate_proj, up_proj
        ("linear", inter, hidden, layers),  # down_proj
        # the embedder reads `output_proj_dims` only if a config.json adds one to vision
        _embedder(c.get("output_proj_dims", hidden), text_hidden),
    ]
    position_table = 2 * c["position_embedding_size"] * hidden
    per_layer = 4 * hidden + 2 * head_dim  # four layer norms; q_norm, k_norm (v_norm: no scale)
    return _linears(shapes), position_table + layers * per_layer


def audio_tower(audio: dict | None, text_hidden: int) -> tuple[list[Linear], int]:
    """(the tower's and its embedder's nn.Linear layers, every other parameter)"""
    if audio is None:
        return [], 0
    c = with_defaults("gemma4_audio", audio)
    hidden, layers, out = c["hidden_size"], c["num_hidden_layers"], c["output_proj_dims"]
    heads = c["num_attention_heads"]
    qkv = heads * (hidden // heads)
    ch0, ch1 = c["subsampling_conv_channels"]
    shapes = [
        ("input_proj_linear", (ch0 // 4) * ch1, hidden, 1),  # after the two conv layers
        ("linear", hidden, 4 * hidden, 2 * layers),  # ffw_layer_1 of two feed-forwards
        ("linear", 4 * hidden, hidden, 2 * layers),  # ffw_layer_2
        ("linear", hidden, qkv, 3 * layers),  # q_proj, k_proj, v_proj
        ("relative_k_proj", hidden, qkv, layers),  # a bare nn.Linear
        ("linear", hidden, hidden, 2 * layers),  # attention's post, lconv's linear_end
        ("linear", hidden, 2 * hidden, layers),  # lconv's linear_start
        ("output_proj", hidden, out, 1),
        _embedder(out, text_hidden),
    ]
    # two 3x3 convolutions without bias, each followed by a bias-free LayerNorm
    subsample = 9 * ch0 + ch0 + 9 * ch0 * ch1 + ch1
    per_layer = (
        4 * hidden  # the two feed-forwards' pre and post norms
        + hidden // heads  # per_dim_scale
        + hidden * c["conv_kernel_size"]  # depthwise conv1d, one filter per channel
        + 2 * hidden  # lconv's pre_layer_norm, conv_norm
        + 3 * hidden  # norm_pre_attn, norm_post_attn, norm_out
    )
    return _linears(shapes), subsample + layers * per_layer + out  # out: output_proj's bias


def gemma4_towers(config: dict, text_hidden: int, tied: bool) -> tuple[list[Linear], int]:
    """Gemma-4's vision and audio towers. bitsandbytes through transformers leaves the
    model's last parameter's module unquantised: with tied embeddings, the last tower's
    embedder into the language model."""
    v_linears, v_other = vision_tower(config.get("vision_config"), text_hidden)
    a_linears, a_other = audio_tower(config.get("audio_config"), text_hidden)
    linears = v_linears + a_linears
    if tied and linears:
        last = linears[-1]  # the embedder: each tower's list ends with it
        linears[-1] = Linear(last.name, last.in_features, last.out_features, 1, False, False)
    return linears, v_other + a_other


def siglip_tower(vision: dict, text_hidden: int) -> tuple[list[Linear], int]:
    """A SigLIP tower and Gemma-3's projection into the language model."""
    c = with_defaults("siglip_vision_model", vision)
    h, width = c["hidden_size"], c["intermediate_size"]
    layers, patch = c["num_hidden_layers"], c["patch_size"]
    image, channels = c["image_size"], c["num_channels"]
    positions = (image // patch) ** 2
    linears = [
        *(Linear(n, h, h, layers, auto_lora=False) for n in ("q_proj", "k_proj", "v_proj")),
        Linear("out_proj", h, h, layers, auto_lora=False),
        Linear("fc1", h, width, layers, auto_lora=False),
        Linear("fc2", width, h, layers, auto_lora=False),
    ]
    biases_norms = layers * (4 * h + width + h + 4 * h)  # q/k/v/out, fc1, fc2 biases; 2 norms
    other = biases_norms + 2 * h  # post_layernorm
    other += channels * patch * patch * h + h + positions * h  # patch conv, positions
    if c.get("vision_use_head", True):  # SigLIP's attention-pooling head (not a declared field)
        other += h + (3 * h * h + 3 * h) + h + 2 * h + width + h  # probe, in_proj, biases, norm
        linears += [
            Linear("out_proj", h, h, 1, auto_lora=False),
            Linear("fc1", h, width, 1, auto_lora=False),
            Linear("fc2", width, h, 1, auto_lora=False),
        ]
    other += h * text_hidden + h  # gemma3's projection matrix (a Parameter), RMSNorm
    return linears, other
