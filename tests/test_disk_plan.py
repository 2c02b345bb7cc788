"""What a run saves, planned (engine/plan/disk.py) and checked before the run: a run whose
checkpoints would not fit is refused before its folder exists, not at a save hours in."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import DEMO_PRESET, FEW_RECORDS, call_main, copy_finished_run, set_args

from finetune_tui.engine.inspect.models import inspect_model
from finetune_tui.engine.plan import disk
from finetune_tui.engine.settings.preset import load_preset, settings_from_overrides

GIB = 2**30


def saved_bytes(folder, names) -> int:
    return sum((folder / name).stat().st_size for name in names)


def test_a_lora_checkpoint_and_adapter_weigh_what_the_plan_says(finished_template):
    """The demo on the CPU (fp32): adapter and optimizer state, as saved, against the plan
    less its allowance for the small files."""
    settings = load_preset(finished_template / "settings.yaml")
    model = inspect_model(settings.model.name_or_path)
    plan = disk.disk_plan(model, settings, 4.0, steps=4, steps_per_epoch=0)
    checkpoint = finished_template / "checkpoints" / "checkpoint-2"
    weighed = saved_bytes(checkpoint, ("adapter_model.safetensors", "optimizer.pt"))
    assert weighed == pytest.approx(plan.checkpoint - disk.small_files_bytes(model), rel=0.05)
    adapter = saved_bytes(finished_template / "adapter", ("adapter_model.safetensors",))
    assert adapter == pytest.approx(plan.final - disk.small_files_bytes(model), rel=0.05)
    whole = sum(f.stat().st_size for f in checkpoint.rglob("*") if f.is_file())
    assert weighed < whole <= plan.checkpoint
    assert plan.at_once == 2  # saves at steps 2 and 4, under a limit of 2


@pytest.mark.parametrize(
    "overrides, per_param",
    [
        ([], None),  # LoRA: fp32 adapters and their two fp32 moments
        (["training.method=full", "quantization.mode=none", "training.optimizer=adamw_torch"], 6),
        (["training.method=full", "quantization.mode=none", "distributed.strategy=deepspeed"], 14),
    ],
)
def test_a_checkpoint_holds_the_weights_state_and_master_copy_of_what_trains(overrides, per_param):
    """16-bit full fine-tuning keeps its moments in 16-bit (2 + 2 x 2 bytes); ZeRO-3 saves
    the 16-bit model, its fp32 master copy and fp32 moments (2 + 4 + 8): 34 GiB for
    Gemma-2-2B, what its run left on the GPU machine's disk beside the 5 GiB model."""
    model = inspect_model("google/gemma-2-2b")
    settings = settings_from_overrides(["model.name_or_path=google/gemma-2-2b", *overrides])
    checkpoint = disk.checkpoint_bytes(model, settings, 2.0) - disk.small_files_bytes(model)
    if per_param is None:
        assert checkpoint == 12 * model.lora_params(settings.lora.r)
    else:
        assert checkpoint == pytest.approx(per_param * model.params_total, rel=0.001)


@pytest.mark.parametrize(
    "saving, steps, at_once",
    [
        ([], 1000, 1),  # nothing scheduled: the checkpoint a stop writes
        (["training.save_steps=100"], 1000, 3),  # two kept and the one being written
        (["training.save_steps=100"], 150, 1),
        (["training.save_every_epoch=true", "training.save_total_limit=1"], 1000, 2),
    ],
)
def test_the_checkpoints_on_disk_at_once_follow_the_save_settings(saving, steps, at_once):
    settings = settings_from_overrides(saving)
    assert disk.checkpoints_at_once(settings, steps, steps_per_epoch=250) == at_once


def refuse_free(monkeypatch, free_bytes: float) -> None:
    monkeypatch.setattr(disk, "free_bytes", lambda folder: free_bytes)


def test_a_run_whose_saves_would_not_fit_is_refused_before_its_folder_exists(tmp_path, monkeypatch):
    refuse_free(monkeypatch, 1.5 * 2**20)
    run_dir = tmp_path / "run"
    args = set_args(FEW_RECORDS, "training.max_steps=4", "training.save_steps=1")
    result = call_main("--preset", str(DEMO_PRESET), "--output", str(run_dir), *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert f"output.dir: {run_dir} would hold up to" in lines[0]
    assert "3 checkpoints of" in lines[0]
    assert "1.5 MiB free" in lines[0] and "lower training.save_total_limit" in lines[0]
    assert not run_dir.exists()


def test_a_hub_model_still_to_download_counts_when_its_cache_shares_the_disk(tmp_path, monkeypatch):
    """The weights land in the Hugging Face cache before step 1: on the run folder's disk
    they take from the same room; a cache elsewhere, or weights already here, do not."""
    from huggingface_hub import constants

    from finetune_tui.engine.common.errors import InputError
    from finetune_tui.engine.train import disk_room

    hub = "Qwen/Qwen2.5-1.5B"
    settings = settings_from_overrides([f"model.name_or_path={hub}", "training.max_steps=4"])
    params = inspect_model(hub).params_total
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    saves = disk.disk_plan(inspect_model(hub), settings, 2.0, steps=4, steps_per_epoch=4).needed
    refuse_free(monkeypatch, saves + params)  # the saves fit; with the download they do not
    with pytest.raises(InputError) as refused:
        disk_room.check_new_run_room(settings, 100, tmp_path / "run")
    assert f"after the model's download, about {disk.size(2.0 * params)}" in str(refused.value)

    elsewhere = Path("/dev/shm")  # tmpfs: another disk than the test's folder, where there is one
    if elsewhere.is_dir() and elsewhere.stat().st_dev != tmp_path.stat().st_dev:
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(elsewhere / "ft-test-hub"))
        disk_room.check_new_run_room(settings, 100, tmp_path / "run")


def test_a_resumed_run_counts_the_checkpoints_it_will_replace(
    finished_template, tmp_path, monkeypatch
):
    """Resuming needs room for what is still to come, less the checkpoints the Trainer
    deletes as new ones are written; too little is one line, and nothing is changed."""
    run_dir = copy_finished_run(finished_template, tmp_path / "run")
    (run_dir / "summary.json").unlink()  # stopped before its end: what a resume is for
    settings = load_preset(run_dir / "settings.yaml")
    model = inspect_model(settings.model.name_or_path)
    plan = disk.disk_plan(model, settings, 4.0, steps=4, steps_per_epoch=0)
    kept = sum(f.stat().st_size for f in (run_dir / "checkpoints").rglob("*") if f.is_file())
    refuse_free(monkeypatch, plan.needed - kept - 1)
    before = sorted(p.name for p in run_dir.rglob("*"))
    result = call_main("--resume", str(run_dir))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"free beside {disk.size(kept)} of checkpoints" in result.stderr
    assert sorted(p.name for p in run_dir.rglob("*")) == before


def test_plan_says_what_the_saves_take():
    """Full fine-tuning of an 8 B model saving every 100 steps: three checkpoints of its
    16-bit weights and 8-bit moments (the embedding's in 32-bit), then the whole model."""
    import json

    args = ["--model", "meta-llama/Llama-3.1-8B", "--gpu", "H100", "--json"]
    args += set_args("training.method=full", "training.save_steps=100", "training.max_steps=1000")
    result = call_main("plan", *args)
    answer = json.loads(result.stdout)
    assert "3 checkpoints of" in answer["disk_text"] and "the whole model" in answer["disk_text"]
    assert 50 < answer["disk_gib"] < 150


def test_without_the_dataset_every_save_the_settings_ask_for_is_counted():
    """The shipped ZeRO-3 preset, planned before its dataset exists: a save every epoch,
    the last two kept, so three whole-model checkpoints at the fullest moment."""
    from finetune_tui.engine.plan.run_time import steps_of

    settings = load_preset(DEMO_PRESET.parent / "full-zero3-offload.yaml")
    assert steps_of(settings, None) == (1, 0)
    assert disk.checkpoints_at_once(settings, *steps_of(settings, None)) == 3


@pytest.mark.parametrize("state", ["[]", '{"max_steps": "x"}', "{}", '{"max_steps": 1e400}'])
def test_a_forged_trainer_state_never_breaks_the_resume_check(
    finished_template, tmp_path, monkeypatch, state
):
    from finetune_tui.engine.train.disk_room import check_resume_room

    run_dir = copy_finished_run(finished_template, tmp_path / "run")
    for checkpoint in (run_dir / "checkpoints").glob("checkpoint-*"):
        (checkpoint / "trainer_state.json").write_text(state)
    refuse_free(monkeypatch, 0)
    assert check_resume_room(load_preset(run_dir / "settings.yaml"), run_dir) is None


async def test_the_wizard_start_is_refused_in_one_line_when_the_saves_would_not_fit(
    tmp_path, monkeypatch
):
    """Start on the Train screen: the same refusal, in the run's log, and no run folder."""
    from test_tui import SIZE, demo_app

    from finetune_tui.tui.screens.train import TrainScreen

    refuse_free(monkeypatch, 2**20)
    app = demo_app("training.max_steps=4", tmp_path=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("6")
        while not isinstance(app.screen, TrainScreen):
            await pilot.pause(0.05)
        await pilot.press("s")
        await app.workers.wait_for_complete()
        await pilot.pause()
        log = "".join(str(line.text) for line in app.screen.query_one("#log").lines)
        words = log.replace(" ", "")  # the log wraps its lines where a space was
        assert "failed:output.dir:" in words and "wouldholdupto" in words, log
        assert "itsdiskhas1.0MiBfree" in words and "Traceback" not in log
        assert not app.screen.running
    assert not (tmp_path / "run").exists()
