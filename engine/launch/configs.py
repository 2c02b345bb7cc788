"""The files and command of a launch: accelerate's config for a strategy,
DeepSpeed's, and the `accelerate launch` command line."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from ..settings.schema import DistributedSettings

CONFIG_FILE = "accelerate_config.yaml"  # in the run directory


DEEPSPEED_FILE = "deepspeed_config.json"  # beside it, for distributed.strategy: deepspeed


WORKER_FLAG = "--worker"


RESUME_FLAG = "--worker-resume"


SHARDING = {
    "full_shard": "FULL_SHARD",
    "shard_grad_op": "SHARD_GRAD_OP",
    "hybrid_shard": "HYBRID_SHARD",
}


STATE_DICT = {"sharded": "SHARDED_STATE_DICT", "full": "FULL_STATE_DICT"}


def accelerate_config(
    distributed: DistributedSettings,
    mixed_precision: str = "no",
    deepspeed_file: Path | None = None,
) -> dict:
    """accelerate's config for this strategy. Mixed precision is left to the Trainer's own
    bf16 / fp16 arguments unless asked (an exported config states it). DeepSpeed's own
    settings live in `deepspeed_file` (deepspeed_config() written as JSON), named by its
    absolute path so the launch works from any folder."""
    config = {
        "compute_environment": "LOCAL_MACHINE",
        "num_machines": distributed.nodes,
        "num_processes": distributed.world_size,  # in all, across machines
        "machine_rank": 0,
        "mixed_precision": mixed_precision,
        "distributed_type": "MULTI_GPU",
    }
    if distributed.strategy == "fsdp":
        config["distributed_type"] = "FSDP"
        config["fsdp_config"] = {
            "fsdp_sharding_strategy": SHARDING[distributed.sharding],
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",  # from _no_split_modules
            "fsdp_state_dict_type": STATE_DICT[distributed.state_dict],
            "fsdp_cpu_ram_efficient_loading": True,  # weights read on rank 0, broadcast
            "fsdp_sync_module_states": True,
            "fsdp_use_orig_params": True,  # LoRA: frozen and trainable weights in one unit
            "fsdp_offload_params": distributed.cpu_offload,
        }
    elif distributed.strategy == "deepspeed":
        config["distributed_type"] = "DEEPSPEED"
        if deepspeed_file is None:
            raise ValueError("a DeepSpeed launch needs its deepspeed_config.json")
        del config["mixed_precision"]  # accelerate refuses it beside a config file: "auto" there
        config["deepspeed_config"] = {
            "deepspeed_config_file": str(Path(deepspeed_file).resolve()),
            "zero3_init_flag": True,  # weights are created already partitioned (zero.Init)
        }
    return config


def render_accelerate_config(
    distributed: DistributedSettings, mixed_precision: str, deepspeed_file: Path | None = None
) -> str:
    import yaml

    config = accelerate_config(distributed, mixed_precision, deepspeed_file)
    return yaml.safe_dump(config, sort_keys=False)


def deepspeed_config(distributed: DistributedSettings) -> dict:
    """ZeRO-3 as DeepSpeed's authors and the Trainer's integration intend: "auto" values are
    filled from the Trainer's arguments (batch, accumulation, clipping, precision, AdamW's
    learning rate, betas, eps and weight decay, bucket sizes from the hidden size).
    DeepSpeed runs the optimizer itself: with the optimizer offloaded, its CPU Adam (a C++
    op compiled on first use) steps fp32 master weights in pinned CPU memory; without
    offload, torch's AdamW on the GPU (no op to compile)."""
    offload = distributed.cpu_offload
    return {
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "optimizer": {
            "type": "AdamW",
            "params": {
                "lr": "auto",
                "betas": "auto",
                "eps": "auto",
                "weight_decay": "auto",
                **({} if offload else {"torch_adam": True}),
            },
        },
        "zero_optimization": {
            "stage": 3,
            "offload_optimizer": {"device": "cpu", "pin_memory": True}
            if offload
            else {"device": "none"},
            "offload_param": {"device": "none"},
            "overlap_comm": True,
            "contiguous_gradients": True,
            "reduce_bucket_size": "auto",
            "stage3_prefetch_bucket_size": "auto",
            "stage3_param_persistence_threshold": "auto",
            "stage3_gather_16bit_weights_on_model_save": True,  # a whole model at each save
        },
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
    }


def launch_files(distributed: DistributedSettings, folder: Path, mixed_precision: str) -> dict:
    """{path: text} of the launch's config files in `folder`: accelerate's, and DeepSpeed's
    beside it when the strategy is deepspeed."""
    import json

    folder = Path(folder)
    files = {}
    deepspeed_file = None
    if distributed.strategy == "deepspeed":
        deepspeed_file = folder / DEEPSPEED_FILE
        files[deepspeed_file] = json.dumps(deepspeed_config(distributed), indent=2) + "\n"
    files[folder / CONFIG_FILE] = render_accelerate_config(
        distributed, mixed_precision, deepspeed_file
    )
    return files


def launch_command(run_dir: Path, config: Path, resume: bool) -> list[str]:
    """`accelerate launch` of this run's workers on this machine, on a free port."""
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(config),
        "--main_process_port",
        str(free_port()),
        "-m",
        "finetune_tui",
        WORKER_FLAG,
        str(run_dir),
    ]
    return command + ([RESUME_FLAG] if resume else [])


def free_port() -> int:
    """A TCP port nothing listens on now (the workers' rendezvous)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
