"""The training recipe's model side, written once.

The runner calls these functions, and the exported script carries their source verbatim
(engine/script.py copies them with `inspect.getsource`; a test compares them byte for
byte), so what the script does cannot drift from what the run did. Hence the rules here:
plain values in and out (no settings objects), imports inside the functions (startup
stays fast, and the copies run in a script that imports nothing of ours), comments that
read right in a script, and every run-time decision (device, dtype, attention, device
map) taken where training runs, not where the script was exported.
"""


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


def attention_implementation(wanted):
    """'auto': flash-attention when it is installed here, else sdpa (both keep packed
    samples apart: sdpa through the position ids that restart at every sample)."""
    import importlib.util

    if wanted != "auto":
        return wanted
    return "flash_attention_2" if importlib.util.find_spec("flash_attn") else "sdpa"


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
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    model.config.use_cache = False
    return model


def auto_lora_targets(model):
    """What "auto" LoRA targets mean: the name of every linear layer in the model but its
    output head (bitsandbytes' 4/8-bit layers are nn.Linear too; GPT-2's Conv1D is one)."""
    import torch

    output = model.get_output_embeddings()
    names = set()
    for name, module in model.named_modules():
        linear = isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"
        if linear and module is not output:
            names.add(name.rsplit(".", 1)[-1])
    return sorted(names)


def lora_config(targets, r, alpha, dropout, use_rslora):
    """PEFT LoRA on the modules named in `targets`."""
    from peft import LoraConfig

    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets,
        use_rslora=use_rslora,
        bias="none",
        task_type="CAUSAL_LM",
    )


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
    """Unsloth's own loader, LoRA and checkpointing ("unsloth" offloads to CPU)."""
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=path,
        max_seq_length=max_length,
        dtype=torch_dtype(dtype),
        load_in_4bit=quantization in ("nf4", "fp4"),
        load_in_8bit=quantization == "8bit",
    )
    offload = {"off": False, "on": True, "unsloth": "unsloth"}[checkpointing]
    if targets == "auto":  # the projections Unsloth's fused LoRA kernels handle
        targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = FastLanguageModel.get_peft_model(
        model,
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets,
        use_gradient_checkpointing=offload,
        random_state=seed,
        use_rslora=use_rslora,
        bias="none",
    )
    return model, tokenizer


def trainer_arguments(
    *,
    output_dir,
    micro_batch_size,
    gradient_accumulation_steps,
    max_seq_length,
    learning_rate,
    lr_scheduler,
    warmup_ratio,
    epochs,
    max_steps,
    optimizer,
    weight_decay,
    max_grad_norm,
    logging_steps,
    eval_steps,
    has_eval,
    save_steps,
    save_total_limit,
    seed,
    dtype,
    on_gpu,
    gradient_checkpointing,
    use_reentrant,
    backend,
    packing,
    group_by_length,
    report_to,
    progress_bar,
):
    """SFTConfig's keyword arguments. Unsloth applies its own gradient checkpointing inside
    get_peft_model, so the Trainer's is off under it; packed batches are never grouped by
    length; warmup_ratio, a float in [0, 1), is read by warmup_steps as a share of the
    total steps."""
    checkpointing = gradient_checkpointing == "on" and backend != "unsloth"
    return {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": micro_batch_size,
        "per_device_eval_batch_size": micro_batch_size,
        "gradient_accumulation_steps": gradient_accumulation_steps,
        "max_length": max_seq_length,
        "learning_rate": learning_rate,
        "lr_scheduler_type": lr_scheduler,
        "warmup_steps": warmup_ratio,
        "num_train_epochs": epochs,
        "max_steps": max_steps or -1,
        "optim": optimizer,
        "weight_decay": weight_decay,
        "max_grad_norm": max_grad_norm,
        "logging_steps": logging_steps,
        "logging_first_step": True,
        "eval_strategy": "steps" if (has_eval and eval_steps) else "no",
        "eval_steps": eval_steps,
        "save_strategy": "steps" if save_steps else "no",
        "save_steps": save_steps or 500,
        "save_total_limit": save_total_limit,
        "seed": seed,
        "data_seed": seed,
        "bf16": on_gpu and dtype == "bf16",
        "fp16": on_gpu and dtype == "fp16",
        "use_cpu": not on_gpu,
        "gradient_checkpointing": checkpointing,
        "gradient_checkpointing_kwargs": {"use_reentrant": use_reentrant}
        if checkpointing
        else None,
        "packing": packing,
        "train_sampling_strategy": (
            "group_by_length" if group_by_length and not packing else "random"
        ),
        "report_to": report_to,
        "dataloader_num_workers": 0,
        "disable_tqdm": not progress_bar,
    }


# What the exported script copies, in order, for each backend: model side and trainer.
HF_FUNCTIONS = (
    compute_dtype,
    torch_dtype,
    attention_implementation,
    quantization_config,
    quantized_device_map,
    load_model,
    auto_lora_targets,
    lora_config,
    trainer_arguments,
)
UNSLOTH_FUNCTIONS = (compute_dtype, torch_dtype, load_unsloth_model, trainer_arguments)
