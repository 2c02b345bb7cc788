"""Model, tokenizer, quantisation and LoRA construction from `TrainSettings`.

The recipe itself (dtype, attention, quantisation, device map, the model, LoRA) lives in
recipe.py, which the exported script copies verbatim; here are the settings-aware wrappers
around it: the model path, remote code, CUDA checks, one-line errors, and LoRA targets
derived from the model's own module names.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from ..common.errors import InputError, ModelError
from ..settings.options import NEEDS_CUDA, STRATEGIES, cuda_only
from ..settings.schema import DEMO, TrainSettings, is_local_model


@dataclass(frozen=True)
class Device:
    """Where training runs and in which precision; decided once per run."""

    kind: str  # "cuda" | "cpu"
    name: str
    compute_dtype: str  # "bf16" | "fp16" | "fp32"


def resolve_model_path(name_or_path: str) -> str:
    """'demo' → the cached embedded model; a local folder as is; anything else a hub ID."""
    if name_or_path == DEMO:
        from ..common.demo import ensure_demo_model

        return str(ensure_demo_model())
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path}: not a model folder (no config.json)")
        return str(path)
    return name_or_path


def local_model_folder(name_or_path: str) -> Path | None:
    """The folder the model loads from when it is on this machine: the demo's, a local
    folder, or a Hub ID's cached snapshot (None: not here, or not a folder)."""
    if name_or_path == DEMO or is_local_model(name_or_path):
        folder = Path(resolve_model_path(name_or_path))
        return folder if folder.is_dir() else None
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(name_or_path, "config.json")
    except Exception:  # not a valid repository name: nothing cached under it
        return None
    return Path(cached).parent if isinstance(cached, str) else None


def weight_file_bytes(model_path: str) -> int:
    """The size of the model's weight files on this machine (a folder, or a Hub ID's cached
    snapshot); 0 when they are not here (a Hub ID inspected from its config.json alone)."""
    folder = local_model_folder(model_path)
    if folder is None:
        return 0
    files = [*folder.glob("*.safetensors"), *folder.glob("*.bin")]
    return sum(path.stat().st_size for path in files if path.is_file())


def empty_model(model_path: str):
    """The model as its config.json describes it, built on the meta device (no memory, no
    weights) by the class loading uses: its module names and parameter shapes, which
    preflight compares with the weights and the LoRA targets before a run exists. Never
    for a model that needs its own code (that runs only when loading, if trusted)."""
    import warnings

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()  # loading says it again, into the run's log
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config = AutoConfig.from_pretrained(model_path, trust_remote_code=False)
            with torch.device("meta"):
                return AutoModelForCausalLM.from_config(config)
    finally:
        logging.set_verbosity(level)


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
    """CUDA when present, else CPU, in the recipe's dtype; bf16 asked of a GPU without it
    is refused here, with the card's name."""
    import torch

    from ..recipe.model import compute_dtype

    dtype = compute_dtype(settings.quantization.compute_dtype)
    if not torch.cuda.is_available():
        return Device("cpu", "CPU", dtype)
    name = torch.cuda.get_device_name(0)
    if dtype == "bf16" and not torch.cuda.is_bf16_supported():
        raise InputError(f"quantization.compute_dtype: bf16 is not supported on {name}; use fp16")
    return Device("cuda", name, dtype)


def check_backend_support(settings: TrainSettings, device: Device) -> None:
    """Refuse combinations that cannot run here, with the reason, before loading anything."""
    if device.kind != "cuda":
        for option in cuda_only():
            field, value = option.split("=")
            if settings.value(field) == value:
                raise InputError(f"{field}: {value} {NEEDS_CUDA}")
    package = STRATEGIES[settings.distributed.strategy].package
    if package and importlib.util.find_spec(package) is None:
        raise InputError(
            f"distributed.strategy: {package} is not installed "
            f"(pip install 'finetune-tui[{package}]')"
        )
    if settings.memory.backend == "unsloth" and importlib.util.find_spec("unsloth") is None:
        raise InputError(
            "memory.backend: unsloth is not installed (pip install 'finetune-tui[unsloth]')"
        )


def attention_implementation(settings: TrainSettings, model_path: str) -> str:
    from ..recipe.model import attention_implementation

    return attention_implementation(settings.model.attn_implementation, model_path)


def load_tokenizer_for(settings: TrainSettings):
    """The tokenizer training will use (the demo's is built on first use)."""
    return load_tokenizer(resolve_model_path(settings.model.name_or_path), settings)


def tokenizer_here(settings: TrainSettings):
    """The run's tokenizer when its files are on this machine already (the demo once built,
    a local folder, a cached Hub snapshot; nothing is built or downloaded for it), else
    None: the Dataset screen then counts tokens as the run will, not by characters."""
    from ..common.demo import built_demo_model

    name = settings.model.name_or_path
    folder = built_demo_model() if name == DEMO else local_model_folder(name)
    files = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")
    if folder is None or not any((folder / file).is_file() for file in files):
        return None
    try:
        return load_tokenizer(str(folder), settings)
    except Exception:  # a tokenizer that does not load here: the estimate stands
        return None


def load_tokenizer(model_path: str, settings: TrainSettings):
    """The recipe's tokenizer, with a one-line error."""
    from ..recipe.model import load_tokenizer

    try:
        return load_tokenizer(model_path, settings.model.trust_remote_code)
    except OSError as exc:
        raise ModelError(f"{settings.model.name_or_path}: cannot load tokenizer: {exc}") from None


def load_model(model_path: str, settings: TrainSettings, device: Device, attn: str):
    """The recipe's loader, with a one-line error naming what the user can do."""
    from ..recipe.model import load_model

    q = settings.quantization
    try:
        return load_model(
            model_path,
            device.compute_dtype,
            attn,
            q.mode,
            q.double_quant,
            settings.model.trust_remote_code,
        )
    except (OSError, ValueError) as exc:
        files = remote_code_files(model_path)
        if files and not settings.model.trust_remote_code:
            raise ModelError(
                f"{model_path}: the model needs its own Python code ({', '.join(files)}); "
                "it runs only with model.trust_remote_code: true, if you trust its source"
            ) from None
        raise ModelError(f"{settings.model.name_or_path}: cannot load model: {exc}") from None


def check_loss_reads_the_backbone(model, settings: TrainSettings) -> None:
    """TRL's trainers (SFT, DPO, KTO) compute the loss with a chunked LM head that runs the
    model's backbone, found at `model.base_model` (the attribute its class's
    base_model_prefix names), and read its last hidden state. A class whose prefix names no
    attribute hands TRL the whole model and the run fails at its first step; the prefix is
    pointed at the decoder where it is a direct child (point_loss_at_backbone: transformers
    5.17's Llama4ForCausalLM), and any other such class is refused. ORPO takes the model's
    own logits and is not affected. Checked on the empty model before the run folder
    exists, and on the loaded one."""
    from ..plan.objective import FULL_LOGITS_OBJECTIVES
    from ..recipe.model import point_loss_at_backbone

    point_loss_at_backbone(model)
    objective = settings.training.objective
    if objective in FULL_LOGITS_OBJECTIVES or model.base_model is not model:
        return
    raise ModelError(
        f"{settings.model.name_or_path}: {type(model).__name__} cannot be trained with the "
        f"{objective} objective here: TRL's chunked loss runs the backbone at "
        f"'{model.base_model_prefix}', which this class does not have (the installed "
        "transformers and TRL disagree on where its backbone is)"
    )


def lora_target_modules(model, settings: TrainSettings) -> list[str]:
    """The asked module names, or the recipe's "auto" (every linear but the head)."""
    if settings.lora.target_modules != "auto":
        return list(settings.lora.target_modules)
    from ..recipe.lora_targets import auto_lora_targets

    names = auto_lora_targets(model)
    if not names:
        raise ModelError(f"{settings.model.name_or_path}: no linear layers found for LoRA")
    return names


def lora_config(model, settings: TrainSettings):
    from ..recipe.lora_targets import lora_config

    lora = settings.lora
    targets = lora_target_modules(model, settings)
    return lora_config(targets, lora.r, lora.alpha, lora.dropout, lora.use_rslora)
