"""The planner against what one-GPU launched runs measured (committed rows of
benchmarks/launched_one_gpu.py): on an H200, Llama-3.2-1B under ZeRO-3 with the optimizer
offloaded (full fine-tuning) and ZeRO-3 LoRA; on an H100, Qwen2.5-1.5B offloaded. Each
prediction must be at or above the measured peak (the safe side), and near it: GPU reserved
within 25 % (Qwen's is +23 %: loose), nvidia-smi within 15 %, CPU memory within 10 %.
Gemma-2-2B (H100) is held out: no constant was set from it; its rows must land within 10 %
either way (issue 26's goal for a held-out architecture)."""

from __future__ import annotations

import json

import pytest
from conftest import REPO

from finetune_tui.engine.inspect.models import inspect_model
from finetune_tui.engine.plan.peak import predict_memory
from finetune_tui.engine.settings.preset import load_preset, with_changes

RESULTS = REPO / "benchmarks" / "results"
ROWS = [RESULTS / "launched-one-gpu-h200-2026-12-01.jsonl"]
ROWS += [RESULTS / "launched-one-gpu-qwen-h100-2026-12-05.jsonl"]
HELD_OUT = [RESULTS / "launched-zero3-gemma2-h100-2026-12-05.jsonl"]
MODELS = {"llama-3.2-1b": "meta-llama/Llama-3.2-1B", "qwen2.5-1.5b": "Qwen/Qwen2.5-1.5B"}
MODELS |= {"gemma-2-2b": "google/gemma-2-2b"}
CASE_CHANGES = {
    "zero3-offload-full": {},
    "zero3-lora": {"training.method": "lora", "distributed.cpu_offload": False},
}


def rows(paths=ROWS):
    found = []
    for line in (line for path in paths for line in path.read_text().splitlines()):
        row = json.loads(line)
        if row["case"] in CASE_CHANGES and row["summary"]["peak_reserved_gib"]:
            found.append(row)
    return found


def prediction(row):
    settings = with_changes(
        load_preset(REPO / "presets" / "full-zero3-offload.yaml"),
        {"model.name_or_path": MODELS[row.get("arch", "llama-3.2-1b")]} | CASE_CHANGES[row["case"]],
    )
    return predict_memory(inspect_model(settings.model.name_or_path), settings, padded=False)


@pytest.mark.parametrize("row", rows(), ids=lambda r: f"{r['case']}-{r.get('arch', 'llama')}")
def test_gpu_prediction_is_safe_and_close(row):
    predicted = prediction(row)
    measured = row["summary"]["peak_reserved_gib"]
    assert measured <= predicted.reserved_gib <= measured * 1.25
    nvml = max(row["first"]["nvml_peak_gib"], row.get("resumed", {}).get("nvml_peak_gib", 0))
    assert nvml <= predicted.nvidia_smi_gib * 1.02 and predicted.nvidia_smi_gib <= nvml * 1.15


@pytest.mark.parametrize("row", rows(HELD_OUT), ids=lambda r: f"{r['case']}-{r['arch']}")
def test_a_held_out_architecture_lands_within_ten_per_cent(row):
    predicted = prediction(row)
    pairs = [
        (predicted.reserved_gib, row["summary"]["peak_reserved_gib"]),
        (predicted.nvidia_smi_gib, row["first"]["nvml_peak_gib"]),
        (predicted.cpu_ram_gib, row["first"]["cpu_used_above_start_gib"]),
    ]
    for planned, measured in pairs:
        assert abs(planned / measured - 1) <= 0.10, (planned, measured)


def test_offloaded_cpu_memory_covers_saving_and_resuming():
    offloaded = [r for r in rows() if r["case"] == "zero3-offload-full"]
    assert len(offloaded) >= 2  # one resumed from its epoch checkpoint, one from its stop
    for row in offloaded:
        predicted = prediction(row).cpu_ram_gib
        measured = max(
            row["first"]["cpu_used_above_start_gib"],
            row.get("resumed", {}).get("cpu_used_above_start_gib", 0),
        )
        assert measured * 0.999 <= predicted <= measured * 1.10


def test_every_launched_case_is_valid_settings_the_plan_fits_on_an_80_gb_card():
    """The launched benchmark's cases (issue 31's two-GPU ones among them) build valid
    settings and the plan puts each GPU's share under an 80 GB card: a GPU call cannot be
    lost to a typo in a case."""
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))
    from backends import ARCHS, arch_config
    from launched_one_gpu import CASES

    from finetune_tui.engine.inspect.models import inspect_config

    two_gpu = [case for case in CASES if case.startswith("2gpu")]
    assert len(two_gpu) == 4
    for case, (arch, overrides) in CASES.items():
        if ARCHS[arch] is None:
            continue  # the demo model: cpu-smoke
        settings = with_changes(
            load_preset(REPO / "presets" / "full-zero3-offload.yaml"),
            {"model.name_or_path": ARCHS[arch], **overrides},
        )
        peak = predict_memory(inspect_config(ARCHS[arch], arch_config(arch)), settings)
        assert peak.nvidia_smi_gib < 78, (case, peak.nvidia_smi_gib)
        assert (settings.distributed.processes == 2) == (case in two_gpu)
