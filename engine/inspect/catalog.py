"""The config.json fields that matter for planning, for popular models on the Hub.

Lets a user plan for a hub ID without downloading anything. Values are those of the
published config.json files (only the fields the planner reads).
"""

from __future__ import annotations

from .catalog_builders import DELTANET, gemma2, llama, qwen2, qwen3_5

CATALOG: dict[str, dict] = {
    "meta-llama/Llama-3.2-1B": llama(2048, 8192, 16, 32, 8, 128256, 131072, tie=True, head_dim=64),
    "meta-llama/Llama-3.2-3B": llama(3072, 8192, 28, 24, 8, 128256, 131072, tie=True, head_dim=128),
    "meta-llama/Llama-3.1-8B": llama(4096, 14336, 32, 32, 8, 128256, 131072),
    "meta-llama/Llama-3.1-70B": llama(8192, 28672, 80, 64, 8, 128256, 131072),
    "meta-llama/Llama-2-7b-hf": llama(4096, 11008, 32, 32, 32, 32000, 4096),
    "meta-llama/Llama-2-13b-hf": llama(5120, 13824, 40, 40, 40, 32000, 4096),
    "meta-llama/Llama-2-70b-hf": llama(8192, 28672, 80, 64, 8, 32000, 4096),
    "google/gemma-2-2b": gemma2(2304, 9216, 26, 8, 4),
    "google/gemma-2-9b": gemma2(3584, 14336, 42, 16, 8),
    "google/gemma-2-27b": gemma2(4608, 36864, 46, 32, 16, 128, query_pre_attn_scalar=144),
    "Qwen/Qwen2.5-0.5B": qwen2(896, 4864, 24, 14, 2, 32768, True),
    "Qwen/Qwen2.5-1.5B": qwen2(1536, 8960, 28, 12, 2, 32768, True),
    "Qwen/Qwen2.5-3B": qwen2(2048, 11008, 36, 16, 2, 32768, True),
    "Qwen/Qwen2.5-7B": qwen2(3584, 18944, 28, 28, 4, 131072, False, vocab=152064),
    "Qwen/Qwen2.5-14B": qwen2(5120, 13824, 48, 40, 8, 131072, False, vocab=152064),
    "Qwen/Qwen2.5-32B": qwen2(5120, 27648, 64, 40, 8, 131072, False, vocab=152064),
    "Qwen/Qwen2.5-72B": qwen2(8192, 29568, 80, 64, 8, 131072, False, vocab=152064),
    "mistralai/Mistral-7B-v0.3": llama(
        4096, 14336, 32, 32, 8, 32768, 32768, arch="MistralForCausalLM", model_type="mistral"
    ),
    "microsoft/Phi-3-mini-4k-instruct": llama(
        3072, 8192, 32, 32, 32, 32064, 4096, arch="Phi3ForCausalLM", model_type="phi3"
    ),
    "microsoft/phi-4": llama(
        5120, 17920, 40, 40, 10, 100352, 16384, arch="Phi3ForCausalLM", model_type="phi3"
    ),
    "cyberagent/open-calm-7b": {
        "architectures": ["GPTNeoXForCausalLM"],
        "model_type": "gpt_neox",
        "hidden_size": 4096,
        "intermediate_size": 16384,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "vocab_size": 52224,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": False,
    },
    "EleutherAI/pythia-1b": {
        "architectures": ["GPTNeoXForCausalLM"],
        "model_type": "gpt_neox",
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "num_attention_heads": 8,
        "vocab_size": 50304,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": False,
    },
}


def _moe(model_type, arch, hidden, layers, heads, kv, vocab, ctx, **moe):
    """A mixture-of-experts config: attention like Llama, experts by the family's own keys."""
    return llama(
        hidden, moe.pop("inter", 0), layers, heads, kv, vocab, ctx, False, arch, model_type, **moe
    )


CATALOG |= {
    "Qwen/Qwen3-8B": llama(
        4096, 12288, 36, 32, 8, 151936, 40960, False, "Qwen3ForCausalLM", "qwen3", head_dim=128
    ),
    # Qwen3.5-9B: transformers' Qwen3_5TextConfig defaults ("Qwen3.5-9B style")
    "Qwen/Qwen3.5-9B": qwen3_5(4096, 12288, 32, 16, 4, 32),
    "Qwen/Qwen3.5-27B": qwen3_5(5120, 17408, 64, 24, 4, 48),
    # Qwen3.5-35B-A3B: transformers' Qwen3_5MoeTextConfig defaults ("35B-A3B style")
    "Qwen/Qwen3.5-35B-A3B": qwen3_5(
        2048,
        512,
        40,
        16,
        2,
        32,
        num_experts=256,
        num_experts_per_tok=8,
        moe_intermediate_size=512,
        shared_expert_intermediate_size=512,
    ),
    # Qwen3-Next-80B-A3B: transformers' Qwen3NextConfig defaults (its docstring's checkpoint)
    "Qwen/Qwen3-Next-80B-A3B-Instruct": llama(
        2048,
        5632,
        48,
        16,
        2,
        151936,
        262144,
        False,
        "Qwen3NextForCausalLM",
        "qwen3_next",
        head_dim=256,
        num_experts=512,
        num_experts_per_tok=10,
        moe_intermediate_size=512,
        shared_expert_intermediate_size=512,
        **DELTANET,
    ),
    # Llama-4-Scout: transformers' Llama4TextConfig defaults; AutoModelForCausalLM builds the
    # text-only Llama4ForCausalLM from the multimodal config (its vision tower not loaded)
    "meta-llama/Llama-4-Scout-17B-16E": {
        "architectures": ["Llama4ForConditionalGeneration"],
        "model_type": "llama4",
        "text_config": llama(
            5120,
            8192,
            48,
            40,
            8,
            202048,
            10485760,
            False,
            "Llama4ForCausalLM",
            "llama4_text",
            head_dim=128,
            intermediate_size_mlp=16384,
            num_local_experts=16,
            num_experts_per_tok=1,
            interleave_moe_layer_step=1,
        ),
        "vision_config": {"model_type": "llama4_vision_model"},
    },
    "Qwen/Qwen3-30B-A3B": _moe(
        "qwen3_moe",
        "Qwen3MoeForCausalLM",
        2048,
        48,
        32,
        4,
        151936,
        40960,
        inter=6144,
        head_dim=128,
        num_experts=128,
        num_experts_per_tok=8,
        moe_intermediate_size=768,
        decoder_sparse_step=1,
        mlp_only_layers=[],
    ),
    "mistralai/Mixtral-8x7B-v0.1": _moe(
        "mixtral",
        "MixtralForCausalLM",
        4096,
        32,
        32,
        8,
        32000,
        32768,
        inter=14336,
        num_local_experts=8,
        num_experts_per_tok=2,
    ),
    "allenai/OLMoE-1B-7B-0924": _moe(
        "olmoe",
        "OlmoeForCausalLM",
        2048,
        16,
        16,
        16,
        50304,
        4096,
        inter=1024,
        num_experts=64,
        num_experts_per_tok=8,
    ),
    "deepseek-ai/DeepSeek-V2-Lite": _moe(
        "deepseek_v2",
        "DeepseekV2ForCausalLM",
        2048,
        27,
        16,
        16,
        102400,
        163840,
        inter=10944,
        moe_intermediate_size=1408,
        n_routed_experts=64,
        n_shared_experts=2,
        num_experts_per_tok=6,
        first_k_dense_replace=1,
        kv_lora_rank=512,
        q_lora_rank=None,
        qk_nope_head_dim=128,
        qk_rope_head_dim=64,
        v_head_dim=128,
    ),
    "microsoft/Phi-3.5-MoE-instruct": _moe(
        "phimoe",
        "PhimoeForCausalLM",
        4096,
        32,
        32,
        8,
        32064,
        131072,
        inter=6400,
        num_local_experts=16,
        num_experts_per_tok=2,
        attention_bias=True,
        lm_head_bias=True,
    ),
    "google/gemma-3-1b-pt": llama(
        1152, 6912, 26, 4, 1, 262144, 32768, True, "Gemma3ForCausalLM", "gemma3_text", head_dim=256
    ),
    "google/gemma-3-4b-pt": {  # multimodal: the text model's settings are nested
        "architectures": ["Gemma3ForConditionalGeneration"],
        "model_type": "gemma3",
        "text_config": llama(
            2560,
            10240,
            34,
            8,
            4,
            262208,
            131072,
            True,
            "Gemma3ForCausalLM",
            "gemma3_text",
            head_dim=256,
        ),
        # google/gemma-3-4b-pt config.json: a SigLIP tower (0.42 B) the checkpoint holds
        "vision_config": {
            "model_type": "siglip_vision_model",
            "hidden_size": 1152,
            "intermediate_size": 4304,
            "num_hidden_layers": 27,
            "num_attention_heads": 16,
            "image_size": 896,
            "patch_size": 14,
            "vision_use_head": False,
        },
        "mm_tokens_per_image": 256,
    },
    # transformers' Gemma4Config defaults (its docstring's checkpoint, google/gemma-4-e2b-it),
    # not read from the Hub: sliding and full layers of their own head widths, per-layer
    # embeddings, vision and audio towers
    "google/gemma-4-E2B": {
        "architectures": ["Gemma4ForConditionalGeneration"],
        "model_type": "gemma4",
        "text_config": llama(
            2304,
            9216,
            30,
            8,
            4,
            262144,
            131072,
            True,
            "Gemma4ForCausalLM",
            "gemma4_text",
            head_dim=256,
            global_head_dim=512,
            hidden_size_per_layer_input=256,
            vocab_size_per_layer_input=262144,
            num_kv_shared_layers=0,
        ),
        "vision_config": {"model_type": "gemma4_vision"},
        "audio_config": {"model_type": "gemma4_audio"},
    },
    "mistralai/Mistral-Nemo-Base-2407": llama(
        5120, 14336, 40, 32, 8, 131072, 128000, False, "MistralForCausalLM", "mistral", head_dim=128
    ),
    "tiiuae/falcon-7b": {
        "architectures": ["FalconForCausalLM"],
        "model_type": "falcon",
        "hidden_size": 4544,
        "num_hidden_layers": 32,
        "num_attention_heads": 71,
        "multi_query": True,
        "parallel_attn": True,
        "new_decoder_architecture": False,
        "bias": False,
        "vocab_size": 65024,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": True,
    },
    "bigcode/starcoder2-3b": llama(
        3072,
        12288,
        30,
        24,
        2,
        49152,
        16384,
        True,
        "Starcoder2ForCausalLM",
        "starcoder2",
        use_bias=True,
    ),
}

# Families people fine-tune now (issue 26), values from the published config.json files.
CATALOG |= {
    # HuggingFaceTB/SmolLM3-3B: NoPE every 4th layer changes no parameter
    "HuggingFaceTB/SmolLM3-3B": llama(
        2048, 11008, 36, 16, 4, 128256, 65536, True, "SmolLM3ForCausalLM", "smollm3"
    ),
    # ibm-granite/granite-3.3-8b-instruct: Llama-shaped, scaling multipliers only
    "ibm-granite/granite-3.3-8b-instruct": llama(
        4096, 12800, 40, 32, 8, 49159, 131072, True, "GraniteForCausalLM", "granite"
    ),
    # allenai/Olmo-3-1025-7B: post-norms, q/k norms, 3 sliding-window layers of 4
    "allenai/Olmo-3-1025-7B": llama(
        4096, 11008, 32, 32, 32, 100278, 65536, False, "Olmo3ForCausalLM", "olmo3"
    ),
    # openai/gpt-oss-20b: 32 experts, 4 per token, attention biases and sinks; MXFP4 on
    # the hub, loaded dequantised to the 16-bit weights transformers trains
    "openai/gpt-oss-20b": _moe(
        "gpt_oss",
        "GptOssForCausalLM",
        2880,
        24,
        64,
        8,
        201088,
        131072,
        inter=2880,
        head_dim=64,
        num_local_experts=32,
        num_experts_per_tok=4,
        attention_bias=True,
        sliding_window=128,
        quantization_config={"quant_method": "mxfp4"},
    ),
}

# Families transformers 5.17 builds (and liger-kernel 0.8.5 patches) that the planner has
# no memory model for yet: asking for one is this line, not a wrong plan.
UNPLANNED: dict[str, str] = {
    "tiiuae/Falcon-H1-7B-Base": "falcon_h1: Mamba-2 state-space mixers beside its attention",
}
