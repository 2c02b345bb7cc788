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
from ..runs.status import refuse_while_training
from .model_folder import (
    TEMPLATE_FILE,
    Shippable,
    find_shippable,
    load_tokenizer,
    merged_folder,
    model_name,
)

if TYPE_CHECKING:
    from ..settings.schema import TrainSettings

VLLM_SCRIPT = "serve-vllm.sh"
MODELFILE = "Modelfile"


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
) -> Shipped:
    """Check the model and the outputs, then write what `to` needs; `say` hears what long
    work (a conversion, a file run in llama.cpp) is being done as it starts."""
    model = find_shippable(folder)
    if is_marked(model.source):  # a run still training replaces its adapter when it ends
        refuse_while_training(model.source, "ship it")
    if to == "vllm":
        return _ship_vllm(model, out)
    if model.model is None:
        raise ModelError(
            f"{model.source}: is a LoRA run; merge it first (finetune-tui merge "
            f"{shlex.quote(str(model.source))} -o DIR) and ship DIR"
        )
    if to == "ollama":
        return _ship_ollama(model, out, gguf)
    if to == "gguf":
        return _ship_gguf(model, out, quants or ["q8_0"], say)
    raise InputError(f"--to {to}: choose gguf, ollama or vllm")


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


def vllm_command(model: Shippable) -> list[str]:
    """`vllm serve` for a whole model, or the base with the run's LoRA adapter."""
    name = model_name(model)
    if model.model is not None:
        command = ["vllm", "serve", str(model.model.resolve()), "--served-model-name", name]
        template = model.model / TEMPLATE_FILE
        if template.is_file():
            command += ["--chat-template", str(template.resolve())]
    else:
        assert model.adapter is not None and model.base is not None
        command = ["vllm", "serve", model.base, "--enable-lora"]
        command += ["--lora-modules", f"{name}={model.adapter.resolve()}"]
        if model.lora_rank:
            command += ["--max-lora-rank", str(model.lora_rank)]
        template = model.adapter / TEMPLATE_FILE
        if template.is_file():
            command += ["--chat-template", str(template.resolve())]
    if model.max_len:
        command += ["--max-model-len", str(model.max_len)]
    return command


def _ship_vllm(model: Shippable, out: str | Path | None) -> Shipped:
    beside = model.model or model.source
    script = check_new_file(Path(out) if out else beside / VLLM_SCRIPT)
    command = shlex.join(vllm_command(model))
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


def _ship_ollama(model: Shippable, out: str | Path | None, gguf: str | Path | None) -> Shipped:
    from .ollama import modelfile_text, ollama_template

    assert model.model is not None
    source = model.model.resolve()
    if gguf is not None:
        source = Path(gguf).expanduser().resolve()
        if not source.is_file() or source.suffix != ".gguf":
            raise InputError(f"--gguf {gguf}: not a .gguf file")
    path = check_new_file(Path(out) if out else model.model / MODELFILE)
    text = modelfile_text(str(source), ollama_template(load_tokenizer(model.model)))
    write_text_exclusive(path, text)
    name = model_name(model).lower()
    command = f"ollama create {shlex.quote(name)} -f {shlex.quote(str(path))}"
    return Shipped([path], [f"Modelfile: {path} (FROM {source})"], [command])


# --- GGUF ---------------------------------------------------------------------------------


def _ship_gguf(model: Shippable, out: str | Path | None, quants: list[str], say) -> Shipped:
    from .gguf import QUANTS, describe_gguf, find_tools, make_gguf

    unknown = [q for q in quants if q not in QUANTS]
    if unknown:
        raise InputError(f"--quant {unknown[0]}: choose from {', '.join(QUANTS)}")
    assert model.model is not None
    default = model.model.parent / f"{model_name(model)}-gguf"
    target = check_new_folder(Path(out) if out else default)
    tools = find_tools(quants)
    shipped = Shipped()
    check, why = _answers_reference(model.model)  # a report out of shape: before writing
    target.mkdir(parents=True)
    made = {}
    for quant in dict.fromkeys(quants):
        say(f"converting to {quant} with llama.cpp's tools...")
        made[quant] = make_gguf(model.model, target, model_name(model), quant, tools)
        shipped.written.append(made[quant])
        shipped.notes.append(f"{made[quant]}: {describe_gguf(made[quant])}")
    if check is None:
        shipped.notes.append(f"answers not checked in llama.cpp: {why}")
    else:
        _check_answers(check, made, target, shipped, say)
    first = shlex.quote(str(shipped.written[0]))
    shipped.commands = [
        f"llama-cli -m {first}",
        f"finetune-tui ship {shlex.quote(str(model.source))} --to ollama --gguf {first}",
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
