"""Predicted vs measured peak memory for benchmark JSON lines (prints JSON + a table).

    python benchmarks/accuracy.py benchmarks/results/calib-h100-2026-11-24.jsonl [more.jsonl ...]
Re-predicts each row with the current engine.memory (so refits show their effect).
"""

from __future__ import annotations

import json
import statistics
import sys

from backends import ARCHS, arch_config  # the sibling script: one table of architectures

from finetune_tui.engine.inspect.models import inspect_config
from finetune_tui.engine.plan.peak import predict_memory
from finetune_tui.engine.settings.preset import settings_from_overrides


def rows(paths):
    for path in paths:
        for line in open(path):
            record = json.loads(line)
            summary = record.get("summary") or {}
            if not record.get("ok") or "peak_reserved_gib" not in summary:
                continue
            overrides = {
                k: v
                for k, v in record["settings"].items()
                if not k.startswith(("model.", "dataset.path", "output."))
            }
            settings = settings_from_overrides([f"{k}={v}" for k, v in overrides.items()])
            model = inspect_config(ARCHS[record["arch"]], arch_config(record["arch"]))
            padded = "realistic" in record["settings"].get("dataset.path", "")  # else full
            predicted = predict_memory(model, settings, padded=padded)
            yield {
                "arch": record["arch"],
                "label": record["label"],
                "card_gib": record.get("card_gib"),
                "measured_reserved_gib": summary["peak_reserved_gib"],
                "predicted_reserved_gib": round(predicted.reserved_gib, 3),
                "error": round(predicted.reserved_gib / summary["peak_reserved_gib"] - 1, 4),
                "measured_nvml_gib": record.get("nvml_peak_used_gib"),
                "predicted_nvidia_smi_gib": round(predicted.nvidia_smi_gib, 3),
                "tokens_per_s": record.get("tokens_per_s"),
            }


def main() -> None:
    found = list(rows(sys.argv[1:]))
    errors = [abs(r["error"]) for r in found]
    print(
        "| arch | config | measured reserved GiB | predicted | error | nvml GiB "
        "| predicted nvidia-smi |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in found:
        print(
            f"| {r['arch']} | {r['label']} | {r['measured_reserved_gib']:.2f} | "
            f"{r['predicted_reserved_gib']:.2f} | {r['error']:+.1%} | {r['measured_nvml_gib']} | "
            f"{r['predicted_nvidia_smi_gib']:.2f} |"
        )
    summary = {
        "rows": len(found),
        "median_abs_error": statistics.median(errors),
        "worst_abs_error": max(errors),
        "underpredicted": sum(r["error"] < 0 for r in found),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
