"""Launcher variables (RANK, WORLD_SIZE, MASTER_ADDR, accelerate's own ...) are honoured only
inside finetune-tui's own launch.

Job systems (Kubernetes operators, SageMaker, an outer torchrun or accelerate launch, a
shell that once sourced one) export these to every process. Read by a run they did not
start, they silently change it: RANK=1 made a run believe it was not the main process, so it
trained and wrote no settings, metrics or summary; WORLD_SIZE=4 made accelerate wait for a
rendezvous. The policy, the same in every entry point: the `--worker` entry started by
finetune-tui's launcher (which sets LAUNCH_TOKEN) keeps them, checked; every other entry
removes them from os.environ before anything reads them, with one warning line. Several
processes are asked for with `distributed.*`, never through the environment.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

from ..common.errors import InputError

LAUNCH_TOKEN = "FINETUNE_TUI_LAUNCH_TOKEN"  # set by cli/workers.py for the workers it starts

# torch.distributed / torchrun (elastic), MPI flavours accelerate reads, accelerate's own
EXACT = frozenset(
    {
        "RANK",
        "LOCAL_RANK",
        "WORLD_SIZE",
        "LOCAL_WORLD_SIZE",
        "MASTER_ADDR",
        "MASTER_PORT",
        "GROUP_RANK",
        "GROUP_WORLD_SIZE",
        "ROLE_RANK",
        "ROLE_NAME",
        "ROLE_WORLD_SIZE",
        "NODE_RANK",
        "CROSS_RANK",  # DeepSpeed's, with LOCAL_SIZE / CROSS_SIZE
        "CROSS_SIZE",
        "LOCAL_SIZE",
        "SM_FRAMEWORK_PARAMS",  # SageMaker's: transformers turns on its model parallelism
        "SM_HP_MP_PARAMETERS",
        "PMI_RANK",
        "PMI_SIZE",
        "OMPI_COMM_WORLD_RANK",
        "OMPI_COMM_WORLD_SIZE",
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "OMPI_COMM_WORLD_LOCAL_SIZE",
        "MV2_COMM_WORLD_RANK",
        "MV2_COMM_WORLD_SIZE",
        "MV2_COMM_WORLD_LOCAL_RANK",
        "FORK_LAUNCHED",
        LAUNCH_TOKEN,
    }
)
# accelerate launch's exports, torchrun's agent, SageMaker's data parallelism
PREFIXES = (
    "ACCELERATE_",
    "FSDP_",
    "PARALLELISM_CONFIG_",
    "TORCHELASTIC_",
    "TORCH_ELASTIC_",
    "SMDATAPARALLEL_",
)
NUMBERS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE")  # checked in a launch


def launcher_variables(environ: MutableMapping[str, str] | None = None) -> list[str]:
    """The launcher variables present, sorted."""
    environ = os.environ if environ is None else environ
    return sorted(n for n in environ if n in EXACT or n.startswith(PREFIXES))


def inside_own_launch(environ: MutableMapping[str, str] | None = None) -> bool:
    """Whether this process was started by finetune-tui's own launcher (cli/workers.py)."""
    environ = os.environ if environ is None else environ
    return bool(environ.get(LAUNCH_TOKEN, "").strip())


def own_launch_environment(
    token: str, environ: MutableMapping[str, str] | None = None
) -> dict[str, str]:
    """The environment for the launcher finetune-tui starts: its workers keep the variables
    accelerate sets for them, and carry this launch's token (an inherited one means
    nothing)."""
    environ = os.environ if environ is None else environ
    return {**environ, LAUNCH_TOKEN: token}


def apply_policy(worker: bool, environ: MutableMapping[str, str] | None = None) -> str | None:
    """Enforce the policy for one entry point; return the warning line to show, if any.

    A worker inside the product's own launch keeps the variables, which must be numbers
    where torch reads numbers (InputError otherwise); anywhere else they are removed.
    """
    environ = os.environ if environ is None else environ
    if worker and inside_own_launch(environ):
        for name in NUMBERS:
            value = environ.get(name)
            if value is not None and not value.strip().isdigit():
                raise InputError(f"{name}={value!r}: the launch set a rank that is not a number")
        return None
    found = launcher_variables(environ)
    for name in found:
        del environ[name]
    shown = [n for n in found if n != LAUNCH_TOKEN]
    if not shown:
        return None
    return (
        f"ignoring {', '.join(shown)} from the environment: only finetune-tui's own launch "
        "sets them (ask for several processes with distributed.*)"
    )
