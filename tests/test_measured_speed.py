"""A step's fixed part is paced by the machine (three H100 hosts: 0.37 to 0.5-0.6 s a step
for one configuration), so the runs a user made on this card correct the plan's tokens/s,
both ways, and say so; runs of another card, backend or objective do not."""

from __future__ import annotations

import json

import pytest
from test_measured import CARD, entry, plan_json, write_store

from finetune_tui.engine.plan import measured
from finetune_tui.engine.plan.measured import Measurement, record
from finetune_tui.engine.plan.measured_speed import speed_correction
from finetune_tui.engine.train.run_speed import MIN_SPEED_SECONDS, speed_reading


def ran(measured_tps: float, predicted_tps: float = 2000.0, **more) -> dict:
    """A run's line: its memory as planned (no memory correction), its speed as given."""
    return entry(
        10.0, tokens_per_second=measured_tps, predicted_tokens_per_second=predicted_tps, **more
    )


def test_the_next_plan_on_that_card_runs_at_the_pace_the_runs_measured(cli):
    args = ("--gpu", "RTX 4090", "--dataset", "demo", "--set", "memory.backend=unsloth")
    before = plan_json(cli, *args)
    assert "corrected" not in before["throughput_basis"]
    assert before["throughput_basis"].endswith("±50 % until a run on this card measures its pace")
    write_store(ran(1300.0), ran(1360.0), ran(1500.0))  # slower than planned: a slow host
    after = plan_json(cli, *args)
    assert after["settings"] == before["settings"]  # speed is scored relatively: same pick
    assert after["tokens_per_s"] == pytest.approx(before["tokens_per_s"] * 0.68, abs=1)
    assert after["time"]["total_s"] > before["time"]["total_s"]
    assert after["throughput_basis"].endswith(
        "corrected by your runs on this card (3 llama runs, measured -32 % against plan)"
    )
    assert "±" not in after["throughput_basis"]  # the runs told this machine's pace
    assert after["correction"] is None  # the memory was as planned: no memory correction
    write_store(ran(2600.0))  # a faster host corrects upwards as well
    faster = plan_json(cli, *args)["tokens_per_s"]
    assert faster == pytest.approx(before["tokens_per_s"] * 1.3, abs=1)


def test_only_sft_runs_of_the_same_card_and_backend_with_both_speeds_count():
    write_store(
        ran(1400.0, card="NVIDIA H100 80GB HBM3"),
        ran(1400.0, backend="hf"),
        ran(1400.0, objective="dpo"),
        entry(10.0, tokens_per_second=1400.0),  # a run before predicted speeds were kept
        ran(1400.0, predicted_tps=0.0),
        ran(1400.0, predicted_tps=float("nan")),
        ran(50_000.0),  # 25x the plan: a broken run or a forged line
        json.dumps(ran(1400.0, predicted_tps="fast")),
    )
    assert speed_correction(CARD, "unsloth") is None
    h100 = "NVIDIA H100 80GB HBM3"
    assert speed_correction(h100, "liger") is None
    assert speed_correction(h100, "unsloth").factor == 0.7
    assert speed_correction("RTX 4090", "hf").factor == 0.7
    assert speed_correction(None, "hf") is None  # a CPU, or --vram without a card's name
    write_store(ran(1980.0), ran(2030.0))  # within 3 % of the plan: left as planned
    assert speed_correction(CARD, "unsloth") is None


def test_a_card_is_one_card_whatever_form_its_name_takes(cli):
    """Runs kept under NVML's name correct a plan for the same card simulated by its short
    name (`--gpu H100`), memory and speed alike; another card's do not."""
    nvml = "NVIDIA H100 80GB HBM3"
    args = ("--gpu", "H100", "--dataset", "demo", "--set", "memory.backend=liger")
    before = plan_json(cli, *args)
    run = entry(13.0, nvml, "liger", tokens_per_second=2600.0, predicted_tokens_per_second=2e3)
    write_store(run, run, run)
    after = plan_json(cli, *args)
    assert after["tokens_per_s"] == pytest.approx(before["tokens_per_s"] * 1.3, abs=1)
    assert after["correction"] is not None  # 13.0 GiB measured where 10.0 was planned
    assert speed_correction("H100", "liger").factor == 1.3
    assert speed_correction("A100 80GB", "liger") is None
    assert speed_correction("NVIDIA H200", "liger") is None


def test_the_familys_own_runs_correct_it_where_there_are_any(cli):
    """A plan's error has a family part besides the machine's (docs/BENCHMARKS.md, "Machine
    E"): a Llama plan after a Llama and a Mistral run takes the Llama run's pace; a family
    without runs of its own takes every family's, the machine's pace."""
    write_store(ran(1760.0, backend="hf"), ran(2740.0, backend="hf", family="mistral"))
    llama = speed_correction(CARD, "hf", "llama")
    assert (llama.factor, llama.runs, llama.family) == (0.88, 1, "llama")
    assert llama.describe() == (
        "corrected by your runs on this card (1 llama run, measured -12 % against plan)"
    )
    mistral = speed_correction(CARD, "hf", "mistral")
    assert (mistral.factor, mistral.runs) == (1.37, 1)
    qwen = speed_correction(CARD, "hf", "qwen2")
    assert (qwen.factor, qwen.runs, qwen.family) == (1.125, 2, None)
    assert qwen.describe() == (  # the user is told whose runs set the pace
        "corrected by your runs on this card (2 runs of other families, measured +12 % "
        "against plan)"
    )
    anyone = speed_correction(CARD, "hf")  # no family named: the machine's pace
    assert (anyone.factor, anyone.runs) == (qwen.factor, qwen.runs)
    assert "other families" not in anyone.describe()
    args = ("--gpu", "RTX 4090", "--dataset", "demo", "--set", "memory.backend=hf")
    assert plan_json(cli, *args)["throughput_basis"].endswith(
        "corrected by your runs on this card (1 llama run, measured -12 % against plan)"
    )


def test_only_the_last_runs_count():
    write_store(*[ran(1000.0)] * 20, *[ran(1800.0)] * measured.RECENT)
    found = speed_correction(CARD, "unsloth")
    assert (found.factor, found.runs) == (0.9, measured.RECENT)


class Run:
    """What speed_reading reads off a run's event callback."""

    def __init__(self, seconds: float, correction: float | None):
        self.started = {"predicted_tokens_per_s": 1400.0, "speed_correction": correction}
        self.seconds = seconds

    def steady_tokens_per_s(self) -> float:
        return 1400.0

    def steady_seconds(self) -> float:
        return self.seconds


def test_a_run_keeps_the_speed_models_own_figure_so_corrections_never_compound():
    """A run planned at 0.7 x the speed model (its card's correction) that measured that
    pace records the model's own figure: the next correction is 0.7 again, not 1.0."""
    measured_tps, predicted = speed_reading(Run(MIN_SPEED_SECONDS, correction=0.7))
    assert (measured_tps, predicted) == (1400.0, 2000.0)
    assert speed_reading(Run(MIN_SPEED_SECONDS, correction=None)) == (1400.0, 1400.0)
    line = Measurement("llama", "unsloth", CARD, 10.0, 10.0, measured_tps, "sft", predicted)
    assert record(line) is None
    assert speed_correction(CARD, "unsloth").factor == 0.7


def test_a_short_run_says_nothing_of_the_machines_pace():
    """Its first minute runs slower than the rest (H100: 0.90x the plan over 43 s of steps,
    1.24x over 100 s, one configuration on one machine)."""
    assert speed_reading(Run(MIN_SPEED_SECONDS - 1, correction=None)) == (None, None)
