"""What `ship` reads: a Hugging Face model folder, or a run folder (its adapter/ holds a whole
model after full fine-tuning, a LoRA adapter otherwise), checked before anything is written."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..common.errors import InputError, ModelError
from ..common.safe_io import (
    CONFIG_LIMIT,
    PRESET_LIMIT,
    entry_problem,
    read_json,
    read_text,
    safetensors_header,
    safetensors_problem,
)
from ..runs.create import is_marked
from ..runs.layout import ADAPTER_DIR, SETTINGS_FILE

ADAPTER_CONFIG = "adapter_config.json"
TEMPLATE_FILE = "chat_template.jinja"  # where transformers saves the chat template
REPORT_FILE = "merge_report.json"  # what `merge` proved, beside the merged model
TOKENIZER_LIMIT = 512 * 2**20  # tokenizer.json: 33 MB for Gemma-3's 262 K vocabulary


def merged_folder(run_dir: Path) -> Path:
    """Where `merge` writes a run's merged model unless told: RUN-merged beside the run
    (`merge .` from inside the run: beside it too, never a hidden `.-merged` inside)."""
    run = Path(os.path.abspath(run_dir))
    return run.with_name(f"{run.name}-merged")


@dataclass
class Shippable:
    """A model folder (`model`), or a LoRA run (`adapter` + its base) ready to describe."""

    source: Path  # what the user named
    model: Path | None  # a whole model folder
    adapter: Path | None = None  # a LoRA adapter folder (RUN_DIR/adapter)
    base: str | None = None  # the adapter's base model (hub ID or folder)
    lora_rank: int | None = None
    max_len: int | None = None  # the run's max_seq_length when the run is known


def find_shippable(folder: str | Path) -> Shippable:
    """The model behind `folder`, or one line saying why there is none."""
    source = Path(folder).expanduser()
    problem = entry_problem(source)
    if problem:
        raise ModelError(f"{source}: {problem}; give the model folder itself")
    if not source.exists():
        raise ModelError(f"{source}: not found; give a model folder (config.json, safetensors)")
    if not source.is_dir():
        raise ModelError(f"{source}: not a folder; give a model folder (config.json, safetensors)")
    run = source if is_marked(source) else source.parent if is_marked(source.parent) else None
    max_len = run_max_len(run) if run else None
    if run == source:
        adapter = source / ADAPTER_DIR
        if (adapter / ADAPTER_CONFIG).is_file():
            base, rank = _adapter_facts(adapter)
            return Shippable(source, None, adapter, base, rank, max_len)
        if not adapter.is_dir():
            raise ModelError(f"{source}: run folder without {ADAPTER_DIR}/ (did the run finish?)")
        source = adapter
    if (source / ADAPTER_CONFIG).is_file():
        raise ModelError(
            f"{source}: is a LoRA adapter, not a whole model; merge it first "
            "(finetune-tui merge RUN_DIR -o DIR) or ship its run folder --to vllm"
        )
    check_model_folder(source)
    return Shippable(Path(folder).expanduser(), source, max_len=max_len)


def check_model_folder(folder: Path) -> None:
    """config.json, intact safetensors weights and a tokenizer: what every target loads."""
    config = read_json(folder / "config.json", CONFIG_LIMIT, "model config")
    if not isinstance(config, dict) or not config.get("architectures"):
        raise ModelError(f"{folder / 'config.json'}: names no architectures; not a model config")
    _check_weights(folder, "no *.safetensors weights; not a model folder", "")
    if not any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer.model")):
        raise ModelError(f"{folder}: no tokenizer (tokenizer.json or tokenizer.model)")


def check_adapter_folder(folder: Path) -> None:
    """A run's saved adapter as PEFT and the tokenizer will read it: its config, intact
    safetensors weights, readable tokenizer files. A kill or a full disk during the final
    save leaves them cut short: one line naming the file, not the library's error."""
    config = read_json(folder / ADAPTER_CONFIG, CONFIG_LIMIT, "adapter config")
    if not isinstance(config, dict):
        raise ModelError(f"{folder / ADAPTER_CONFIG}: not an adapter config")
    _check_weights(
        folder, "no adapter weights (*.safetensors)", "; the adapter was not saved whole"
    )
    _check_rank(folder, config)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if (folder / name).exists():
            read_json(folder / name, TOKENIZER_LIMIT, "tokenizer file")


def _check_rank(folder: Path, config: dict) -> None:
    """The config's rank `r` is the rank its lora_A weights were saved with (an edited r was
    the library's size-mismatch error inside "internal error"); ranks set per module
    (`rank_pattern`) are left to PEFT."""
    r = config.get("r")
    if config.get("rank_pattern"):
        return
    if type(r) is not int or r < 1:
        raise ModelError(f"{folder / ADAPTER_CONFIG}: r is {r!r}, not a positive rank")
    for file in sorted(folder.glob("*.safetensors")):
        for name, tensor in safetensors_header(file).items():
            shape = tensor.get("shape") if isinstance(tensor, dict) else None
            if name.endswith("lora_A.weight") and shape and shape[0] != r:
                raise ModelError(
                    f"{folder / ADAPTER_CONFIG}: r is {r}, but {file.name} holds rank "
                    f"{shape[0]} weights ({name}); the config was edited"
                )


def check_adapter_applies(model, folder: Path) -> None:
    """The adapter file's tensors are the ones its config's layers take, every one finite.
    PEFT loads keys that match no layer, and leaves layers the file lacks at no update, with
    a warning only; a diverged run's NaN adapter merges into NaN weights. Merge's parity
    check cannot see either: it compares the same broken adapter twice."""
    import torch
    from peft.utils import get_peft_model_state_dict
    from safetensors import safe_open

    expected, stored = set(get_peft_model_state_dict(model)), set()
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), "pt") as weights:
            for key in weights.keys():  # noqa: SIM118 - safe_open is no mapping
                stored.add(key)
                if not torch.isfinite(weights.get_tensor(key)).all():
                    raise ModelError(
                        f"{file}: {key} holds NaN or infinite values (the run diverged); "
                        "this adapter cannot be used"
                    )
    missing, unmatched = sorted(expected - stored), sorted(stored - expected)
    if missing or unmatched:
        example = (missing or unmatched)[0]
        raise ModelError(
            f"{folder}: the adapter's weights are not the ones its config's layers take "
            f"({len(missing)} missing, {len(unmatched)} matching no layer; e.g. {example}); "
            "it was edited or mixed with another run's"
        )


SIZE_MISMATCH = re.compile(
    r"size mismatch for (\S+): copying a param with shape torch\.Size\((\[.*?\])\) from "
    r"checkpoint, the shape in current model is torch\.Size\((\[.*?\])\)"
)


def load_checked_adapter(load, folder: Path):
    """`load()` (PEFT putting the adapter in `folder` on its base), with torch's size
    mismatch said in one line, then check_adapter_applies: what merge and compare both
    need before they trust the adapter."""
    try:
        model = load()
    except RuntimeError as exc:
        raise _adapter_size_problem(exc, folder) from None
    check_adapter_applies(model, folder)
    return model


def _adapter_size_problem(error: BaseException, folder: Path) -> BaseException:
    """torch's refusal to load an adapter's tensors into layers of other sizes, as PEFT
    passes it on (the run's settings name a base of other widths than it trained on, or
    the adapter was swapped), as one line; any other error as it was."""
    found = SIZE_MISMATCH.search(str(error)) if isinstance(error, RuntimeError) else None
    if not found:
        return error
    key, stored, expected = found.groups()
    return ModelError(
        f"{folder}: {key} is {stored} in the adapter but {expected} in the base model; "
        "the adapter was trained on another model than the run's settings name"
    )


def _check_weights(folder: Path, none: str, damaged: str) -> None:
    """Some safetensors weights, each a regular file (or a link to one, as the Hugging Face
    cache keeps them: only read) with an intact header: `none` says a folder without any,
    `damaged` what a damaged file means here."""
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        raise ModelError(f"{folder}: {none}")
    for file in weights:
        if problem := safetensors_problem(file):  # opened as a regular file, never a device
            raise ModelError(f"{file}: {problem}{damaged}")


def _adapter_facts(adapter: Path) -> tuple[str, int | None]:
    config = read_json(adapter / ADAPTER_CONFIG, CONFIG_LIMIT, "adapter config")
    base = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    if not isinstance(base, str) or not base:
        raise ModelError(f"{adapter / ADAPTER_CONFIG}: names no base_model_name_or_path")
    rank = config.get("r")
    return base, rank if isinstance(rank, int) else None


def run_max_len(run: Path) -> int | None:
    """The run's `training.max_seq_length` (its settings.yaml), or None when unreadable."""
    try:
        data = yaml.safe_load(read_text(run / SETTINGS_FILE, PRESET_LIMIT, "run settings"))
    except (InputError, yaml.YAMLError):
        return None
    training = data.get("training") if isinstance(data, dict) else None
    value = training.get("max_seq_length") if isinstance(training, dict) else None
    return value if isinstance(value, int) and value > 0 else None


def model_name(model: Shippable) -> str:
    """The folder a served model is named after (the run's for a run's adapter/), as it
    is: served_name.py makes a name of it."""
    path = model.source.resolve()
    if path.name == ADAPTER_DIR and is_marked(path.parent):
        path = path.parent
    return path.name


def load_tokenizer(folder: Path):
    """The model's own tokenizer (and chat template), offline."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{folder}: cannot load the tokenizer: {first}") from None
