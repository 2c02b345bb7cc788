"""The family matrix measured on an H200 (benchmarks/families.py, committed rows): what the
planner predicts today for each run that trained stays within the goal of
docs/BENCHMARKS.md, on the safe side, for the config each row was built from."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import pytest

from finetune_tui.engine.inspect.models import inspect_config

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
RESULTS = BENCHMARKS / "results"
sys.path.insert(0, str(BENCHMARKS))
from backends import ARCHS as BENCH_ARCHS  # noqa: E402  (the benchmarks' architectures)
from families import predicted_reserved  # noqa: E402  (the table in docs/BENCHMARKS.md)

FILES = (
    "families-h200-2026-12-04.jsonl",
    "families-before-target-fix-h200-2026-12-04.jsonl",
    "families-newer-h200-2026-12-05.jsonl",
    "families-moe-liger-h200-2026-12-05.jsonl",
    "families-qwen-bf16-sft-h100-2026-12-05.jsonl",  # H100: 16-bit LoRA at b2 and b4
    "families-twolinear-trace-h100-2026-12-06.jsonl",  # H100: Pythia, StarCoder2 NF4 b1-b4, traced
    "families-head-tile-trace-h100-2026-12-06.jsonl",  # H100: NF4 b1 and b4 of four, traced
    # H100: Qwen3.5-9B and -27B cut to 4 layers; their layer terms came from CPU traces
    "families-qwen3_5-h100-2026-12-06.jsonl",
    "families-qwen3_5_moe-h200-2026-12-06.jsonl",  # H200: Qwen3.5-35B-A3B cut to 4 layers
    "families-qwen3_next-h100-2026-12-06.jsonl",  # H100: Qwen3-Next-80B-A3B cut, hf NF4 only
    # H100: Gemma-4 (4-layer cut of E2B, both towers), Llama-4-Scout's 2-layer cut (b4: its
    # fitted rows), Qwen3-Next under Liger (16-bit; the NF4 cell ran out its 200 s)
    "families-gemma4-llama4-h100-2026-12-06.jsonl",
    # H100: Llama-4-Scout's cut at b2 and b8 (its terms held out), Qwen3-Next Liger NF4
    "families-llama4-batches-h100-2026-12-06.jsonl",
    "families-qwen3_next-liger-h100-2026-12-06.jsonl",
)
# Families whose rows fitted a constant of engine/plan/memory.py: today's (StarCoder2's two-linear
# MLP, Phi-3-mini's fused gate_up, Falcon's attention scores) and the earlier calibrations'
# (Llama-3.2-1B and Gemma-2-2B; the mixtures of experts). The rest are held out.
FITTED = {
    "starcoder2-3b-8l",
    "phi-3-mini",
    "falcon-7b-8l",
    "llama-3.2-1b",
    "gemma-2-2b",
    "mixtral-8x7b-2l",
    "olmoe-1b-7b-4l",
    "qwen3-30b-a3b-4l",
    "deepseek-v2-lite-4l",
    # explained after their rows were seen, by CPU traces (16-bit LoRA's fp32 adapters under
    # checkpointing, Granite's scaled embeddings, OLMo-3's norms): not held out
    "granite-3.3-8b-instruct-4l",
    "olmo-3-1025-7b-4l",
    "smollm3-3b-4l",
    # its 2-layer cut's loading trace set how much of the stacking a 2-layer MoE keeps
    "phi-3.5-moe-2l",
    # its b4 rows fitted the every-expert matmuls' terms (plan/every_expert_bytes.py)
    "llama-4-scout-2l",
}


# Rows that trained with another adapter than "auto" makes today, by file and family: the
# plan of today's adapter is not theirs to check. Any other row whose adapter differs fails
# test_no_row_is_left_out_unexplained (a run-time "auto" drifting from the plan is a defect).
OTHER_ADAPTER = {
    # every routed expert adapted (41.5 M parameters) before "auto" left PEFT's moved names out
    ("families-h200-2026-12-04.jsonl", "deepseek-v2-lite-4l"),
    # the first router rule of session 22 took the k/v projections (512 wide beside 512
    # experts) for routers: 81,920 parameters short; fixed the same session
    ("families-gemma4-llama4-h100-2026-12-06.jsonl", "qwen3-next-80b-a3b-4l"),
    ("families-qwen3_next-liger-h100-2026-12-06.jsonl", "qwen3-next-80b-a3b-4l"),
}


def committed_rows() -> list[tuple[str, dict]]:
    """(file, row) of every run that trained and measured its peak."""
    rows = [(f, json.loads(line)) for f in FILES for line in (RESULTS / f).read_text().splitlines()]
    return [
        (f, row)
        for f, row in rows
        if row.get("ok") and row.get("summary", {}).get("peak_reserved_gib")
    ]


def same_adapter(row: dict) -> bool:
    rank = int(row["settings"]["lora.r"])
    return row["summary"].get("trainable_params") == model_of(row).lora_params(rank)


def trained_rows() -> list[dict]:
    """Rows that trained with a backend the plan still offers for their family and the
    adapter "auto" makes today (OTHER_ADAPTER: the rows that did not, and why)."""
    return [
        row
        for _, row in committed_rows()
        if model_of(row).supported_backends.get(row["backend"]) is None and same_adapter(row)
    ]


def test_no_row_is_left_out_unexplained():
    """A row whose adapter differs from today's plan is one OTHER_ADAPTER names: the
    Qwen3-Next rows of session 22 were dropped silently while a run-time rule was wrong."""
    other = {(f, row["family"]) for f, row in committed_rows() if not same_adapter(row)}
    assert other == OTHER_ADAPTER


def model_of(row: dict):
    return inspect_config(row["catalog"], row["config"])


def error(row: dict) -> float:
    return predicted_reserved(row) / row["summary"]["peak_reserved_gib"] - 1


ROWS = trained_rows()
HELD_OUT = [r for r in ROWS if r["family"] not in FITTED]


@pytest.mark.parametrize("row", HELD_OUT, ids=lambda r: f"{r['family']} {r['label']}")
def test_a_held_out_run_is_never_planned_more_than_five_percent_low(row):
    assert error(row) >= -0.05


def test_held_out_families_are_planned_within_the_goal():
    errors = [abs(error(r)) for r in HELD_OUT]
    assert len({r["family"] for r in HELD_OUT}) >= 6
    assert statistics.median(errors) <= 0.03
    assert max(errors) <= 0.08


# Planned lower than the goal allows, found and not yet explained: Mixtral's Hugging Face
# expert loop at micro-batch 8 reserved 1.11x what it allocated (1.06x at 4); a term per token
# for it would over-plan every other MoE row (tried: +5 to +25 %).
KNOWN_LOW = {("mixtral-8x7b-2l", "hf bf16 b8"): -0.09}


@pytest.mark.parametrize(
    "row", [r for r in ROWS if r["family"] in FITTED], ids=lambda r: r["label"]
)
def test_a_fitted_run_is_planned_within_eight_percent_below(row):
    assert error(row) >= KNOWN_LOW.get((row["family"], row["label"]), -0.08)


def test_the_one_gpu_presets_trained_as_shipped_within_their_cards():
    """The one-GPU presets made for a card, each its architecture with random weights on an
    H200 capped at its own card less the card's CUDA context: they trained, and today's
    plan of each is right within the goal (Gemma-2-9B on 8 GB at sequence 1200, Unsloth
    Llama-3.1-8B on 24 GB; the ZeRO-3 offload preset is launched_one_gpu.py's rows)."""
    lines = (RESULTS / "presets-as-shipped-h200-2026-12-05.jsonl").read_text().splitlines()
    rows = [row for row in map(json.loads, lines) if "preset" in row]
    assert {row["preset"] for row in rows} == {
        "gemma2-9b-8gb-qlora.yaml",
        "unsloth-llama31-8b-24gb.yaml",
    }
    for row in rows:
        assert row["ok"] and row["summary"]["status"] == "finished"
        assert -0.05 <= error(row) <= 0.08, (row["preset"], error(row))


def test_liger_fused_experts_are_read_from_the_library_and_their_gradients_counted_once():
    """Liger's fused MoE backward writes a gradient for a layer's whole expert weights even
    when they are frozen: under liger the plan holds one layer's experts in 16-bit more at
    the peak, once whatever the checkpointing, for the families liger-kernel's own table
    gives LigerExperts (read from its source) and for no other."""
    from finetune_tui.engine.inspect.library_tables import liger_fused_expert_types
    from finetune_tui.engine.inspect.models import inspect_model
    from finetune_tui.engine.plan.memory import activation_bytes, fused_experts_grad_bytes
    from finetune_tui.engine.settings.preset import settings_from_overrides

    fused = liger_fused_expert_types()
    assert {"mixtral", "qwen3_moe", "deepseek_v2"} <= fused
    assert not fused & {"gpt_oss", "olmoe", "llama", "phimoe"}
    mixtral = inspect_model("mistralai/Mixtral-8x7B-v0.1")
    one_layer = mixtral.params_experts / mixtral.num_layers * 2
    assert one_layer / 2**30 == pytest.approx(2.62, abs=0.01)  # 8 x 3 x 4096 x 14336 x 2 bytes
    for checkpointing in ("on", "off"):

        def plan(backend, checkpointing=checkpointing):
            settings = settings_from_overrides(
                [f"memory.backend={backend}", f"memory.gradient_checkpointing={checkpointing}"]
            )
            return settings, activation_bytes(mixtral, settings)

        liger_settings, liger = plan("liger")
        assert fused_experts_grad_bytes(mixtral, liger_settings) == one_layer
        hf_settings, _ = plan("hf")
        assert fused_experts_grad_bytes(mixtral, hf_settings) == 0
        assert liger > one_layer
    olmoe = inspect_model("allenai/OLMoE-1B-7B-0924")
    assert fused_experts_grad_bytes(olmoe, liger_settings) == 0


def test_liger_keeps_the_inputs_of_gemmas_extra_norms_and_the_measure_rows_hold(monkeypatch):
    """`plan --measure`'s advised candidates on the GPU (Liger, NF4, b32 x 512, no
    checkpointing): Qwen2.5-1.5B on an H100 and Gemma-2-2B on an H200. Gemma's layer norms
    the attention's and MLP's outputs too, and Liger's RMSNorm keeps each input in 16-bit
    (2 x hidden bytes a token and layer each): counted, the Gemma row is within the goal (it
    was 6.3 % low); Qwen, with no such norms, is planned as when it was measured."""
    from finetune_tui.engine.inspect.models import inspect_model
    from finetune_tui.engine.plan import memory
    from finetune_tui.engine.plan.peak import predict_memory
    from finetune_tui.engine.settings.preset import settings_from_overrides

    settings = settings_from_overrides(
        [
            "training.max_seq_length=512",
            "training.micro_batch_size=32",
            "memory.backend=liger",
            "memory.gradient_checkpointing=off",
            "quantization.mode=nf4",
            "training.optimizer=adamw_8bit",
        ]
    )
    files = {
        "Qwen/Qwen2.5-1.5B": "measure-pick-qwen-h100-2026-12-05.jsonl",
        "google/gemma-2-2b": "measure-pick-h200-2026-12-05.jsonl",
    }
    planned = {}
    for model, name in files.items():
        rows = [json.loads(line) for line in (RESULTS / name).read_text().splitlines()]
        (row,) = [r for r in rows if r["model"] == model and not r.get("invalid")]
        advised = row["candidates"][0]
        planned[model] = predict_memory(inspect_model(model), settings, padded=False).reserved_gib
        error = planned[model] / advised["measured_gib"] - 1
        assert -0.05 <= error <= 0.08, (model, error)
    gemma, qwen = inspect_model("google/gemma-2-2b"), inspect_model("Qwen/Qwen2.5-1.5B")
    counted = [memory.activation_bytes(m, settings) for m in (gemma, qwen)]
    monkeypatch.setattr(memory, "SANDWICH_NORMS", {})
    tokens = 32 * 512 * gemma.num_layers
    added = counted[0] - memory.activation_bytes(gemma, settings)
    assert added == 2 * 2 * gemma.hidden_size * tokens
    assert counted[1] == memory.activation_bytes(qwen, settings)  # no such norms


def test_a_padding_mask_costs_the_copies_of_k_and_v_and_the_traced_rows_hold():
    """Samples of different lengths give sdpa a padding mask, and transformers then copies
    K and V to every head (grouped-query attention only without one) and sdpa keeps the
    mask in the query's dtype: the two Liger runs traced on grouped, real-length data
    (H200) were planned 6.6 and 8.8 % low without that, within the goal with it."""
    from run_time import CASES, case_settings, settings_of

    from finetune_tui.engine.inspect.models import inspect_model
    from finetune_tui.engine.plan.attention_bytes import masked_attention_bytes
    from finetune_tui.engine.plan.peak import predict_memory

    rows = (RESULTS / "traced-liger-gemma9b-llama8b-h200-2026-12-06.jsonl").read_text()
    traced = [r for r in map(json.loads, rows.splitlines()) if "case" in r]
    assert len(traced) == 2
    for row in traced:
        arch = CASES[row["case"]][0]
        settings = settings_of(case_settings(row["case"], Path("/m"), Path("/d.jsonl"), 64))
        model = inspect_model(BENCH_ARCHS[arch])
        padded = predict_memory(model, settings).reserved_gib / row["peak_reserved_gib"] - 1
        unpadded = predict_memory(model, settings, padded=False)
        assert -0.05 <= padded <= 0.08, (row["case"], padded)
        assert unpadded.reserved_gib / row["peak_reserved_gib"] - 1 < -0.06
        t = settings.training
        heads = model.num_heads - model.num_kv_heads
        per_layer = t.micro_batch_size * t.max_seq_length * 2 * 2 * heads * model.head_dim
        per_layer += 2 * t.micro_batch_size * t.max_seq_length**2
        assert masked_attention_bytes(model, settings, 2) == per_layer
    llama = inspect_model(BENCH_ARCHS["llama-3.1-8b"])

    def extra(*overrides: str) -> float:
        from finetune_tui.engine.settings.preset import settings_from_overrides

        return masked_attention_bytes(llama, settings_from_overrides(list(overrides)), 2)

    assert extra("training.micro_batch_size=1") == 0  # one sample is never padded
    assert extra("training.micro_batch_size=1", "training.objective=dpo") > 0  # a pair is
    assert extra("memory.packing=true") == 0  # its block mask: packing_mask_bytes
    assert extra("model.attn_implementation=flash_attention_2") == 0
    assert extra("training.micro_batch_size=1", "model.attn_implementation=eager") > 0


DROPOUT_ROWS = "families-lora-dropout-h100-2026-12-06.jsonl"  # H100, 4 families side by side


def test_lora_dropout_is_planned_as_measured():
    """LoRA dropout 0.05 (NF4, b4 x 1,024; hf, liger, unsloth; with and without checkpointing;
    16-bit too) beside the same cells at 0: the plan stays within its band on the safe
    side. Planned without the dropout term, the uncheckpointed cells were 19-26 % low."""
    lines = (RESULTS / DROPOUT_ROWS).read_text().splitlines()
    rows = [row for row in map(json.loads, lines) if row.get("ok")]
    dropped = [row for row in rows if row["settings"].get("lora.dropout") == "0.05"]
    assert len(rows) == 30 and len(dropped) == 20
    for row in rows:
        assert -0.05 <= error(row) <= 0.09, (row["family"], row["label"], error(row))
    uncheckpointed = [r for r in dropped if r["settings"]["memory.gradient_checkpointing"] == "off"]
    assert len(uncheckpointed) == 10
    assert statistics.median(abs(error(r)) for r in uncheckpointed) <= 0.035


def test_lora_dropout_keeps_a_copy_and_a_mask_of_each_adapted_input():
    """Per token and layer over NF4 (Llama's widths, every projection adapted): a 16-bit copy
    and a 1-byte mask of each adapted linear's input, less the three inputs only lora_A kept
    (the two normed ones, the MLP's product); o_proj's input stays with the attention.
    16-bit weights: the mask only. Full fine-tuning or dropout 0: nothing."""
    from finetune_tui.engine.inspect.models import inspect_model
    from finetune_tui.engine.plan.lora_dropout import dropout_bytes_per_token
    from finetune_tui.engine.settings.preset import settings_from_overrides

    llama = inspect_model("meta-llama/Llama-3.2-1B")
    h, i = llama.hidden_size, llama.intermediate_size

    def per_token(*overrides):
        settings = settings_from_overrides(["model.name_or_path=demo", *overrides])
        return dropout_bytes_per_token(llama, settings, 2)

    assert per_token("lora.dropout=0.05", "quantization.mode=nf4") == 11 * h + 3 * h + i
    assert per_token("lora.dropout=0.05", "quantization.mode=none") == 6 * h + i
    assert per_token("lora.dropout=0", "quantization.mode=nf4") == 0
    assert per_token("lora.dropout=0.05", "training.method=full", "quantization.mode=none") == 0
    only_down = per_token(
        "lora.dropout=0.05", "quantization.mode=nf4", "lora.target_modules=[down_proj]"
    )
    assert only_down == i  # its copy and mask (3 bytes) less its freed input (2)
