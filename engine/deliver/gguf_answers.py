"""A GGUF file checked the way a user runs it: loaded in llama.cpp (llama-cpp-python), the
merged model's held-out prompts tokenized by the file's own tokenizer and answered greedily.

The prompts and the merged model's greedy answers are the ones `merge` proved and kept in
merge_report.json, so the Hugging Face model is not loaded again. A file must tokenize
every prompt as the model's tokenizer does (else it answers prompts the model never saw);
a 16-bit file must then answer token for token, or part only at near-ties by the merge's
own rule (parity.LOGPROB_TOLERANCE: the merged model's answer is fed to the file and each
side's log-probabilities weighed, from the likeliest tokens merge kept); a quantized one is
reported (rounding the weights may flip a near-tie, and does not make the file wrong).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ..common.errors import ModelError
from ..common.safe_io import CONFIG_LIMIT, read_json
from ..inspect.hardware import GIB
from .model_folder import REPORT_FILE

UNQUANTIZED = ("f16",)  # files whose answers must be the merged model's, up to near-ties


@dataclass
class Reference:
    """What the merged model was asked and answered (merge_report.json)."""

    prompts: list[str]  # rendered as in training
    prompt_ids: list[list[int]]  # the model's tokenizer's ids, BOS by the same rule
    answers: list[list[int]]  # its greedy tokens
    tokens: int  # how many were asked for
    source: str  # "held-out" or "training"
    merged_top: list | None = None  # per prompt, per step: [[id, log-prob], ...] (parity._top)


def why_unchecked(model: Path) -> str | None:
    """Why the files cannot be run here, or None when they can."""
    if importlib.util.find_spec("llama_cpp") is None:
        return "pip install llama-cpp-python (part of finetune-tui[gguf]) to run them here"
    if not (model / REPORT_FILE).is_file():
        return f"{model} has no {REPORT_FILE} (finetune-tui merge writes one) to compare with"
    return None


def read_reference(model: Path, tokenizer) -> Reference | None:
    """The merge's prompts and answers, None when the report holds none (an older merge,
    or a run with no records to prompt with); a report edited out of shape is one line."""
    from .generate import adds_special_tokens

    path = model / REPORT_FILE
    report = read_json(path, CONFIG_LIMIT, "merge report")
    parity = report.get("parity") if isinstance(report, dict) else None
    if not isinstance(parity, dict) or not parity.get("prompt_texts"):
        return None
    prompts = parity["prompt_texts"]
    continuations = parity.get("continuations")
    answers = (
        [c.get("merged_ids") for c in continuations if isinstance(c, dict)]
        if isinstance(continuations, list)
        else []
    )
    tokens = parity.get("tokens")
    shaped = (
        isinstance(prompts, list)
        and all(isinstance(p, str) for p in prompts)
        and len(answers) == len(prompts)
        and all(isinstance(a, list) and all(type(t) is int for t in a) for a in answers)
        and type(tokens) is int
    )
    if not shaped:
        raise ModelError(
            f"{path}: parity.prompt_texts, .continuations[].merged_ids and .tokens are not "
            "as finetune-tui merge writes them; merge again to check the GGUF files"
        )
    ids = [
        tokenizer(p, add_special_tokens=adds_special_tokens(tokenizer, p)).input_ids
        for p in prompts
    ]
    source = str(parity.get("prompt_source", ""))
    return Reference(prompts, ids, answers, tokens, source, _merged_top(continuations, answers))


def _merged_top(continuations: list, answers: list) -> list | None:
    """The merged model's kept log-probabilities, where every step has them (merges before
    they were kept have none: their files are compared token for token)."""
    tops = [c.get("merged_top") for c in continuations]
    for top, answer in zip(tops, answers, strict=True):
        if not isinstance(top, list) or len(top) != len(answer):
            return None
        if not all(isinstance(step, list) and all(map(_pair, step)) for step in top):
            return None
    return tops


def _pair(entry) -> bool:
    """[token id, log-prob]."""
    return (
        isinstance(entry, list)
        and len(entry) == 2
        and type(entry[0]) is int
        and isinstance(entry[1], float)
    )


def room_problem(path: Path) -> str | None:
    """Why a file cannot be run here: larger than the memory llama.cpp would hold it in
    (the host's available memory, and the GPU's free memory where this llama.cpp offloads
    to one). llama.cpp maps a file larger than that and pages it forever."""
    from . import merge_plan

    room = merge_plan.available_host_bytes()
    if _offloads_to_gpu():
        room += merge_plan.available_gpu_bytes()
    size = path.stat().st_size
    if size <= room:
        return None
    return f"{size / GIB:.1f} GiB, more than the {room / GIB:.1f} GiB of memory free here"


def _offloads_to_gpu() -> bool:
    """Whether this llama.cpp was built to put layers on a GPU."""
    try:
        import llama_cpp
    except ImportError:
        return False
    return bool(llama_cpp.llama_supports_gpu_offload())


def check_file(path: Path, reference: Reference, tokenizer) -> dict:
    """Each prompt tokenized and answered by llama.cpp, compared with the model's."""
    from llama_cpp import Llama

    from .generate import adds_special_tokens

    pairs = zip(reference.prompt_ids, reference.answers, strict=True)
    longest = max(len(ids) + len(answer) for ids, answer in pairs)
    result: dict = {"file": path.name, "prompts": len(reference.prompts), "identical": 0}
    weighed = reference.merged_top is not None
    llm, refused = _load(Llama, path, longest + 8, logits_all=weighed)
    if llm is None:
        result["not_loaded"] = refused
        return result
    try:
        for index, (prompt, ids, expected) in enumerate(
            zip(reference.prompts, reference.prompt_ids, reference.answers, strict=True)
        ):
            add = adds_special_tokens(tokenizer, prompt)
            theirs = llm.tokenize(prompt.encode("utf-8"), add_bos=add, special=True)
            if theirs != ids:
                result["tokenizer_differs"] = _difference(index, ids, theirs, tokenizer)
                return result
            if weighed:
                _weigh(result, index, llm, (ids, expected, reference.merged_top[index]), tokenizer)
            else:
                _compare_greedy(result, index, llm, (ids, expected), tokenizer)
    finally:
        llm.close()
    if weighed:
        result["agrees"] = _agrees(result)
    return result


def _compare_greedy(result: dict, index: int, llm, prompt: tuple, tokenizer) -> None:
    """The file's own greedy answer against the merged model's, token for token."""
    ids, expected = prompt
    answer = []
    for token in llm.generate(ids, temp=0.0, top_k=1, top_p=1.0, min_p=0.0):
        answer.append(token)
        if len(answer) == len(expected):
            break
    if answer == expected:
        result["identical"] += 1
    elif "first_difference" not in result:
        result["first_difference"] = _difference(index, expected, answer, tokenizer)


def _weigh(result: dict, index: int, llm, prompt: tuple, tokenizer) -> None:
    """The merged model's answer fed to the file: at each step the file's own choice and
    log-probabilities beside the merged model's kept ones. Up to the first step where the
    file would choose otherwise (where its greedy answer parts), with how much each
    preferred its own token there: parity's rule, for a file."""
    import numpy as np

    ids, expected, top = prompt
    llm.reset()
    llm.eval(ids + expected[:-1])
    moved = 0.0
    for step, token in enumerate(expected):
        logits = np.asarray(llm.scores[len(ids) - 1 + step], dtype=np.float64)
        logprobs = logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
        own, merged = int(logprobs.argmax()), dict(top[step])
        if own != token and logprobs[own] > logprobs[token]:
            d = _difference(index, expected, expected[:step] + [own], tokenizer)
            d["gguf_logprob_gap"] = round(float(logprobs[own] - logprobs[token]), 4)
            kept = own in merged and token in merged  # else no near-tie to weigh
            d["merged_logprob_gap"] = round(merged[token] - merged[own], 4) if kept else None
            result.setdefault("first_difference", d)
            result.setdefault("differences", []).append(d)
            break
        moved = max(moved, abs(float(logprobs[token]) - merged.get(token, logprobs[token])))
    else:
        result["identical"] += 1
    result["max_logprob_difference"] = max(result.get("max_logprob_difference", 0.0), moved)


def _agrees(result: dict) -> bool:
    """The merge's parity rule, for a file and the merged model."""
    from .parity import within_rounding

    gaps = [(d["gguf_logprob_gap"], d["merged_logprob_gap"]) for d in result.get("differences", [])]
    return within_rounding(result.get("max_logprob_difference", 0.0), gaps)


def _load(llama_class, path: Path, n_ctx: int, logits_all: bool = False):
    """(the file loaded, None), or (None, llama.cpp's own reason). llama.cpp tells why only
    in its log, so the log is caught while the file loads (verbose: its error line would
    otherwise go to /dev/null), then quietened again."""
    import contextlib
    import logging
    import os
    import re
    import tempfile

    with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as log:
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            with contextlib.redirect_stderr(log):
                llm = llama_class(
                    model_path=str(path),
                    n_ctx=n_ctx,
                    n_gpu_layers=-1,
                    logits_all=logits_all,
                    verbose=True,
                )
        except (ValueError, RuntimeError) as error:
            log.flush()
            log.seek(0)
            said = re.findall(r"error loading model: (.+)", log.read())
            return None, " ".join(said[-1].split()) if said else str(error)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    llm.verbose = False
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # the library's own logger
    return llm, None


def _difference(prompt: int, ours: list[int], theirs: list[int], tokenizer) -> dict:
    """Where two token lists first part, as text a user can read."""
    shared = min(len(ours), len(theirs))
    at = next((i for i in range(shared) if ours[i] != theirs[i]), shared)

    def piece(ids: list[int]) -> str:
        return tokenizer.decode(ids[at : at + 1]) if at < len(ids) else "(end)"

    return {"prompt": prompt, "position": at, "model": piece(ours), "gguf": piece(theirs)}


def failed(result: dict, quant: str) -> bool:
    """A file is wrong when llama.cpp cannot load it or it tokenizes otherwise, or when a
    16-bit one answers otherwise."""
    if "tokenizer_differs" in result or "not_loaded" in result:
        return True
    parted = result["identical"] < result["prompts"] and not result.get("agrees")
    return quant in UNQUANTIZED and parted


def verdict(result: dict, quant: str, reference: Reference) -> str:
    """The one line a user reads per file."""
    name = result["file"]
    if "not_loaded" in result:
        return f"{name}: llama.cpp cannot load it: {result['not_loaded']}"
    if "tokenizer_differs" in result:
        d = result["tokenizer_differs"]
        return (
            f"{name}: llama.cpp tokenizes prompt {d['prompt'] + 1} otherwise (token "
            f"{d['position'] + 1}: {d['gguf']!r}, the model's tokenizer {d['model']!r}); "
            "the file would answer prompts the model was not trained on"
        )
    line = (
        f"{name}: in llama.cpp, the merged model's first {reference.tokens} greedy tokens "
        f"on {result['identical']} of {result['prompts']} {reference.source} prompts"
    )
    if "first_difference" in result:
        d = result["first_difference"]
        line += (
            f"; prompt {d['prompt'] + 1} parts at token {d['position'] + 1} "
            f"({d['gguf']!r} for {d['model']!r}{_gaps(d)})"
        )
        if result.get("agrees"):
            from .parity import LOGPROB_TOLERANCE

            line += f": agrees within rounding ({LOGPROB_TOLERANCE} nats)"
        elif quant not in UNQUANTIZED:
            line += f"; {quant} rounds the weights, so near-ties may flip"
    return line


def _gaps(d: dict) -> str:
    """How much the file and the merged model each preferred their own token there."""
    if "gguf_logprob_gap" not in d:
        return ""
    gap, merged = d["gguf_logprob_gap"], d["merged_logprob_gap"]
    if merged is None:
        return f", log-prob gap {gap:.3g}; not among the merged model's likeliest tokens"
    return f", log-prob gap {gap:.3g} / {merged:.3g}"
