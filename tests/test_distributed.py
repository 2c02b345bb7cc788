"""Several processes on CPU (gloo): accelerate launches the workers, rank 0 owns the run."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest
from conftest import DEMO_PRESET, FEW_RECORDS, call_main, read_until, run_cli, set_args, start_cli
from test_resume import step_losses

from finetune_tui.engine.runs.checkpoints import last_complete_checkpoint
from finetune_tui.engine.runs.pid import read_pid
from finetune_tui.engine.runs.summary import read_summary

STEPS = set_args(
    FEW_RECORDS,
    "training.max_steps=8",
    "training.save_steps=4",
    "training.exact_match_samples=0",
    "dataset.eval_fraction=0",
    "training.logging_steps=1",
)
TWO_PROCESSES = set_args("distributed.strategy=ddp", "distributed.processes=2")
REENTRANT_PAIRS = ("memory.gradient_checkpointing=on", "memory.use_reentrant=true")
REENTRANT = set_args(*REENTRANT_PAIRS)
FAILING_LOAD = set_args("model.attn_implementation=flash_attention_2")  # not installed


@pytest.fixture(autouse=True)
def cpu_machine(monkeypatch):
    """The machine is a CPU one whatever this one holds: CUDA is hidden from every process
    started here (the launch, its workers, the exported script's) and from this one."""
    import torch

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def launch_failure(stderr: str) -> str:
    """What a failed launch said before the launcher's own traceback: the worker's error."""
    cut = stderr.find("Traceback (most recent call last)")
    head = stderr[:cut] if cut > 0 else stderr
    return head[-3000:] + "\n...\n" + stderr[-800:]


def demo_run(tmp_path, run_dir, *args):
    """The demo preset trained headless into run_dir."""
    return run_cli(tmp_path, "--preset", str(DEMO_PRESET), "--output", str(run_dir), *args)


@pytest.mark.xdist_group("launch")  # launches take turns: see pyproject addopts
def test_two_processes_train_as_one_with_the_same_global_batch_and_resume_after_ctrl_c(
    tmp_path,
):
    # the reference: one process, micro-batch 32 x 2 accumulated = 2 processes x 32; both
    # with reentrant checkpointing, which DDP's search for unused LoRA weights failed at step 1
    one = tmp_path / "one"
    accumulated = [*set_args("training.gradient_accumulation_steps=2"), *REENTRANT]
    result = call_main("--preset", str(DEMO_PRESET), "--output", str(one), *STEPS, *accumulated)
    assert result.returncode == 0, result.stderr[-2000:]
    expected = step_losses(one)

    two = tmp_path / "two"
    proc = start_cli(
        tmp_path, "--preset", str(DEMO_PRESET), "--output", str(two), *STEPS, *TWO_PROCESSES,
        *REENTRANT,
    )  # fmt: skip
    read_until(proc, lambda line: line.startswith("step "), count=4)
    assert read_pid(two) == proc.pid  # the launching process owns run.pid, not rank 0
    proc.send_signal(signal.SIGINT)  # reaches this process only; it tells the launcher once
    out, err = proc.communicate(timeout=300)
    stopped = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert stopped.returncode == 130, stopped.stderr[-2000:]
    summary = read_summary(two)
    assert summary.status == "stopped" and summary.processes == 2
    checkpoint = last_complete_checkpoint(two)
    assert checkpoint is not None and 4 <= int(checkpoint.name.split("-")[1]) < 8

    resumed = run_cli(tmp_path, "--resume", str(two))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming from {checkpoint}" in resumed.stdout
    summary = read_summary(two)
    assert summary.status == "finished" and summary.processes == 2 and summary.step == 8
    # rank 0 alone prints progress lines: one line per logged step, not one per process
    assert [line[:8] for line in resumed.stdout.splitlines()].count("step 8/8") == 1
    got = step_losses(two)
    assert sorted(got) == sorted(expected) and got[8] < got[1]
    assert "find_unused_parameters=True" not in (two / "train.log").read_text()  # not searched
    for step, loss in expected.items():
        assert abs(got[step] - loss) < 1e-4, (step, got[step], loss)


@pytest.mark.xdist_group("launch")  # launches take turns: see pyproject addopts
def test_dpo_trains_on_two_processes_with_a_global_batch_of_both(tmp_path):
    """A preference objective under the launcher: DPO's pairs split across two processes,
    the steps per epoch those of the global batch, the held-out accuracy gathered."""
    from conftest import REPO

    run_dir = tmp_path / "run"
    pairs = set_args("training.max_steps=4", "training.logging_steps=2", FEW_RECORDS)
    result = run_cli(
        tmp_path, "--preset", str(REPO / "presets" / "demo-dpo.yaml"), "--output",
        str(run_dir), *pairs, *TWO_PROCESSES,
    )  # fmt: skip
    assert result.returncode == 0, launch_failure(result.stderr)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["objective"] == "dpo" and summary["processes"] == 2
    assert "(8 per epoch)" in result.stdout  # 512 pairs / (32 per micro-batch x 2)
    assert summary["preference_accuracy_after"] > summary["preference_accuracy_before"]


def test_sharded_strategies_are_refused_on_a_cpu_before_anything_is_written(tmp_path, capsys):
    from finetune_tui.main import main

    for strategy in ("fsdp", "deepspeed"):
        run_dir = tmp_path / strategy
        code = main(
            ["--preset", str(DEMO_PRESET), "--output", str(run_dir)]
            + ["--set", f"distributed.strategy={strategy}"]
        )
        err = capsys.readouterr().err
        assert code == 2 and f"distributed.strategy: {strategy} needs an NVIDIA GPU" in err
        assert not run_dir.exists()


@pytest.mark.xdist_group("launch")  # launches take turns: see pyproject addopts
def test_the_exported_script_trains_under_accelerate_launch_on_two_processes(tmp_path):
    """The export of a ddp preset: its accelerate config and script, launched the way the
    export prints, with one losses.jsonl line per step (the first process writes it)."""
    import sys

    from finetune_tui.engine.export.files import export_run
    from finetune_tui.engine.launch.configs import free_port
    from finetune_tui.engine.settings.preset import load_preset

    sets = ["distributed.strategy=ddp", "distributed.processes=2", FEW_RECORDS, *REENTRANT_PAIRS]
    exported = export_run(load_preset(DEMO_PRESET, sets), tmp_path / "job" / "train.py")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file"]
    command += [str(exported.accelerate_config), "--main_process_port", str(free_port())]
    command += [str(exported.script), "--max-steps", "4", "--output", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, launch_failure(result.stderr)
    steps = [line for line in (out / "losses.jsonl").read_text().splitlines() if line]
    assert len(steps) == 1  # logging every 10 steps: step 1 only, written once
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert result.stdout.count("adapter saved to") == 1


def test_a_launch_this_machine_cannot_hold_is_refused_before_anything_is_written(cli, tmp_path):
    """More machines run under SLURM, and no more processes than this machine has cores:
    refused in one line, before a run directory exists (a launch would wait forever)."""
    from test_nothing_lost import one_line_error

    for extra, named in (
        (["distributed.nodes=2"], "distributed.nodes: 2 machines run under SLURM"),
        (["distributed.processes=100000"], "distributed.processes: 100000 processes, but"),
    ):
        run_dir = tmp_path / "run"
        sets = set_args("distributed.strategy=ddp", *extra)
        result = cli("--preset", str(DEMO_PRESET), "--output", str(run_dir), *sets)
        assert named in one_line_error(result)
        assert not run_dir.exists()


def test_a_worker_trains_only_in_a_run_directory_finetune_tui_prepared(cli, tmp_path):
    """`--worker DIR` on a folder that merely holds a settings.yaml changes nothing in it."""
    from test_nothing_lost import one_line_error, tree

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "settings.yaml").write_text(DEMO_PRESET.read_text())
    (folder / "summary.json").write_text("precious")
    before = tree(folder)
    result = cli("--worker", str(folder))
    assert "not a finetune-tui run directory" in one_line_error(result)
    assert tree(folder) == before


@pytest.mark.xdist_group("launch")  # launches take turns: see pyproject addopts
def test_workers_that_fail_to_start_are_one_line_and_an_overwritten_run_comes_back(tmp_path):
    """The workers' error reaches the launching process as one line, no traceback; the run
    the launch was to replace is back as it was (one launch for both: each costs seconds)."""
    from test_nothing_lost import marked, tree

    run_dir = marked(tmp_path / "run")  # an earlier run's folder
    (run_dir / "summary.json").write_text('{"status": "finished"}')
    before = tree(run_dir)
    failed = demo_run(tmp_path, run_dir, "--overwrite", *STEPS, *TWO_PROCESSES, *FAILING_LOAD)
    assert failed.returncode != 0
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("finetune-tui: error: ") and "Traceback" not in failed.stderr
    assert "FlashAttention2" in last, last  # the workers' own reason, from their log
    assert tree(run_dir) == before
    assert not any(p.name.endswith(".replaced") for p in tmp_path.iterdir())
