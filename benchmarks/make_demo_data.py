"""Regenerate the embedded demo dataset, engine/common/assets/demo.jsonl, byte for byte.

The task: "Uppercase: <word>" -> "<WORD>", for random lowercase strings of 3-7 letters.
Random strings (not dictionary words) make every held-out prompt a genuinely unseen
instance of the rule, so exact-match on held-out prompts measures that the rule was
learned, not memorised. Every prompt is unique, so any train/eval split keeps them apart.

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


def render(records: list[dict]) -> str:
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--records", type=int, default=RECORDS)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    text = render(make_records(args.records, args.seed))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(text.encode("utf-8"))
    print(json.dumps({"path": str(args.out), "records": args.records, "bytes": len(text)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
