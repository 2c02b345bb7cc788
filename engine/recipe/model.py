"""The training recipe's model side, written once.

The runner calls these functions, and the exported script carries their source verbatim
(engine/export/script.py copies them with `inspect.getsource`; a test compares them byte for
byte), so what the script does cannot drift from what the run did. Hence the rules here:
plain values in and out (no settings objects), imports inside the functions (startup
stays fast, and the copies run in a script that imports nothing of ours), comments that
read right in a script, and every run-time decision (device, dtype, attention, device
map) taken where training runs, not where the script was exported.
"""

from .lora_targets import auto_lora_targets, language_linears, lora_keywords, lora_module_names


def compute_dtype(wanted):
    """'auto': bf16 where the GPU supports it, fp16 before Ampere, fp32 on a CPU."""
    import torch

    if not torch.cuda.is_available():
        return "fp32" if wanted == "auto" else wanted
    if wanted == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return wanted


def torch_dtype(name):
    import torch

    return getattr(torch, {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[name])


def attention_implementation(wanted, path):
    """'auto': flash-attention when it is installed here, else sdpa, else eager where the
    model's class declares no sdpa support (gpt-oss: its attention sinks). All three keep
    packed samples apart (sdpa and eager through the position ids that restart at every
    sample)."""
    import importlib.util

    if wanted != "auto":
        return wanted
    if importlib.util.find_spec("flash_attn"):
        return "flash_attention_2"
    return "sdpa" if supports_sdpa(path) else "eager"


def supports_sdpa(path):
    """Whether transformers' causal-LM class for this model folder's config supports
    sdpa, as the class itself declares (a class it does not know: assumed to)."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    try:
        config = AutoConfig.from_pretrained(path)
        return bool(getattr(MODEL_FOR_CAUSAL_LM_MAPPING[type(config)], "_supports_sdpa", True))
    except (KeyError, ValueError, OSError):
        return True


def quantization_config(mode, double_quant, dtype):
    """bitsandbytes 8-bit or 4-bit (nf4 / fp4) base weights; None for 16/32-bit."""
    if mode == "none":
        return None
    from transformers import BitsAndBytesConfig

    if mode == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=mode,
        bnb_4bit_use_double_quant=double_quant,
        bnb_4bit_compute_dtype=torch_dtype(dtype),
        bnb_4bit_quant_storage=torch_dtype(dtype),
    )


def dequantizing_config(method):
    """transformers' loading config asking it to dequantise weights stored as `method` to
    16-bit (MXFP4, FP8: their own kernels train nothing), or None where that format's
    config takes no such request or its library is not installed."""
    import inspect

    from transformers.quantizers.auto import AUTO_QUANTIZATION_CONFIG_MAPPING

    config_class = AUTO_QUANTIZATION_CONFIG_MAPPING.get(method)
    if config_class is None or "dequantize" not in inspect.signature(config_class).parameters:
        return None
    try:
        return config_class(dequantize=True)
    except ImportError:
        return None


def stored_dequantizing_config(path, trust_remote_code):
    """For a checkpoint stored in such a format, the config that loads it as 16-bit
    weights (passing none would keep them in the format, untrainable); else None."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    stored = getattr(config, "quantization_config", None)
    if not isinstance(stored, dict) or stored.get("load_in_4bit") or stored.get("load_in_8bit"):
        return None
    return dequantizing_config(stored.get("quant_method"))


def quantized_device_map():
    """Quantised weights are placed as they load: on this process's own GPU (LOCAL_RANK
    under `accelerate launch`, so every rank holds its own copy), and nowhere under
    DeepSpeed ZeRO-3, which places them itself and refuses a device map."""
    import os

    from transformers.integrations import is_deepspeed_zero3_enabled

    if is_deepspeed_zero3_enabled():
        return None
    return {"": int(os.environ.get("LOCAL_RANK", "0"))}


def load_model(path, dtype, attention, quantization, double_quant, trust_remote_code):
    """The base model, quantised or not, ready for LoRA (no generation cache)."""
    from transformers import AutoModelForCausalLM

    kwargs = {
        "dtype": torch_dtype(dtype),
        "attn_implementation": attention,
        "trust_remote_code": trust_remote_code,
    }
    quant = quantization_config(quantization, double_quant, dtype)
    if quant is not None:
        kwargs["quantization_config"] = quant
        device_map = quantized_device_map()
        if device_map is not None:
            kwargs["device_map"] = device_map
    stored = stored_dequantizing_config(path, trust_remote_code)
    if stored is not None:  # 16-bit once loaded: the Trainer places them as any others
        kwargs["quantization_config"] = stored
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    model.config.use_cache = False
    point_loss_at_backbone(model)
    return model


def point_loss_at_backbone(model):
    """Where a class's base_model_prefix names no attribute (transformers 5.17's
    Llama4ForCausalLM: "language_model", its backbone a Llama4TextModel at `model`),
    `model.base_model` is the whole model and TRL's chunked loss, which runs it for the
    last hidden state, fails at the first step. Point this model's prefix at its one child
    that is itself a transformers model (the class and every other model left alone); the
    attribute's name, or None where nothing changed."""
    from transformers import PreTrainedModel

    if model.base_model is not model:
        return None
    backbones = [n for n, c in model.named_children() if isinstance(c, PreTrainedModel)]
    if len(backbones) != 1:
        return None
    model.base_model_prefix = backbones[0]  # this instance only
    return backbones[0]


def keep_kernel_tunings():
    """Triton kernels that tune themselves on first use (Liger's fused MoE experts time
    dozens of variants of each kernel before the first step) keep their timings on disk,
    so only the first run on a machine waits for them; a TRITON_CACHE_AUTOTUNING the user
    set is left alone. Call before liger_kernel is imported: its kernels read it then."""
    import os

    os.environ.setdefault("TRITON_CACHE_AUTOTUNING", "1")


def load_unsloth_model(
    path,
    max_length,
    dtype,
    quantization,
    targets,
    r,
    alpha,
    dropout,
    use_rslora,
    checkpointing,
    seed,
):
    """Unsloth's own loader, LoRA and checkpointing ("unsloth" offloads to CPU). "auto"
    targets are the Hugging Face path's (auto_lora_targets), passed as explicit names:
    Unsloth's own default names Llama's projections, which miss Phi-3's fused qkv_proj and
    gate_up_proj. If Unsloth adapts other layers all the same, this refuses to train."""
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=path,
        max_seq_length=max_length,
        dtype=torch_dtype(dtype),
        load_in_4bit=quantization in ("nf4", "fp4"),
        load_in_8bit=quantization == "8bit",
    )
    offload = {"off": False, "on": True, "unsloth": "unsloth"}[checkpointing]
    wanted = None
    if targets == "auto":
        wanted = language_linears(model)
        targets = auto_lora_targets(model)
    model = FastLanguageModel.get_peft_model(
        model,
        **lora_keywords(targets, r, alpha, dropout, use_rslora),
        use_gradient_checkpointing=offload,
        random_state=seed,
    )
    adapted = lora_module_names(model)
    if wanted is not None and adapted != wanted:
        extra = sorted({n.rsplit(".", 1)[-1] for n in set(adapted) - set(wanted)})
        missed = sorted({n.rsplit(".", 1)[-1] for n in set(wanted) - set(adapted)})
        raise ValueError(
            f"Unsloth adapted {len(adapted)} layers where lora.target_modules 'auto' means "
            f"{len(wanted)} (extra: {', '.join(extra) or 'none'}; missing: "
            f"{', '.join(missed) or 'none'}); use memory.backend hf or liger for this model"
        )
    return model, tokenizer


def load_tokenizer(path, trust_remote_code):
    """The model's tokenizer; one without a pad token pads with its EOS (batches need one)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


# What the exported script copies, in order: the model side (every backend's, since
# BACKEND may be changed where the script runs); the trainer's side is trainer.py's.
MODEL_FUNCTIONS = (
    load_tokenizer,
    compute_dtype,
    torch_dtype,
    supports_sdpa,
    attention_implementation,
    quantization_config,
    dequantizing_config,
    stored_dequantizing_config,
    quantized_device_map,
    point_loss_at_backbone,
    load_model,
    keep_kernel_tunings,
    load_unsloth_model,
)
