"""Tokens/s, memory and model FLOPs utilisation of benchmark JSON lines, as a table.

    python benchmarks/throughput.py results/backends-*.jsonl
MFU = k · parameters · tokens/s ÷ the GPU's dense bf16 peak, with k = 4 (LoRA: no weight
gradients) and k = 6 (the usual full-training figure), beside each other.
"""

from __future__ import annotations

import json
import sys

from backends import ARCHS  # the sibling script: one table of architectures

from finetune_tui.engine.inspect.models import inspect_model

DENSE_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0}


def peak_flops(gpu: str) -> float | None:
    tflops = next((v for k, v in DENSE_BF16_TFLOPS.items() if k in gpu), None)
    return None if tflops is None else tflops * 1e12


def row(record: dict) -> str:
    summary = record.get("summary") or {}
    params = inspect_model(ARCHS[record["arch"]]).params_total
    tokens = record.get("tokens_per_s") or 0.0
    peak = peak_flops(record.get("versions", {}).get("gpu", ""))
    mfu = [f"{k * params * tokens / peak:.1%}" if peak else "?" for k in (4, 6)]
    if not record.get("ok"):
        return f"| {record['arch']} | {record['card_gib']:g} | {record['label']} | failed: " \
            f"{str(record.get('error', ''))[:60]} | | | | | | | |"  # fmt: skip
    return (
        f"| {record['arch']} | {record['card_gib']:g} | {record['label']} "
        f"(b{summary.get('micro_batch_size')}×acc{summary.get('gradient_accumulation_steps')}) "
        f"| {tokens:,.0f} | {record.get('first_step_s')} | {summary.get('peak_allocated_gib')} "
        f"| {summary.get('peak_reserved_gib')} | {record.get('nvml_peak_used_gib')} "
        f"| {len(summary.get('oom_backoffs') or [])} | {mfu[0]} | {mfu[1]} |"
    )


def main() -> None:
    print(
        "| arch | card GiB | configuration | tokens/s | first step s | peak alloc GiB "
        "| peak reserved GiB | nvidia-smi GiB | OOM back-offs | MFU 4N | MFU 6N |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for path in sys.argv[1:]:
        for line in open(path):
            record = json.loads(line)
            if "label" in record:
                print(row(record))


if __name__ == "__main__":
    main()
