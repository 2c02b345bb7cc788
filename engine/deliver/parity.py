"""The merge's proof: greedy continuations of held-out prompts from the adapter on its base
and from the merged model agree token for token, or the first difference is named with
how close the two models were to choosing alike there (the log-probability gap)."""

from __future__ import annotations

from dataclasses import dataclass, field

# A 16-bit merge rounds W + BA once, where the adapter on its base adds BA·x to W·x: the
# log-probabilities move a little and a near-tie can flip. Measured on an H200 (Llama-3.1-8B,
# bf16, random weights): agreeing tokens moved by up to 0.19 nats, and one token flipped that
# each model preferred by 0.094. Within this, in nats, the two models agree; past it the
# merge changed the model (an adapter lost or scaled wrong moves trained answers by whole
# nats).
LOGPROB_TOLERANCE = 0.25
# The merged model's most likely tokens kept per step (merge_report.json), so a GGUF file of
# it can be weighed by the same rule without loading the model again: a token of the file's
# outside these is never a near-tie.
KEPT_LOGPROBS = 8


@dataclass
class Continuation:
    """One prompt's greedy tokens, and every step's log-probabilities (on the CPU)."""

    tokens: list[int]
    logprobs: list = field(repr=False)  # one 1-D float tensor over the vocabulary per step


def prompt_texts(tokenizer, examples: list[dict]) -> list[str]:
    """What each example asks, as the model saw it in training: chat turns through the
    run's chat template with the generation prompt; a plain prompt as it is; plain text
    cut in half (the model continues the rest)."""
    from .generate import render_messages

    texts = []
    for example in examples:
        prompt = example.get("prompt")
        if isinstance(prompt, list):
            texts.append(render_messages(tokenizer, prompt))
        elif isinstance(prompt, str):
            texts.append(prompt)
        else:
            text = example.get("text") or ""
            texts.append(text[: max(1, len(text) // 2)])
    return texts


def greedy_continuations(model, tokenizer, prompts: list[str], tokens: int) -> list[Continuation]:
    """Up to `tokens` greedy tokens per rendered prompt, decoded as the Try screen decodes
    (generate.py: stop tokens, BOS rule), one prompt at a time: no padding to differ
    between the two models."""
    import torch

    from .generate import _inputs, generation_config

    config = generation_config(model, tokenizer, tokens)
    config.output_logits = config.return_dict_in_generate = True
    model.eval()
    out = []
    for prompt in prompts:
        inputs = _inputs(model, tokenizer, prompt)
        with torch.no_grad():
            result = model.generate(**inputs, generation_config=config)
        new = result.sequences[0, inputs["input_ids"].shape[1] :].tolist()
        steps = [torch.log_softmax(s[0].float(), dim=-1).cpu() for s in result.logits]
        out.append(Continuation(new, steps[: len(new)]))
    return out


def compare(adapter: list[Continuation], merged: list[Continuation], tokenizer) -> dict:
    """Identical when every prompt's tokens agree; else each prompt's first difference,
    each model's token there and how much each preferred its own (small gaps are
    near-ties that rounding can flip). `agrees`: identical, or every difference a near-tie
    and every agreeing token within LOGPROB_TOLERANCE."""
    report: dict = {"prompts": len(adapter), "identical": True, "max_logprob_difference": 0.0}
    differences = []
    for index, (a, b) in enumerate(zip(adapter, merged, strict=True)):
        shared, moved = _shared_prefix(a, b)
        report["max_logprob_difference"] = max(report["max_logprob_difference"], moved)
        if a.tokens != b.tokens:
            differences.append(_difference(index, shared, a, b, tokenizer))
    if differences:
        report["identical"] = False
        report["first_difference"] = differences[0]
        report["differences"] = differences
    report["tolerance"] = LOGPROB_TOLERANCE
    gaps = [(d["adapter_logprob_gap"], d["merged_logprob_gap"]) for d in differences]
    report["agrees"] = within_rounding(report["max_logprob_difference"], gaps)
    report["continuations"] = [
        {
            "adapter": tokenizer.decode(a.tokens),
            "merged": tokenizer.decode(b.tokens),
            "merged_ids": b.tokens,  # what a GGUF of the merged model must answer
            "merged_top": _top(b),  # ... or how near it came
        }
        for a, b in zip(adapter, merged, strict=True)
    ]
    return report


def within_rounding(moved: float, gaps: list[tuple]) -> bool:
    """The rule for two models that should be one (adapter and merge, merge and its GGUF):
    every agreeing token's log-probability moved at most LOGPROB_TOLERANCE, and where they
    part each preferred its own token by at most that (a gap of None, where one stopped or
    a token was not kept, is no near-tie)."""
    return moved <= LOGPROB_TOLERANCE and all(
        a is not None and b is not None and max(a, b) <= LOGPROB_TOLERANCE for a, b in gaps
    )


def _top(c: Continuation) -> list[list[list]]:
    """Each step's KEPT_LOGPROBS most likely tokens, as [id, log-prob] pairs."""
    kept = []
    for step in c.logprobs[: len(c.tokens)]:
        values, ids = step.topk(min(KEPT_LOGPROBS, step.numel()))
        kept.append([[int(i), round(float(v), 5)] for v, i in zip(values, ids, strict=True)])
    return kept


def _shared_prefix(a: Continuation, b: Continuation) -> tuple[int, float]:
    """How many first tokens agree, and the largest move of an agreeing token's
    log-probability between the two models."""
    shared, moved = 0, 0.0
    while shared < min(len(a.tokens), len(b.tokens)) and a.tokens[shared] == b.tokens[shared]:
        step = a.tokens[shared]
        gap = abs(float(a.logprobs[shared][step]) - float(b.logprobs[shared][step]))
        shared, moved = shared + 1, max(moved, gap)
    return shared, moved


def _difference(index: int, shared: int, a: Continuation, b: Continuation, tokenizer) -> dict:
    """Where one prompt's continuations part, and how much each model preferred its own
    token over the other's there (None where one of them stopped: no near-tie to weigh)."""
    ta, tb = a.tokens[shared : shared + 1], b.tokens[shared : shared + 1]
    both = bool(ta and tb)  # else one stopped where the other went on
    return {
        "prompt": index,
        "position": shared,
        "adapter_token": tokenizer.decode(ta),
        "merged_token": tokenizer.decode(tb),
        "adapter_logprob_gap": _preferred(a, shared, ta, tb) if both else None,
        "merged_logprob_gap": _preferred(b, shared, tb, ta) if both else None,
    }


def _preferred(c: Continuation, step: int, own: list[int], other: list[int]) -> float:
    """How much this model preferred its own token over the other's, in nats."""
    return float(c.logprobs[step][own[0]] - c.logprobs[step][other[0]])


def verdict(report: dict, tokens: int) -> str:
    """The one line a user reads."""
    if report["prompts"] == 0:
        return "parity not checked: the run has no records to prompt with"
    if report["identical"]:
        source = report.get("prompt_source", "held-out")
        return (
            f"parity: identical first {tokens} greedy tokens on {report['prompts']} {source} "
            f"prompts (max log-prob difference {report['max_logprob_difference']:.2g})"
        )
    d = report["first_difference"]
    gaps = (
        "one of them stopped there"
        if d["adapter_logprob_gap"] is None
        else f"log-prob gap {d['adapter_logprob_gap']:.3g} / {d['merged_logprob_gap']:.3g}"
    )
    where = (
        f"prompt {d['prompt'] + 1} at token {d['position'] + 1}: adapter "
        f"{d['adapter_token']!r} vs merged {d['merged_token']!r} ({gaps})"
    )
    if report.get("agrees"):
        same = report["prompts"] - len(report["differences"])
        return (
            f"parity: agrees within rounding ({report['tolerance']} nats): identical first "
            f"{tokens} greedy tokens on {same} of {report['prompts']} prompts; a near-tie on "
            f"{where}, max log-prob difference {report['max_logprob_difference']:.2g}"
        )
    return f"parity: DIFFERS on {where}"
