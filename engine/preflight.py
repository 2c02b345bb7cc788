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

from .errors import DatasetError, InputError, ModelError
from .safe_io import CONFIG_LIMIT, read_json, safetensors_problem
from .settings import DEMO, HUB_ID, TrainSettings

HUB_TIMEOUT_S = 10.0
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json")


def check_run_inputs(settings: TrainSettings) -> None:
    """Dataset, model, environment and sequence length: raise on the first problem."""
    from .data import load_validated

    _, records, fmt = load_validated(settings)
    check_model_source(settings)
    check_environment(settings)
    check_sequence_length(settings, records, fmt)


# --- the model --------------------------------------------------------------------------


def check_model_source(settings: TrainSettings) -> None:
    """A local folder has what loading needs; a Hub ID is cached or reachable, in seconds."""
    name = settings.model.name_or_path
    if name == DEMO:
        return
    path = Path(name).expanduser()
    if path.exists() or not HUB_ID.match(name):
        _check_model_folder(path, settings)
        return
    _check_hub_model(name)


def _check_model_folder(path: Path, settings: TrainSettings) -> None:
    from .models import check_config_sizes

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
    for weights in sorted(path.glob("*.safetensors")):
        problem = safetensors_problem(weights)
        if problem:
            raise ModelError(f"{weights}: {problem}")
    if "auto_map" in config and not settings.model.trust_remote_code:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

        if config.get("model_type") not in CONFIG_MAPPING_NAMES:
            from .loading import remote_code_files

            files = ", ".join(remote_code_files(str(path))) or "its own Python files"
            raise ModelError(
                f"{path}: the model needs its own Python code ({files}); it runs only with "
                "model.trust_remote_code: true, if you trust its source"
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


def _check_chat_template(settings: TrainSettings, tokenizer, fmt: str) -> None:
    """Chat records (messages / ShareGPT) need the model's chat template to become text."""
    if fmt in ("messages", "sharegpt") and not getattr(tokenizer, "chat_template", None):
        raise ModelError(
            f"{settings.model.name_or_path}: its tokenizer has no chat template, which "
            f"{fmt} records need; use a chat model, or data in alpaca or text format"
        )


# --- sequence length --------------------------------------------------------------------


def check_sequence_length(settings: TrainSettings, records: list, fmt: str) -> None:
    """Refuse when records would lose their whole answer at max_seq_length.

    Lengths come from the model's own tokenizer and chat template, the way TRL will
    tokenize them; a record whose prompt alone fills max_seq_length has nothing left
    to learn from, and TRL drops it.
    """
    from .data import answer_cut_lengths
    from .loading import load_tokenizer_for

    tokenizer = load_tokenizer_for(settings)
    limit = settings.training.max_seq_length
    _check_chat_template(settings, tokenizer, fmt)
    cut = answer_cut_lengths(records, fmt, limit, tokenizer)
    if not cut:
        return
    raise DatasetError(
        f"{settings.dataset.path}: {len(cut)} of {cut.total} records lose their whole answer "
        f"at training.max_seq_length {limit} (their prompt alone is {cut.shortest_prompt}+ "
        f"tokens); set it to at least {cut.longest_record} to keep them, or shorten them"
    )
