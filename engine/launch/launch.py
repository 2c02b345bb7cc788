"""Several processes: the accelerate config of a distributed strategy, and the `accelerate
launch` command that starts a run's workers.

The library's launcher starts and watches the processes (torch's elastic agent underneath);
finetune-tui only writes its config and command. Every worker runs `finetune-tui --worker
RUN_DIR`: rank 0 owns the run directory, metrics, progress lines and summary, the other
ranks train quietly. The config is plain YAML, the same file `export --gpus N` writes.
"""

from __future__ import annotations

import functools
import os
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


def rank() -> int:
    """This process's rank under a launcher (0 when alone)."""
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    return rank() == 0


def world_size() -> int:
    """How many processes train this run together (1 when alone)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


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


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on any: a stop asked of one rank stops all of
    them at the same step (a rank that stopped alone would leave the others waiting)."""
    return bool(_all_reduce(float(flag), "MAX"))


def sum_over_ranks(value: float) -> float:
    """The total of a count every rank keeps for itself (tokens each rank trained on)."""
    return _all_reduce(value, "SUM")


def _all_reduce(value: float, op: str) -> float:
    """One collective every rank calls at the same point; the value itself when alone."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return value
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=getattr(dist.ReduceOp, op))
    return float(tensor.item())


@functools.cache  # registered once per process
def accept_indexed_cpu_locations() -> None:
    """Let torch.load restore to 'cpu:N'. With several CPU processes the Trainer's device is
    `cpu:0` and it resumes the optimizer with `map_location=args.device`, which torch cannot
    map ("don't know how to restore data location ... cpu:0"); CPU memory has no index, so
    such a location is the CPU itself, registered through torch's own extension point."""
    import torch.serialization

    def tag(storage):
        return None  # saving is unchanged

    def restore(storage, location):
        return storage if location.startswith("cpu:") else None

    torch.serialization.register_package(30, tag, restore)


# --- the processes of one launch --------------------------------------------------------
#
# accelerate's launcher (torch's elastic agent) starts each worker in a session of its own,
# so neither a terminal's Ctrl-C nor a signal to the launcher's process group reaches them,
# and a worker whose agent died lives on, reparented to init. Each launch therefore marks
# every process it starts with a token in the environment (inherited by the workers and
# whatever they start): the launcher finds them all by it in /proc, and a worker refuses to
# train unless the token names a live ancestor and its own run folder.

HAS_PROC = os.path.isdir("/proc/self")  # Linux; elsewhere the process group stands in
FORCE_GRACE_S = 2.0  # between SIGTERM and SIGKILL when a launch is ended by force
GONE_WAIT_S = 10.0  # how long a killed process may take to disappear


def launch_token(run_dir: Path) -> str:
    """This launch's mark: the launcher's pid, the run folder it prepared, and a secret."""
    import secrets

    return f"{os.getpid()}:{_folder_key(run_dir)}:{secrets.token_hex(8)}"


def _folder_key(run_dir: Path) -> str:
    import hashlib

    return hashlib.sha256(os.fsencode(Path(run_dir).resolve())).hexdigest()[:16]


def launcher_pid(environ=None) -> int | None:
    """The pid of the launch this process belongs to, or None outside a launch."""
    from .environment import LAUNCH_TOKEN

    environ = os.environ if environ is None else environ
    head = environ.get(LAUNCH_TOKEN, "").split(":", 1)[0]
    return int(head) if head.isdigit() and len(head) < 10 else None


def launch_problem(run_dir: Path, environ=None) -> str | None:
    """Why this process is not a worker started by the launch of `run_dir`, or None.

    A worker trains only inside the launch that prepared its folder: one started by
    hand (or by anything else) would write into a folder whose live, finished or
    replaced state no one checked."""
    from .environment import LAUNCH_TOKEN

    environ = os.environ if environ is None else environ
    parts = environ.get(LAUNCH_TOKEN, "").split(":")
    pid = launcher_pid(environ)
    if len(parts) != 3 or pid is None:
        return "--worker is started by finetune-tui's own launch, not by hand"
    if parts[1] != _folder_key(run_dir):
        return "--worker names another folder than its launch prepared"
    if HAS_PROC and pid not in ancestors():
        return f"--worker outlived its launch (pid {pid} is gone)"
    return None


def launcher_gone() -> bool:
    """Inside a launch: whether the process that launched it has ended (killed with
    SIGKILL, say); a worker then saves and stops instead of training on, orphaned."""
    pid = launcher_pid()
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def ancestors(pid: int | None = None) -> list[int]:
    """The parent, grandparent ... of a process, up to init (Linux /proc)."""
    chain: list[int] = []
    pid = os.getpid() if pid is None else pid
    while pid > 1 and len(chain) < 256:
        pid = _parent(pid)
        if pid is None:
            break
        chain.append(pid)
    return chain


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(errors="replace")
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # the name in parentheses may hold spaces
    return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None


def catches(pid: int, signum: int) -> bool:
    """Whether a process has its own handler for a signal (it has started far enough to
    take SIGTERM as a request, not as the end), from /proc's mask of caught signals."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(errors="replace")
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def launched_processes(token: str) -> list[int]:
    """Every live process carrying this launch's token (the launcher, the workers and
    what they started), however they were started; never this process."""
    from .environment import LAUNCH_TOKEN

    wanted = f"{LAUNCH_TOKEN}={token}".encode()
    found = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as environ:
                variables = environ.read().split(b"\0")
        except OSError:  # gone meanwhile, a zombie, or another user's
            continue
        if wanted in variables:
            found.append(int(name))
    return found


def signal_processes(signum: int, pids: list[int]) -> None:
    """Send `signum` to each pid; one already gone (or no longer ours) is skipped."""
    for pid in pids:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def end_processes(token: str, grace: float = FORCE_GRACE_S, hurry=lambda: False) -> list[int]:
    """End every process of a launch: SIGTERM, then SIGKILL after `grace` seconds (at once
    when `hurry()` turns true), and wait until none is left. Returns what would not go
    (none, short of a process stuck in the kernel)."""
    import signal
    import time

    send = signal_processes
    alive = launched_processes(token)
    if not alive:
        return []
    send(signal.SIGTERM, alive)
    deadline = time.monotonic() + grace
    while alive and time.monotonic() < deadline and not hurry():
        time.sleep(0.05)
        alive = launched_processes(token)
    deadline = time.monotonic() + GONE_WAIT_S
    while alive and time.monotonic() < deadline:
        send(signal.SIGKILL, alive)  # again for any process started in between
        time.sleep(0.05)
        alive = launched_processes(token)
        if not alive:  # once more: a process in the middle of exec may not show its token
            time.sleep(0.05)
            alive = launched_processes(token)
    return alive
