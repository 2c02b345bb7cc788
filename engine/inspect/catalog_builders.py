"""How the catalog writes its config.json dicts: the fields the planner reads, by family
(Llama-shaped, Qwen2, Gemma-2, Qwen3.5's nested multimodal form).
"""

from __future__ import annotations


def llama(
    hidden,
    inter,
    layers,
    heads,
    kv,
    vocab,
    ctx,
    tie=False,
    arch="LlamaForCausalLM",
    model_type="llama",
    **extra,
):
    return {
        "architectures": [arch],
        "model_type": model_type,
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "vocab_size": vocab,
        "max_position_embeddings": ctx,
        "tie_word_embeddings": tie,
        **extra,
    }


def qwen2(hidden, inter, layers, heads, kv, ctx, tie, vocab=151936):
    return llama(hidden, inter, layers, heads, kv, vocab, ctx, tie, "Qwen2ForCausalLM", "qwen2")


def gemma2(hidden, inter, layers, heads, kv, head_dim=256, **more):
    """Gemma-2's config.json (the 27 B's heads are 128 wide, its attention scaled by 144)."""
    return llama(
        hidden,
        inter,
        layers,
        heads,
        kv,
        256000,
        8192,
        True,
        "Gemma2ForCausalLM",
        "gemma2",
        head_dim=head_dim,
        final_logit_softcapping=30.0,
        **more,
    )


# the gated DeltaNet layers' widths every published Qwen3.5 and Qwen3-Next config shares
DELTANET = {
    "linear_num_key_heads": 16,
    "linear_num_value_heads": 32,
    "linear_key_head_dim": 128,
    "linear_value_head_dim": 128,
    "linear_conv_kernel_dim": 4,
    "full_attention_interval": 4,
}


def qwen3_5(hidden, inter, layers, heads, kv, value_heads, **experts):
    """Qwen3.5's multimodal config.json: the text model nested (gated DeltaNet layers, every
    4th full attention; `experts`: Qwen3.5-MoE's), a vision tower AutoModelForCausalLM does
    not load (it builds the text-only Qwen3_5ForCausalLM / Qwen3_5MoeForCausalLM)."""
    moe, cls = ("_moe", "Qwen3_5Moe") if experts else ("", "Qwen3_5")
    text = llama(hidden, inter, layers, heads, kv, 248320, 262144, False, f"{cls}ForCausalLM")
    text |= {"model_type": f"qwen3_5{moe}_text", "head_dim": 256, **experts, **DELTANET}
    text["linear_num_value_heads"] = value_heads
    return {
        "architectures": [f"{cls}ForConditionalGeneration"],
        "model_type": f"qwen3_5{moe}",
        "text_config": text,
        "vision_config": {"model_type": f"qwen3_5{moe}_vision", "depth": 27, "hidden_size": 1152},
    }
