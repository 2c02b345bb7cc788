"""The config.json fields that matter for planning, for popular models on the Hub.

Lets a user plan for a hub ID without downloading anything. Values are those of the
published config.json files (only the fields the planner reads).
"""

from __future__ import annotations


def _llama(
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


def _qwen2(hidden, inter, layers, heads, kv, ctx, tie, vocab=151936):
    return _llama(hidden, inter, layers, heads, kv, vocab, ctx, tie, "Qwen2ForCausalLM", "qwen2")


def _gemma2(hidden, inter, layers, heads, kv):
    return _llama(
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
        head_dim=256,
        final_logit_softcapping=30.0,
    )


CATALOG: dict[str, dict] = {
    "meta-llama/Llama-3.2-1B": _llama(2048, 8192, 16, 32, 8, 128256, 131072, tie=True, head_dim=64),
    "meta-llama/Llama-3.2-3B": _llama(
        3072, 8192, 28, 24, 8, 128256, 131072, tie=True, head_dim=128
    ),
    "meta-llama/Llama-3.1-8B": _llama(4096, 14336, 32, 32, 8, 128256, 131072),
    "meta-llama/Llama-3.1-70B": _llama(8192, 28672, 80, 64, 8, 128256, 131072),
    "meta-llama/Llama-2-7b-hf": _llama(4096, 11008, 32, 32, 32, 32000, 4096),
    "meta-llama/Llama-2-13b-hf": _llama(5120, 13824, 40, 40, 40, 32000, 4096),
    "meta-llama/Llama-2-70b-hf": _llama(8192, 28672, 80, 64, 8, 32000, 4096),
    "google/gemma-2-2b": _gemma2(2304, 9216, 26, 8, 4),
    "google/gemma-2-9b": _gemma2(3584, 14336, 42, 16, 8),
    "google/gemma-2-27b": _gemma2(4608, 36864, 46, 32, 16),
    "Qwen/Qwen2.5-0.5B": _qwen2(896, 4864, 24, 14, 2, 32768, True),
    "Qwen/Qwen2.5-1.5B": _qwen2(1536, 8960, 28, 12, 2, 32768, True),
    "Qwen/Qwen2.5-3B": _qwen2(2048, 11008, 36, 16, 2, 32768, True),
    "Qwen/Qwen2.5-7B": _qwen2(3584, 18944, 28, 28, 4, 131072, False, vocab=152064),
    "Qwen/Qwen2.5-14B": _qwen2(5120, 13824, 48, 40, 8, 131072, False, vocab=152064),
    "Qwen/Qwen2.5-32B": _qwen2(5120, 27648, 64, 40, 8, 131072, False, vocab=152064),
    "Qwen/Qwen2.5-72B": _qwen2(8192, 29568, 80, 64, 8, 131072, False, vocab=152064),
    "mistralai/Mistral-7B-v0.3": _llama(
        4096, 14336, 32, 32, 8, 32768, 32768, arch="MistralForCausalLM", model_type="mistral"
    ),
    "microsoft/Phi-3-mini-4k-instruct": _llama(
        3072, 8192, 32, 32, 32, 32064, 4096, arch="Phi3ForCausalLM", model_type="phi3"
    ),
    "microsoft/phi-4": _llama(
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

# Published sizes (parameters) the counting is checked against in the tests.
PUBLISHED_SIZES = {
    "meta-llama/Llama-3.2-1B": 1.236e9,
    "meta-llama/Llama-3.1-8B": 8.030e9,
    "meta-llama/Llama-3.1-70B": 70.55e9,
    "meta-llama/Llama-2-7b-hf": 6.738e9,
    "google/gemma-2-9b": 9.242e9,
    "google/gemma-2-2b": 2.614e9,
    "Qwen/Qwen2.5-7B": 7.616e9,
    "Qwen/Qwen2.5-0.5B": 0.494e9,
    "mistralai/Mistral-7B-v0.3": 7.248e9,
    "microsoft/Phi-3-mini-4k-instruct": 3.821e9,
    "EleutherAI/pythia-1b": 1.012e9,
}
