"""`finetune-tui merge`: the run's LoRA adapter merged into its base, written as a model a
user loads with AutoModelForCausalLM alone, and proved to answer as the adapter did.

Why each step is as it is:
- the base is loaded unquantised, in bf16 (fp32 on a CPU), whatever the run trained on:
  merging into 4-bit weights rounds the adapter's update away (the quality drop users meet);
- the memory and disk it needs are planned first (merge_plan.py): a merge that cannot
  finish is one line before anything loads, not an out-of-memory kill halfway;
- the folder is written beside its place and renamed there only when complete, never over
  an existing folder nor through a link;
- the tokenizer, chat template and a generation config whose eos_token_id lists every stop
  token (EOS and the template's end of turn) travel with it: without them an exported model
  talks past its answer;
- the merged model is reloaded from disk, as a user would, and its greedy continuations of
  held-out prompts are compared with the adapter's (parity.py); merge_report.json says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..common.errors import InputError, OutputExistsError
from ..common.safe_io import entry_problem, write_text_exclusive
from ..inspect.hardware import GIB
from ..recipe.merging import adapter_on_base, save_merged, stop_token_ids
from ..recipe.model import torch_dtype
from ..runs.layout import ADAPTER_DIR, SETTINGS_FILE
from ..runs.status import refuse_while_training
from ..settings.preset import load_preset
from ..settings.schema import TrainSettings
from . import parity
from .merge_plan import (
    DEFAULT_SHARD,
    MergePlan,
    Meter,
    check_disk,
    measured_line,
    plan_merge,
    shard_bytes,
)
from .model_folder import (
    ADAPTER_CONFIG,
    REPORT_FILE,
    check_adapter_folder,
    load_checked_adapter,
    merged_folder,
)
from .ship import check_new_folder


@dataclass
class MergeResult:
    output: Path | None  # None: nothing written (full fine-tuning has nothing to merge)
    report: dict
    line: str  # the one-line verdict
    ok: bool


def merge_run(
    run_dir: Path,
    output: Path | None,
    max_shard_size: str | int = DEFAULT_SHARD,
    prompts: int = 4,
    tokens: int = 16,
    say=print,
) -> MergeResult:
    """Check everything, plan the memory, merge into a temporary sibling of `output` (None:
    beside the run), prove it, and rename it into place. Nothing is written before every
    check has passed."""
    run_dir = Path(run_dir).expanduser()
    settings = read_run_settings(run_dir)
    if settings.training.method == "full":
        if output is not None:  # `merge RUN -o OUT && ship OUT` went on with no OUT
            raise InputError(
                f"{run_dir}: full fine-tuning: nothing to merge, so nothing is written to "
                f"{output}; the model is {run_dir / ADAPTER_DIR} already (ship that)"
            )
        return check_full_run(run_dir, settings)
    output = Path(output or merged_folder(run_dir)).expanduser().absolute()
    adapter = adapter_folder(run_dir)
    check_output_free(output)
    check_base_unquantised(settings)
    from ..train.loading import resolve_model_path

    model_path = resolve_model_path(settings.model.name_or_path)
    plan_shard = shard_bytes(max_shard_size)  # bytes: save_pretrained reads no "GiB"
    plan = plan_merge(settings, model_path, sorted(adapter.glob("*.safetensors")), plan_shard)
    check_disk(plan, output)
    say(_plan_line(plan))
    _quiet_progress_bars()
    tokenizer, prompts, source = run_tokenizer_and_prompts(run_dir, settings, model_path, prompts)
    made = _make_parents(output)
    work = output.with_name(f".{output.name}.merging-{os.getpid()}")
    try:
        work.mkdir()  # exclusive: a leftover of this name is never written into
    except FileExistsError:
        _remove_empty(made)
        raise OutputExistsError(f"{work}: left by an earlier merge; remove it") from None
    except OSError as exc:  # a name the folder's own temporary name makes too long
        _remove_empty(made)
        raise InputError(f"{output}: cannot write beside it ({exc.strerror})") from None
    try:
        meter = Meter(plan.device)
        report = merge_and_prove(
            work, model_path, adapter, plan, settings, tokenizer, prompts, (plan_shard, tokens)
        )
        report["measured"] = meter.read()
        say(measured_line(plan, report["measured"]))
        report["parity"]["prompt_source"] = source
        write_text_exclusive(work / REPORT_FILE, json.dumps(report, indent=2) + "\n")
        check_output_free(output)  # still free after the minutes the merge took
        os.rename(work, output)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(work)
        if not output.exists():  # stopped or failed: the folders made for it go too
            _remove_empty(made)
    line = f"merged into {output}; " + parity.verdict(report["parity"], tokens)
    return MergeResult(output, report, line, report["parity"]["agrees"])


def _make_parents(output: Path) -> list[Path]:
    """The output's missing parent folders, made; returned deepest first (to undo)."""
    missing = [p for p in [output.parent, *output.parent.parents] if not p.exists()]
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a dangling link or a file on the way
        raise InputError(f"{output.parent}: cannot make this folder ({exc.strerror})") from None
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove folders this merge made, deepest first, while they are still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def read_run_settings(run_dir: Path) -> TrainSettings:
    """The run's own settings.yaml (its inputs must still be the ones it trained on)."""
    if not (run_dir / SETTINGS_FILE).is_file():
        raise InputError(f"{run_dir}: not a run folder (no {SETTINGS_FILE})")
    refuse_while_training(run_dir, "merge it")  # its adapter is replaced when it ends
    return load_preset(run_dir / SETTINGS_FILE, saved_run=True)


def check_base_unquantised(settings: TrainSettings) -> None:
    """A base whose checkpoint stores its weights 4/8-bit by bitsandbytes has no 16-bit
    weights to merge into: merging would round the adapter's update into them. MXFP4 / FP8
    bases load dequantised, as in training."""
    from ..inspect.models import load_config
    from ..inspect.stored_quantization import stored_quantization

    name = settings.model.name_or_path
    try:
        stored = stored_quantization(name, load_config(name))
    except InputError:  # not planned from a config here: the loader judges it
        return
    if stored is not None and stored.bitsandbytes:
        raise InputError(
            f"{name}: its weights are stored {stored.loads_as} by bitsandbytes, with no 16-bit "
            "copy to merge the adapter into (rounding the update into them loses it); serve "
            "the adapter on this base (vLLM and Ollama load LoRA adapters), or train on the "
            "16-bit model it was quantised from"
        )


def adapter_folder(run_dir: Path) -> Path:
    """The run's final LoRA adapter: a real folder holding adapter_config.json."""
    folder = run_dir / ADAPTER_DIR
    problem = entry_problem(folder) or entry_problem(folder / ADAPTER_CONFIG)
    if problem:
        raise InputError(f"{folder}: {problem}; merge reads only plain files of the run")
    if not (folder / ADAPTER_CONFIG).is_file():
        raise InputError(
            f"{run_dir}: no adapter to merge ({ADAPTER_DIR}/{ADAPTER_CONFIG} is missing: "
            "the run has not finished, or it was stopped before saving)"
        )
    check_adapter_folder(folder)
    return folder


def check_output_free(output: Path) -> None:
    """The merged folder is always new: an existing one (even empty) or a link (even a
    dangling one) is refused, so nothing of the user's is written over or through. The
    rule is ship's, for every folder after training writes."""
    check_new_folder(output)


def _plan_line(plan: MergePlan) -> str:
    where = f"GPU ({plan.gpu_needed / GIB:.2f} of {plan.gpu_available / GIB:.2f} GiB free)"
    where = where if plan.device == "cuda" else "CPU"
    return (
        f"merging in {plan.dtype} on the {where}: {plan.host_needed / GIB:.2f} GiB of "
        f"{plan.host_available / GIB:.2f} GiB host memory planned"
        + (f"; {plan.note}" if plan.note else "")
    )


def check_full_run(run_dir: Path, settings: TrainSettings) -> MergeResult:
    """Full fine-tuning saved a whole model, not an adapter: nothing to merge and nothing
    copied; the saved model is loaded as a user would and its files are checked."""
    folder = run_dir / ADAPTER_DIR
    if entry_problem(folder) or not (folder / "config.json").is_file():
        raise InputError(f"{run_dir}: full fine-tuning run without a saved model in {folder}")
    plan = plan_merge(settings, str(folder), [], 0)
    _quiet_progress_bars()
    model, files = reload_and_check(folder, plan, settings)
    del model
    files.pop("tokenizer")
    missing = "" if files["stop_tokens_complete"] else "; its generation_config.json lacks "
    missing += "" if files["stop_tokens_complete"] else "the chat template's end-of-turn token"
    line = (
        f"{run_dir}: full fine-tuning: nothing to merge, nothing copied; {folder} is the model "
        f"already (loads; chat template {'yes' if files['chat_template'] else 'none'}; stop "
        f"tokens {', '.join(files['stop_tokens'])}){missing}"
    )
    return MergeResult(None, {"files": files}, line, files["stop_tokens_complete"])


def run_tokenizer_and_prompts(run_dir: Path, settings: TrainSettings, model_path: str, n: int):
    """The tokenizer the run saved beside its adapter (the base's if it saved none), and
    `n` prompts rendered as in training: the run's held-out ones (held_out.py), else the
    first of what it trained on (a run that held none out, or plain text)."""
    from ..data.dataset import prepare_datasets
    from ..train.loading import load_tokenizer
    from .held_out import held_out_prompts

    saved = run_dir / ADAPTER_DIR
    tokenizer = load_tokenizer(
        str(saved if (saved / "tokenizer_config.json").is_file() else model_path), settings
    )
    prompts = [p.rendered for p in held_out_prompts(settings, tokenizer, n)]
    if prompts:
        return tokenizer, prompts, "held-out"
    data = prepare_datasets(settings, tokenizer.eos_token)
    pool, source = (data.eval, "held-out") if data.eval is not None else (data.train, "training")
    examples = [pool[i] for i in range(min(n, len(pool)))]
    return tokenizer, parity.prompt_texts(tokenizer, examples), source


def merge_and_prove(work: Path, model_path, adapter, plan, settings, tokenizer, prompts, args):
    """Adapter on base → its greedy continuations → merge_and_unload → saved into `work` →
    freed → reloaded from `work` as a user would → its continuations and files checked."""
    max_shard_size, tokens = args
    trust = settings.model.trust_remote_code
    model = load_checked_adapter(
        lambda: adapter_on_base(model_path, adapter, plan.dtype, plan.device, trust), adapter
    )
    before = parity.greedy_continuations(model, tokenizer, prompts, tokens)
    merged = save_merged(model, tokenizer, work, max_shard_size)
    del model, merged
    _free(plan.device)
    reloaded, files = reload_and_check(work, plan, settings)
    after = parity.greedy_continuations(reloaded, files.pop("tokenizer"), prompts, tokens)
    return {
        "run_quantization": settings.quantization.mode,
        "merged_dtype": plan.dtype,
        "plan": plan.to_json(),
        "files": files,
        "parity": parity.compare(before, after, tokenizer)
        | {"tokens": tokens, "prompt_texts": prompts},
    }


def reload_and_check(folder: Path, plan: MergePlan, settings: TrainSettings):
    """The folder loaded as a user loads it (AutoModelForCausalLM, AutoTokenizer), and
    what it carries: shards, chat template, the stop tokens its generation config names."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    trust = settings.model.trust_remote_code
    model = AutoModelForCausalLM.from_pretrained(
        str(folder), dtype=torch_dtype(plan.dtype), trust_remote_code=trust
    ).to(plan.device)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust)
    generation = GenerationConfig.from_pretrained(str(folder))
    eos = generation.eos_token_id
    named = eos if isinstance(eos, list) else [eos] if eos is not None else []
    wanted = stop_token_ids(tokenizer)
    files = {
        "tokenizer": tokenizer,
        "shards": sorted(p.name for p in folder.glob("*.safetensors")),
        "chat_template": bool(tokenizer.chat_template),
        "stop_token_ids": named,
        "stop_tokens": tokenizer.convert_ids_to_tokens(named),
        "stop_tokens_complete": set(wanted) <= set(named),
    }
    return model, files


def _quiet_progress_bars() -> None:
    """Loading and shard-writing bars are noise beside the plan and verdict lines."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


def _free(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
