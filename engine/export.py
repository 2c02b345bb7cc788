"""Export settings as a standalone training script (+ preset, + accelerate config).

The script is the runner's recipe with nothing of ours in it: TRL/PEFT/datasets directly,
read top to bottom (settings → data → model → trainer → train → save). Every value that
comes from the user reaches it through `literal()` (Python's own repr), never through string
formatting into code, so a path holding quotes, backslashes or newlines stays data.
"""

from __future__ import annotations

import datetime
import inspect
import json
import math
import shlex
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from .data import ALPACA_PROMPT, ALPACA_PROMPT_NO_INPUT, SHAREGPT_ROLES, SUFFIXES
from .errors import InputError, OutputExistsError
from .options import OPTIMIZERS
from .preset import dump_preset
from .recipe import HF_FUNCTIONS, UNSLOTH_FUNCTIONS
from .safe_io import write_text_atomic
from .settings import DEMO, TrainSettings

ALWAYS = ("torch", "transformers", "trl", "peft", "datasets", "accelerate")


@dataclass
class Exported:
    script: Path
    preset: Path
    accelerate_config: Path | None
    commands: list[str]


def literal(value: object) -> str:
    """A Python literal that evaluates back to `value` (strings, numbers, lists, dicts).

    Strings are written as JSON strings, which are valid double-quoted Python literals
    with every quote, backslash, newline and control character escaped.
    """
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({repr(value)!r})"  # `inf` alone is a NameError in a script
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    raise TypeError(f"cannot render {type(value).__name__} as a literal")


def comment(text: str) -> str:
    """One safe comment line: no newline or control character can end it and start code."""
    printable = "".join(c if c.isprintable() else " " for c in str(text))
    return " ".join(printable.split())


def export_run(
    settings: TrainSettings,
    script_path: str | Path,
    reasons: dict[str, str] | None = None,
    gpus: int = 1,
    distributed: str = "fsdp",
    inputs: tuple[Path, ...] = (),
    force: bool = False,
) -> Exported:
    """Write the script, the matching preset and (for several GPUs) an accelerate config.

    Nothing is written unless every output is a new file (or `force`), none is an input
    of the export (`inputs`: the preset it came from, the dataset, the model) and no two
    outputs are the same file. Each file appears whole (written beside it, then renamed).
    """
    script_path = Path(script_path).expanduser()
    preset_path = script_path.with_suffix(".yaml")
    config_path = script_path.with_name("accelerate_config.yaml") if gpus > 1 else None
    outputs = [p for p in (script_path, preset_path, config_path) if p is not None]
    check_export_targets(outputs, (*inputs, *settings.input_paths()), force)
    files = {
        script_path: render_script(settings, reasons or {}, distributed if gpus > 1 else None),
        preset_path: dump_preset(settings),
    }
    if config_path is not None:
        files[config_path] = render_accelerate_config(gpus, distributed)
    try:
        script_path.parent.mkdir(parents=True, exist_ok=True)
        for path, text in files.items():
            write_text_atomic(path, text)
        script_path.chmod(0o755)
    except OSError as exc:
        raise InputError(f"{exc.filename or script_path}: cannot write: {exc.strerror}") from None
    commands = [
        f"python {shlex.quote(str(script_path))}",
        f"finetune-tui --preset {shlex.quote(str(preset_path))}",
    ]
    if config_path is not None:
        commands.insert(
            0,
            f"accelerate launch --config_file {shlex.quote(str(config_path))} "
            f"{shlex.quote(str(script_path))}",
        )
    return Exported(script_path, preset_path, config_path, commands)


def check_export_targets(outputs: list[Path], inputs: tuple[Path, ...], force: bool) -> None:
    """Refuse to write over an input, a directory, another output or (unless forced) a file."""
    if len({_identity(p) for p in outputs}) < len(outputs):
        raise InputError(
            f"{outputs[0]}: the script and its preset would be the same file; "
            "name the script with .py"
        )
    protected = {_identity(Path(p).expanduser()) for p in inputs}
    for path in outputs:
        if path.is_dir():
            raise InputError(f"{path}: is a directory; give a file name such as {path}/train.py")
        if _identity(path) in protected:
            raise InputError(f"{path}: is an input of this export; it is never overwritten")
        if (path.exists() or path.is_symlink()) and not force:
            raise OutputExistsError(f"{path}: exists; use --force to replace it, or another -o")


def _identity(path: Path) -> object:
    """The same file however it is named (symlinks, `..`, hard links)."""
    try:
        info = path.stat()
        return (info.st_dev, info.st_ino)
    except OSError:
        return path.resolve()


# --- the script --------------------------------------------------------------------------


def render_script(
    settings: TrainSettings, reasons: dict[str, str], distributed: str | None = None
) -> str:
    """The standalone script; `distributed` (fsdp / deepspeed) when launched on several GPUs."""
    head = _header(settings, distributed)
    sections = [
        head + "\n\n" + _imports(settings) + "\n\n" + _constants(settings, reasons),
        _data_code(settings),
        _model_code(settings),
        _main_code(settings),
    ]
    return "\n\n\n".join(s.strip("\n") for s in sections) + "\n"


def packages_used(settings: TrainSettings, distributed: str | None = None) -> list[str]:
    used = list(ALWAYS)
    if distributed == "deepspeed":
        used.append("deepspeed")
    if settings.quantization.mode != "none" or settings.training.optimizer != "adamw_torch":
        used.append("bitsandbytes")
    if settings.memory.backend == "liger":
        used.append("liger-kernel")
    if settings.memory.backend == "unsloth":
        used.append("unsloth")
    return used


def _header(settings: TrainSettings, distributed: str | None) -> str:
    pins = []
    for name in packages_used(settings, distributed):
        try:  # without a local build tag: torch 2.13.0+cpu here is torch 2.13.0 on a GPU
            pins.append(f"#   {name}=={version(name).split('+')[0]}")
        except PackageNotFoundError:
            pins.append(f"#   {name}")
    today = datetime.date.today().isoformat()
    return "\n".join(
        [
            "#!/usr/bin/env python3",
            f"# Generated by finetune-tui {_our_version()} on {today}: LoRA fine-tuning with TRL",
            "# SFTTrainer + PEFT. Standalone: it does not need finetune-tui installed.",
            "#",
            "# requirements (the versions it was generated with):",
            *pins,
            "#",
            "# Run:  python train.py [--model PATH_OR_ID] [--data FILE] [--output DIR]",
            "#                       [--max-steps N]",
            '"""Fine-tune a causal language model with LoRA (see the settings below)."""',
        ]
    )


def _our_version() -> str:
    try:
        return version("finetune-tui")
    except PackageNotFoundError:
        return "dev"


def _imports(settings: TrainSettings) -> str:
    """Only the libraries this configuration uses, sorted the way isort/ruff sort them."""
    unsloth = settings.memory.backend == "unsloth"
    names: dict[str, set[str]] = {
        "datasets": {"Dataset"},
        "transformers": {"TrainerCallback", "AutoTokenizer"},
        "trl": {"SFTConfig", "SFTTrainer"},
    }
    if _file_kind(settings) == "disk":
        names["datasets"] |= {"DatasetDict", "load_from_disk"}
    if settings.memory.backend == "liger":
        names["liger_kernel.transformers.monkey_patch"] = {"_apply_liger_kernel_to_instance"}
    third_party = ["import torch", "import transformers"] + [
        _from_import(module, sorted(found, key=_isort_key))
        for module, found in sorted(names.items())
    ]
    lines = ["import argparse", "import json", "from pathlib import Path", "", *third_party]
    if unsloth:  # first of all: it patches transformers, trl and peft on import
        lines = ["import unsloth  # noqa: F401, I001", "", *lines]
    return "\n".join(lines)


def _from_import(module: str, names: list[str]) -> str:
    line = f"from {module} import {', '.join(names)}"
    if len(line) <= 88:
        return line
    return f"from {module} import (\n" + "".join(f"    {n},\n" for n in names) + ")"


def _isort_key(name: str) -> tuple[int, str]:
    """isort's order-by-type: CONSTANTS, then Classes, then functions."""
    kind = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return kind, name


def _constants(settings: TrainSettings, reasons: dict[str, str]) -> str:
    s = settings

    def const(name: str, value: object, field: str) -> str:
        reason = reasons.get(field) or _description(field)
        return f"# {comment(reason)}\n{name} = {literal(value)}"

    model = _resolved_model(s)
    data = _resolved_data(s)
    t = s.training
    hf = s.memory.backend != "unsloth"  # Unsloth picks its own attention and 4-bit storage
    lines = [
        "# --- settings (from the finetune-tui preset; edit here or override on the command line)",
        const("MODEL", model, "model.name_or_path"),
        const("TRUST_REMOTE_CODE", s.model.trust_remote_code, "model.trust_remote_code"),
        *([const("ATTENTION", s.model.attn_implementation, "model.attn_implementation")] * hf),
        const("DATA", data, "dataset.path"),
        const("EVAL_FRACTION", s.dataset.eval_fraction, "dataset.eval_fraction"),
        const("MAX_SAMPLES", s.dataset.max_samples, "dataset.max_samples"),
        const("LORA_R", s.lora.r, "lora.r"),
        const("LORA_ALPHA", s.lora.alpha, "lora.alpha"),
        const("LORA_DROPOUT", s.lora.dropout, "lora.dropout"),
        const("LORA_TARGETS", _targets(s), "lora.target_modules"),
        const("USE_RSLORA", s.lora.use_rslora, "lora.use_rslora"),
        const("QUANTIZATION", s.quantization.mode, "quantization.mode"),
        *([const("DOUBLE_QUANT", s.quantization.double_quant, "quantization.double_quant")] * hf),
        const("COMPUTE_DTYPE", s.quantization.compute_dtype, "quantization.compute_dtype"),
        const(
            "GRADIENT_CHECKPOINTING",
            s.memory.gradient_checkpointing,
            "memory.gradient_checkpointing",
        ),
        const("USE_REENTRANT", s.memory.use_reentrant, "memory.use_reentrant"),
        const("PACKING", s.memory.packing, "memory.packing"),
        const("GROUP_BY_LENGTH", s.memory.group_by_length, "memory.group_by_length"),
        const("MICRO_BATCH_SIZE", t.micro_batch_size, "training.micro_batch_size"),
        const(
            "GRADIENT_ACCUMULATION_STEPS",
            t.gradient_accumulation_steps,
            "training.gradient_accumulation_steps",
        ),
        const("MAX_SEQ_LENGTH", t.max_seq_length, "training.max_seq_length"),
        const("LEARNING_RATE", t.learning_rate, "training.learning_rate"),
        const("LR_SCHEDULER", t.lr_scheduler, "training.lr_scheduler"),
        const("WARMUP_RATIO", t.warmup_ratio, "training.warmup_ratio"),
        const("EPOCHS", t.epochs, "training.epochs"),
        const("MAX_STEPS", t.max_steps, "training.max_steps"),
        const("OPTIMIZER", OPTIMIZERS[t.optimizer].hf_name, "training.optimizer"),
        const("WEIGHT_DECAY", t.weight_decay, "training.weight_decay"),
        const("MAX_GRAD_NORM", t.max_grad_norm, "training.max_grad_norm"),
        const("LOGGING_STEPS", t.logging_steps, "training.logging_steps"),
        const("EVAL_STEPS", t.eval_steps, "training.eval_steps"),
        const("SAVE_STEPS", t.save_steps, "training.save_steps"),
        const("SAVE_EVERY_EPOCH", t.save_every_epoch, "training.save_every_epoch"),
        const("SAVE_TOTAL_LIMIT", t.save_total_limit, "training.save_total_limit"),
        const("SEED", t.seed, "training.seed"),
        const("OUTPUT", s.output.dir or "finetune-output", "output.dir"),
        const("REPORT_TO", list(s.output.report_to) or "none", "output.report_to"),
    ]
    if _data_format(s) == "alpaca":
        lines += [
            "",
            f"ALPACA_PROMPT = {literal(ALPACA_PROMPT)}",
            f"ALPACA_PROMPT_NO_INPUT = {literal(ALPACA_PROMPT_NO_INPUT)}",
        ]
    if _data_format(s) == "sharegpt":
        lines += ["", f"SHAREGPT_ROLES = {literal(SHAREGPT_ROLES)}"]
    return "\n".join(lines)


# What a setting means in the script, where the schema's text would be wrong.
SCRIPT_NOTES = {
    "model.name_or_path": "model folder or Hub ID (--model overrides)",
    "model.attn_implementation": (
        "attention kernel; 'auto': flash-attention if installed where this runs, else sdpa"
    ),
    "dataset.path": "dataset file or save_to_disk folder (--data overrides)",
    "output.dir": "checkpoints, losses.jsonl and the adapter go here (--output overrides)",
}


def _description(field: str) -> str:
    if field in SCRIPT_NOTES:
        return SCRIPT_NOTES[field]
    section, name = field.split(".")
    model = TrainSettings.model_fields[section].annotation
    return model.model_fields[name].description or ""


def _resolved_model(settings: TrainSettings) -> str:
    if settings.model.name_or_path == DEMO:
        from .demo import ensure_demo_model

        return str(ensure_demo_model())
    return settings.model.name_or_path


def _resolved_data(settings: TrainSettings) -> str:
    from .data import resolve_dataset_path

    path = resolve_dataset_path(settings.dataset.path)
    return str(path.resolve()) if path.exists() else str(path)


def _data_format(settings: TrainSettings) -> str:
    if settings.dataset.format != "auto":
        return settings.dataset.format
    from .data import detect_format, load_records, resolve_dataset_path

    return detect_format(load_records(resolve_dataset_path(settings.dataset.path)))


def _file_kind(settings: TrainSettings) -> str:
    from .data import resolve_dataset_path

    path = resolve_dataset_path(settings.dataset.path)
    if path.is_dir():
        return "disk"
    return SUFFIXES.get(path.suffix.lower(), "jsonl")


def _targets(settings: TrainSettings) -> object:
    """ "auto" (the recipe's auto_lora_targets, as the runner does) or the asked names."""
    if settings.lora.target_modules == "auto":
        return "auto"
    return list(settings.lora.target_modules)


LOADERS = {
    "jsonl": '''
def load_records(path):
    """One JSON object per line."""
    with open(path, encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]
''',
    "json": '''
def load_records(path):
    """A JSON list of records, or an object with one key holding that list."""
    value = json.loads(Path(path).read_text(encoding="utf-8"))
    if isinstance(value, dict):
        value = next(v for v in value.values() if isinstance(v, list))
    return value
''',
    "csv": '''
def load_records(path):
    """CSV with a header row; empty cells are missing fields."""
    import csv

    with open(path, encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    return [{k: v for k, v in row.items() if v not in (None, "")} for row in rows]
''',
    "parquet": """
def load_records(path):
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()
""",
    "disk": '''
def load_records(path):
    """A folder written by Dataset.save_to_disk (the 'train' split of a DatasetDict)."""
    loaded = load_from_disk(path)
    if isinstance(loaded, DatasetDict):
        loaded = loaded["train"]
    return loaded.to_list()
''',
}

CONVERTERS = {
    "messages": '''
def to_example(record, eos_token):
    """Chat messages -> prompt (all but the last turn) + completion (the answer)."""
    turns = [{"role": t["role"], "content": t["content"]} for t in record["messages"]]
    return {"prompt": turns[:-1], "completion": turns[-1:]}
''',
    "sharegpt": '''
def to_example(record, eos_token):
    """ShareGPT conversations -> chat prompt + completion."""
    turns = [
        {"role": SHAREGPT_ROLES[t["from"]], "content": t["value"]} for t in record["conversations"]
    ]
    return {"prompt": turns[:-1], "completion": turns[-1:]}
''',
    "alpaca": '''
def to_example(record, eos_token):
    """Alpaca instruction/input/output -> the Alpaca prompt + output and EOS."""
    template = ALPACA_PROMPT if record.get("input") else ALPACA_PROMPT_NO_INPUT
    prompt = template.format(instruction=record["instruction"], input=record.get("input", ""))
    return {"prompt": prompt, "completion": record["output"] + eos_token}
''',
    "text": """
def to_example(record, eos_token):
    return {"text": record["text"]}
""",
}


def _data_code(settings: TrainSettings) -> str:
    parts = (LOADERS[_file_kind(settings)], CONVERTERS[_data_format(settings)], LOAD_DATASETS)
    return "\n\n\n".join(part.strip("\n") for part in parts)


LOAD_DATASETS = '''
def load_datasets(path, eos_token):
    """Records -> TRL examples -> seeded train/eval split -> first MAX_SAMPLES for training."""
    dataset = Dataset.from_list([to_example(r, eos_token) for r in load_records(path)])
    train, evaluation = dataset, None
    if EVAL_FRACTION > 0 and len(dataset) * EVAL_FRACTION >= 1:
        split = dataset.train_test_split(test_size=EVAL_FRACTION, seed=SEED)
        train, evaluation = split["train"], split["test"]
    if MAX_SAMPLES and MAX_SAMPLES < len(train):
        train = train.select(range(MAX_SAMPLES))
    return train, evaluation
'''


def _model_code(settings: TrainSettings) -> str:
    """The recipe's model side, verbatim: the functions the runner itself calls."""
    functions = UNSLOTH_FUNCTIONS if settings.memory.backend == "unsloth" else HF_FUNCTIONS
    return "\n\n".join(inspect.getsource(function) for function in functions)


def _load_call(settings: TrainSettings) -> str:
    """main()'s lines that build the model and LoRA from the constants block."""
    if settings.memory.backend == "unsloth":
        return """    model, _ = load_unsloth_model(
        args.model,
        MAX_SEQ_LENGTH,
        dtype,
        QUANTIZATION,
        LORA_TARGETS,
        LORA_R,
        LORA_ALPHA,
        LORA_DROPOUT,
        USE_RSLORA,
        GRADIENT_CHECKPOINTING,
        SEED,
    )
    lora = None  # Unsloth has applied LoRA itself"""
    liger = (
        "\n    _apply_liger_kernel_to_instance(model=model, fused_linear_cross_entropy=False)"
        if settings.memory.backend == "liger"
        else ""
    )
    return f"""    model = load_model(
        args.model,
        dtype,
        attention_implementation(ATTENTION),
        QUANTIZATION,
        DOUBLE_QUANT,
        TRUST_REMOTE_CODE,
    ){liger}
    targets = auto_lora_targets(model) if LORA_TARGETS == "auto" else LORA_TARGETS
    lora = lora_config(targets, LORA_R, LORA_ALPHA, LORA_DROPOUT, USE_RSLORA)"""


def _main_code(settings: TrainSettings) -> str:
    checkpointing = (
        'GRADIENT_CHECKPOINTING == "on"'
        if settings.memory.backend != "unsloth"
        else "False  # Unsloth applies its own"
    )
    return f'''
class LossLog(TrainerCallback):
    """Per-step training loss to OUTPUT/losses.jsonl (and the usual printed logs)."""

    def __init__(self, path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            with open(self.path, "a", encoding="utf-8") as file:
                record = {{"step": state.global_step, "loss": logs["loss"]}}
                file.write(json.dumps(record) + "\\n")


class EpochCheckpoints(TrainerCallback):
    """A checkpoint at the end of every epoch, on top of the every-SAVE_STEPS ones."""

    def on_epoch_end(self, args, state, control, **kwargs):
        control.should_save = state.global_step > 0
        return control


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=MODEL, help="model folder or Hub ID")
    parser.add_argument("--data", default=DATA, help="dataset file or saved folder")
    parser.add_argument("--output", default=OUTPUT, help="output folder")
    parser.add_argument("--max-steps", type=int, default=MAX_STEPS, help="steps")
    args = parser.parse_args()
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)

    tokenizer = AutoTokenizer.from_pretrained(
        args.model, trust_remote_code=TRUST_REMOTE_CODE
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    train, evaluation = load_datasets(args.data, tokenizer.eos_token)

    dtype = compute_dtype(COMPUTE_DTYPE)
    on_gpu = torch.cuda.is_available()
    transformers.set_seed(SEED)
{_load_call(settings)}
    checkpointing = {checkpointing}
    config = SFTConfig(
        output_dir=str(output / "checkpoints"),
        per_device_train_batch_size=MICRO_BATCH_SIZE,
        per_device_eval_batch_size=MICRO_BATCH_SIZE,
        gradient_accumulation_steps=GRADIENT_ACCUMULATION_STEPS,
        max_length=MAX_SEQ_LENGTH,
        learning_rate=LEARNING_RATE,
        lr_scheduler_type=LR_SCHEDULER,
        warmup_steps=WARMUP_RATIO,  # a float in [0, 1) is a ratio of the total steps
        num_train_epochs=EPOCHS,
        max_steps=args.max_steps or -1,
        optim=OPTIMIZER,
        weight_decay=WEIGHT_DECAY,
        max_grad_norm=MAX_GRAD_NORM,
        logging_steps=LOGGING_STEPS,
        logging_first_step=True,
        eval_strategy="steps" if (evaluation is not None and EVAL_STEPS) else "no",
        eval_steps=EVAL_STEPS,
        save_strategy="steps" if SAVE_STEPS else "no",
        save_steps=SAVE_STEPS or 500,
        save_total_limit=SAVE_TOTAL_LIMIT,
        seed=SEED,
        data_seed=SEED,
        bf16=on_gpu and dtype == "bf16",
        fp16=on_gpu and dtype == "fp16",
        use_cpu=not on_gpu,
        gradient_checkpointing=checkpointing,
        gradient_checkpointing_kwargs={{"use_reentrant": USE_REENTRANT}},
        # packed samples stay apart by their position ids (sdpa, eager) or by flash's own
        packing=PACKING,
        train_sampling_strategy="group_by_length" if GROUP_BY_LENGTH and not PACKING else "random",
        report_to=REPORT_TO,
        dataloader_num_workers=0,
    )
    transformers.set_seed(SEED)  # the LoRA initialisation depends on it
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=[LossLog(output / "losses.jsonl")]
        + ([EpochCheckpoints()] if SAVE_EVERY_EPOCH else []),
    )
    trainer.train()
    trainer.save_model(str(output / "adapter"))
    tokenizer.save_pretrained(str(output / "adapter"))
    if evaluation is not None:
        print(json.dumps(trainer.evaluate()))
    print(f"adapter saved to {{output / 'adapter'}}")


if __name__ == "__main__":
    main()
'''


# --- multi-GPU ---------------------------------------------------------------------------


def render_accelerate_config(gpus: int, distributed: str) -> str:
    """accelerate config: FSDP full-shard, or DeepSpeed ZeRO-3 with CPU optimizer offload."""
    import yaml

    if distributed == "deepspeed":
        config = {
            "compute_environment": "LOCAL_MACHINE",
            "distributed_type": "DEEPSPEED",
            "deepspeed_config": {
                "zero_stage": 3,
                "offload_optimizer_device": "cpu",
                "offload_param_device": "none",
                "zero3_init_flag": True,
                "zero3_save_16bit_model": True,
            },
            "mixed_precision": "bf16",
            "num_machines": 1,
            "num_processes": gpus,
        }
    else:
        config = {
            "compute_environment": "LOCAL_MACHINE",
            "distributed_type": "FSDP",
            "fsdp_config": {
                "fsdp_sharding_strategy": "FULL_SHARD",
                "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
                "fsdp_state_dict_type": "SHARDED_STATE_DICT",
                "fsdp_cpu_ram_efficient_loading": True,
                "fsdp_sync_module_states": True,
                "fsdp_use_orig_params": True,
                "fsdp_offload_params": False,
            },
            "mixed_precision": "bf16",
            "num_machines": 1,
            "num_processes": gpus,
        }
    return yaml.safe_dump(config, sort_keys=False)
