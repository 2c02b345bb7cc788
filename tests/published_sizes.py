"""Published parameter counts (test data): the planner's counts from config.json alone
are checked against them (tests/test_model_families.py, tests/test_planner.py)."""

PUBLISHED_SIZES = {
    "meta-llama/Llama-3.2-1B": 1.236e9,
    "meta-llama/Llama-3.1-8B": 8.030e9,
    "meta-llama/Llama-3.1-70B": 70.55e9,
    "meta-llama/Llama-2-7b-hf": 6.738e9,
    "google/gemma-2-9b": 9.242e9,
    "google/gemma-2-2b": 2.614e9,
    "google/gemma-2-27b": 27.23e9,
    "Qwen/Qwen2.5-7B": 7.616e9,
    "Qwen/Qwen2.5-0.5B": 0.494e9,
    "mistralai/Mistral-7B-v0.3": 7.248e9,
    "microsoft/Phi-3-mini-4k-instruct": 3.821e9,
    "EleutherAI/pythia-1b": 1.012e9,
    "Qwen/Qwen3-8B": 8.191e9,
    "Qwen/Qwen3-30B-A3B": 30.53e9,
    "mistralai/Mixtral-8x7B-v0.1": 46.70e9,
    "allenai/OLMoE-1B-7B-0924": 6.919e9,
    "deepseek-ai/DeepSeek-V2-Lite": 15.71e9,
    "microsoft/Phi-3.5-MoE-instruct": 41.87e9,
    "google/gemma-3-1b-pt": 1.000e9,
    "mistralai/Mistral-Nemo-Base-2407": 12.25e9,
    "bigcode/starcoder2-3b": 3.03e9,
}
# Parameters one token passes through, as the model cards give them (two significant
# digits). DeepSeek counts without the input embedding (a lookup, not a matmul).
ACTIVE_WITHOUT_INPUT_EMBEDDING = {"deepseek-ai/DeepSeek-V2-Lite"}
PUBLISHED_ACTIVE = {
    "Qwen/Qwen3-30B-A3B": 3.3e9,
    "mistralai/Mixtral-8x7B-v0.1": 12.9e9,
    "allenai/OLMoE-1B-7B-0924": 1.3e9,
    "deepseek-ai/DeepSeek-V2-Lite": 2.4e9,
    "microsoft/Phi-3.5-MoE-instruct": 6.6e9,
}
