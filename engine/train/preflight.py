"""Everything a run needs, checked before its run directory exists.

A bad model folder, dataset or setting found after the run directory was made leaves a
half-made run behind, and the corrected command is then refused ("run directory
exists"). So the headless runner and the wizard call `check_run_inputs` first; it reads
but never writes, and each problem is one InputError line.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from ..common.errors import DatasetError, InputError, ModelError, SettingsError
from ..common.safe_io import CONFIG_LIMIT, read_json, safetensors_header
from ..settings.options import OUTPUT_LAYER_RULE, SFT_FORMATS
from ..settings.schema import DEMO, TrainSettings, is_local_model

HUB_TIMEOUT_S = 10.0
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json")


def check_run_inputs(settings: TrainSettings) -> None:
    """Dataset, model, environment, sequence length and the disk the run saves to: raise on
    the first problem."""
    from ..data.dataset import load_validated
    from ..runs.create import resolve_run_dir
    from .disk_room import check_new_run_room

    _, records, fmt = load_validated(settings)
    check_model_source(settings)
    check_model_structure(settings)
    check_backend_for_model(settings)
    check_environment(settings)
    check_sequence_length(settings, records, fmt)
    check_new_run_room(settings, len(records), resolve_run_dir(settings))


# --- the model --------------------------------------------------------------------------


def check_model_source(settings: TrainSettings) -> None:
    """A local folder has what loading needs; a Hub ID is cached or reachable, in seconds."""
    name = settings.model.name_or_path
    if name == DEMO:
        return
    if is_local_model(name):
        _check_model_folder(Path(name).expanduser(), settings)
        return
    _check_hub_model(name)


def _check_model_folder(path: Path, settings: TrainSettings) -> None:
    from ..inspect.config_checks import check_config_sizes

    if not path.is_dir():
        raise ModelError(f"{path}: model folder not found (and not a Hugging Face model ID)")
    config = read_json(path / "config.json", CONFIG_LIMIT, "model config")
    if not isinstance(config, dict):
        raise ModelError(f"{path / 'config.json'}: must be a JSON object")
    check_config_sizes(str(path), config, required=False)  # zero heads: one line, not a crash
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ModelError(f"{path}: no tokenizer files ({', '.join(TOKENIZER_FILES)})")
    if not any(any(path.glob(pattern)) for pattern in WEIGHT_PATTERNS):
        raise ModelError(f"{path}: no weights (*.safetensors or pytorch_model*.bin)")
    if _needs_own_code(config) and not settings.model.trust_remote_code:
        from .loading import remote_code_files

        files = ", ".join(remote_code_files(str(path))) or "its own Python files"
        raise ModelError(
            f"{path}: the model needs its own Python code ({files}); it runs only with "
            "model.trust_remote_code: true, if you trust its source"
        )


def check_backend_for_model(settings: TrainSettings) -> None:
    """A backend the plan does not offer for this family (no kernels, or a path measured
    far from the plan), a 4/8-bit mode that quantises nothing of it (Falcon's own
    nn.Linear subclass), or what its stored quantised weights cannot train as, is refused
    with the plan's own reason, before the run folder."""
    from ..inspect.models import inspect_model
    from ..inspect.stored_quantization import StoredFormatError
    from ..plan.candidates import ruled_out_by_model

    backend, mode = settings.memory.backend, settings.quantization.mode
    try:
        model = inspect_model(settings.model.name_or_path)
    except StoredFormatError:
        raise
    except ModelError:  # a family the planner does not know: the backend's own check at load
        return
    ruled_out = ruled_out_by_model(model)
    if why := ruled_out.get(f"memory.backend={backend}"):
        raise InputError(f"memory.backend: {backend}: {why}")
    if why := ruled_out.get(f"quantization.mode={mode}"):
        hint = "" if "quantization.mode=none" in ruled_out else " (set it to none)"
        raise InputError(f"quantization.mode: {mode}: {why}{hint}")
    if why := ruled_out.get(f"training.method={settings.training.method}"):
        raise InputError(f"training.method: {settings.training.method}: {why}")


def check_model_structure(settings: TrainSettings) -> None:
    """What loading would find out after the run directory exists: shard files an index
    names but the folder lacks, weights whose shapes are not the ones config.json
    describes, and LoRA targets that name no module the model has (or none LoRA adapts)."""
    from . import loading

    folder = loading.local_model_folder(settings.model.name_or_path)
    if folder is None:
        return  # a Hub model not downloaded yet: the library checks it as it loads
    headers = _safetensors_headers(folder)
    _check_shard_index(folder)
    config = read_json(folder / "config.json", CONFIG_LIMIT, "model config")
    if not isinstance(config, dict) or _needs_own_code(config):
        return
    try:
        model = loading.empty_model(str(folder))
    except Exception as exc:  # what from_pretrained would raise, minutes later
        raise ModelError(
            f"{folder / 'config.json'}: transformers cannot build the model it describes "
            f"({type(exc).__name__}: {exc})"
        ) from None
    loading.check_loss_reads_the_backbone(model, settings)
    if "quantization_config" not in config:  # pre-quantized weights are packed differently
        _check_weight_shapes(folder, model, headers)
    if settings.training.method == "lora":
        _check_lora_targets(settings, model)


def _needs_own_code(config: dict) -> bool:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return "auto_map" in config and config.get("model_type") not in CONFIG_MAPPING_NAMES


def _check_shard_index(folder: Path) -> None:
    """Every file a shard index maps a weight to is a file of this folder."""
    for index in sorted(
        [*folder.glob("*.safetensors.index.json"), *folder.glob("*.bin.index.json")]
    ):
        data = read_json(index, CONFIG_LIMIT, "shard index")
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise ModelError(f"{index}: no weight_map (not a shard index)")
        for name in sorted({str(v) for v in weight_map.values()}):
            if Path(name).name != name or name in (".", ".."):
                raise ModelError(f"{index}: names {name!r}, a path outside the model folder")
            if not (folder / name).is_file():
                raise ModelError(f"{index}: names {name}, which {folder} does not hold")


def _safetensors_headers(folder: Path) -> dict[Path, dict]:
    """Each safetensors file's header, read once; a damaged file is a ModelError."""
    headers = {}
    for file in sorted(folder.glob("*.safetensors")):
        try:
            headers[file] = safetensors_header(file)
        except InputError as exc:
            raise ModelError(str(exc)) from None
    return headers


def _check_weight_shapes(folder: Path, model, headers: dict[Path, dict]) -> None:
    """Each tensor of the safetensors files that the model has, in the shape it has there."""
    expected = {name: list(tensor.shape) for name, tensor in model.state_dict().items()}
    prefix = getattr(model, "base_model_prefix", "")
    for file, header in headers.items():
        for name, info in header.items():
            want = expected.get(name, expected.get(f"{prefix}.{name}"))
            shape = info.get("shape") if isinstance(info, dict) else None
            if want is not None and isinstance(shape, list) and shape != want:
                raise ModelError(
                    f"{file}: {name} has shape {shape}, but {folder / 'config.json'} describes "
                    f"{want}: the weights and the config are of different models"
                )


def lora_types() -> tuple[type, ...]:
    """The module types PEFT's LoRA wraps; a target matching any other makes it raise."""
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    return (nn.Linear, nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.MultiheadAttention, Conv1D)


def _check_lora_targets(settings: TrainSettings, model) -> None:
    """Every name in lora.target_modules matches a module as PEFT matches it (the full name,
    or its last dotted parts), and only modules LoRA can wrap; "auto" finds some."""
    targets = settings.lora.target_modules
    name = settings.model.name_or_path
    if targets == "auto":
        from .loading import lora_target_modules

        lora_target_modules(model, settings)  # the recipe's "auto" finds some, or one line
        return
    _check_moved_targets(targets, model, name)
    from torch import nn

    modules = list(model.named_modules())
    linears = sorted({n.rsplit(".", 1)[-1] for n, m in modules if isinstance(m, nn.Linear) and n})
    for target in targets:
        hits = [m for n, m in modules if n == target or n.endswith("." + target)]
        if not hits:
            some = ", ".join(linears[:12]) + (", ..." if len(linears) > 12 else "")
            raise SettingsError(
                f"lora.target_modules: {target!r} names no module of {name} "
                f"(its linear layers: {some or 'none'})"
            )
        wrong = sorted({type(m).__name__ for m in hits if not isinstance(m, lora_types())})
        if wrong:
            raise SettingsError(
                f"lora.target_modules: {target!r} names {', '.join(wrong)} modules of {name}, "
                "which LoRA cannot adapt; name linear layers"
            )
        if any(m is model.get_output_embeddings() for m in hits):
            raise SettingsError(f"lora.target_modules: {target!r} is {OUTPUT_LAYER_RULE}")


def _check_moved_targets(targets: list[str], model, name: str) -> None:
    """Names PEFT would move onto every routed expert (transformers 5 fused them) would
    train another adapter than the one named and planned: refused with the reason."""
    from ..recipe.lora_targets import peft_moved_names

    moved = sorted(peft_moved_names(model, {target.rsplit(".", 1)[-1] for target in targets}))
    if moved:
        raise SettingsError(
            f"lora.target_modules: PEFT moves {', '.join(moved)} of {name} onto the fused "
            "expert and router weights (transformers 5 fuses them), not onto the layers of "
            "that name; leave them out ('auto' does)"
        )


def _check_hub_model(name: str) -> None:
    """Cached → fine offline. Otherwise ask the Hub once, with a short timeout."""
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return
    if constants.HF_HUB_OFFLINE:
        raise ModelError(
            f"{name}: not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
            "download it first or give a local model folder"
        )
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    try:
        HfApi().model_info(name, timeout=HUB_TIMEOUT_S)
    except GatedRepoError:
        raise ModelError(f"{name}: gated on the Hub; accept its licence and log in") from None
    except RepositoryNotFoundError:
        raise ModelError(f"{name}: no such model on the Hugging Face Hub") from None
    except HfHubHTTPError as exc:
        raise ModelError(f"{name}: the Hugging Face Hub refused ({exc})") from None
    except Exception as exc:  # connection refused, DNS, timeout: all "no network"
        raise ModelError(
            f"{name}: cannot reach the Hugging Face Hub to download it "
            f"({type(exc).__name__}); check the network or give a local model folder"
        ) from None


# --- the environment --------------------------------------------------------------------


def check_environment(settings: TrainSettings) -> None:
    """Options that need something this machine lacks: trackers, CUDA, Unsloth."""
    for tracker in settings.output.report_to:
        if importlib.util.find_spec(tracker) is None:  # each tracker's package is its name
            raise InputError(
                f"output.report_to: {tracker} is not installed (pip install {tracker}), "
                "or remove it from report_to"
            )
    from . import loading
    from .run_memory import use_planned_allocator

    use_planned_allocator(settings)  # before choose_device sets CUDA up
    device = loading.choose_device(settings)
    loading.check_backend_support(settings, device)
    check_processes_here(settings, device.kind)


def check_processes_here(settings: TrainSettings, device_kind: str) -> None:
    """A launch here starts every process on this machine: more machines run under SLURM,
    and no more processes than this machine has GPUs (or CPU cores, without CUDA)."""
    d = settings.distributed
    if d.nodes > 1:
        raise InputError(
            f"distributed.nodes: {d.nodes} machines run under SLURM, not from here; "
            "finetune-tui export --slurm writes the job (set nodes: 1 to train on this machine)"
        )
    if device_kind == "cuda":
        import torch

        have, what = torch.cuda.device_count(), "GPUs"
    else:
        have, what = os.cpu_count() or 1, "CPU cores"
    if d.processes > have:
        raise InputError(
            f"distributed.processes: {d.processes} processes, but this machine has {have} {what}"
        )


PROBE_TEXT = "The quick brown fox jumps over the lazy dog, 42 times."


def check_tokenizer_reads(settings: TrainSettings, tokenizer, records: list) -> None:
    """A tokenizer that turns the data's own text into nothing (or into unknown tokens
    alone) would train on nothing, with a loss of 0 and no error: transformers picks some
    families' tokenizer class by model type, whatever tokenizer_config.json names, and
    that class can read another layout's files as an empty vocabulary. The first record's
    text is the probe, so a domain tokenizer (DNA letters) passes on its own data."""
    record = next((r for r in records if r.data), None)
    text = _strings_of(record.data)[:2000] if record else ""
    where = f"{record.where}'s text" if text else repr(PROBE_TEXT)
    ids = tokenizer(text or PROBE_TEXT, add_special_tokens=False)["input_ids"]
    unknown = getattr(tokenizer, "unk_token_id", None)
    if ids and any(i != unknown for i in ids):
        return
    became = "unknown tokens alone" if ids else "no tokens"
    raise ModelError(
        f"{settings.model.name_or_path}: its tokenizer ({type(tokenizer).__name__}) turns "
        f"{where} into {became}; the tokenizer files do not fit the class loaded for this "
        "model type: use the model's own tokenizer files"
    )


def _strings_of(value) -> str:
    """Every string in a record (its fields, message lists), joined: what the model reads."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return " ".join(filter(None, (_strings_of(v) for v in value)))
    return ""


def _check_chat_template(settings: TrainSettings, tokenizer, fmt: str, records: list) -> None:
    """Chat records (messages / ShareGPT, preference records of message lists) need the
    model's chat template to become text."""
    if _is_chat(fmt, records) and not getattr(tokenizer, "chat_template", None):
        raise ModelError(
            f"{settings.model.name_or_path}: its tokenizer has no chat template, which "
            + (
                f"{fmt} records need; use a chat model, or data in alpaca or text format"
                if fmt in SFT_FORMATS
                else f"{fmt} records of messages need; use a chat model, or plain-text ones"
            )
        )


def _is_chat(fmt: str, records: list) -> bool:
    if fmt in ("messages", "sharegpt"):
        return True
    answer = {"preference": "chosen", "unpaired_preference": "completion"}.get(fmt)
    first = next((r.data for r in records if r.data is not None), {})
    return answer is not None and isinstance(first.get(answer), list)


# --- sequence length --------------------------------------------------------------------


def check_sequence_length(settings: TrainSettings, records: list, fmt: str) -> None:
    """Refuse when records would lose their whole answer at max_seq_length.

    Lengths come from the model's own tokenizer and chat template, the way TRL will
    tokenize them; a record whose prompt alone fills max_seq_length has nothing left
    to learn from, and TRL drops it; a preference pair whose answers differ only past it
    has nothing left to prefer. The first such record is named with its file:line.
    """
    from ..data.lengths import answer_cut_lengths
    from .loading import load_tokenizer_for

    tokenizer = load_tokenizer_for(settings)
    limit = settings.training.max_seq_length
    check_tokenizer_reads(settings, tokenizer, records)
    _check_chat_template(settings, tokenizer, fmt, records)
    cut = answer_cut_lengths(records, fmt, limit, tokenizer)
    if not cut:
        return
    lost = (
        "what sets chosen apart from rejected (this pair's answers are the same up to it)"
        if cut.first_tied
        else f"their whole answer (this one's prompt alone is {cut.records[0][0]} tokens)"
    )
    raise DatasetError(
        f"{cut.first}: {len(cut)} of {cut.total} records lose {lost} at "
        f"training.max_seq_length {limit}; set it to at least {cut.longest_record} to keep "
        "them, or shorten them"
    )
