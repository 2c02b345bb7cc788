"""A model folder's weights are checked before a run folder exists: a damaged safetensors
file is one line naming the file, whatever the damage."""

from __future__ import annotations

import shutil

import pytest

from finetune_tui.engine.common.demo import ensure_demo_model
from finetune_tui.engine.common.errors import ModelError
from finetune_tui.engine.settings.preset import settings_from_overrides
from finetune_tui.engine.train.preflight import check_run_inputs


def _damaged_copy(tmp_path, damage):
    folder = tmp_path / "model"
    shutil.copytree(ensure_demo_model(), folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    return folder, weights


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda b: b[:5], "truncated safetensors file"),
        (lambda b: b[: len(b) // 2], "truncated safetensors file"),
        (lambda b: b[:8] + b"{" * (len(b) - 8), "corrupt safetensors header"),
        (lambda b: (2**40).to_bytes(8, "little") + b[8:], "corrupt safetensors header"),
    ],
    ids=["no-length", "half", "not-json", "huge-length"],
)
def test_a_damaged_safetensors_file_is_one_line_before_anything_is_written(
    tmp_path, damage, problem
):
    folder, weights = _damaged_copy(tmp_path, damage)
    settings = settings_from_overrides([f"model.name_or_path={folder}"])
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ModelError) as error:
        check_run_inputs(settings)
    assert str(error.value) == f"{weights}: {problem}"
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_an_intact_copy_of_the_demo_model_passes(tmp_path):
    folder, _ = _damaged_copy(tmp_path, lambda b: b)
    check_run_inputs(settings_from_overrides([f"model.name_or_path={folder}"]))


def test_a_tokenizer_that_reads_its_files_as_nothing_is_refused(tmp_path):
    """transformers 5 loads Qwen2Tokenizer for a qwen2 config whatever tokenizer_config.json
    names; over the demo's byte-fallback files it encodes every text as no tokens, and the
    run would train on nothing with a loss of 0."""
    import json

    from finetune_tui.engine.train.loading import load_tokenizer
    from finetune_tui.engine.train.preflight import check_tokenizer_round_trip

    folder = tmp_path / "qwen-config"
    shutil.copytree(ensure_demo_model(), folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="qwen2", architectures=["Qwen2ForCausalLM"])
    (folder / "config.json").write_text(json.dumps(config))
    settings = settings_from_overrides([f"model.name_or_path={folder}"])
    tokenizer = load_tokenizer(str(folder), settings)
    with pytest.raises(ModelError) as error:
        check_tokenizer_round_trip(settings, tokenizer)
    assert str(error.value).startswith(f"{folder}: its tokenizer (Qwen2Tokenizer) turns ")
    assert "into no tokens" in str(error.value)
    # the same files under the demo's own (llama) config read back
    demo = load_tokenizer(str(ensure_demo_model()), settings)
    check_tokenizer_round_trip(settings_from_overrides([]), demo)
