"""The merge's proof: greedy continuations of held-out prompts from the adapter on its base
and from the merged model agree token for token, or the first difference is named with
how close the two models were to choosing alike there (the log-probability gap)."""

from __future__ import annotations

from dataclasses import dataclass, field


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
    """Identical when every prompt's tokens agree; else the first prompt and position that
    differ, each model's token there and the log-probability gap between them under
    each model (small gaps are near-ties that rounding can flip)."""
    report: dict = {"prompts": len(adapter), "identical": True, "max_logprob_difference": 0.0}
    for index, (a, b) in enumerate(zip(adapter, merged, strict=True)):
        shared = 0
        while shared < min(len(a.tokens), len(b.tokens)) and a.tokens[shared] == b.tokens[shared]:
            step = a.tokens[shared]
            gap = abs(float(a.logprobs[shared][step]) - float(b.logprobs[shared][step]))
            report["max_logprob_difference"] = max(report["max_logprob_difference"], gap)
            shared += 1
        if a.tokens == b.tokens or not report["identical"]:
            continue
        report["identical"] = False
        ta, tb = a.tokens[shared], b.tokens[shared]
        report["first_difference"] = {
            "prompt": index,
            "position": shared,
            "adapter_token": tokenizer.decode([ta]),
            "merged_token": tokenizer.decode([tb]),
            # how much each model preferred its own token over the other's there
            "adapter_logprob_gap": float(a.logprobs[shared][ta] - a.logprobs[shared][tb]),
            "merged_logprob_gap": float(b.logprobs[shared][tb] - b.logprobs[shared][ta]),
        }
    report["continuations"] = [
        {
            "adapter": tokenizer.decode(a.tokens),
            "merged": tokenizer.decode(b.tokens),
            "merged_ids": b.tokens,  # what a GGUF of the merged model must answer
        }
        for a, b in zip(adapter, merged, strict=True)
    ]
    return report


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
    return (
        f"parity: DIFFERS on prompt {d['prompt'] + 1} at token {d['position'] + 1}: adapter "
        f"{d['adapter_token']!r} vs merged {d['merged_token']!r} (log-prob gap "
        f"{d['adapter_logprob_gap']:.3g} / {d['merged_logprob_gap']:.3g})"
    )
