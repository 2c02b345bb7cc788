"""The committed run_time.py rows (docs/BENCHMARKS.md, "Whole runs against the plan's time"
onwards): which files fitted the speed model's step constants, which are held out, which
machine ran which in what order; each rebuilt on the CPU and planned again by this checkout
(`replanned_rows`), or replayed through the store of what runs measured as each machine's
runs were planned there (`replayed`). tests/test_throughput.py and throughput_fit.py read
them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import backends  # noqa: E402  (the same random-weight models and datasets)
from run_time import CASES, RECORDS, case_settings, settings_of, token_stats  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
ROW_FILES = {  # the committed rows: the speed model's fitting set, then the held-out runs
    "fit": ("run-time-fit-llama-h100-2026-12-06.jsonl",),
    "held out": (
        "run-time-heldout-h100-2026-12-06.jsonl",
        "run-time-padded-heldout-h200-2026-12-06.jsonl",
        "run-time-heldout-qwen7b-h100-2026-12-06.jsonl",
        "run-time-heldout-b4-2048-h100-2026-12-06.jsonl",
        # the same case on another machine, planned with a correction from a 43 s run (the
        # row's predicted_*); replanned here without one, as every row is
        "run-time-heldout-qwen7b-2048-machine-b-h100-2026-12-06.jsonl",
        # planned with the correction from the calibration run just before it (machine C)
        "run-time-heldout-corrected-machine-c-h100-2026-12-06.jsonl",
        # machine D, after its calibration run: Gemma-2-9B Liger, then Qwen3-8B packed and
        # Mistral-7B HF with checkpointing
        "run-time-heldout-corrected-machine-d-h100-2026-12-06.jsonl",
        "run-time-heldout-packed-hf-machine-d-h100-2026-12-06.jsonl",
        # machine E, after its HF calibration: Qwen2.5-7B HF, Qwen3-8B Unsloth packed,
        # Mistral-7B HF (the same case as machine D's)
        "run-time-heldout-machine-e-h100-2026-12-06.jsonl",
        # machine F, around its HF calibration (Llama-3.1-8B): Mistral-7B HF before and
        # after, and Llama-3.1-8B with Mistral's 32,768-entry vocabulary between
        "run-time-heldout-machine-f-h100-2026-12-06.jsonl",
        # machine G (2026-12-07, session 27): Qwen2.5-7B Liger b4 x 2,048 with machine_state,
        # the slow machines' configuration; a run of the same case before it was cut off at
        # step 850 by the call's limit (its log: run-time-cut-off-machine-g-h100-2026-12-07.log)
        "run-time-heldout-machine-g-h100-2026-12-07.jsonl",
    ),
    # runs of at least 90 s of steps that corrected the next run's plan on their machine
    "calibration": (
        "run-time-calibration-machine-c-h100-2026-12-06.jsonl",
        "run-time-calibration-machine-d-h100-2026-12-06.jsonl",
        "run-time-calibration-hf-machine-e-h100-2026-12-06.jsonl",
        "run-time-calibration-hf-machine-f-h100-2026-12-06.jsonl",
    ),
}
# The runs of one machine, in the order they ran (one file can hold several): each was
# planned with the correction its machine's earlier runs of at least MIN_SPEED_SECONDS of
# steps left in the store, as a user's next plan is; `replayed` does it again on the CPU
MACHINE_RUNS = {
    "C": (
        "run-time-calibration-machine-c-h100-2026-12-06.jsonl",
        "run-time-heldout-corrected-machine-c-h100-2026-12-06.jsonl",
    ),
    "D": (
        "run-time-calibration-machine-d-h100-2026-12-06.jsonl",
        "run-time-heldout-corrected-machine-d-h100-2026-12-06.jsonl",
        "run-time-heldout-packed-hf-machine-d-h100-2026-12-06.jsonl",
    ),
    "E": (
        "run-time-calibration-hf-machine-e-h100-2026-12-06.jsonl",
        "run-time-heldout-machine-e-h100-2026-12-06.jsonl",
    ),
    "F": (  # in the order they ran (host_pace's date): Mistral, Llama, Llama-v32k, Mistral
        "run-time-heldout-machine-f-h100-2026-12-06.jsonl",
        "run-time-calibration-hf-machine-f-h100-2026-12-06.jsonl",
    ),
}
# Not in the fit or held out: the fitting configuration and its neighbours on two other
# machines ("A step's pace is the machine's", docs/BENCHMARKS.md):
# run-time-pace-machine-a-h100-2026-12-06.jsonl, run-time-pace-machine-b-h100-2026-12-06.jsonl


# A run cut off before steady_speed existed: its row holds its last progress window's tokens/s
# (the shortest records, under group-by-length); its windows summed give 3,591
# (docs/BENCHMARKS.md, "Whole runs against the plan's time")
SUMMED_WINDOWS = {"qwen1.5b-unsloth-1024": 3591.0}


def committed_rows() -> list[tuple[str, dict]]:
    """(group, row) for every committed case row of ROW_FILES, its measured tokens/s the
    run's (SUMMED_WINDOWS where the row's is not)."""
    out = []
    for group, files in ROW_FILES.items():
        for name in files:
            lines = (RESULTS / name).read_text().splitlines()
            for row in map(json.loads, lines):
                if "case" in row:
                    speed = SUMMED_WINDOWS.get(row["case"], row["measured_tokens_per_s"])
                    out.append((group, row | {"measured_tokens_per_s": speed, "file": name}))
    return out


def replanned_rows(work: Path) -> list[tuple[str, dict, object, object, object]]:
    """(group, row, model, settings, stats) of every committed row, rebuilt on the CPU in
    `work`: the bench's dataset of RECORDS as the GPU run wrote it, each architecture's
    config and the bench's byte-level tokenizer, the row's records counted as its run
    counted them."""
    data = backends.write_realistic_dataset(work / "data-realistic.jsonl", RECORDS)
    return [(group, row, *_replanned(row, data, work)) for group, row in committed_rows()]


def _replanned(row: dict, data: Path, work: Path):
    from bench_tokenizer import save_byte_tokenizer

    from finetune_tui.engine.inspect.models import inspect_config

    arch = CASES[row["case"]][0]
    folder = work / arch
    if not folder.exists():
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps(backends.arch_config(arch)))
        save_byte_tokenizer(folder)
    settings = settings_of(case_settings(row["case"], folder, data, row["samples"]))
    model = inspect_config(backends.ARCHS[arch], backends.arch_config(arch))
    return model, settings, token_stats(settings)


def replayed(replanned: list, card: str) -> list[tuple[str, dict, dict]]:
    """(machine, row, plan) for every run of MACHINE_RUNS, planned on `card` as the product
    planned it there: each run, in order, leaves what it measured in the store of what runs
    measured, as the runner does for a run of at least MIN_SPEED_SECONDS of steps, and the
    next run's plan is corrected by it. The store is emptied before each machine: point
    FINETUNE_TUI_DATA_DIR at a scratch folder."""
    from finetune_tui.engine.plan.measured import Measurement, record
    from finetune_tui.engine.plan.run_time import time_summary
    from finetune_tui.engine.train.run_speed import MIN_SPEED_SECONDS

    by_file: dict[str, list] = {}
    for _, row, model, settings, stats in replanned:
        by_file.setdefault(row["file"], []).append((row, model, settings, stats))
    out = []
    for machine, files in MACHINE_RUNS.items():
        forget_store()  # each machine starts without the runs of another
        for row, model, settings, stats in _in_order(
            run for name in files for run in by_file[name]
        ):
            plan = time_summary(model, settings, stats, card)
            out.append((machine, row, plan))
            if row["process_wall_s"] - row["outside_steps_s"] >= MIN_SPEED_SECONDS:
                record(  # its memory is not what this replays: any figure the store keeps
                    Measurement(
                        model.model_type,
                        settings.memory.backend,
                        card,
                        measured_gib=40.0,
                        predicted_gib=40.0,
                        tokens_per_second=row["measured_tokens_per_s"],
                        predicted_tokens_per_second=plan["tokens_per_s"] / plan["speed_correction"],
                    )
                )
    forget_store()
    return out


def _in_order(runs) -> list:
    """A machine's runs in the order they ran: by the date of the host probe taken just
    before each (rows without one keep their files' order)."""
    return sorted(runs, key=lambda run: run[0].get("host_pace", {}).get("date", ""))


def forget_store() -> None:
    from finetune_tui.engine.plan.measured import store_path

    store_path().unlink(missing_ok=True)
