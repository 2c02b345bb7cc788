"""Token lengths of a dataset: measured with the tokenizer (answers cut by
max_seq_length), or estimated from characters (planner, first screen); their statistics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..recipe.examples import to_example
from .formats import validate_records
from .reading import Record


@dataclass
class TokenStats:
    count: int
    mean: float
    p50: int
    p95: int
    max: int
    truncated_fraction: float
    histogram: list[tuple[int, int]]  # (bin start, count)
    sample: list[int] = field(default_factory=list)  # up to 512 sorted lengths, evenly spaced


@dataclass
class AnswerCut:
    """Records that lose what they teach at max_seq_length: (prompt tokens, full tokens)
    each, where the first of them is, and why (the prompt fills the limit, or a pair's
    answers differ only past it)."""

    records: list[tuple[int, int]]
    total: int
    first: str = ""  # the first such record's file:line
    first_tied: bool = False  # its chosen and rejected are the same up to the limit

    def __bool__(self) -> bool:
        return bool(self.records)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def longest_record(self) -> int:
        return max(f for _, f in self.records)


def answer_cut_lengths(
    records: list[Record], fmt: str, limit: int, tokenizer, batch: int = 512
) -> AnswerCut:
    """Measure prompt and full lengths with the tokenizer and chat template TRL will use:
    a record whose prompt alone fills the limit has no answer left (TRL drops it)."""
    if fmt in ("preference", "unpaired_preference"):
        return preference_cut_lengths(records, fmt, limit, tokenizer, batch)
    rows = [to_example(r.data, fmt, tokenizer.eos_token) for r in records]
    cut, first = [], ""
    if fmt != "text":
        for start in range(0, len(rows), batch):
            chunk = rows[start : start + batch]
            prompts, fulls = _prompt_and_full_ids(chunk, tokenizer, "completion")
            for i, (p, f) in enumerate(zip(prompts, fulls, strict=True)):
                if len(p) >= limit:
                    first = first or records[start + i].where
                    cut.append((len(p), len(f)))
    return AnswerCut(cut, len(rows), first)


def preference_cut_lengths(
    records: list[Record], fmt: str, limit: int, tokenizer, batch: int = 512
) -> AnswerCut:
    """Prompt + chosen and prompt + rejected (or prompt + completion) as TRL tokenizes them
    (its EOS after a plain-text answer) and cuts them (the first max_length tokens): a pair
    is lost when its prompt fills the limit, or when chosen and rejected are the same up to
    it (what sets them apart is cut away, nothing is left to prefer)."""
    answers = ("chosen", "rejected") if fmt == "preference" else ("completion",)
    rows = [_with_eos(to_example(r.data, fmt, ""), answers, tokenizer) for r in records]
    cut, first, first_tied = [], "", False
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        ids = [_prompt_and_full_ids(chunk, tokenizer, name) for name in answers]
        for i in range(len(chunk)):
            prompt = len(ids[0][0][i])
            fulls = [full[i] for _, full in ids]
            tied = len(fulls) == 2 and fulls[0][:limit] == fulls[1][:limit]
            if prompt >= limit or tied:
                if not first:
                    first, first_tied = records[start + i].where, prompt < limit
                cut.append((prompt, max(len(f) for f in fulls)))
    return AnswerCut(cut, len(rows), first, first_tied)


def _with_eos(row: dict, answers: tuple[str, ...], tokenizer) -> dict:
    """TRL ends a plain-text answer with the EOS token (a chat template ends its own)."""
    eos = tokenizer.eos_token or ""
    for name in answers:
        if isinstance(row[name], str) and not row[name].endswith(eos):
            row = {**row, name: row[name] + eos}
    return row


def _prompt_and_full_ids(rows: list[dict], tokenizer, answer: str) -> tuple[list, list]:
    if isinstance(rows[0]["prompt"], list):
        prompts = [list(r["prompt"]) for r in rows]
        fulls = [list(r["prompt"]) + list(r[answer]) for r in rows]
        template = tokenizer.apply_chat_template
        return (
            template(prompts, tokenize=True, add_generation_prompt=True, return_dict=True)[
                "input_ids"
            ],
            template(fulls, tokenize=True, return_dict=True)["input_ids"],
        )
    return (  # lengths past the model's maximum are the point here: no warning about them
        tokenizer([r["prompt"] for r in rows], verbose=False)["input_ids"],
        tokenizer([r["prompt"] + r[answer] for r in rows], verbose=False)["input_ids"],
    )


def measured_token_stats(
    records: list[Record], fmt: str, max_seq_length: int, tokenizer, most: int = 2048
) -> TokenStats | None:
    """With the run's tokenizer: the full length of up to `most` evenly spaced records
    (validated already) as TRL tokenizes them (template, EOS), standing for all of them. The
    characters' estimate assumes English through a BPE vocabulary; code, other scripts or a
    small vocabulary are far off it (a byte-level tokenizer: 3.4x more tokens). None for
    preference records (two answers a record; the estimate counts them)."""
    if fmt in ("preference", "unpaired_preference") or not records:
        return None
    picked = records[:: max(1, -(-len(records) // most))]
    rows = [to_example(r.data, fmt, tokenizer.eos_token) for r in picked]
    if fmt == "text":  # TRL ends each text with the EOS token
        texts = [r["text"] + (tokenizer.eos_token or "") for r in rows]
        ids = tokenizer(texts, verbose=False)["input_ids"]
    else:
        _, ids = _prompt_and_full_ids(rows, tokenizer, "completion")
    stats = stats_from_lengths([len(i) for i in ids], max_seq_length)
    stats.count = len(records)
    return stats


def stats_from_lengths(lengths: list[int], max_seq_length: int, bins: int = 12) -> TokenStats:
    if not lengths:
        return TokenStats(0, 0.0, 0, 0, 0, 0.0, [])
    ordered = sorted(lengths)
    top = ordered[-1]
    width = max(1, -(-top // bins))
    histogram = [(i * width, 0) for i in range(bins)]
    counts = [0] * bins
    for value in ordered:
        counts[min(value // width, bins - 1)] += 1
    histogram = [(start, n) for (start, _), n in zip(histogram, counts, strict=True)]
    return TokenStats(
        count=len(ordered),
        mean=sum(ordered) / len(ordered),
        p50=ordered[len(ordered) // 2],
        p95=ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))],
        max=top,
        truncated_fraction=sum(v > max_seq_length for v in ordered) / len(ordered),
        histogram=histogram,
        sample=_even_sample(ordered),
    )


def _even_sample(ordered: list[int], size: int = 512) -> list[int]:
    """At most `size` evenly spaced values of a sorted list: enough to estimate padding."""
    if len(ordered) <= size:
        return ordered
    return [ordered[i * (len(ordered) - 1) // (size - 1)] for i in range(size)]


def _example_here(data: dict, fmt: str) -> dict:
    """The example's text without importing TRL (planner, first screen): a preference
    record as it is (its prompt and both answers)."""
    return data if fmt in ("preference", "unpaired_preference") else to_example(data, fmt, "")


def estimate_token_stats(
    records: list[Record], fmt: str, max_seq_length: int, chars_per_token: float = 3.6
) -> TokenStats:
    """Without a tokenizer (planner, first screen): characters / chars_per_token."""
    valid = [r for r in records if r.data is not None and not validate_records([r], fmt)]
    lengths = [
        int(len(json.dumps(_example_here(r.data, fmt), ensure_ascii=False)) / chars_per_token)
        for r in valid
    ]
    return stats_from_lengths(lengths, max_seq_length)
