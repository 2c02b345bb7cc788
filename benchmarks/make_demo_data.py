"""Regenerate the embedded demo datasets in engine/common/assets/, byte for byte.

The task: "Uppercase: <word>" -> "<WORD>", for random lowercase strings of 3-7 letters.
Random strings (not dictionary words) make every held-out prompt a genuinely unseen
instance of the rule, so exact-match on held-out prompts measures that the rule was
learned, not memorised. Every prompt is unique, so any train/eval split keeps them apart.

The same words make the preference versions, written beside demo.jsonl:
- demo_preference.jsonl (DPO, ORPO): conversational prompt / chosen / rejected, chosen the
  capitals, rejected a wrong answer: the word left as it is, or only its first letter in
  capitals;
- demo_kto.jsonl (KTO): prompt / completion / label, each word once with either its right
  answer (label true) or a wrong one (label false), half and half.

Usage: python benchmarks/make_demo_data.py [--out PATH] [--records N] [--seed S]
Prints a one-line JSON summary.
"""

from __future__ import annotations

import argparse
import json
import random
import string
import sys
from pathlib import Path

RECORDS = 2200  # 1980 train + 220 held out at the preset's eval_fraction 0.1
SEED = 20240607
MIN_LETTERS, MAX_LETTERS = 3, 7
PREFERENCE_NAME, KTO_NAME = "demo_preference.jsonl", "demo_kto.jsonl"  # beside --out
OUT = Path(__file__).resolve().parent.parent / "engine" / "common" / "assets" / "demo.jsonl"


def make_records(count: int = RECORDS, seed: int = SEED) -> list[dict]:
    rng = random.Random(seed)
    seen: set[str] = set()
    records = []
    while len(records) < count:
        length = rng.randint(MIN_LETTERS, MAX_LETTERS)
        word = "".join(rng.choice(string.ascii_lowercase) for _ in range(length))
        if word in seen:
            continue
        seen.add(word)
        records.append(
            {
                "messages": [
                    {"role": "user", "content": f"Uppercase: {word}"},
                    {"role": "assistant", "content": word.upper()},
                ]
            }
        )
    return records


def _wrong_answer(word: str, rng: random.Random) -> str:
    """The word left as it is (the instruction ignored) or only its first letter in
    capitals (half followed)."""
    return word if rng.random() < 0.5 else word.capitalize()


def make_preference_records(records: list[dict], seed: int = SEED) -> list[dict]:
    """Each chat record as a pair: its answer chosen over a wrong one."""
    rng = random.Random(seed + 1)
    pairs = []
    for record in records:
        question, answer = record["messages"]
        word = question["content"].removeprefix("Uppercase: ")
        pairs.append(
            {
                "prompt": [question],
                "chosen": [answer],
                "rejected": [{"role": "assistant", "content": _wrong_answer(word, rng)}],
            }
        )
    return pairs


def make_kto_records(pairs: list[dict], seed: int = SEED) -> list[dict]:
    """Each pair's prompt once, with its chosen (label true) or rejected answer (false)."""
    rng = random.Random(seed + 2)
    records = []
    for pair in pairs:
        good = rng.random() < 0.5
        answer = pair["chosen" if good else "rejected"]
        records.append({"prompt": pair["prompt"], "completion": answer, "label": good})
    return records


def render(records: list[dict]) -> str:
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--records", type=int, default=RECORDS)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    records = make_records(args.records, args.seed)
    pairs = make_preference_records(records, args.seed)
    files = {
        args.out: records,
        args.out.with_name(PREFERENCE_NAME): pairs,
        args.out.with_name(KTO_NAME): make_kto_records(pairs, args.seed),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for path, rows in files.items():
        text = render(rows)
        path.write_bytes(text.encode("utf-8"))
        print(json.dumps({"path": str(path), "records": len(rows), "bytes": len(text)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
