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


def test_key_value_heads_that_do_not_group_the_heads_are_refused_before_the_run(tmp_path):
    """transformers builds such a model and fails at the first step, the run folder made."""
    import json

    folder, _ = _damaged_copy(tmp_path, lambda b: b)
    config = json.loads((folder / "config.json").read_text())
    config["num_key_value_heads"] = config["num_attention_heads"] - 1
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="key/value heads do not divide the"):
        check_run_inputs(settings_from_overrides([f"model.name_or_path={folder}"]))


def test_an_intact_copy_of_the_demo_model_passes(tmp_path):
    folder, _ = _damaged_copy(tmp_path, lambda b: b)
    check_run_inputs(settings_from_overrides([f"model.name_or_path={folder}"]))


def test_a_tokenizer_that_reads_its_files_as_nothing_is_refused(tmp_path):
    """transformers 5 loads Qwen2Tokenizer for a qwen2 config whatever tokenizer_config.json
    names; over the demo's byte-fallback files it encodes every text as no tokens, and the
    run would train on nothing with a loss of 0. The record that showed it is named."""
    import json

    from finetune_tui.engine.data.reading import Record
    from finetune_tui.engine.train.loading import load_tokenizer
    from finetune_tui.engine.train.preflight import check_tokenizer_reads

    folder = tmp_path / "qwen-config"
    shutil.copytree(ensure_demo_model(), folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="qwen2", architectures=["Qwen2ForCausalLM"])
    (folder / "config.json").write_text(json.dumps(config))
    settings = settings_from_overrides([f"model.name_or_path={folder}"])
    records = [Record(None, "data.jsonl:1", "bad"), Record({"text": "hi there"}, "data.jsonl:2")]
    tokenizer = load_tokenizer(str(folder), settings)
    with pytest.raises(ModelError) as error:
        check_tokenizer_reads(settings, tokenizer, records)
    assert str(error.value) == (
        f"{folder}: its tokenizer (Qwen2Tokenizer) turns data.jsonl:2's text into no tokens; "
        "the tokenizer files do not fit the class loaded for this model type: use the "
        "model's own tokenizer files"
    )
    # the same files under the demo's own (llama) config read back
    demo = load_tokenizer(str(ensure_demo_model()), settings)
    check_tokenizer_reads(settings_from_overrides([]), demo, records)


def test_a_domain_tokenizer_is_probed_with_its_own_data():
    """A tokenizer of four letters (a DNA model's) knows none of English but all of its
    data: it passes on its records, and text it cannot read at all is refused."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from finetune_tui.engine.data.reading import Record
    from finetune_tui.engine.train.preflight import check_tokenizer_reads

    vocab = {"A": 0, "C": 1, "G": 2, "T": 3, "[UNK]": 4}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    letters = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    settings = settings_from_overrides([])
    check_tokenizer_reads(settings, letters, [Record({"text": "ACGTTGCA"}, "dna.jsonl:1")])
    with pytest.raises(ModelError, match=r"turns notes\.jsonl:1's text into unknown tokens"):
        check_tokenizer_reads(settings, letters, [Record({"text": "hello"}, "notes.jsonl:1")])
