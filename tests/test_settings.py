"""The settings schema and preset loading: defaults, overrides, located errors."""

from __future__ import annotations

import pytest

from finetune_tui.engine.common.errors import SettingsError
from finetune_tui.engine.settings.overrides import apply_overrides, validate_settings
from finetune_tui.engine.settings.preset import dump_preset, load_preset, settings_from_overrides
from finetune_tui.engine.settings.schema import TrainSettings


def write(tmp_path, text: str):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


def test_defaults_are_valid_and_round_trip_through_yaml(tmp_path):
    settings = TrainSettings()
    path = write(tmp_path, dump_preset(settings))
    assert load_preset(path) == settings


def test_empty_preset_means_defaults(tmp_path):
    assert load_preset(write(tmp_path, "")) == TrainSettings()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lora:\n  r: 0\n", "p.yaml:2: lora.r: must be > 0"),
        (
            "lora:\n  r: 8\n  alhpa: 3\n",
            "p.yaml:3: lora.alhpa: unknown key (did you mean 'alpha'?)",
        ),
        ("trainig:\n  seed: 1\n", "p.yaml:1: trainig: unknown key (did you mean 'training'?)"),
        # a key that is no identifier: named as typed, on its own line (was an IndexError,
        # or the section named with the section suggested)
        (
            "training:\n  learning-rate: 0.001\n",
            "p.yaml:2: training.learning-rate: unknown key (did you mean 'learning_rate'?)",
        ),
        ("my-section:\n  r: 1\n", "p.yaml:1: my-section: unknown key"),
        (
            "training:\n  micro_batch_size: many\n",
            "p.yaml:2: training.micro_batch_size: must be an integer",
        ),
        (
            "quantization:\n  mode: 3bit\n",
            "p.yaml:2: quantization.mode: must be one of 'none', '8bit', 'nf4' or 'fp4'",
        ),
        ("memory: [1, 2]\n", "p.yaml:1: memory: must be a section (mapping), got a list"),
        ("dataset:\n  eval_fraction: 0.7\n", "p.yaml:2: dataset.eval_fraction: must be < 0.5"),
        # checks across fields name their field and its line too
        (
            "memory:\n  backend: liger\n  gradient_checkpointing: unsloth\n",
            "p.yaml:3: memory.gradient_checkpointing: 'unsloth' needs memory.backend: unsloth",
        ),
        (
            "distributed:\n  processes: 2\n",
            "p.yaml:1: distributed.strategy: several processes need ddp, fsdp or deepspeed",
        ),
        (
            "quantization:\n  mode: nf4\ntraining:\n  method: full\n",
            "p.yaml:4: training.method: full fine-tuning trains every weight in 16-bit",
        ),
        # was silently ignored: nothing held out to evaluate
        (
            "dataset:\n  eval_fraction: 0\ntraining:\n  eval_steps: 5\n",
            "p.yaml:4: training.eval_steps: no records are held out to evaluate",
        ),
    ],
)
def test_bad_values_name_file_line_and_field(tmp_path, text, expected):
    with pytest.raises(SettingsError) as err:
        load_preset(write(tmp_path, text))
    assert str(err.value).startswith(f"{tmp_path}/{expected}")
    assert "\n" not in str(err.value)


def test_several_errors_are_counted_on_one_line(tmp_path):
    with pytest.raises(SettingsError, match=r"\(and 1 more\)$"):
        load_preset(write(tmp_path, "lora:\n  r: 0\n  alpha: 0\n"))


def test_invalid_yaml_and_non_mapping_and_missing_file(tmp_path):
    with pytest.raises(SettingsError, match=r"p.yaml:3: invalid YAML: mapping values are not"):
        load_preset(write(tmp_path, "lora:\n  r: 8\n  alpha: 4: 5\n"))
    with pytest.raises(SettingsError, match="p.yaml:1: a preset must be a mapping"):
        load_preset(write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(SettingsError, match="nope.yaml: preset file not found"):
        load_preset(tmp_path / "nope.yaml")


def test_yaml_is_loaded_safely(tmp_path):
    with pytest.raises(SettingsError, match="invalid YAML"):
        load_preset(write(tmp_path, "model: !!python/object/apply:os.system ['true']\n"))


def test_overrides_parse_values_as_yaml_and_validate(tmp_path):
    path = write(tmp_path, "lora:\n  r: 8\n")
    settings = load_preset(
        path, ["lora.r=32", "training.learning_rate=1e-3", "memory.packing=true"]
    )
    assert settings.lora.r == 32
    assert settings.training.learning_rate == 1e-3
    assert settings.memory.packing is True
    with pytest.raises(SettingsError, match=r"^--set: lora.r: must be > 0"):
        settings_from_overrides(["lora.r=-1"])
    with pytest.raises(SettingsError, match="expected KEY=VALUE"):
        apply_overrides({}, ["lora.r"])
    with pytest.raises(SettingsError, match="lora.r is not a section"):
        apply_overrides({"lora": {"r": 1}}, ["lora.r.x=1"])


def test_unsloth_checkpointing_needs_unsloth_backend():
    with pytest.raises(SettingsError, match="needs memory.backend: unsloth"):
        validate_settings({"memory": {"gradient_checkpointing": "unsloth"}})
    ok = validate_settings({"memory": {"gradient_checkpointing": "unsloth", "backend": "unsloth"}})
    assert ok.memory.backend == "unsloth"


def test_every_field_is_documented():
    """Descriptions are the help text of the TUI form: none may be missing."""
    for section_name, section in TrainSettings.model_fields.items():
        for name, field in section.annotation.model_fields.items():
            assert field.description, f"{section_name}.{name} has no description"


def test_shipped_presets_validate():
    from importlib.resources import files

    presets = [p for p in files("finetune_tui.presets").iterdir() if p.name.endswith(".yaml")]
    assert presets, "no presets shipped"
    for preset in presets:
        load_preset(str(preset))


def test_yaml_on_off_means_checkpointing_on_off(tmp_path):
    """YAML 1.1 reads bare on/off as booleans; users mean the option's values."""
    assert (
        load_preset(
            write(tmp_path, "memory:\n  gradient_checkpointing: on\n")
        ).memory.gradient_checkpointing
        == "on"
    )
    assert (
        settings_from_overrides(["memory.gradient_checkpointing=off"]).memory.gradient_checkpointing
        == "off"
    )


@pytest.mark.parametrize(
    ("preset", "card"),
    [
        ("gemma2-9b-8gb-qlora", "RTX 4060"),
        ("unsloth-llama31-8b-24gb", "RTX 4090"),
        ("full-zero3-offload", "RTX 4090"),
        ("llama2-70b-fsdp-2x8", "A100 80GB"),
        ("dpo-llama31-8b-24gb-qlora", "RTX 4090"),
    ],
)
def test_the_source_systems_presets_plan_on_their_cards(preset, card, capsys):
    """Each shipped recipe plans for the card it was written for, keeping its method and
    distribution."""
    import json

    from conftest import REPO

    from finetune_tui.main import main

    path = REPO / "presets" / f"{preset}.yaml"
    settings = load_preset(path)
    code = main(
        ["plan", "--preset", str(path), "--model", settings.model.name_or_path, "--gpu", card]
        + ["--json"]
    )
    plan = json.loads(capsys.readouterr().out)
    assert code == 0 and plan["fits"], plan["reasons"]
    assert plan["settings"]["distributed"] == settings.distributed.model_dump()
    assert plan["settings"]["training"]["method"] == settings.training.method
    assert plan["settings"]["training"]["objective"] == settings.training.objective


def test_deepspeed_refuses_an_optimizer_it_does_not_run(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("training:\n  optimizer: adamw_8bit\ndistributed:\n  strategy: deepspeed\n")
    with pytest.raises(SettingsError, match=r"training.optimizer: deepspeed runs its own AdamW"):
        load_preset(preset)


@pytest.mark.parametrize("item", [".=1", ".lora=1", "lora.=1", "lora..r=1"])
def test_a_set_key_with_an_empty_part_is_one_line(item):
    from finetune_tui.engine.settings.overrides import apply_overrides

    with pytest.raises(SettingsError, match="expected KEY=VALUE"):
        apply_overrides({}, [item])


def test_a_yaml_merge_key_is_read_as_yaml_reads_it(tmp_path):
    """`<<: {...}` is YAML the safe loader takes; the duplicate-key check refused it."""
    settings = load_preset(write(tmp_path, "lora:\n  <<: {r: 8, alpha: 3}\n  alpha: 16\n"))
    assert (settings.lora.r, settings.lora.alpha) == (8, 16)
    with pytest.raises(SettingsError, match="given twice"):
        load_preset(write(tmp_path, "lora:\n  <<: {r: 8}\n  alpha: 16\n  alpha: 4\n"))
