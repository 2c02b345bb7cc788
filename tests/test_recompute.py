"""What checkpointing keeps beyond the layer terms (engine/plan/recompute.py), per family, as
the CPU traces found it, and the GPU rows it was set against."""

from __future__ import annotations

import pytest

from finetune_tui.engine.inspect.library_tables import scales_input_embeddings
from finetune_tui.engine.inspect.models import inspect_model
from finetune_tui.engine.plan.recompute import recompute_extra_h
from finetune_tui.engine.settings.preset import settings_from_overrides


@pytest.mark.parametrize(
    "model_id, quantization, targets, expected",
    [
        ("meta-llama/Llama-3.2-1B", "none", "auto", 16.0),  # gated MLP adapted
        ("microsoft/Phi-3-mini-4k-instruct", "none", "auto", 16.0),  # fused gate_up too
        ("EleutherAI/pythia-1b", "none", "auto", 0.0),  # a two-linear MLP
        ("mistralai/Mixtral-8x7B-v0.1", "none", "auto", 4.0),  # attention alone
        ("meta-llama/Llama-3.2-1B", "none", "[q_proj,v_proj]", 4.0),
        ("meta-llama/Llama-3.2-1B", "nf4", "auto", 0.0),  # 16-bit adapters share one copy
        ("ibm-granite/granite-3.3-8b-instruct", "nf4", "auto", 2.0),  # scaled embeddings
        ("ibm-granite/granite-3.3-8b-instruct", "none", "auto", 18.0),
    ],
)
def test_checkpointing_keeps_what_the_traces_found(model_id, quantization, targets, expected):
    settings = settings_from_overrides(
        [f"quantization.mode={quantization}", f"lora.target_modules={targets}", "memory.backend=hf"]
    )
    assert recompute_extra_h(inspect_model(model_id), settings) == expected


def test_which_families_scale_their_embeddings_is_read_from_transformers():
    assert scales_input_embeddings("granite") and scales_input_embeddings("granitemoe")
    assert not any(map(scales_input_embeddings, ("llama", "smollm3", "olmo3", "qwen2")))
    assert not scales_input_embeddings("not a family")


def test_no_family_has_a_reserve_factor_of_its_own():
    """Granite, SmolLM3 and OLMo-3 were planned 5-11.5 % low and carried a measured factor;
    the traces explained them (fp32 adapters, Granite's embeddings, OLMo-3's norms), and the
    family matrix's rows hold without one (tests/test_family_matrix.py)."""
    from finetune_tui.engine.plan import memory

    assert not hasattr(memory, "RESERVE_FACTOR")
    assert memory.EXTRA_ACT_H["olmo3"] == 20.0
