"""Export settings: the standalone script (engine/export/script.py), the matching preset and, for
several GPUs, an accelerate config; written only when every output is safe to write.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from ..common.errors import InputError, OutputExistsError
from ..common.safe_io import entry_problem, write_text_atomic
from ..launch.configs import CONFIG_FILE, launch_files
from ..runs.create import run_folder_holding
from ..runs.layout import EXPORT_DIR, OWN_DIRS
from ..settings.preset import dump_preset
from ..settings.schema import DistributedSettings, TrainSettings
from .script import render_script
from .slurm import render_sbatch


@dataclass
class Exported:
    script: Path
    preset: Path
    accelerate_config: Path | None
    commands: list[str]
    sbatch: Path | None = None


def export_run(
    settings: TrainSettings,
    script_path: str | Path,
    reasons: dict[str, str] | None = None,
    gpus: int = 1,
    distributed: str = "fsdp",
    inputs: tuple[Path, ...] = (),
    force: bool = False,
    nodes: int = 1,
    slurm: bool = False,
) -> Exported:
    """Write the script, the matching preset and (for several GPUs) an accelerate config.

    Nothing is written unless every output is a new file (or `force`), none is an input
    of the export (`inputs`: the preset it came from, the dataset, the model) and no two
    outputs are the same file. Each file appears whole (written beside it, then renamed).
    """
    script_path = Path(script_path).expanduser()
    preset_path = script_path.with_suffix(".yaml")
    spread = export_distribution(settings, gpus, distributed, nodes)
    # launched: several GPUs, or a strategy the settings name even for one (ZeRO-3 offload)
    launched = spread.world_size > 1 or settings.distributed.launched
    script = render_script(settings, reasons or {}, spread.strategy if launched else None)
    files = [  # a list, not a dict: two outputs of one name must be caught, not merged
        (script_path, script),
        (preset_path, dump_preset(settings)),
    ]
    config_path = script_path.with_name(CONFIG_FILE) if launched else None
    if launched:
        files += launch_files(spread, script_path.parent, mixed_precision="bf16").items()
    sbatch_path = script_path.with_suffix(".sbatch") if slurm else None
    if sbatch_path is not None and config_path is not None:
        files.append((sbatch_path, render_sbatch(spread, script_path, config_path)))
    check_run_records([path for path, _ in files])  # first: never offered for replacing
    check_export_targets([path for path, _ in files], (*inputs, *settings.input_paths()), force)
    check_run_folder_targets([path for path, _ in files])
    target = script_path.parent
    try:
        script_path.parent.mkdir(parents=True, exist_ok=True)
        for target, text in files:  # named by the file asked for, not its staging name
            write_text_atomic(target, text)
        script_path.chmod(0o755)
    except OSError as exc:
        raise InputError(f"{target}: cannot write: {exc.strerror}") from None
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
    if sbatch_path is not None:
        commands.insert(0, f"sbatch {shlex.quote(str(sbatch_path))}")
    return Exported(script_path, preset_path, config_path, commands, sbatch_path)


def check_export_targets(outputs: list[Path], inputs: tuple[Path, ...], force: bool) -> None:
    """Refuse to write over an input or into an input folder (the model's), a directory, a
    device or pipe, another output, or (unless forced) a file."""
    if len({_identity(p) for p in outputs}) < len(outputs):
        raise InputError(
            f"{outputs[0]}: the script and its preset would be the same file; "
            "name the script with .py"
        )
    protected = {_identity(Path(p).expanduser()) for p in inputs}
    folders = [Path(p).expanduser().resolve() for p in inputs if Path(p).expanduser().is_dir()]
    for path in outputs:
        if path.is_dir():
            raise InputError(f"{path}: is a directory; give a file name such as {path}/train.py")
        if _identity(path) in protected:
            raise InputError(f"{path}: is an input of this export; it is never overwritten")
        inside = next((f for f in folders if f in path.resolve().parents), None)
        if inside is not None:
            raise InputError(f"{path}: inside {inside}, an input of this export; never written")
        problem = entry_problem(path)
        if problem and problem != "is a symbolic link":  # a link is replaced, not followed
            raise InputError(f"{path}: {problem}; export writes plain files only")
        if (path.exists() or path.is_symlink()) and not force:
            raise OutputExistsError(
                f"{path}: exists; use --force to replace it, or another -o", path
            )


def check_run_records(outputs: list[Path]) -> None:
    """A file a run folder already holds outside its export/ folder is the run's record,
    never replaced by an export, even one forced: a preset written as a run's settings.yaml
    broke its resume. (export/ holds the run's own script, which an export may renew.)"""
    for path in outputs:
        # where the system writes it: its folder resolved (links, then `..`), not the text
        absolute = Path(os.path.realpath(Path(path).parent)) / Path(path).name
        if not (absolute.exists() or absolute.is_symlink()):
            continue
        run = run_folder_holding(absolute)
        if run is not None and absolute.relative_to(run).parts[0] != EXPORT_DIR:
            raise InputError(
                f"{path}: a file of the run folder {run}, its record; never replaced by "
                "an export: give another name"
            )


# a run's folders of what it trained: nothing else is ever written into them
TRAINED_DIRS = frozenset(OWN_DIRS) - {EXPORT_DIR}


def check_run_folder_targets(outputs: list[Path]) -> None:
    """An output inside a run folder (the run's own export/) is reached through real
    folders only: a link planted there would carry the write out of the run folder; and
    never inside what the run trained (a merge into adapter/sub sat where vLLM loads the
    adapter from, and a resume's checkpoint clean-up would take one in checkpoints/)."""
    for path in outputs:
        absolute = Path(os.path.abspath(path))
        folder = run_folder_holding(absolute)
        if folder is None:
            continue
        parts = absolute.relative_to(folder).parts
        if len(parts) > 1 and parts[0] in TRAINED_DIRS:  # vLLM serves adapter/ as it is
            raise OutputExistsError(
                f"{absolute}: inside {folder / parts[0]}, what the run trained; give a path "
                "outside it"
            )
        depth = len(parts) - 1
        for entry in [absolute, *absolute.parents[:depth]]:
            problem = entry_problem(entry)
            if problem is None and entry != absolute and entry.exists() and not entry.is_dir():
                problem = "is not a folder"
            if problem:
                raise OutputExistsError(
                    f"{entry}: {problem} inside the run folder {folder}; not written through"
                )


def _identity(path: Path) -> object:
    """The same file however it is named (symlinks, `..`, hard links)."""
    try:
        info = path.stat()
        return (info.st_dev, info.st_ino)
    except OSError:
        return path.resolve()


# --- multi-GPU ---------------------------------------------------------------------------


def export_distribution(
    settings: TrainSettings, gpus: int, strategy: str, nodes: int = 1
) -> DistributedSettings:
    """The settings' own distributed section when it names a strategy, else `--gpus N
    [--nodes M] --distributed S` (DeepSpeed then offloads the optimizer to CPU, its usual
    recipe)."""
    if settings.distributed.strategy != "none":
        return settings.distributed
    try:
        return DistributedSettings(
            strategy=strategy, processes=gpus, nodes=nodes, cpu_offload=strategy == "deepspeed"
        )
    except ValidationError as exc:  # a count beyond the schema's bound
        field = exc.errors()[0]["loc"][0]
        flag, value = ("--nodes", nodes) if field == "nodes" else ("--gpus", gpus)
        raise InputError(f"{flag}: {value} is out of range") from None
