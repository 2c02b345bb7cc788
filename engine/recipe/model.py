"""The training recipe's model side, written once.

The runner calls these functions, and the exported script carries their source verbatim
(engine/export/script.py copies them with `inspect.getsource`; a test compares them byte for
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


def language_linears(model):
    """The full names of the linear layers "auto" LoRA adapts: those inside the language
    model's decoder layers (its attention and MLP projections). Never the output head, a
    vision or audio tower or projector (they sit outside the language model), nor an MoE
    router or gate: a linear beside the experts it routes to, or a model's own nn.Linear
    subclass whose forward is not declared to return a tensor (Phi-3.5-MoE's router
    returns a tuple, which PEFT's LoRA cannot wrap; Falcon's own linear returns a tensor
    and counts). bitsandbytes' 4/8-bit layers and GPT-2's Conv1D count as linear."""
    import torch

    def plain_linear(module):
        if type(module).__name__ == "Conv1D":
            return True
        if not isinstance(module, torch.nn.Linear):
            return False
        forward = type(module).forward
        if forward is torch.nn.Linear.forward or not type(module).__module__.startswith(
            "transformers"
        ):
            return True  # nn.Linear itself, or a quantised one (bitsandbytes...)
        returns = getattr(forward, "__annotations__", {}).get("return")
        return returns is torch.Tensor or returns in ("torch.Tensor", "Tensor")

    def holds_experts(module):
        for name, child in module.named_children():
            if isinstance(child, torch.nn.modules.conv._ConvNd):
                continue  # a convolution's weight is 3-D too (gated-DeltaNet's causal conv)
            # fused experts are 3-D (ds_shape: the whole shape of a ZeRO-3 partition)
            shapes = [getattr(p, "ds_shape", p.shape) for p in child.parameters(recurse=False)]
            if name == "experts" or any(len(shape) >= 3 for shape in shapes):
                return True
        return False

    def routes(linear, layer):
        """A router inside a module of its own (Gemma-4's `router.proj`): one score an
        expert, the first dimension of the layer's fused expert weights."""
        experts = {
            getattr(p, "ds_shape", p.shape)[0]
            for module in layer.modules()
            if not isinstance(module, torch.nn.modules.conv._ConvNd)
            for p in module.parameters(recurse=False)
            if len(getattr(p, "ds_shape", p.shape)) >= 3
        }
        return linear.out_features in experts

    try:  # transformers' get_decoder: the language model of a multimodal one
        decoder = model.get_decoder()
    except (AttributeError, NotImplementedError, ValueError):
        decoder = model
    prefix = next((name for name, module in model.named_modules() if module is decoder), None)
    if prefix is None:
        decoder, prefix = model, ""
    layer_lists = [
        name for name, module in decoder.named_modules() if isinstance(module, torch.nn.ModuleList)
    ]
    layer_lists = [  # the outermost lists: the decoder layers, not experts inside them
        name
        for name in layer_lists
        if not any(name.startswith(other + ".") for other in layer_lists)
    ]
    modules = dict(decoder.named_modules())
    output = model.get_output_embeddings()
    names = []
    for name, module in decoder.named_modules():
        layer = next(
            (
                f"{x}.{name[len(x) + 1 :].split('.')[0]}"
                for x in layer_lists
                if x and name.startswith(f"{x}.")
            ),
            None,
        )
        if layer is None or not plain_linear(module) or module is output:
            continue
        parent = name.rsplit(".", 1)[0]
        if parent == layer:  # on the layer itself: Gemma-4's per-layer-embedding gate
            continue
        if holds_experts(modules[parent]) or routes(module, modules[layer]):
            continue
        names.append(f"{prefix}.{name}" if prefix else name)
    short = {name.rsplit(".", 1)[-1] for name in names}
    left_out = peft_moved_names(model, short) | peft_refused_names(model, short)
    return sorted(name for name in names if name.rsplit(".", 1)[-1] not in left_out)


def peft_refused_names(model, short_names):
    """The short names the installed PEFT refuses to adapt on this model: LoRA on a Mamba
    mixer's `out_proj` (Falcon-H1: "incompatible with Mamba-based models", raised when
    the adapter is made, after the run folder). Asked of PEFT's own check, name by name."""
    try:
        from peft.tuners.tuners_utils import _check_lora_target_modules_mamba as check
    except ImportError:
        return set()
    config = lora_config(sorted(short_names), 8, 8, 0.0, False)
    refused = set()
    for name in short_names:
        try:
            check(config, model, name)
        except ValueError:
            refused.add(name)
    return refused


def peft_moved_names(model, short_names):
    """The short names PEFT moves onto the fused experts of a mixture of experts that
    transformers 5 rebuilt (its conversion of adapters trained on transformers 4): there
    DeepSeek-V2's, Qwen3-MoE's or OLMoE's `gate_proj` / `up_proj` / `down_proj` adapt every
    routed expert instead of the dense and shared-expert MLP layers of that name. Asked of
    PEFT itself; none where the installed PEFT has no such conversion."""
    try:
        from peft.utils.transformers_weight_conversion import (
            convert_peft_config_for_transformers,
            get_model_conversion_mapping,
        )
    except ImportError:
        return set()
    config = lora_config(sorted(short_names), 8, 8, 0.0, False)
    try:
        convert_peft_config_for_transformers(config, model, get_model_conversion_mapping(model))
    except ValueError:  # a fused pair named in part: PEFT refuses it when adapting, too
        return set(short_names)
    return set(short_names) - set(config.target_modules or ())


def auto_lora_targets(model):
    """What "auto" LoRA targets mean on every backend: the layers `language_linears`
    names, given as their short names ("q_proj", ...) where those name exactly these
    layers, else as a regular expression over their full names (a vision tower reuses
    q_proj, fc1..., and PEFT matches a short name anywhere in the model)."""
    import re

    chosen = language_linears(model)
    every = [name for name, _ in model.named_modules()]
    short = sorted({name.rsplit(".", 1)[-1] for name in chosen})

    def matched_by_short(name):
        return any(name == key or name.endswith("." + key) for key in short)

    if {name for name in every if matched_by_short(name)} == set(chosen):
        return short
    # one alternative per layer list: "<list>.<index>.<path inside the layer>"
    paths = {}
    for name in chosen:
        layers, _, inside = re.match(r"(.*?)\.(\d+)\.(.*)", name).groups()
        paths.setdefault(layers, set()).add(inside)
    pattern = "|".join(
        re.escape(layers) + r"\.\d+\.(?:" + "|".join(map(re.escape, sorted(inside))) + ")"
        for layers, inside in sorted(paths.items())
    )
    if {name for name in every if re.fullmatch(pattern, name)} != set(chosen):
        pattern = "|".join(map(re.escape, chosen))  # the names themselves: always exact
    return pattern


def keep_kernel_tunings():
    """Triton kernels that tune themselves on first use (Liger's fused MoE experts time
    dozens of variants of each kernel before the first step) keep their timings on disk,
    so only the first run on a machine waits for them; a TRITON_CACHE_AUTOTUNING the user
    set is left alone. Call before liger_kernel is imported: its kernels read it then."""
    import os

    os.environ.setdefault("TRITON_CACHE_AUTOTUNING", "1")


def lora_module_names(model):
    """The full names of the modules that carry a LoRA adapter (read back from the
    model, whichever loader applied it), without PEFT's wrapper prefix."""
    names = []
    for name, module in model.named_modules():
        if getattr(module, "lora_A", None):
            names.append(name.removeprefix("base_model.model."))
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
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets,
        use_gradient_checkpointing=offload,
        random_state=seed,
        use_rslora=use_rslora,
        bias="none",
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
    quantized_device_map,
    point_loss_at_backbone,
    load_model,
    language_linears,
    peft_moved_names,
    peft_refused_names,
    auto_lora_targets,
    keep_kernel_tunings,
    lora_module_names,
    lora_config,
    load_unsloth_model,
)
