"""A resumed run trains on the data and model it started with, or says why not in one line.

The run in these tests was started from a folder with a relative `data.jsonl` and a
relative model folder `model/`, then stopped; it is resumed from elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import DEMO_PRESET, cli_command, cli_env, set_args
from test_nothing_lost import one_line_error, tree

from finetune_tui.engine.runs.summary import read_summary

STEPS = set_args(
    "training.max_steps=6",
    "training.save_steps=1",
    "training.exact_match_samples=0",
    "dataset.eval_fraction=0",
    "training.logging_steps=1",
    "training.micro_batch_size=8",
)
RELATIVE = set_args("dataset.path=data.jsonl", "model.name_or_path=model")

# one worker runs the whole module: its stopped run (a subprocess trained and stopped) is then
# made once, not once per pytest-xdist worker that happens to get one of these tests
pytestmark = pytest.mark.xdist_group("resume-inputs")


def cli(tmp_path: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        cli_command(*args),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=cli_env(tmp_path),
        timeout=600,
    )


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> Path:
    """A demo run started in `start/` on relative inputs, stopped by SIGTERM after step 2."""
    root = tmp_path_factory.mktemp("inputs")
    start = root / "start"
    start.mkdir()
    demo_data = (
        Path(__file__).resolve().parent.parent / "engine" / "common" / "assets" / "demo.jsonl"
    )
    lines = demo_data.read_text().splitlines(keepends=True)
    (start / "data.jsonl").write_text("".join(lines[:400]))
    code = (
        "from finetune_tui.engine.common.demo import ensure_demo_model; print(ensure_demo_model())"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(root)
    )
    shutil.copytree(found.stdout.strip(), start / "model")
    run_dir = root / "run"
    proc = subprocess.Popen(
        cli_command("--preset", str(DEMO_PRESET), "--output", str(run_dir), *STEPS, *RELATIVE),
        cwd=start,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(root),
    )
    seen = 0
    for line in proc.stdout:
        seen += line.startswith("step ")
        if seen == 2:
            proc.send_signal(signal.SIGTERM)
            break
    proc.communicate(timeout=300)
    assert proc.returncode == 143 and read_summary(run_dir).status == "stopped"
    return run_dir


@pytest.fixture
def in_process(cli):
    """conftest's `cli` fixture (main() in this process); this module's cli() is a subprocess."""
    return cli


def copy_of(run_dir: Path, where: Path) -> Path:
    """The stopped run and its inputs, copied: its settings name the copies."""
    inputs = where / "inputs"
    shutil.copytree(run_dir.parent / "start", inputs)
    copy = where / "run"
    shutil.copytree(run_dir, copy)
    settings = yaml.safe_load((copy / "settings.yaml").read_text())
    settings["dataset"]["path"] = str(inputs / "data.jsonl")
    settings["model"]["name_or_path"] = str(inputs / "model")
    (copy / "settings.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    return copy


def test_a_run_names_its_inputs_by_absolute_path_with_a_fingerprint(stopped):
    start = stopped.parent / "start"
    saved = yaml.safe_load((stopped / "settings.yaml").read_text())
    assert saved["dataset"]["path"] == str(start / "data.jsonl")
    assert saved["model"]["name_or_path"] == str(start / "model")
    data = (start / "data.jsonl").read_bytes()
    assert saved["inputs"]["dataset"] == {
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    config = (start / "model" / "config.json").read_bytes()
    assert saved["inputs"]["model_config"] == hashlib.sha256(config).hexdigest()
    # a run's settings.yaml is still a preset for a new run (the fingerprint is not a setting)
    from finetune_tui.engine.settings.preset import load_preset

    assert load_preset(stopped / "settings.yaml").dataset.path == str(start / "data.jsonl")


@pytest.mark.parametrize(
    "change, named",
    [
        (lambda data: data.write_text(data.read_text() + data.read_text()[:120]), "changed"),
        (lambda data: data.write_text(data.read_text().replace("A", "B", 1)), "changed"),
        (lambda data: data.unlink(), "not found"),
        (lambda data: (data.parent / "model" / "config.json").write_text("{}"), "changed"),
    ],
    ids=["appended", "same-size-edit", "deleted", "model-config"],
)
def test_a_resume_whose_inputs_changed_stops_before_training(
    in_process, stopped, tmp_path, monkeypatch, change, named
):
    monkeypatch.chdir(tmp_path)
    run_dir = copy_of(stopped, tmp_path)
    change(tmp_path / "inputs" / "data.jsonl")
    before = tree(run_dir)
    error = one_line_error(in_process("--resume", str(run_dir)))
    assert named in error and ("data.jsonl" in error or "config.json" in error), error
    assert tree(run_dir) == before


def test_a_run_saved_with_relative_paths_cannot_be_resumed_blindly(
    in_process, stopped, tmp_path, monkeypatch
):
    """Settings written before the rule: a relative path would be read from any folder."""
    run_dir = copy_of(stopped, tmp_path)
    settings = yaml.safe_load((run_dir / "settings.yaml").read_text())
    settings["dataset"]["path"] = "data.jsonl"
    del settings["inputs"]
    (run_dir / "settings.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    before = tree(run_dir)
    monkeypatch.chdir(tmp_path / "inputs")
    error = one_line_error(in_process("--resume", str(run_dir)))
    assert "dataset.path: 'data.jsonl' is relative" in error
    assert tree(run_dir) == before


def test_resume_from_another_folder_trains_on_the_runs_own_inputs(stopped, tmp_path):
    """The reported case: another folder holds a different data.jsonl and model/."""
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "model").mkdir(parents=True)  # not a model: loading it would fail
    (elsewhere / "data.jsonl").write_text("not the run's data\n")  # nor a dataset
    result = cli(tmp_path, elsewhere, "--resume", str(stopped))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resuming from" in result.stdout
    summary = read_summary(stopped)
    assert summary.status == "finished" and summary.step == 6
    saved = yaml.safe_load((stopped / "settings.yaml").read_text())
    assert saved["dataset"]["path"] == str(stopped.parent / "start" / "data.jsonl")


def test_a_damaged_fingerprint_is_named_not_skipped(in_process, stopped, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = copy_of(stopped, tmp_path)
    settings = yaml.safe_load((run_dir / "settings.yaml").read_text())
    settings["inputs"]["dataset"] = "abc"
    (run_dir / "settings.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    error = one_line_error(in_process("--resume", str(run_dir)))
    assert "inputs: damaged fingerprint" in error


def test_a_folder_dataset_is_fingerprinted_file_by_file(tmp_path):
    from finetune_tui.engine.settings.inputs import dataset_fingerprint

    folder = tmp_path / "saved"
    (folder / "train").mkdir(parents=True)
    (folder / "train" / "data-00000.arrow").write_bytes(b"rows")
    (folder / "dataset_dict.json").write_text("{}")
    first = dataset_fingerprint(folder)
    assert first == dataset_fingerprint(folder) and first["bytes"] == 6
    (folder / "train" / "data-00000.arrow").write_bytes(b"ROWS")
    changed = dataset_fingerprint(folder)
    (folder / "train" / "data-00000.arrow").rename(folder / "train" / "data-00001.arrow")
    assert len({first["sha256"], changed["sha256"], dataset_fingerprint(folder)["sha256"]}) == 3


# --- a model that loading would refuse is found before the run folder exists -----------


def _lying_config(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] *= 2  # the safetensors still hold the original shapes
    (folder / "config.json").write_text(json.dumps(config))


def _missing_shard(folder: Path, name: str = "model-00002-of-00002.safetensors") -> None:
    (folder / "model.safetensors").rename(folder / "model-00001-of-00002.safetensors")
    weight_map = {"model.embed_tokens.weight": "model-00001-of-00002.safetensors"}
    weight_map["lm_head.weight"] = name
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


@pytest.mark.parametrize(
    "damage, overrides, named",
    [
        (None, ["lora.target_modules=[q_proj,qkv]"], "'qkv' names no module"),
        (None, ["lora.target_modules=[mlp]"], "LlamaMLP modules of demo, which LoRA cannot"),
        (_lying_config, [], "down_proj.weight has shape [128, 344]"),
        (_missing_shard, [], "names model-00002-of-00002.safetensors, which"),
        (lambda f: _missing_shard(f, "../elsewhere.safetensors"), [], "outside the model folder"),
    ],
    ids=["unknown-target", "container-target", "shapes-lie", "missing-shard", "shard-outside"],
)
def test_model_problems_loading_would_meet_are_one_line_before_the_run_exists(
    tmp_path, monkeypatch, capsys, damage, overrides, named
):
    from finetune_tui.engine.common.demo import ensure_demo_model
    from finetune_tui.main import main

    monkeypatch.chdir(tmp_path)
    args = set_args(*overrides, "training.max_steps=1", "training.exact_match_samples=0")
    if damage is not None:
        shutil.copytree(ensure_demo_model(), tmp_path / "model")
        damage(tmp_path / "model")
        args += set_args("model.name_or_path=model")
    code = main(["--preset", str(DEMO_PRESET), "--output", "run", *args])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and named in lines[0], lines
    assert not (tmp_path / "run").exists()
