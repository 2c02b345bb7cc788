"""Interrupt with a signal, resume from the last complete checkpoint, same loss curve."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time

import pytest
from conftest import (
    DEMO_PRESET,
    FEW_RECORDS,
    call_main,
    copy_finished_run,
    read_until,
    run_cli,
    set_args,
    start_cli,
)

from finetune_tui.engine.runs.checkpoints import last_complete_checkpoint
from finetune_tui.engine.runs.pid import is_running, read_pid
from finetune_tui.engine.runs.summary import read_summary

COMMON = [
    "--set",
    FEW_RECORDS,
    "--set",
    "training.max_steps=24",
    "--set",
    "training.save_steps=8",
    "--set",
    "training.exact_match_samples=0",
    "--set",
    "training.warmup_ratio=0.1",
    "--set",
    "training.logging_steps=1",
]


def step_losses(run_dir) -> dict[int, float]:
    losses = {}
    for line in (run_dir / "metrics.jsonl").open():
        event = json.loads(line)
        if event["kind"] == "step":
            losses[event["step"]] = event["loss"]  # a resumed step overwrites the first try
    return losses


def interrupt_after(tmp_path, run_dir, signum, steps: int) -> subprocess.CompletedProcess:
    proc = start_cli(tmp_path, "--preset", str(DEMO_PRESET), "--output", str(run_dir), *COMMON)
    read_until(proc, lambda line: line.startswith("step "), count=steps)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_sigterm_then_resume_matches_uninterrupted_run(tmp_path):
    straight = tmp_path / "straight"
    result = call_main("--preset", str(DEMO_PRESET), "--output", str(straight), *COMMON)
    assert result.returncode == 0, result.stderr[-2000:]
    expected = step_losses(straight)
    assert len(expected) == 24

    broken = tmp_path / "broken"
    stopped = interrupt_after(tmp_path, broken, signal.SIGTERM, steps=11)
    assert stopped.returncode == 143, stopped.stderr[-2000:]
    # a process of its own imports bitsandbytes afresh: its notice about an optional CPU
    # kernel from the Hub (on CPUs with AVX512-BF16) is not a user's business
    assert "kernels-community" not in stopped.stderr
    checkpoint = last_complete_checkpoint(broken)
    assert checkpoint is not None and 11 <= int(checkpoint.name.split("-")[1]) < 24

    # a half-written newer checkpoint (killed mid-save) must be skipped, never loaded
    half = broken / "checkpoints" / "checkpoint-23"
    shutil.copytree(checkpoint, half)
    (half / "trainer_state.json").write_text('{"global_st')
    assert last_complete_checkpoint(broken) == checkpoint

    stopped_summary = json.loads((broken / "summary.json").read_text())
    stopped_summary["wall_time_s"] = 1000.0  # as if the stopped part had taken that long
    (broken / "summary.json").write_text(json.dumps(stopped_summary))
    resumed = call_main("--resume", str(broken))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming from {checkpoint}" in resumed.stdout
    # the whole run's time, its stopped part included (it counted the last segment only)
    assert 1000 < json.loads((broken / "summary.json").read_text())["wall_time_s"] < 1300
    got = step_losses(broken)
    assert sorted(got) == sorted(expected)
    for step, loss in expected.items():
        assert abs(got[step] - loss) < 1e-4, (step, got[step], loss)
    assert json.loads((broken / "summary.json").read_text())["status"] == "finished"


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGHUP, 143)])
def test_sigint_and_sighup_checkpoint_and_exit(tmp_path, signum, code):
    """Ctrl-C or a closed terminal: a checkpoint, the adapter so far (PEFT loads it onto
    the base) and a summary that says stopped, at the step it stopped."""
    run_dir = tmp_path / "run"
    stopped = interrupt_after(tmp_path, run_dir, signum, steps=3)
    assert stopped.returncode == code, stopped.stderr[-2000:]
    assert "stopped at step" in stopped.stdout
    # the answer to the signal on the terminal, not in the run's log of library messages
    assert f"{signum.name}: saving the adapter and stopping after this step" in stopped.stdout
    assert last_complete_checkpoint(run_dir) is not None
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "stopped" and 3 <= summary["step"] < 24

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from finetune_tui.engine.common.demo import ensure_demo_model

    base = AutoModelForCausalLM.from_pretrained(ensure_demo_model())
    model = PeftModel.from_pretrained(base, run_dir / "adapter")
    assert any("lora_A" in name for name, _ in model.named_parameters())


def test_a_run_started_under_nohup_outlives_its_terminal(tmp_path):
    """`nohup finetune-tui --preset ...`: its SIGHUP ignored by the one who started it; the
    run took SIGHUP over and stopped when the terminal closed."""
    run_dir = tmp_path / "run"

    def as_nohup():
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    proc = start_cli(
        tmp_path, "--preset", str(DEMO_PRESET), "--output", str(run_dir), *COMMON,
        preexec_fn=as_nohup,
    )  # fmt: skip
    try:
        read_until(proc, lambda line: line.startswith("step "), count=2)
        proc.send_signal(signal.SIGHUP)
        read_until(proc, lambda line: line.startswith("step "), count=2)  # trains on
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-1500:]
    assert "SIGHUP" not in out + err


def test_kill_9_during_checkpoint_writes_leaves_a_resumable_run(tmp_path):
    run_dir = tmp_path / "run"
    proc = start_cli(
        tmp_path, "--preset", str(DEMO_PRESET), "--output", str(run_dir), *COMMON,
        "--set", "training.save_steps=1",
    )  # fmt: skip
    # once checkpoint-4 is reported, the next save is already being written
    read_until(proc, lambda line: line.startswith("checkpoint") and "checkpoint-4" in line)
    proc.kill()
    proc.communicate(timeout=60)
    assert last_complete_checkpoint(run_dir) is not None
    resumed = call_main("--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((run_dir / "summary.json").read_text())["step"] == 24


def test_second_ctrl_c_exits_at_once(tmp_path):
    run_dir = tmp_path / "run"
    proc = start_cli(
        tmp_path, "--preset", str(DEMO_PRESET), "--output", str(run_dir),
        "--set", "training.max_steps=2000", "--set", "training.exact_match_samples=0",
        "--set", FEW_RECORDS,
    )  # fmt: skip
    read_until(proc, lambda line: line.startswith("step "))
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130


def test_a_resume_with_no_checkpoint_yet_says_it_starts_again(tmp_path):
    """Two Ctrl-Cs before the first save leave no checkpoint: --resume started again from
    step 0 without a word."""
    from finetune_tui.engine.settings.preset import load_preset
    from finetune_tui.engine.train.runner import _resume_point

    (tmp_path / "metrics.jsonl").write_text('{"kind": "started"}\n')  # it trained before
    said = []
    assert _resume_point(tmp_path, said.append, load_preset(DEMO_PRESET)) is None
    assert [n.message for n in said] == ["no checkpoint saved yet: starting again from step 0"]


def test_a_run_nothing_ran_in_yet_starts_without_a_word(tmp_path):
    """--detach starts a new run as a resume: it said 'no checkpoint saved yet: starting
    again from step 0' in the new run's log. No earlier event (metrics.jsonl empty, as the
    runner has just opened it): nothing to say."""
    from finetune_tui.engine.settings.preset import load_preset
    from finetune_tui.engine.train.runner import _resume_point

    (tmp_path / "metrics.jsonl").write_text("")
    said = []
    assert _resume_point(tmp_path, said.append, load_preset(DEMO_PRESET)) is None
    assert said == []


def test_a_new_detached_run_is_running_at_once_and_says_nothing_of_resuming(tmp_path):
    """Its log said 'warning: no checkpoint saved yet: starting again from step 0'. And the
    run folder's lock passes from the command to the background process it starts: the run
    is running as soon as the command returns."""
    run_dir = tmp_path / "run"
    steps = ["training.max_steps=2", "training.exact_match_samples=0", FEW_RECORDS]
    args = ["--preset", str(DEMO_PRESET), "--output", str(run_dir), "--detach"]
    started = run_cli(tmp_path, *args, *set_args(*steps, "dataset.eval_fraction=0"))
    assert started.returncode == 0, started.stderr
    background = int(started.stdout.split("(pid ")[1].split(")")[0])
    assert is_running(run_dir) and read_pid(run_dir) == background
    deadline = time.monotonic() + 300
    while is_running(run_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert read_summary(run_dir).status == "finished"
    log = (run_dir / "train.log").read_text()
    assert "starting again" not in log and "resuming" not in log, log[-2000:]


def test_runs_lists_status(cli, finished_template, tmp_path):
    copy_finished_run(finished_template, tmp_path / "data" / "runs" / "tiny")
    listing = cli("runs", "--json")
    rows = json.loads(listing.stdout)
    assert rows[0]["name"] == "tiny" and rows[0]["status"] == "finished"
    assert rows[0]["step"] == 4
    plain = cli("attach", "tiny", "--plain")
    assert "finished at step 4/4" in plain.stdout
    for folder in (tmp_path / "nowhere", tmp_path / ("d" * 300)):  # read "no runs yet", 0
        missing = cli("runs", str(folder))
        assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1


def test_checkpoint_at_every_epoch_end_with_steps_per_epoch_from_the_loader(tmp_path):
    """500 training rows / micro-batch 32 = 16 batches, the last one partial; accumulation 2
    → 8 steps an epoch (a quarter of the demo's rows: the same count, a quarter of the work)."""
    run_dir = tmp_path / "epochs"
    result = call_main(
        "--preset", str(DEMO_PRESET), "--output", str(run_dir),
        "--set", "dataset.max_samples=500",
        "--set", "training.epochs=2",
        "--set", "training.micro_batch_size=32",
        "--set", "training.gradient_accumulation_steps=2",
        "--set", "training.save_every_epoch=true",
        "--set", "training.save_total_limit=3",
        "--set", "training.exact_match_samples=0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "16 steps (8 per epoch)" in result.stdout
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    started = next(e for e in events if e["kind"] == "started")
    assert started["steps_per_epoch"] == 8
    saves = [(e["step"], e["reason"]) for e in events if e["kind"] == "checkpoint"]
    assert saves == [(8, "epoch"), (16, "epoch")]
    assert last_complete_checkpoint(run_dir).name == "checkpoint-16"


def test_runs_lists_runs_made_anywhere_and_a_folder_of_runs(cli, tmp_path):
    elsewhere = tmp_path / "projects" / "exp1"
    result = call_main(
        "--preset",
        str(DEMO_PRESET),
        "--output",
        str(elsewhere),
        "--set",
        FEW_RECORDS,
        "--set",
        "training.max_steps=3",
        "--set",
        "training.logging_steps=2",
        "--set",
        "training.exact_match_samples=0",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    listed = json.loads(cli("runs", "--json").stdout)
    row = next(r for r in listed if r["path"] == str(elsewhere.resolve()))
    assert row["status"] == "finished" and row["step"] == row["total_steps"] == 3
    in_folder = json.loads(cli("runs", str(tmp_path / "projects"), "--json").stdout)
    assert [r["name"] for r in in_folder] == ["exp1"]


def test_a_trained_adapter_without_a_checkpoint_is_never_trained_over(
    cli, finished_template, tmp_path
):
    """Two Ctrl-Cs during the final evaluation left the adapter saved and no checkpoint (no
    save_steps): `--resume` trained again from step 0 and wrote over it, silently."""
    run = copy_finished_run(finished_template, tmp_path / "run")
    for checkpoint in (run / "checkpoints").glob("checkpoint-*"):
        shutil.rmtree(checkpoint)
    (run / "summary.json").unlink()  # the second Ctrl-C exits before the summary is written
    adapter = (run / "adapter" / "adapter_model.safetensors").read_bytes()
    refused = cli("--resume", str(run))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"{run / 'adapter'}: the run's trained adapter, and no checkpoint" in refused.stderr
    assert (run / "adapter" / "adapter_model.safetensors").read_bytes() == adapter


def test_lora_targets_edited_after_the_checkpoints_are_one_line(cli, finished_template, tmp_path):
    """An edited target list was the optimizer's raw ValueError, twice, and the run said
    "stopped"; it is refused as an edited rank is."""
    run = copy_finished_run(finished_template, tmp_path / "run")
    settings = run / "settings.yaml"
    settings.write_text(
        settings.read_text().replace("target_modules: auto", "target_modules: [q_proj]")
    )
    refused = cli("--resume", str(run))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "the run's settings say lora.target_modules [q_proj]" in refused.stderr
    assert "settings.yaml was changed after its checkpoints were written" in refused.stderr


def test_two_resumes_of_one_run_started_together_train_it_once(finished_template, tmp_path):
    """Both passed the run.pid check seconds before either wrote run.pid, and both trained
    it (three `started` events in its metrics); the run folder's lock lets one through."""
    run = copy_finished_run(finished_template, tmp_path / "run")
    (run / "summary.json").unlink()  # stopped, say: resumable from its checkpoint-2
    shutil.rmtree(run / "checkpoints" / "checkpoint-4")
    both = [start_cli(tmp_path, "--resume", str(run)) for _ in range(2)]
    results = [proc.communicate(timeout=300) + (proc.returncode,) for proc in both]
    codes = sorted(code for _, _, code in results)
    assert codes == [0, 2], results
    refused = next(err for _, err, code in results if code == 2)
    assert "another process is resuming this run" in refused or "still running" in refused
    started = [
        line for line in (run / "metrics.jsonl").read_text().splitlines() if '"started"' in line
    ]
    assert len(started) == 2  # the first run's, and one resume's
