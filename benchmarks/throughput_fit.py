"""Predicted against measured tokens/s (engine/plan/throughput.py) for every committed
training row, as JSON lines: one per row, then one summary per group. No GPU needed.

    python benchmarks/throughput_fit.py            # the table, with the committed constants
    python benchmarks/throughput_fit.py --fit      # and the constants the Llama rows fit
    python benchmarks/throughput_fit.py --fit-steps  # and a padded/grouped step's constants
    python benchmarks/throughput_fit.py --fit-whole  # and whole runs' pace over short ones'

Groups: "fitted" (Llama rows whose samples fill max_seq_length: they fitted the constants),
"llama realistic lengths" (packed Llama rows on Alpaca-like lengths: checks
speed.batch_fill, not fitted), "llama first steps" (the padded and grouped ones: their
12-30 steps of ever-new shapes are no epoch's speed), "held out" (every other dense
architecture) and "held out moe" (mixtures of experts with their layers cut). Left out: the
families-* rows (eight runs shared one H200 at a time: their tokens/s is not a speed
measurement, and most are layer cuts), rows that failed, and rows without an architecture
(panel, poll and first-screen timings).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from backends import ARCHS, LAYERS, family_config, realistic_lengths  # the sibling script

from finetune_tui.engine.data.lengths import stats_from_lengths
from finetune_tui.engine.inspect.hardware import KNOWN_GPUS
from finetune_tui.engine.inspect.models import ModelInfo, inspect_config
from finetune_tui.engine.plan import speed, throughput
from finetune_tui.engine.settings.preset import settings_from_overrides

RESULTS = Path(__file__).resolve().parent / "results"
FITTED_ARCHS = ("llama-3.1-8b", "llama-3.2-1b")
LEFT_OUT = ("families-", "preference-", "traced-", "run-time-")  # a shared GPU (see the
# docstring); DPO is not SFT; an allocator trace (PEAK_TRACE=1) slows the run it records;
# whole runs are run_time.py's held-out rows, tabled on their own
PATHS = ("model.name_or_path", "dataset.path")  # the benchmark machine's, not ours


@dataclass
class Row:
    file: str
    arch: str
    label: str
    card_gib: float
    group: str
    measured: float  # real tokens/s
    model: ModelInfo
    settings: object
    stats: object  # TokenStats or None


def load_rows(results: Path = RESULTS) -> list[Row]:
    """Every committed row that trained an architecture of backends.ARCHS on one GPU."""
    rows = []
    for path in sorted(results.glob("*.jsonl")):
        if path.name.startswith(LEFT_OUT):
            continue
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record.get("ok") and ARCHS.get(record.get("arch")):
                rows.append(_row(path.name, record))
    return rows


def _row(file: str, record: dict) -> Row:
    arch = record["arch"]
    chosen = {k: v for k, v in record["settings"].items() if not k.startswith("output.")}
    realistic = "realistic" in chosen.get("dataset.path", "")
    settings = settings_from_overrides([f"{k}={v}" for k, v in chosen.items() if k not in PATHS])
    model = inspect_config(ARCHS[arch], family_config(ARCHS[arch], LAYERS.get(arch)))
    stats = None
    if realistic:  # the dataset backends.py wrote: its lengths are seeded
        lengths = realistic_lengths(record["summary"]["train_samples"])
        stats = stats_from_lengths(lengths, settings.training.max_seq_length)
    if arch in FITTED_ARCHS and realistic:
        # packed rows fill each step; the others timed 12-30 steps of ever-new shapes
        group = "llama realistic lengths" if settings.memory.packing else "llama first steps"
    elif arch in FITTED_ARCHS:
        group = "fitted"
    else:
        group = "held out moe" if model.is_moe else "held out"
    # tokens_per_s counts micro-batch x length; real_tokens_per_s counts the real tokens seen
    measured = record["real_tokens_per_s"] if realistic else record["tokens_per_s"]
    return Row(
        file, arch, record["label"], record["card_gib"], group, measured, model, settings, stats
    )


def predict(row: Row, gpu: str = "NVIDIA H100 80GB HBM3"):
    """The plan's pace for a short row (6-30 steps, as the constants were fitted): its
    whole-run prediction less WHOLE_RUN_PACE, which whole runs alone measure."""
    planned = throughput.predicted_throughput(row.model, row.settings, row.stats, gpu)
    return short_run(planned)


def short_run(planned):
    """A whole run's predicted Throughput at the pace of a short run."""
    import dataclasses

    pace = throughput.WHOLE_RUN_PACE
    return dataclasses.replace(
        planned, tokens_per_s=planned.tokens_per_s / pace, mfu=planned.mfu / pace
    )


def table(rows: list[Row]) -> list[dict]:
    """One dict per row: predicted against measured."""
    out = []
    for row in rows:
        predicted = predict(row)
        out.append(
            {
                "group": row.group,
                "file": row.file,
                "arch": row.arch,
                "label": row.label,
                "card_gib": row.card_gib,
                "measured": round(row.measured, 1),
                "predicted": round(predicted.tokens_per_s, 1),
                "error": round(predicted.tokens_per_s / row.measured - 1, 4),
                "mfu": round(predicted.mfu, 4),
            }
        )
    return out


def summaries(lines: list[dict]) -> list[dict]:
    """Median and worst |error| of each group."""
    out = []
    for group in dict.fromkeys(line["group"] for line in lines):
        chosen = [line for line in lines if line["group"] == group]
        worst = max(chosen, key=lambda line: abs(line["error"]))
        out.append(
            {
                "summary": group,
                "rows": len(chosen),
                "median_abs_error": round(statistics.median(abs(c["error"]) for c in chosen), 4),
                "worst_abs_error": round(abs(worst["error"]), 4),
                "worst": f"{worst['arch']} {worst['label']} ({worst['file']})",
            }
        )
    return out


def fit(rows: list[Row]) -> tuple[float, float]:
    """(BASELINE_EFFICIENCY, LAYER_STEP_S) that minimise the squared log error of the fitted
    rows, on a grid of 0.01 and 0.5 ms."""
    reference = KNOWN_GPUS[throughput.REFERENCE_GPU].bf16_tflops * 1e12
    terms = []  # per row: tokens a micro-batch of the baseline, its FLOPs, layers, factor
    for row in rows:
        if row.group != "fitted":
            continue
        tokens = speed.BASELINE_MICRO_BATCH * row.settings.training.max_seq_length
        flops = tokens * throughput.flops_per_token(row.model, row.settings) / reference
        factor = speed.relative_speed(row.settings) * speed.batch_fill(row.settings, row.stats)
        terms.append((tokens, flops, row.model.num_layers, factor, row.measured))

    def loss(eta: float, layer_s: float) -> float:
        return sum(math.log(t / (f / eta + n * layer_s) * k / m) ** 2 for t, f, n, k, m in terms)

    grid = [(e / 100, s / 2000) for e in range(5, 41) for s in range(0, 61)]
    return min(grid, key=lambda point: loss(*point))


def fit_steps(rows: list[Row], replanned: list, rounds: int = 5) -> dict:
    """STEP_FIXED_S, LAYER_FIXED_S and TOKEN_EFFICIENCY (engine/plan/throughput.py): a step of
    the fitting runs (run_time.py's fit-* rows) costs STEP_FIXED_S + layers x LAYER_FIXED_S
    of its configuration + its padded tokens' FLOPs at TOKEN_EFFICIENCY of the peak. Given
    the efficiency, the fixed parts are a least-squares line (relative error of the step
    time); the efficiency is then the median over the Llama rows whose full-length steps
    carry at least 8,192 tokens, less their fixed part. Alternated from 0.5. `replanned`:
    run_time_rows.replanned_rows."""
    import numpy as np

    from finetune_tui.engine.plan.batching import clipped_mean, padded_length

    peak = KNOWN_GPUS[throughput.REFERENCE_GPU].bf16_tflops * 1e12

    def terms(model, settings) -> tuple[int, tuple, float]:
        checkpointed = settings.memory.gradient_checkpointing != "off"
        flops = throughput.flops_per_token(model, settings) * throughput.recompute_factor(settings)
        return model.num_layers, (settings.memory.backend, checkpointed), flops / peak

    runs = []  # (layers, key, s a padded token at full efficiency, padded, step's s)
    for group, row, model, settings, stats in replanned:
        if group != "fit":
            continue
        b, length = settings.training.micro_batch_size, settings.training.max_seq_length
        real = b * clipped_mean(stats.sample, length)
        padded = b * padded_length(stats.sample, length, b, True, stats.count)
        runs.append((*terms(model, settings), padded, real / row["measured_tokens_per_s"]))
    full = []  # the same terms for the large full-length Llama rows
    for row in rows:
        t = row.settings.training
        tokens = t.micro_batch_size * t.max_seq_length
        if row.group == "fitted" and row.settings.quantization.mode == "nf4" and tokens >= 8192:
            full.append((*terms(row.model, row.settings), tokens, tokens / row.measured))
    keys = sorted({k for _, k, *_ in runs})  # the configurations the runs measured
    efficiency = 0.5
    for _ in range(rounds):
        a = np.array([[1.0] + [n * (k == key) for key in keys] for n, k, _, _, _ in runs])
        y = np.array([s - p * c / efficiency for _, _, c, p, s in runs])
        weights = np.array([1 / s for *_, s in runs])
        solved = np.linalg.lstsq(a * weights[:, None], y * weights, rcond=None)[0]
        step_s, layer_s = solved[0], dict(zip(keys, solved[1:], strict=True))
        # Unsloth's offloaded checkpointing was not run on varying lengths: taken to cost
        # over none what Liger's checkpointing does
        unsloth = layer_s[("unsloth", False)] * layer_s[("liger", True)] / layer_s[("liger", False)]
        layer_s[("unsloth", True)] = unsloth
        efficiency = statistics.median(
            p * c / (s - step_s - n * layer_s[k]) for n, k, c, p, s in full
        )
    return {
        "STEP_FIXED_S": round(float(step_s), 3),
        "LAYER_FIXED_S": {f"{b}, ckpt {c}": round(float(v), 4) for (b, c), v in layer_s.items()},
        "TOKEN_EFFICIENCY": round(float(efficiency), 2),
    }


def fit_whole_run_pace(replanned: list) -> float:
    """WHOLE_RUN_PACE (engine/plan/throughput.py): the log-mean of measured over planned
    tokens/s of the calibration runs (whole runs of the fitting configurations, one per
    machine), planned without it. `replanned`: run_time_rows.replanned_rows."""
    from finetune_tui.engine.plan.run_time import time_summary

    logs = [
        math.log(row["measured_tokens_per_s"] * throughput.WHOLE_RUN_PACE / planned)
        for group, row, model, settings, stats in replanned
        if group == "calibration"
        for planned in [
            time_summary(model, settings, stats, throughput.REFERENCE_GPU)["tokens_per_s"]
        ]
    ]
    return round(math.exp(statistics.mean(logs)), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", action="store_true", help="also print the fitted constants")
    parser.add_argument(
        "--fit-steps", action="store_true", help="also a padded or grouped step's constants"
    )
    parser.add_argument(
        "--fit-whole", action="store_true", help="also the whole runs' pace over the short ones'"
    )
    args = parser.parse_args()
    rows = load_rows()
    lines = table(rows)
    for line in lines + summaries(lines):
        print(json.dumps(line))
    if args.fit:
        eta, layer_s = fit(rows)
        print(json.dumps({"fit": {"BASELINE_EFFICIENCY": eta, "LAYER_STEP_S": layer_s}}))
    if args.fit_steps:
        import tempfile

        from run_time_rows import replanned_rows

        with tempfile.TemporaryDirectory() as work:
            print(json.dumps({"fit_steps": fit_steps(rows, replanned_rows(Path(work)))}))
    if args.fit_whole:
        import tempfile

        from run_time_rows import replanned_rows

        with tempfile.TemporaryDirectory() as work:
            pace = fit_whole_run_pace(replanned_rows(Path(work)))
            print(json.dumps({"fit_whole": {"WHOLE_RUN_PACE": pace}}))


if __name__ == "__main__":
    sys.exit(main())
