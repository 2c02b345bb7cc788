"""Held-out prompts of a run's own dataset, with the answers it expects.

The split is the runner's (engine/data/dataset.prepare_datasets: split_examples with the
run's seed), so these records were never trained on; chat records are read as
engine/train/exact_match.py reads them. "Did it learn?" is then one keypress.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..settings.options import PAIRED, UNPAIRED
from ..settings.schema import TrainSettings
from ..train.exact_match import held_out_records
from .generate import render_messages

HELD_OUT = 5


@dataclass(frozen=True)
class Prompt:
    text: str  # what the user reads (the last user turn, or the instruction)
    rendered: str  # what the model reads, as it read prompts in training
    expected: str | None = None  # the held-out record's answer


def data_format(settings: TrainSettings) -> str:
    """The run's dataset format, detected as the runner detected it when set to auto."""
    if settings.dataset.format != "auto":
        return settings.dataset.format
    from ..data.dataset import read_dataset

    return read_dataset(settings)[2]


def held_out_prompts(settings: TrainSettings, tokenizer, limit: int = HELD_OUT) -> list[Prompt]:
    """The first `limit` records of the run's evaluation split (none without one, or for
    plain text, which holds no question and answer)."""
    from ..data.dataset import prepare_datasets

    data = prepare_datasets(settings, tokenizer.eos_token)
    if data.eval is None or data.format == "text":
        return []
    if data.format in (PAIRED, UNPAIRED):
        return _preference_prompts(data.eval, tokenizer, limit)
    if data.format == "alpaca":
        rows = data.eval.select(range(min(limit, len(data.eval))))
        eos = tokenizer.eos_token or ""
        return [
            Prompt(_instruction(row["prompt"]), row["prompt"], row["completion"].removesuffix(eos))
            for row in rows
        ]
    prompts = []
    for record in held_out_records(data.eval, limit):
        turns = record["messages"]
        question = next(t["content"] for t in reversed(turns[:-1]) if t["role"] == "user")
        rendered = render_messages(tokenizer, turns[:-1])
        prompts.append(Prompt(question, rendered, turns[-1]["content"].strip()))
    return prompts


def _preference_prompts(rows, tokenizer, limit: int) -> list[Prompt]:
    """Held-out preference records: the prompt as the trainer rendered it, and the answer
    it learned to prefer (a pair's chosen one; a KTO completion only where labelled
    desirable, none where undesirable)."""
    prompts = []
    for row in rows.select(range(min(limit, len(rows)))):
        answer = row["chosen"] if "chosen" in row else row["completion"]
        if "label" in row and not row["label"]:
            answer = None
        if isinstance(answer, list):  # the assistant's turn(s)
            answer = "".join(turn["content"] for turn in answer)
        prompt = row["prompt"]
        if isinstance(prompt, list):
            question = next(t["content"] for t in reversed(prompt) if t["role"] == "user")
            prompts.append(Prompt(question, render_messages(tokenizer, prompt), _stripped(answer)))
        else:
            prompts.append(Prompt(prompt, prompt, _stripped(answer)))
    return prompts


def _stripped(answer: str | None) -> str | None:
    return answer.strip() if answer is not None else None


def _instruction(prompt: str) -> str:
    """The instruction (and input) inside an Alpaca prompt, without the template's words."""
    body = prompt.split("### Instruction:\n", 1)[-1].split("\n\n### Response:", 1)[0]
    return body.replace("\n\n### Input:\n", "\n")
