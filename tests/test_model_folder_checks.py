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
