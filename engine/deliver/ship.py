"""`finetune-tui ship DIR --to gguf|ollama|vllm`: what llama.cpp, Ollama and vLLM need to serve
a finished model, each output checked before anything is written and never written over.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..common.errors import InputError, ModelError, OutputExistsError
from ..common.safe_io import entry_problem, write_text_exclusive
from ..export.files import check_run_folder_targets
from ..runs.create import is_marked
from ..runs.layout import ADAPTER_DIR, SETTINGS_FILE
from ..runs.status import refuse_while_training
from .model_folder import (
    TEMPLATE_FILE,
    Shippable,
    find_shippable,
    load_tokenizer,
    merged_folder,
    model_name,
)
from .served_name import checked_name, hf_cache_repo, served_name

if TYPE_CHECKING:
    from ..settings.schema import TrainSettings

VLLM_SCRIPT = "serve-vllm.sh"
MODELFILE = "Modelfile"
# The values vLLM's --max-lora-rank accepts: `MaxLoRARanks` in vllm/config/lora.py, vLLM
# 0.11 (vLLM is not installed here; releases before the file existed lacked 1). Any other
# value stops the server at start-up.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


@dataclass
class Shipped:
    written: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # a line per file: what it holds
    commands: list[str] = field(default_factory=list)  # what the user runs next
    failed: bool = False  # a check found the output wrong (exit 1)


def ship(
    folder: str | Path,
    to: str,
    out: str | Path | None = None,
    quants: list[str] | None = None,
    gguf: str | Path | None = None,
    say: Callable[[str], None] = print,
    name: str | None = None,
) -> Shipped:
    """Check the model and the outputs, then write what `to` needs; `say` hears what long
    work (a conversion, a file run in llama.cpp) is being done as it starts. `name`: what
    the model is served as (default: its folder's name, made to fit served_name.py)."""
    name = checked_name(name) if name is not None else None
    refuse_unfinished(folder)
    model = find_shippable(folder)
    name = name or default_name(model)
    if to == "vllm":
        if model.model is None:
            check_run_settings(model.source)
        return _ship_vllm(model, out, name)
    if model.model is None:
        raise ModelError(
            f"{model.source}: is a LoRA run; merge it first (finetune-tui merge "
            f"{shlex.quote(str(model.source))} -o DIR) and ship DIR"
        )
    if to == "ollama":
        return _ship_ollama(model, out, gguf, name)
    if to == "gguf":
        return _ship_gguf(model, out, quants or ["q8_0"], say, name)
    raise InputError(f"--to {to}: choose gguf, ollama or vllm")


def refuse_unfinished(folder: str | Path) -> None:
    """A run still training (its folder, or its adapter/ named) is refused as merge, compare
    and chat refuse it, before its missing or half-saved adapter/ is looked at: the run
    replaces the adapter when it ends."""
    path = Path(folder).expanduser()
    for run in (path, path.parent):
        if is_marked(run):
            refuse_while_training(run, "ship it")
            return


def check_run_settings(run: Path) -> None:
    """A LoRA run's settings read as merge and compare read them (load_preset of a saved
    run): a base model folder moved away or changed since training is one line, not a
    script that serves nothing."""
    from ..settings.preset import load_preset

    load_preset(run / SETTINGS_FILE, saved_run=True)


def default_name(model: Shippable) -> str:
    """The served name: a Hugging Face cache snapshot's repository (ORG--NAME; the
    snapshot's folder is a commit hash), else the folder's (the run's for its adapter/)."""
    return served_name(_hf_repo(model) or model_name(model))


def _hf_repo(model: Shippable) -> str | None:
    return hf_cache_repo(model.model) if model.model is not None else None


def _default_folder(model: Shippable, beside: Path) -> Path:
    """Where an output goes unless -o says: `beside` the model, except for a Hugging Face
    cache snapshot, which is the cache's own: the current folder."""
    return Path.cwd() if _hf_repo(model) else beside


def _model_home(model: Shippable) -> Path:
    """The folder a script or Modelfile goes in: the model's own, or the run folder for a
    run's adapter/ (nothing is written into what the run trained)."""
    folder = model.model or model.source
    return folder.parent if folder.name == ADAPTER_DIR and is_marked(folder.parent) else folder


def keep_commands(run_dir: Path, settings: TrainSettings) -> str:
    """What to run to keep a finished run's model, typed as a shell reads it: a LoRA run
    is merged into its base first; a full fine-tune's folder is the model already."""
    targets = "--to gguf | ollama | vllm"
    run = shlex.quote(str(run_dir))
    if settings.training.method == "full":
        return f"serve it: finetune-tui ship {run} {targets}"
    merged = shlex.quote(str(merged_folder(run_dir)))
    merge = f"finetune-tui merge {run} -o {merged}"
    return f"keep it: {merge}, then finetune-tui ship {merged} {targets}"


def check_new_file(path: Path) -> Path:
    """An output file: absent (a link by its name is refused too), its folder there, and
    inside a run folder reached through real folders only."""
    path = _absent(path, "not written over (give another -o)")
    if not path.parent.is_dir():
        raise InputError(f"{path.parent}: no such folder")
    check_run_folder_targets([path])
    return path


def check_new_folder(path: Path) -> Path:
    """An output folder that does not exist yet (we make it, so nothing in it is a link);
    `merge` writes its folder under the same rule."""
    path = _absent(path, "give a new folder with -o")
    check_run_folder_targets([path])
    return path


def _absent(path: Path, instead: str) -> Path:
    """The absolute path, refused when anything stands there: a link (even a dangling one),
    a pipe, or an existing file or folder."""
    path = Path(os.path.abspath(path))
    problem = entry_problem(path)
    if problem:
        raise OutputExistsError(f"{path}: {problem}; not written through")
    if path.exists():
        raise OutputExistsError(f"{path}: exists; {instead}")
    return path


# --- vLLM ---------------------------------------------------------------------------------


def vllm_command(model: Shippable, name: str) -> list[str]:
    """`vllm serve` for a whole model, or the base with the run's LoRA adapter."""
    if model.model is not None:
        command = ["vllm", "serve", str(model.model.resolve()), "--served-model-name", name]
        template = model.model / TEMPLATE_FILE
    else:
        assert model.adapter is not None and model.base is not None
        command = ["vllm", "serve", model.base, "--enable-lora"]
        command += ["--lora-modules", f"{name}={model.adapter.resolve()}"]
        if model.lora_rank:
            command += ["--max-lora-rank", str(vllm_lora_rank(model.lora_rank))]
        template = model.adapter / TEMPLATE_FILE
    if template.is_file():  # as named: a cache snapshot's link, not the blob it points at
        command += ["--chat-template", os.path.abspath(template)]
    if model.max_len:
        command += ["--max-model-len", str(model.max_len)]
    return command


def vllm_lora_rank(rank: int) -> int:
    """The smallest --max-lora-rank vLLM accepts that holds the adapter's rank."""
    for allowed in VLLM_LORA_RANKS:
        if allowed >= rank:
            return allowed
    raise ModelError(
        f"LoRA rank {rank}: above vLLM's largest --max-lora-rank ({VLLM_LORA_RANKS[-1]}); "
        "merge the run and serve the merged model"
    )


def _ship_vllm(model: Shippable, out: str | Path | None, name: str) -> Shipped:
    beside = _default_folder(model, _model_home(model))
    script = check_new_file(Path(out) if out else beside / VLLM_SCRIPT)
    command = shlex.join(vllm_command(model, name))
    lines = ["#!/bin/sh", "# Serve this model with vLLM (written by finetune-tui ship)."]
    if model.model is None:
        lines.append("# The run's LoRA adapter on its base; a merged model serves without it.")
    lines.append(f'exec {command} "$@"')
    write_text_exclusive(script, "\n".join(lines) + "\n")
    script.chmod(0o755)
    shipped = Shipped([script], [f"vLLM script: {script}"], [f"sh {shlex.quote(str(script))}"])
    if model.model is None:
        run = shlex.quote(str(model.source))
        shipped.notes.append(
            f"or merge first: finetune-tui merge {run} -o DIR, then finetune-tui ship DIR --to vllm"
        )
    return shipped


# --- Ollama -------------------------------------------------------------------------------


def _ship_ollama(
    model: Shippable, out: str | Path | None, gguf: str | Path | None, name: str
) -> Shipped:
    from .gguf import checked_gguf
    from .ollama import modelfile_text, ollama_template

    assert model.model is not None
    source = model.model.resolve() if gguf is None else checked_gguf(gguf)
    path = check_new_file(
        Path(out) if out else _default_folder(model, _model_home(model)) / MODELFILE
    )
    text = modelfile_text(str(source), ollama_template(load_tokenizer(model.model)))
    write_text_exclusive(path, text)
    command = f"ollama create {shlex.quote(name)} -f {shlex.quote(str(path))}"
    return Shipped([path], [f"Modelfile: {path} (FROM {source})"], [command])


# --- GGUF ---------------------------------------------------------------------------------


def _ship_gguf(
    model: Shippable, out: str | Path | None, quants: list[str], say, name: str
) -> Shipped:
    from .gguf import QUANTS, describe_gguf, find_tools, make_gguf

    unknown = [q for q in quants if q not in QUANTS]
    if unknown:
        raise InputError(f"--quant {unknown[0]}: choose from {', '.join(QUANTS)}")
    assert model.model is not None
    default = _default_folder(model, model.model.parent) / f"{name}-gguf"
    target = check_new_folder(Path(out) if out else default)
    tools = find_tools(quants)
    shipped = Shipped()
    check, why = _answers_reference(model.model)  # a report out of shape: before writing
    target.mkdir(parents=True)
    made = {}
    for quant in dict.fromkeys(quants):
        say(f"converting to {quant} with llama.cpp's tools...")
        made[quant] = make_gguf(model.model, target, name, quant, tools)
        shipped.written.append(made[quant])
        shipped.notes.append(f"{made[quant]}: {describe_gguf(made[quant])}")
    if check is None:
        shipped.notes.append(f"answers not checked in llama.cpp: {why}")
    else:
        _check_answers(check, made, target, shipped, say)
    first = shlex.quote(str(shipped.written[0]))
    shipped.commands = [
        f"llama-cli -m {first}",
        f"finetune-tui ship {shlex.quote(str(model.source))} --to ollama --gguf {first} "
        f"--name {name}",
    ]
    return shipped


def _answers_reference(model: Path):
    """((the merge's prompts and answers, the tokenizer), None) to run the files on, or
    (None, why they will not be run) (gguf_answers.py)."""
    from . import gguf_answers

    why = gguf_answers.why_unchecked(model)
    if why is not None:
        return None, why
    tokenizer = load_tokenizer(model)
    reference = gguf_answers.read_reference(model, tokenizer)
    if reference is None:
        return None, f"{model}'s merge report holds no prompts (merge it again to have them)"
    return (reference, tokenizer), None


def _check_answers(check, made: dict[str, Path], target: Path, shipped: Shipped, say) -> None:
    """Each file run in llama.cpp on the merge's prompts; the results go to
    TARGET/gguf_report.json, a line per file to the user."""
    import json

    from . import gguf_answers

    reference, tokenizer = check
    results = {}
    for quant, file in made.items():
        if too_large := gguf_answers.room_problem(file):
            shipped.notes.append(f"{file.name}: not run in llama.cpp: {too_large}")
            continue
        say(f"running {file.name} in llama.cpp on {len(reference.prompts)} prompts...")
        results[quant] = gguf_answers.check_file(file, reference, tokenizer)
        shipped.notes.append(gguf_answers.verdict(results[quant], quant, reference))
        shipped.failed |= gguf_answers.failed(results[quant], quant)
    report = target / "gguf_report.json"
    write_text_exclusive(report, json.dumps(results, indent=2) + "\n")
    shipped.written.append(report)
