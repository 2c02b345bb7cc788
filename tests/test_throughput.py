"""Absolute tokens/s (engine/plan/throughput.py) against the committed H100 rows
(benchmarks/throughput_fit.py, the table in docs/BENCHMARKS.md): the Llama rows fitted the two
constants, every other architecture is held out. Bounds are the figures measured on
2026-12-05 plus a little, so a change of model or factors that makes them worse fails here."""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path

import pytest
from conftest import run_python

from finetune_tui.engine.data.lengths import stats_from_lengths
from finetune_tui.engine.inspect.hardware import KNOWN_GPUS, find_known_gpu, simulated_hardware
from finetune_tui.engine.inspect.models import inspect_model
from finetune_tui.engine.plan import measured_speed, speed, throughput
from finetune_tui.engine.settings.preset import settings_from_overrides

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
from throughput_fit import fit, load_rows, table  # noqa: E402

ROWS = load_rows()
LINES = table(ROWS)
# one worker builds the committed rows again (replanned: ~9 s) for all the tests that read them
pytestmark = pytest.mark.xdist_group("committed-rows")
H100 = "NVIDIA H100 80GB HBM3"  # what NVML calls the card every row ran on

# group: (rows, median |error| at most, worst |error| at most); measured 2026-12-05:
# fitted 16.8 % / 72.6 %, held out 19.8 % / 136.6 %, MoE cuts 27.7 % / 71.8 %; packed Llama
# on Alpaca-like lengths 9.6 % / 10.4 % (9.9 % / 45.6 % since packing's cost is the row's
# square: the Liger row timed 30 steps, a whole Liger run took none of their extra). The
# padded and grouped ones ("llama first steps", 30.5 % / 47.2 % since 2026-12-06) timed
# 12-30 steps of ever-new shapes: the whole runs below are the check
BOUNDS = {
    "fitted": (36, 0.17, 0.73),
    "held out": (28, 0.20, 1.37),
    "held out moe": (16, 0.28, 0.72),
    "llama realistic lengths": (6, 0.10, 0.46),
    "llama first steps": (7, 0.31, 0.48),
}


@pytest.mark.parametrize("group", list(BOUNDS))
def test_committed_rows_stay_within_what_was_measured(group):
    errors = [abs(line["error"]) for line in LINES if line["group"] == group]
    rows, median, worst = BOUNDS[group]
    assert len(errors) == rows
    assert statistics.median(errors) <= median
    assert max(errors) <= worst


def test_the_two_fitted_baselines_within_a_quarter():
    """SPEED_BASELINE itself (HF QLoRA, checkpointing, b2) on both fitted sizes, where the
    size term decides: Llama-3.1-8B under by 20 %, Llama-3.2-1B over by 18 %."""
    chosen = {
        ("backends-h100-2026-11-24.jsonl", "llama-3.1-8b", "hf ckpt b2"),
        ("calib-h100-2026-11-24.jsonl", "llama-3.2-1b", "nf4 ckpt b2"),
    }
    lines = [line for line in LINES if (line["file"], line["arch"], line["label"]) in chosen]
    assert len(lines) == 2 and all(abs(line["error"]) <= 0.25 for line in lines)
    assert all(0.02 < line["mfu"] < 0.2 for line in lines)


def test_held_out_rows_were_never_fitted():
    fitted = {line["arch"] for line in LINES if line["group"] == "fitted"}
    held = {line["arch"] for line in LINES if line["group"].startswith("held out")}
    assert fitted == {"llama-3.1-8b", "llama-3.2-1b"}
    assert {"qwen2.5-7b", "gemma-2-9b", "qwen2.5-1.5b", "gemma-2-2b"} <= held
    assert not fitted & held
    assert not any(line["file"].startswith("families-") for line in LINES)


def test_the_committed_constants_are_the_fit():
    assert fit(ROWS) == (throughput.BASELINE_EFFICIENCY, throughput.LAYER_STEP_S)


@pytest.fixture(scope="module")
def llama8b():
    return inspect_model("meta-llama/Llama-3.1-8B")


def test_a_simulated_card_scales_by_its_bf16_peak(llama8b):
    settings = settings_from_overrides([])
    card = simulated_hardware(gpu="RTX 4090").primary.name
    h100 = throughput.predicted_throughput(llama8b, settings, None, H100)
    rtx = throughput.predicted_throughput(llama8b, settings, None, card)
    assert rtx.tokens_per_s / h100.tokens_per_s == pytest.approx(165 / 989)
    assert rtx.mfu == pytest.approx(h100.mfu)
    assert h100.basis == "fitted to H100 measurements"
    assert "(165 vs 989 TFLOP/s)" in rtx.basis
    a100 = throughput.predicted_throughput(llama8b, settings, None, "NVIDIA A100-SXM4-80GB")
    assert a100.tokens_per_s / h100.tokens_per_s == pytest.approx(312 / 989)


def test_no_prediction_on_a_cpu_or_an_unknown_card(llama8b):
    settings = settings_from_overrides([])
    assert throughput.predicted_throughput(llama8b, settings, None, None) is None
    assert throughput.predicted_throughput(llama8b, settings, None, "GPU with 24 GiB") is None


def test_several_processes_and_the_dataset_lengths(llama8b):
    """DDP: one GPU's figure times the processes, said so; padding: speed.batch_fill's share."""
    one = settings_from_overrides(["training.optimizer=adamw_torch"])
    two = settings_from_overrides(
        ["training.optimizer=adamw_torch", "distributed.strategy=ddp", "distributed.processes=2"]
    )
    single = throughput.predicted_throughput(llama8b, one, None, H100)
    pair = throughput.predicted_throughput(llama8b, two, None, H100)
    assert pair.tokens_per_s == pytest.approx(2 * single.tokens_per_s)
    assert pair.mfu == pytest.approx(single.mfu) and "x 2 processes (ddp)" in pair.basis
    from finetune_tui.engine.data.lengths import stats_from_lengths

    stats = stats_from_lengths([64] * 100, one.training.max_seq_length)
    short = throughput.predicted_throughput(llama8b, one, stats, H100)
    fill = speed.batch_fill(one, stats, throughput.step_shares(llama8b, one))
    assert fill < 0.5 and short.tokens_per_s == pytest.approx(single.tokens_per_s * fill)


def test_full_fine_tuning_counts_weight_gradients(llama8b):
    lora = settings_from_overrides(["quantization.mode=none"])
    full = settings_from_overrides(["quantization.mode=none", "training.method=full"])
    attention = throughput.flops_per_token(llama8b, lora) - 4 * llama8b.params_active
    assert throughput.flops_per_token(llama8b, full) == 6 * llama8b.params_active + attention
    predicted = throughput.predicted_throughput(llama8b, full, None, H100)
    assert "full fine-tuning not measured" in predicted.basis
    assert (
        predicted.tokens_per_s
        < throughput.predicted_throughput(llama8b, lora, None, H100).tokens_per_s
    )


def test_every_known_card_has_a_peak_and_nvml_names_find_theirs():
    assert all(card.bf16_tflops > 0 for card in KNOWN_GPUS.values())
    assert find_known_gpu("NVIDIA A100-SXM4-40GB").name == "A100 40GB"
    assert find_known_gpu("Tesla V100-SXM2-32GB").name == "Tesla V100 32GB"
    assert find_known_gpu(H100).name == "H100 80GB"


@pytest.mark.parametrize(
    ("name", "card"),
    [
        ("RTX4090", "RTX 4090"),
        ("NVIDIA GeForce RTX 4060 Laptop GPU", "RTX 4060 Laptop 8GB"),
        ("4090", "RTX 4090"),
        ("NVIDIA L4", "L4 24GB"),
        # a card only part of whose name is a known one's: another card, not that one
        ("NVIDIA L40S", None),  # planned as an L4 (24 GB; an L40S has 48)
        ("H20", None),  # planned as an H200
        ("x", None),  # planned as an RTX 3060
        ("24", None),
        ("NVIDIA A10G", None),
        # every word counts: a word no card of that model has is another card, or a typo
        ("RTX 4070 Ti Super", None),  # planned as the 12 GB RTX 4070 (it has 16)
        ("H100 or T4", None),  # planned as a T4
        ("RTX 4090;H100", None),
        # a size alone, with or without GB, picks among a model's cards
        ("A100 80", "A100 80GB"),  # planned as the 40 GB one
        ("NVIDIA A100 80GB PCIe", "A100 80GB"),
        # several cards alike: none ('RTX' was the RTX 3060, 'A100' the 40 GB one)
        ("RTX", None),
        ("A100", None),
        # the model's whole name wins: H100 SXM, PCIe and NVL differ in throughput
        ("H100", "H100 80GB"),
        ("NVIDIA H100 80GB HBM3", "H100 80GB"),
        ("NVIDIA H100 PCIe", "H100 PCIe 80GB"),
        ("NVIDIA H100 NVL", "H100 NVL 94GB"),
    ],
)
def test_a_card_is_found_by_whole_words_only(name, card):
    found = find_known_gpu(name)
    assert (found.name if found else None) == card


def test_importing_throughput_keeps_plan_torch_free():
    run_python(
        "import sys\n"
        "import finetune_tui.engine.plan.throughput\n"
        "loaded = [m for m in ('torch', 'textual') if m in sys.modules]\n"
        "assert not loaded, f'imported {loaded}'\n"
    )


# What this checkout plans for each held-out whole run, by case and records (tokens/s,
# whole run's s), as docs/BENCHMARKS.md tables it; the rows' own `predicted_*` are the
# planner of their day
WHOLE_RUNS_PLANNED = {
    ("gemma9b-liger-1024", 5635): (2749, 329.7),
    ("qwen1.5b-unsloth-1024", 12045): (3731, 503.9),
    ("gemma2b-hf-ckpt-padded-1024", 5560): (2001, 424.3),
    ("qwen7b-hf-ckpt-512", 4162): (1825, 355.4),
    ("qwen7b-liger-2048", 4646): (1889, 386.6),
    ("llama8b-liger-2048", 3633): (1746, 336.0),
    ("qwen7b-liger-2048", 2782): (1889, 247.7),
    ("qwen7b-liger-2048", 4441): (1889, 371.4),
    ("gemma9b-liger-1024", 6930): (2749, 396.1),
    ("qwen3-8b-liger-ckpt-packed-2048", 4744): (5028, 165.8),
    ("mistral7b-hf-ckpt-1024", 3399): (1680, 324.6),
    ("qwen7b-hf-ckpt-512", 3289): (1825, 289.0),
    ("qwen3-8b-unsloth-packed-1024", 9914): (5696, 306.9),
    ("mistral7b-hf-ckpt-1024", 1890): (1680, 198.0),
    ("mistral7b-hf-ckpt-1024", 1593): (1680, 173.1),
    ("llama8b-v32k-hf-ckpt-1024", 2006): (1680, 207.7),
    ("mistral7b-hf-ckpt-1024", 1757): (1680, 186.9),
    ("qwen7b-liger-2048", 3063): (1889, 268.6),
}


@pytest.fixture(scope="module")
def replanned(tmp_path_factory) -> list:
    """Every committed run_time.py row rebuilt on the CPU (run_time_rows.replanned_rows)."""
    from run_time_rows import replanned_rows

    return replanned_rows(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def whole_runs(replanned) -> list[tuple[str, dict, dict]]:
    """(group, row, what this checkout plans for it) for every committed run_time.py row."""
    from finetune_tui.engine.plan.run_time import time_summary

    return [
        (group, row, time_summary(model, settings, stats, H100))
        for group, row, model, settings, stats in replanned
    ]


def test_whole_runs_are_predicted_within_the_goal(whole_runs):
    """The speed model's fitting runs (nine short Llama ones, b8 x 1,024: compared at a short
    run's pace) and the held-out whole runs (docs/BENCHMARKS.md, "A step's fixed part, by
    configuration" to "Machine G"), uncorrected: fitting runs 4.7 % median / 8.0 % worst;
    held out (18 runs on eight machines) 7.3 % median, the goal's 10 % met; worst 48.0 %,
    the goal's 20 % not: one machine ran Qwen2.5-7B and Llama-3.1-8B Liger b4 x 2,048 at
    0.68-0.71x their plan, machine G the same Qwen configuration at 0.76x (its run bound by
    the host's one Python thread: GPU 54 % busy, unthrottled), where two others ran it at
    1.11-1.14x (one configuration's pace differs by 1.6x between H100 machines). Corrected
    by the machine's own runs, see below."""
    pace = throughput.WHOLE_RUN_PACE
    errors = {"fit": [], "held out": [], "calibration": []}
    signed = {"fit": [], "held out": [], "calibration": []}
    for group, row, planned in whole_runs:
        short = pace if group == "fit" else 1.0  # the fitting runs are short ones
        error = planned["tokens_per_s"] / short / row["measured_tokens_per_s"] - 1
        signed[group].append((row, error))
        errors[group].append(abs(error))
    assert len(errors["fit"]) == 9 and max(errors["fit"]) < 0.09
    held = errors["held out"]
    assert len(held) == 18 and statistics.median(held) < 0.08 < 0.10
    assert sorted(held)[-4] < 0.27 and max(held) < 0.49
    slow_machines = sorted(signed["held out"], key=lambda pair: pair[1])[-3:]
    assert {row["file"] for row, _ in slow_machines} == {
        "run-time-heldout-b4-2048-h100-2026-12-06.jsonl",
        "run-time-heldout-machine-g-h100-2026-12-07.jsonl",
    }
    # what the plan says of a first run on a machine: the worst, rounded up to 5 %
    assert measured_speed.FIRST_RUN_SPREAD == math.ceil(max(held) * 20) / 20


def test_whole_runs_run_faster_than_the_short_fitting_runs(replanned):
    """WHOLE_RUN_PACE is the fit of the calibration runs (whole runs of the fitting
    configurations, one per machine C-F), and only of them: they ran 0.88-1.26x the short
    runs' pace, three of four faster; the held-out runs took no part."""
    from throughput_fit import fit_whole_run_pace

    assert fit_whole_run_pace(replanned) == throughput.WHOLE_RUN_PACE
    calibration = [row["arch"] for group, row, *_ in replanned if group == "calibration"]
    assert calibration == ["llama-3.1-8b"] * 4


def test_whole_held_out_runs_are_predicted_as_their_table_says(whole_runs):
    """This checkout's planner, at the lengths the bench's tokenizer gives, still predicts
    what the table shows beside what was measured; a change to the speed model shows here."""
    held = {
        (row["case"], row["samples"]): planned
        for group, row, planned in whole_runs
        if group == "held out"
    }
    assert set(held) == set(WHOLE_RUNS_PLANNED)
    for case, planned in held.items():
        tokens_per_s, total_s = WHOLE_RUNS_PLANNED[case]
        assert planned["tokens_per_s"] == pytest.approx(tokens_per_s, rel=0.005)
        assert planned["time"]["total_s"] == pytest.approx(total_s, rel=0.01)


# Each machine's runs as the product planned them there, corrected by the earlier runs of
# that machine in the store: (machine, case) -> (tokens/s, whole run's s), with what was
# measured in docs/BENCHMARKS.md; the calibration runs had no earlier run: uncorrected
REPLAYED = {
    ("C", "fit-llama8b-liger", 3862): (3264, 202.0),  # measured 3,405, 196.6 s
    ("C", "qwen7b-liger-2048", 4441): (1971, 357.1),  # 2,094, 332.0 s
    ("D", "fit-llama8b-liger", 3862): (3264, 202.0),  # 3,593, 185.8 s
    ("D", "gemma9b-liger-1024", 6930): (3027, 362.6),  # 2,678, 401.4 s
    ("D", "qwen3-8b-liger-ckpt-packed-2048", 4744): (5214, 160.8),  # 5,100, 156.0 s: not 5 min
    ("D", "mistral7b-hf-ckpt-1024", 3399): (1680, 324.6),  # 2,284, 236.1 s: no HF run before
    ("E", "fit-llama8b-hf-ckpt", 1996): (1664, 211.2),  # 1,302, 256.9 s
    ("E", "qwen7b-hf-ckpt-512", 3289): (1429, 362.5),  # 1,983, 263.7 s
    ("E", "qwen3-8b-unsloth-packed-1024", 9914): (5696, 306.9),  # 5,001, 333.6 s: no Unsloth run
    ("E", "mistral7b-hf-ckpt-1024", 1890): (1571, 210.2),  # 2,063, 156.5 s
    ("F", "mistral7b-hf-ckpt-1024", 1593): (1680, 173.1),  # 1,656, 170.4 s
    ("F", "fit-llama8b-hf-ckpt", 1737): (1664, 189.2),  # 1,875, 162.2 s: within Mistral's band
    ("F", "llama8b-v32k-hf-ckpt-1024", 2006): (1893, 186.9),  # 1,648, 196.4 s
    ("F", "mistral7b-hf-ckpt-1024", 1757): (1680, 186.9),  # 1,795, 165.2 s
}


def test_held_out_runs_planned_with_their_machines_correction(replanned, tmp_path, monkeypatch):
    """The product as a user meets it: a run of at least 90 s of steps leaves its measured
    tokens/s in the store, and the next plan on that machine and backend is scaled by it
    (run_time_rows.replayed runs each machine's rows in order through the real store). The
    three held-out Liger runs planned so: tokens/s -5.9, +13.1, +2.2 %; wall time of the
    two of at least 5 min +7.6 and -9.7 %. Under HF a machine's first run did not carry to
    the next: machine E's Llama-3.1-8B, the freshly started machine's first, ran 0.78x its
    plan and Qwen2.5-7B and Mistral-7B after it 1.09x and 1.32x theirs (corrected -28.0 and
    -23.8 %); machine F's Llama-3.1-8B ran 1.13x, and Llama with Mistral's vocabulary after
    it 0.99x (+14.9 % corrected): two runs of one configuration on one machine differ by up
    to 8 % (Mistral-7B on F, 1,656 then 1,795 tokens/s) (docs/BENCHMARKS.md, "Machine F")."""
    from run_time_rows import replayed

    monkeypatch.setenv("FINETUNE_TUI_DATA_DIR", str(tmp_path))
    runs = {
        (machine, row["case"], row["samples"]): (row, plan)
        for machine, row, plan in replayed(replanned, H100)
    }
    assert set(runs) == set(REPLAYED)
    corrected = []
    for key, (tokens_per_s, total_s) in REPLAYED.items():
        row, plan = runs[key]
        assert plan["tokens_per_s"] == pytest.approx(tokens_per_s, rel=0.005)
        assert plan["time"]["total_s"] == pytest.approx(total_s, rel=0.01)
        if plan["speed_correction"] != 1.0:
            corrected.append(row | {"plan": plan})
    assert [row["case"] for row in corrected] == [
        "qwen7b-liger-2048",
        "gemma9b-liger-1024",
        "qwen3-8b-liger-ckpt-packed-2048",
        "qwen7b-hf-ckpt-512",
        "mistral7b-hf-ckpt-1024",
        "llama8b-v32k-hf-ckpt-1024",
    ]

    def error(row):
        return row["plan"]["tokens_per_s"] / row["measured_tokens_per_s"] - 1

    liger = [abs(error(r)) for r in corrected if r["settings"]["memory.backend"] == "liger"]
    assert statistics.median(liger) < 0.06 and max(liger) < 0.14
    hf = [error(r) for r in corrected if r["settings"]["memory.backend"] == "hf"]
    assert hf == [
        pytest.approx(-0.280, abs=0.005),
        pytest.approx(-0.238, abs=0.005),
        pytest.approx(+0.149, abs=0.005),
    ]
    long_runs = [r for r in corrected if r["process_wall_s"] >= 300]
    assert len(long_runs) == 2
    assert all(
        abs(r["plan"]["time"]["total_s"] / r["process_wall_s"] - 1) < 0.10 for r in long_runs
    )


def test_the_committed_step_constants_are_the_fit(replanned):
    from throughput_fit import fit_steps

    fitted = fit_steps(ROWS, replanned)
    assert fitted["STEP_FIXED_S"] == throughput.STEP_FIXED_S
    assert fitted["TOKEN_EFFICIENCY"] == throughput.TOKEN_EFFICIENCY
    committed = {f"{b}, ckpt {c}": v for (b, c), v in throughput.LAYER_FIXED_S.items()}
    assert fitted["LAYER_FIXED_S"] == committed


def test_a_micro_batch_is_padded_to_its_longest_sample():
    """padded: the expected longest of micro-batch random samples; grouped: the length-grouped
    sampler's sorted megabatches leave little padding, less the more records it sorts."""
    from backends import realistic_lengths

    from finetune_tui.engine.plan.batching import clipped_mean, padded_length

    lengths = sorted(realistic_lengths(4096))
    mean = clipped_mean(lengths, 1024)
    assert padded_length(lengths, 1024, 1, False, 4096) == pytest.approx(mean)
    padded = [padded_length(lengths, 1024, b, False, 4096) for b in (4, 8, 16)]
    assert mean < padded[0] < padded[1] < padded[2] < max(lengths)
    grouped = padded_length(lengths, 1024, 8, True, 4096)
    assert mean <= grouped < 1.15 * mean < padded[1]
    assert padded_length(lengths, 1024, 8, True, 64) > grouped  # two megabatches to sort
    assert padded_length([300] * 50, 256, 8, False, 50) == 256  # cut at max_seq_length


def test_a_short_step_costs_a_fixed_part_and_its_padded_tokens(llama8b):
    """What a step of short samples costs: a fixed part whatever its tokens (a larger share
    for a small model, whose step is mostly per-layer work), the rest in proportion to its
    padded tokens; the fixed part is STEP_FIXED_S and LAYER_FIXED_S of the configuration."""
    from backends import realistic_lengths

    from finetune_tui.engine.data.lengths import stats_from_lengths

    base = ["training.micro_batch_size=8", "training.max_seq_length=1024", "quantization.mode=nf4"]
    grouped = settings_from_overrides(
        [*base, "memory.group_by_length=true", "memory.gradient_checkpointing=on"]
    )
    padded = settings_from_overrides([*base, "memory.gradient_checkpointing=on"])
    without = settings_from_overrides(
        [*base, "memory.group_by_length=true", "memory.gradient_checkpointing=off"]
    )
    stats = stats_from_lengths(realistic_lengths(4096), 1024)
    fixed, per_token, _ = throughput.step_shares(llama8b, grouped)
    small = throughput.step_shares(inspect_model("meta-llama/Llama-3.2-1B"), grouped)
    assert 0 < fixed < small[0] and small[1] < per_token
    one = throughput.STEP_FIXED_S + 32 * throughput.LAYER_FIXED_S[("hf", True)]
    none = throughput.STEP_FIXED_S + 32 * throughput.LAYER_FIXED_S[("hf", False)]
    full_s = {  # what the full-length model takes a step of each to cost (the short runs'
        # pace: the step constants were fitted on them, whole runs run WHOLE_RUN_PACE faster)
        name: 8
        * 1024
        * throughput.WHOLE_RUN_PACE
        / throughput.predicted_throughput(llama8b, s, None, H100).tokens_per_s
        for name, s in (("on", grouped), ("off", without))
    }
    assert fixed * full_s["on"] == pytest.approx(one)
    assert throughput.step_shares(llama8b, without)[0] * full_s["off"] == pytest.approx(none)
    rtx = find_known_gpu("RTX 4090")  # launches wait alike on every card: only tokens scale
    on_rtx = throughput.step_shares(llama8b, grouped, rtx)
    slower = KNOWN_GPUS[throughput.REFERENCE_GPU].bf16_tflops / rtx.bf16_tflops
    assert on_rtx[0] * full_s["on"] * slower == pytest.approx(one)
    assert on_rtx[1] == pytest.approx(per_token)
    real = speed.batching.clipped_mean(stats.sample, 1024) / 1024
    assert speed.batch_fill(grouped, stats) == pytest.approx(
        real / (speed.batching.padded_length(stats.sample, 1024, 8, True, stats.count) / 1024)
    )
    shares = speed.StepShares(fixed, per_token)
    fills = [speed.batch_fill(grouped, stats, shares), speed.batch_fill(padded, stats, shares)]
    assert fills[1] < fills[0] < speed.batch_fill(grouped, stats) < 1
    predicted = throughput.predicted_throughput(llama8b, grouped, stats, H100)
    full = throughput.predicted_throughput(llama8b, grouped, None, H100)
    assert predicted.tokens_per_s == pytest.approx(full.tokens_per_s * fills[0])


def test_samples_cut_at_the_length_cost_a_full_step_of_one_shape(llama8b):
    """Micro-batches padded to max_length itself (long samples cut there) have one shape:
    a full-length step's cost, as the full-length factors measured it, not the fixed part a
    step of varying shapes pays. Every sample past the length: the fill of samples that
    fill the length (1.0); half of them: between that and the fill of the short ones."""
    settings = settings_from_overrides(
        ["training.micro_batch_size=8", "training.max_seq_length=1024", "memory.backend=liger"]
    )
    shares = throughput.step_shares(inspect_model("meta-llama/Llama-3.2-1B"), settings)
    assert shares.fixed + shares.per_token > 1.2  # a small model: varying shapes cost more
    long = stats_from_lengths([1500 + k for k in range(512)], 1024)
    assert speed.batch_fill(settings, long, shares) == pytest.approx(1.0)
    short_lengths = [200 + k % 300 for k in range(512)]
    short = speed.batch_fill(settings, stats_from_lengths(short_lengths, 1024), shares)
    mixed_lengths = short_lengths[::2] + [1500] * 256
    mixed = speed.batch_fill(settings, stats_from_lengths(mixed_lengths, 1024), shares)
    assert short < mixed < 1.0
    grouped = settings_from_overrides(
        [
            "training.micro_batch_size=8",
            "training.max_seq_length=1024",
            "memory.group_by_length=true",
        ]
    )
    assert speed.batch_fill(grouped, long, shares) == pytest.approx(1.0)
