"""Model, tokenizer, quantisation and LoRA construction from `TrainSettings`.

Everything here is what the exported script does too, line for line in spirit: resolve
the model, pick the compute dtype, build the BitsAndBytesConfig and the LoraConfig with
targets derived from the model's own module names.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError, ModelError
from .settings import DEMO, TrainSettings

DTYPE_NAMES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
OPTIMIZER_NAMES = {
    "adamw_torch": "adamw_torch",
    "adamw_8bit": "adamw_bnb_8bit",
    "paged_adamw_8bit": "paged_adamw_8bit",
    "paged_adamw_32bit": "paged_adamw_32bit",
}


@dataclass(frozen=True)
class Device:
    """Where training runs and in which precision; decided once per run."""

    kind: str  # "cuda" | "cpu"
    name: str
    compute_dtype: str  # "bf16" | "fp16" | "fp32"


def resolve_model_path(name_or_path: str) -> str:
    """'demo' → the cached embedded model; a local folder as is; anything else a hub ID."""
    if name_or_path == DEMO:
        from .demo import ensure_demo_model

        return str(ensure_demo_model())
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path}: not a model folder (no config.json)")
        return str(path)
    return name_or_path


def remote_code_files(model_path: str) -> list[str]:
    """The model folder's own Python (auto_map in its configs): run only when trusted."""
    folder = Path(model_path)
    if not folder.is_dir():
        return []  # a hub ID: transformers itself refuses remote code unless trusted
    wants_code = False
    for name in ("config.json", "tokenizer_config.json"):
        try:
            wants_code |= "auto_map" in json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
    return sorted(p.name for p in folder.glob("*.py")) if wants_code else []


def check_remote_code(model_path: str, settings: TrainSettings) -> str | None:
    """The warning for a trusted model; an untrusted one's code is never run.

    Untrusted, transformers loads its built-in class for a known architecture and
    refuses (one ModelError line) when the model needs its own code.
    """
    if not settings.model.trust_remote_code:
        return None
    files = remote_code_files(model_path)
    where = ", ".join(files) if files else "from the hub, if it has any"
    return (
        f"model.trust_remote_code is on: the model's own Python code ({where}) "
        "runs with your permissions"
    )


def choose_device(settings: TrainSettings) -> Device:
    """CUDA when present, else CPU; 'auto' dtype = bf16 where supported, fp16 before Ampere."""
    import torch

    wanted = settings.quantization.compute_dtype
    if not torch.cuda.is_available():
        return Device("cpu", "CPU", "fp32" if wanted == "auto" else wanted)
    name = torch.cuda.get_device_name(0)
    if wanted == "auto":
        wanted = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    elif wanted == "bf16" and not torch.cuda.is_bf16_supported():
        raise InputError(f"quantization.compute_dtype: bf16 is not supported on {name}; use fp16")
    return Device("cuda", name, wanted)


def check_backend_support(settings: TrainSettings, device: Device) -> None:
    """Refuse combinations that cannot run here, with the reason, before loading anything."""
    needs_cuda = {
        "quantization.mode": settings.quantization.mode != "none",
        "training.optimizer": settings.training.optimizer != "adamw_torch",
        "memory.backend": settings.memory.backend != "hf",
    }
    if device.kind != "cuda":
        for field, used in needs_cuda.items():
            if used:
                raise InputError(
                    f"{field}: {settings.value(field)} needs an NVIDIA GPU (CUDA); "
                    "this machine has none"
                )
    if settings.memory.backend == "unsloth" and importlib.util.find_spec("unsloth") is None:
        raise InputError(
            "memory.backend: unsloth is not installed (pip install 'finetune-tui[unsloth]')"
        )


def torch_dtype(name: str):
    import torch

    return getattr(torch, DTYPE_NAMES[name])


def quantization_config(settings: TrainSettings, device: Device):
    """BitsAndBytesConfig for 8-bit / 4-bit base weights, None for 16/32-bit."""
    mode = settings.quantization.mode
    if mode == "none":
        return None
    from transformers import BitsAndBytesConfig

    if mode == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=mode,
        bnb_4bit_use_double_quant=settings.quantization.double_quant,
        bnb_4bit_compute_dtype=torch_dtype(device.compute_dtype),
        bnb_4bit_quant_storage=torch_dtype(device.compute_dtype),
    )


def attention_implementation(settings: TrainSettings) -> str:
    """'auto': a flash kernel when installed (keeps packed sequences apart), else sdpa."""
    wanted = settings.model.attn_implementation
    if wanted != "auto":
        return wanted
    if importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def load_tokenizer(model_path: str, settings: TrainSettings):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            model_path, trust_remote_code=settings.model.trust_remote_code
        )
    except OSError as exc:
        raise ModelError(f"{settings.model.name_or_path}: cannot load tokenizer: {exc}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(model_path: str, settings: TrainSettings, device: Device, attn: str):
    from transformers import AutoModelForCausalLM

    kwargs = {
        "dtype": torch_dtype(device.compute_dtype),
        "attn_implementation": attn,
        "trust_remote_code": settings.model.trust_remote_code,
    }
    quant = quantization_config(settings, device)
    if quant is not None:
        kwargs["quantization_config"] = quant
        kwargs["device_map"] = {"": 0}
    try:
        model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    except (OSError, ValueError) as exc:
        files = remote_code_files(model_path)
        if files and not settings.model.trust_remote_code:
            raise ModelError(
                f"{model_path}: the model needs its own Python code ({', '.join(files)}); "
                "it runs only with model.trust_remote_code: true, if you trust its source"
            ) from None
        raise ModelError(f"{settings.model.name_or_path}: cannot load model: {exc}") from None
    model.config.use_cache = False
    return model


def lora_target_modules(model, settings: TrainSettings) -> list[str]:
    """Every linear projection of the model's blocks, by leaf name (lm_head excluded)."""
    if settings.lora.target_modules != "auto":
        return list(settings.lora.target_modules)
    output = model.get_output_embeddings()
    names = set()
    for name, module in model.named_modules():
        if module is output or not _is_linear(module):
            continue
        names.add(name.rsplit(".", 1)[-1])
    if not names:
        raise ModelError(f"{settings.model.name_or_path}: no linear layers found for LoRA")
    return sorted(names)


def _is_linear(module) -> bool:
    import torch

    if isinstance(module, torch.nn.Linear):
        return True
    # bitsandbytes' Linear4bit / Linear8bitLt subclass nn.Linear; Conv1D (GPT-2) does not.
    return type(module).__name__ == "Conv1D"


def lora_config(model, settings: TrainSettings):
    from peft import LoraConfig

    lora = settings.lora
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora_target_modules(model, settings),
        use_rslora=lora.use_rslora,
        bias="none",
        task_type="CAUSAL_LM",
    )
