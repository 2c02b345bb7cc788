"""The one settings schema: presets, the TUI form, the runner and the exporter all speak it.

Every option and its default lives here, once. Field descriptions double as the tooltips
of the TUI's settings form (tui/widgets/settings_form.py) and as comments in the exported script.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from .combinations import refused_combination
from .options import (
    BACKENDS,
    CHECKPOINTING,
    DPO_LOSSES,
    OBJECTIVES,
    OPTIMIZERS,
    PAIRED,
    QUANTIZATIONS,
    SFT_FORMATS,
    STRATEGIES,
    UNPAIRED,
)
from .section import Section

DEMO = "demo"  # the embedded tiny model / dataset: no network, no download
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?$")

Quantization = Literal[tuple(QUANTIZATIONS)]
ComputeDtype = Literal["auto", "bf16", "fp16", "fp32"]
Checkpointing = Literal[CHECKPOINTING]
Backend = Literal[tuple(BACKENDS)]
Optimizer = Literal[tuple(OPTIMIZERS)]
Scheduler = Literal["linear", "cosine", "constant", "constant_with_warmup"]
DatasetFormat = Literal[("auto", *SFT_FORMATS, PAIRED, UNPAIRED)]
Objective = Literal[tuple(OBJECTIVES)]
DpoLoss = Literal[DPO_LOSSES]
Attention = Literal["auto", "eager", "sdpa", "flash_attention_2", "kernels-community/flash-attn"]
Method = Literal["lora", "full"]
Strategy = Literal[tuple(STRATEGIES)]
Sharding = Literal["full_shard", "shard_grad_op", "hybrid_shard"]
StateDict = Literal["sharded", "full"]

# Bounds are what the libraries underneath accept (numpy seeds are 32-bit, int64 counters),
# so an absurd value is a one-line settings error, not a failure minutes into a run.
COUNT_LIMIT = 10**9
PositiveInt = Annotated[int, Field(gt=0, le=COUNT_LIMIT)]
ModuleNames = Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]
NAME_LIMIT = 128  # bytes of a run name: room for suffixes within the 255-byte file name limit
PART_LIMIT, PATH_LIMIT = 255, 4095  # bytes of a file name and of a path (Linux, macOS)


def _fits_file_systems(path: str) -> str:
    """A path every file system can name: each part at most 255 bytes, the whole at most
    4,095 (past either the system refuses it with ENAMETOOLONG, an internal error before)."""
    encoded = path.encode("utf-8", "surrogateescape")
    longest = max((len(part) for part in encoded.split(b"/")), default=0)
    if longest > PART_LIMIT:
        raise ValueError(f"has a name of {longest} bytes; file systems allow {PART_LIMIT}")
    if len(encoded) > PATH_LIMIT:
        raise ValueError(f"is {len(encoded)} bytes long; file systems allow {PATH_LIMIT}")
    return path


PathText = Annotated[str, Field(min_length=1), AfterValidator(_fits_file_systems)]


class ModelSettings(Section):
    name_or_path: PathText = Field(
        DEMO, description="Local model folder, Hub ID, or 'demo' for the embedded tiny model."
    )
    trust_remote_code: bool = Field(
        False, description="Run Python code shipped in the model folder. Off unless you trust it."
    )
    attn_implementation: Attention = Field(
        "auto", description="Attention kernel; 'auto': flash-attention if installed, else sdpa."
    )


class DatasetSettings(Section):
    path: PathText = Field(
        DEMO, description="JSONL/JSON/CSV/Parquet file, save_to_disk folder, or 'demo'."
    )
    format: DatasetFormat = Field(
        "auto",
        description="Record format; 'auto' detects messages/alpaca/sharegpt/text, preference "
        "(prompt/chosen/rejected) or unpaired_preference (prompt/completion/label).",
    )
    eval_fraction: float = Field(
        0.1, ge=0.0, lt=0.5, description="Share of records held out for evaluation."
    )
    max_samples: Annotated[int, Field(gt=0, le=10**12)] | None = Field(
        None, description="Use at most this many training records (None = all)."
    )


class LoraSettings(Section):
    r: int = Field(16, gt=0, le=4096, description="LoRA rank: adapter capacity and memory.")
    alpha: int = Field(16, gt=0, le=65536, description="LoRA scaling numerator (alpha / r).")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the LoRA path.")
    target_modules: ModuleNames | Literal["auto"] = Field(
        "auto", description="Modules to adapt; 'auto' = every linear projection of the family."
    )
    use_rslora: bool = Field(False, description="Rank-stabilised scaling alpha / sqrt(r).")


class QuantizationSettings(Section):
    mode: Quantization = Field(
        "none", description="Base weights: 16-bit ('none'), 8-bit, or 4-bit NF4/FP4 (QLoRA)."
    )
    double_quant: bool = Field(
        True, description="Quantise the 4-bit scaling constants too (~0.4 bit/param saved)."
    )
    compute_dtype: ComputeDtype = Field(
        "auto", description="Matmul dtype; 'auto' = bf16 where supported, else fp16 (fp32 on CPU)."
    )


class MemorySettings(Section):
    gradient_checkpointing: Checkpointing = Field(
        "off", description="Recompute activations in backward: 'on' (HF) or 'unsloth' (offloaded)."
    )
    use_reentrant: bool = Field(
        False, description="Reentrant checkpointing (the older torch.utils.checkpoint path)."
    )
    backend: Backend = Field(
        "hf", description="Kernels: plain HF, Liger fused kernels, or Unsloth."
    )
    packing: bool = Field(
        False,
        description="Pack short samples into full sequences, kept apart by position ids.",
    )
    group_by_length: bool = Field(
        False,
        description="Put samples of similar length in one micro-batch: less padding "
        "(ignored when packing).",
    )

    @field_validator("gradient_checkpointing", mode="before")
    @classmethod
    def _yaml_on_off(cls, value: object) -> object:
        """YAML reads a bare `on` / `off` as true / false: take them as the user meant."""
        if isinstance(value, bool):
            return "on" if value else "off"
        return value


class TrainingSettings(Section):
    objective: Objective = Field(
        "sft",
        description="'sft': learn the answers; 'dpo' / 'orpo': prefer the chosen answer over "
        "the rejected one; 'kto': completions labelled good or bad.",
    )
    beta: float = Field(
        0.1,
        gt=0.0,
        le=100.0,
        description="Preference objectives: how far DPO / KTO may move from the reference "
        "(higher: less), or ORPO's odds-ratio weight.",
    )
    dpo_loss: DpoLoss = Field(
        "sigmoid", description="DPO's loss (TRL's loss_type): 'sigmoid' is the paper's DPO."
    )
    method: Method = Field(
        "lora",
        description="'lora': train a LoRA adapter (QLoRA with 4-bit weights); 'full': train "
        "every weight, no adapter.",
    )
    micro_batch_size: int = Field(
        4, gt=0, le=65536, description="Sequences per forward pass per GPU."
    )
    gradient_accumulation_steps: int = Field(
        1, gt=0, le=65536, description="Micro-batches per optimizer step."
    )
    max_seq_length: int = Field(
        512, gt=0, le=2**20, description="Tokens per sequence (longer truncated)."
    )
    learning_rate: float = Field(2e-4, gt=0.0, lt=1.0, description="Peak learning rate.")
    lr_scheduler: Scheduler = Field("cosine", description="Learning-rate schedule after warm-up.")
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0, description="Share of steps warming up.")
    epochs: float = Field(1.0, gt=0.0, le=10000, description="Passes over the training data.")
    max_steps: PositiveInt | None = Field(
        None, description="Stop after this many optimizer steps (overrides epochs)."
    )
    optimizer: Optimizer = Field(
        "adamw_torch", description="AdamW 32-bit, 8-bit (bitsandbytes) or paged."
    )
    weight_decay: float = Field(0.0, ge=0.0, le=10.0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0.0, le=1e6, description="Gradient clipping norm.")
    logging_steps: PositiveInt = Field(1, description="Emit a progress event every N steps.")
    eval_steps: PositiveInt | None = Field(
        None, description="Evaluate every N steps (None = at the end only)."
    )
    save_steps: PositiveInt | None = Field(
        None, description="Checkpoint every N steps (None = only at the end / on stop)."
    )
    save_every_epoch: bool = Field(
        False, description="Also checkpoint at the end of every epoch (with or without save_steps)."
    )
    save_total_limit: PositiveInt = Field(2, description="Keep the last K checkpoints.")
    seed: int = Field(
        42, ge=0, le=2**32 - 1, description="Seed for data order, LoRA init and dropout."
    )
    exact_match_samples: int = Field(
        0,
        ge=0,
        le=100_000,
        description="Greedy-answer this many held-out prompts before and after training and "
        "report exact-match (0 = off).",
    )


class DistributedSettings(Section):
    strategy: Strategy = Field(
        "none",
        description="Several processes: 'ddp' (a whole copy per GPU), 'fsdp' or 'deepspeed' "
        "(ZeRO-3: weights, gradients and optimizer state sharded across GPUs).",
    )
    processes: PositiveInt = Field(1, description="Processes (GPUs) per node.")
    nodes: PositiveInt = Field(1, description="Machines; more than one runs under SLURM.")
    cpu_offload: bool = Field(
        False, description="Keep optimizer state in CPU memory (FSDP, DeepSpeed ZeRO-3)."
    )
    sharding: Sharding = Field("full_shard", description="FSDP sharding strategy.")
    state_dict: StateDict = Field(
        "sharded",
        description="FSDP checkpoints: 'sharded' (one file per rank, fast); the final model "
        "is always saved whole.",
    )

    @property
    def world_size(self) -> int:
        return self.processes * self.nodes

    @property
    def launched(self) -> bool:
        """Whether accelerate launches the run: any strategy, even on one process (ZeRO-3
        with CPU offload helps one GPU too)."""
        return self.strategy != "none"


class OutputSettings(Section):
    dir: PathText | None = Field(
        None, min_length=1, description="Run directory; default: <data dir>/runs/<run_name>."
    )
    run_name: str | None = Field(None, description="Name of the run; default: <model>-<timestamp>.")
    report_to: list[Literal["tensorboard", "wandb"]] = Field(
        default_factory=list, description="Experiment trackers, when installed."
    )

    @model_validator(mode="before")
    @classmethod
    def _overwrite_is_not_a_setting(cls, data: object, info: ValidationInfo) -> object:
        """Replacing a run is decided on the command line each time, never by a file.

        Runs saved before this rule carry `overwrite`; a run's own settings.yaml (read for
        --resume) drops it quietly, like `overwrite: false` anywhere.
        """
        if isinstance(data, dict) and "overwrite" in data:
            data = dict(data)
            saved_run = bool(info.context and info.context.get("saved_run"))
            if data.pop("overwrite") is not False and not saved_run:
                raise ValueError(
                    "overwrite: not a preset setting; pass --overwrite on the command line"
                )
        return data

    @field_validator("run_name")
    @classmethod
    def _plain_name(cls, name: str | None) -> str | None:
        """A run name is one folder name under the runs folder: never a path."""
        if name is None:
            return name
        problem = _run_name_problem(name)
        if problem:
            raise ValueError(f"a run name {problem} (it is a folder name, not a path)")
        return name


def _run_name_problem(name: str) -> str | None:
    checks = (
        (not name.strip(), "is empty"),
        ("/" in name or "\\" in name, "must not contain '/' or '\\'"),
        (name[:1] in (".", "-"), "must not start with '.' or '-'"),
        (name != name.strip(), "must not start or end with spaces"),
        (any(ord(c) < 32 for c in name), "contains a control character"),
        (len(name.encode("utf-8", "replace")) > NAME_LIMIT, f"is longer than {NAME_LIMIT} bytes"),
    )
    return next((message for failed, message in checks if failed), None)


class TrainSettings(Section):
    """Everything a run needs; the preset file is this object as YAML."""

    model: ModelSettings = Field(default_factory=ModelSettings)
    dataset: DatasetSettings = Field(default_factory=DatasetSettings)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    quantization: QuantizationSettings = Field(default_factory=QuantizationSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    distributed: DistributedSettings = Field(default_factory=DistributedSettings)
    output: OutputSettings = Field(default_factory=OutputSettings)

    @model_validator(mode="after")
    def _unsloth_pairs(self) -> TrainSettings:
        """Unsloth's offloaded checkpointing exists only inside the Unsloth backend."""
        if self.memory.gradient_checkpointing == "unsloth" and self.memory.backend != "unsloth":
            raise ValueError(
                "memory.gradient_checkpointing: 'unsloth' needs memory.backend: unsloth"
            )
        return self

    @model_validator(mode="after")
    def _method_and_processes(self) -> TrainSettings:
        """Combinations the libraries refuse, named before anything loads."""
        problem = refused_combination(self)
        if problem:
            raise ValueError(problem)
        return self

    def value(self, dotted: str) -> object:
        """The value of one `section.key` (the inverse of preset.with_changes)."""
        section, key = dotted.split(".")
        return getattr(getattr(self, section), key)

    def differences(self, other: TrainSettings) -> dict[str, tuple[object, object]]:
        """`section.key` -> (this value, the other's) for every field where they differ."""
        ours, theirs = self.model_dump(), other.model_dump()
        return {
            f"{section}.{key}": (value, theirs[section][key])
            for section, fields in ours.items()
            for key, value in fields.items()
            if theirs[section][key] != value
        }

    def with_absolute_paths(self) -> TrainSettings:
        """A copy naming the local dataset and model folder by absolute path (from the working
        directory, as they are read): a run resumed from elsewhere reads the same files."""
        dataset, model = self.dataset.path, self.model.name_or_path
        return self.model_copy(
            update={
                "dataset": self.dataset.model_copy(update={"path": _absolute(dataset)}),
                "model": self.model.model_copy(
                    update={"name_or_path": _absolute(model) if is_local_model(model) else model}
                ),
            }
        )

    def input_paths(self) -> tuple[Path, ...]:
        """The local files a run reads (dataset, model): never to be replaced or written."""
        paths = (self.dataset.path, self.model.name_or_path)
        return tuple(Path(p).expanduser() for p in paths if p != DEMO)

    @property
    def effective_batch_size(self) -> int:
        return self.training.micro_batch_size * self.training.gradient_accumulation_steps


def is_local_model(name: str) -> bool:
    """A model named by a folder: one that exists here, or a name no Hub ID can have."""
    if name == DEMO or not name.strip():
        return False
    return os.path.exists(os.path.expanduser(name)) or not HUB_ID.match(name)


def _absolute(path: str) -> str:
    """The path from the working directory; 'demo' and an empty path stay as they are."""
    if path == DEMO or not path.strip():
        return path
    try:
        return os.path.join(os.getcwd(), os.path.expanduser(path))
    except OSError:  # the working directory was deleted: the path cannot be read either
        return path
