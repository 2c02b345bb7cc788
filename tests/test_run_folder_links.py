"""Inside a run folder nothing is followed, and a run's own state is checked, not believed.

S is a stopped demo run (4 steps, checkpoints 2 and 4), trained once and copied per test.
A link, pipe or device where the run writes makes --resume / --overwrite / export refuse in
one line before anything is written; a checkpoint whose trainer state lies is named and
skipped; an empty settings.yaml is one line and stays as it was.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import shutil
from pathlib import Path

import pytest
from conftest import DEMO_PRESET, FINISHED_STEPS, call_main, finished_demo_run
from test_nothing_lost import one_line_error, tree

from finetune_tui.engine.runs.checkpoints import last_complete_checkpoint

STEPS = FINISHED_STEPS  # 4 steps, checkpoints 2 and 4


@functools.cache
def stopped_run_in(root: Path) -> Path:
    """The session's finished demo run copied once and marked stopped (both run-folder test
    modules copy it)."""
    run = root / "S"
    shutil.copytree(finished_demo_run(root.parent / "finished-run"), run, symlinks=True)
    summary = json.loads((run / "summary.json").read_text())
    summary["status"] = "stopped"  # what a Ctrl-C leaves: resumable
    (run / "summary.json").write_text(json.dumps(summary))
    return run


@pytest.fixture(scope="session")
def stopped_template(tmp_path_factory) -> Path:
    return stopped_run_in(tmp_path_factory.getbasetemp() / "stopped-run")


def copy_run(template: Path, where: Path) -> Path:
    shutil.copytree(template, where, symlinks=True)
    return where


def outside_tree(root: Path) -> Path:
    """What a user keeps beside a run: a file, a log, a folder with a checkpoint-1."""
    root.mkdir(parents=True)
    (root / "notes.txt").write_text("mine\n")
    (root / "job.log").write_text("my log\n")
    folder = root / "folder"
    (folder / "checkpoint-1").mkdir(parents=True)
    (folder / "checkpoint-1" / "weights.bin").write_bytes(b"precious")
    (folder / "train.py").write_text("print('my script')\n")
    (folder / "adapter_config.json").write_text('{"mine": true}\n')
    return root


@pytest.fixture
def run_and_outside(stopped_template, tmp_path):
    run = copy_run(stopped_template, tmp_path / "run")
    return run, outside_tree(tmp_path / "outside")


# What --resume S did through each link (issue 25.1); each is refused now.
LINKS = {
    "run.pid": "notes.txt",
    "train.log": "job.log",
    "metrics.jsonl": "job.log",
    "summary.json": "notes.txt",
    "settings.yaml": "notes.txt",
    "export": "folder",
    "adapter": "folder",
    "checkpoints": "folder",
    "adapter/adapter_config.json": "folder/adapter_config.json",
    "export/train.py": "folder/train.py",
    "checkpoints/checkpoint-999": "folder/checkpoint-1",
}


@pytest.mark.parametrize("entry", sorted(LINKS))
def test_resume_refuses_a_link_where_the_run_writes(cli, run_and_outside, tmp_path, entry):
    run, outside = run_and_outside
    path = run / entry
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    path.symlink_to(outside / LINKS[entry])
    before = tree(tmp_path)
    result = cli("--resume", str(run))
    line = one_line_error(result)
    assert f"{path}: is a symbolic link" in line
    assert tree(tmp_path) == before


@pytest.mark.parametrize("relative", [True, False])
def test_resume_of_a_link_to_a_run_names_the_run_folder(
    cli, run_and_outside, tmp_path, monkeypatch, relative
):
    """`--resume LINK` was an internal error (the lock is taken on the folder itself, never
    through a link); it writes into the folder, so it is refused as --overwrite refuses a
    link, naming the folder to give instead."""
    run, _ = run_and_outside
    link = tmp_path / "link"
    link.symlink_to("run" if relative else run)
    monkeypatch.chdir(tmp_path)
    before = tree(tmp_path)
    given = "link" if relative else str(link)
    line = one_line_error(cli("--resume", given))
    assert line.endswith(f"{given}: a link: give the run folder itself, {run.resolve()}")
    assert tree(tmp_path) == before


def test_a_valid_checkpoint_behind_a_link_is_never_resumed_from(run_and_outside, tmp_path):
    """checkpoint-999 -> a real step-4 checkpoint elsewhere: not this run's, and rotation
    must not be steered by it."""
    run, outside = run_and_outside
    elsewhere = outside / "copy-of-checkpoint-4"
    shutil.copytree(run / "checkpoints" / "checkpoint-4", elsewhere)
    (run / "checkpoints" / "checkpoint-999").symlink_to(elsewhere)
    skipped: list[str] = []
    assert last_complete_checkpoint(run, skipped).name == "checkpoint-4"
    assert "checkpoint-999: not a folder" in skipped[0]


def test_resume_refuses_a_pipe_where_the_run_appends(cli, run_and_outside, tmp_path):
    run, _ = run_and_outside
    (run / "train.log").unlink()
    os.mkfifo(run / "train.log")
    result = cli("--resume", str(run))
    assert f"{run / 'train.log'}: is a pipe, socket or device" in one_line_error(result)


def test_a_marker_that_is_a_link_is_no_marker(cli, tmp_path):
    """--overwrite deleted a user's NOTES.md because `.finetune-tui-run` linked to a marker."""
    real = tmp_path / "real-run"
    real.mkdir()
    (real / ".finetune-tui-run").write_text("made by finetune-tui\n")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "NOTES.md").write_text("years of notes\n")
    (mine / ".finetune-tui-run").symlink_to(real / ".finetune-tui-run")
    before = tree(tmp_path)
    result = cli("--preset", str(DEMO_PRESET), "--output", str(mine), "--overwrite", *STEPS)
    assert "not a finetune-tui run directory" in one_line_error(result)
    assert tree(tmp_path) == before


def test_overwrite_refuses_a_run_holding_a_link_where_it_writes(cli, run_and_outside, tmp_path):
    run, outside = run_and_outside
    shutil.rmtree(run / "adapter")
    (run / "adapter").symlink_to(outside / "folder")
    before = tree(tmp_path)
    result = cli("--preset", str(DEMO_PRESET), "--output", str(run), "--overwrite", *STEPS)
    assert f"{run / 'adapter'}: is a symbolic link" in one_line_error(result)
    assert tree(tmp_path) == before


def test_export_into_a_run_folder_goes_through_real_folders_only(cli, run_and_outside, tmp_path):
    run, outside = run_and_outside
    shutil.rmtree(run / "export")
    (run / "export").symlink_to(outside / "folder")
    before = tree(tmp_path)
    result = cli(
        "export", "--preset", str(DEMO_PRESET), "-o", str(run / "export" / "train.py"), "--force"
    )
    assert f"{run / 'export'}: is a symbolic link" in one_line_error(result)
    assert tree(tmp_path) == before


# --- the marker is created exclusively --------------------------------------------------


def _prepare(output: str, barrier, results) -> None:
    from finetune_tui.engine.common.errors import OutputExistsError
    from finetune_tui.engine.runs.create import prepare_run_dir
    from finetune_tui.engine.settings.preset import load_preset

    settings = load_preset(DEMO_PRESET, [f"output.dir={output}"])
    barrier.wait()
    try:
        prepare_run_dir(settings)
        results.put("made")
    except OutputExistsError as exc:
        results.put(str(exc))


def test_two_processes_preparing_one_new_folder_one_wins(tmp_path):
    """Check-then-create let both succeed (6 of 20 tries); now exactly one does."""
    context = multiprocessing.get_context("fork")
    for attempt in range(20):
        output = str(tmp_path / f"race-{attempt}")
        barrier, results = context.Barrier(2), context.Queue()
        racers = [context.Process(target=_prepare, args=(output, barrier, results)) for _ in "ab"]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(60)
        outcomes = sorted(results.get(timeout=10) for _ in racers)
        assert outcomes[1] == "made", outcomes
        assert outcomes[0] != "made" and "run directory exists" in outcomes[0], outcomes


def test_the_loser_of_a_race_is_told_the_run_directory_exists(tmp_path, monkeypatch):
    """Deterministic: the second caller's emptiness check ran before the first marker."""
    from finetune_tui.engine.common.errors import OutputExistsError
    from finetune_tui.engine.runs import create
    from finetune_tui.engine.settings.preset import load_preset

    settings = load_preset(DEMO_PRESET, [f"output.dir={tmp_path / 'new'}"])
    create.prepare_run_dir(settings)
    monkeypatch.setattr(create, "_has_entries", lambda folder: False)
    with pytest.raises(OutputExistsError, match="run directory exists"):
        create.prepare_run_dir(settings)


# --- writes in a run folder never follow a link -------------------------------------------


def test_atomic_writes_and_appends_do_not_follow_links(tmp_path):
    from finetune_tui.engine.common.safe_io import UnsafeTarget, open_append, write_text_atomic

    target = tmp_path / "mine.txt"
    target.write_text("mine\n")
    planted = tmp_path / f".summary.json.{os.getpid()}.tmp"
    planted.symlink_to(target)
    write_text_atomic(tmp_path / "summary.json", "{}\n")
    assert target.read_text() == "mine\n" and (tmp_path / "summary.json").read_text() == "{}\n"
    (tmp_path / "run.log").symlink_to(target)
    with pytest.raises(UnsafeTarget, match="symbolic link"):
        open_append(tmp_path / "run.log", "run log")
    os.mkfifo(tmp_path / "fifo.log")
    with pytest.raises(UnsafeTarget, match="not a regular file"):
        open_append(tmp_path / "fifo.log", "run log")  # no reader: must not block
    assert target.read_text() == "mine\n"


# --- damaged state is not believed (issue 25.9) ---------------------------------------------


def edit_state(checkpoint: Path, **changes) -> None:
    state_file = checkpoint / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state.update(changes)
    state_file.write_text(json.dumps(state))


@pytest.mark.parametrize(
    ("step", "reason"),
    [
        (10**9, "does not match the folder name"),
        (True, "is not a whole number"),
        (-1, "is not a step"),
        (0, "is not a step"),
        ("4", "is not a whole number"),
        (4.0, "is not a whole number"),
        (2, "does not match the folder name"),
        (None, "is not a whole number"),
    ],
)
def test_a_checkpoint_whose_step_lies_is_named_and_skipped(
    stopped_template, tmp_path, step, reason
):
    run = copy_run(stopped_template, tmp_path / "run")
    edit_state(run / "checkpoints" / "checkpoint-4", global_step=step)
    skipped: list[str] = []
    assert last_complete_checkpoint(run, skipped).name == "checkpoint-2"
    assert "checkpoint-4/trainer_state.json" in skipped[0] and reason in skipped[0]


def test_a_step_beyond_the_run_is_skipped_even_when_the_folder_agrees(stopped_template, tmp_path):
    """checkpoint-1000000000 whose state says step 10^9 of 10^9: the run has 4 steps."""
    run = copy_run(stopped_template, tmp_path / "run")
    huge = run / "checkpoints" / "checkpoint-1000000000"
    shutil.copytree(run / "checkpoints" / "checkpoint-4", huge)
    edit_state(huge, global_step=10**9, max_steps=10**9)
    skipped: list[str] = []
    assert last_complete_checkpoint(run, skipped).name == "checkpoint-4"
    assert "beyond the run's training.max_steps 4" in skipped[0]
    edit_state(huge, max_steps=400)
    skipped.clear()
    last_complete_checkpoint(run, skipped)
    assert "beyond its max_steps 400" in skipped[0]
    edit_state(huge, max_steps=True)
    skipped.clear()
    last_complete_checkpoint(run, skipped)
    assert "max_steps true is not a number" in skipped[0]


def test_resume_skips_a_lying_checkpoint_and_finishes_the_run(stopped_template, tmp_path):
    """Was "finished at step 1000000000/400", exit 0; now the previous checkpoint trains on."""
    run = copy_run(stopped_template, tmp_path / "run")
    checkpoint = run / "checkpoints" / "checkpoint-4"
    edit_state(checkpoint, global_step=10**9)
    result = call_main("--resume", str(run))
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"skipping a damaged checkpoint: {checkpoint}/trainer_state.json" in result.stdout
    assert f"resuming from {run / 'checkpoints' / 'checkpoint-2'}" in result.stdout
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["step"] == 4


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("# nothing\n", "empty"),
        ("lora:\n  r: 8\n", "no model section"),
        ("model:\n  name_or_path: demo\ndataset: {}\n", "no dataset.path"),
        ("- 1\n", "no model section"),
    ],
)
def test_an_empty_or_partial_settings_file_is_one_line_and_kept(
    cli, stopped_template, tmp_path, text, reason
):
    """Was: resumed with the defaults, a 57-line size mismatch, and the file rewritten."""
    run = copy_run(stopped_template, tmp_path / "run")
    (run / "settings.yaml").write_text(text)
    before = tree(tmp_path)
    result = cli("--resume", str(run))
    line = one_line_error(result)
    assert f"{run / 'settings.yaml'}: {reason}" in line
    assert result.stdout == ""
    assert tree(tmp_path) == before


def test_settings_changed_after_the_checkpoints_is_one_line(cli, stopped_template, tmp_path):
    """lora.r edited from 32 to 8: every checkpoint's shapes disagree; nothing restarts."""
    run = copy_run(stopped_template, tmp_path / "run")
    settings = run / "settings.yaml"
    text = settings.read_text()
    assert "\n  r: 32\n" in text
    settings.write_text(text.replace("\n  r: 32\n", "\n  r: 8\n"))
    before = tree(tmp_path)
    result = cli("--resume", str(run))
    line = one_line_error(result)
    assert "rank r=32; the run's settings say lora.r=8" in line and "was changed" in line
    assert tree(tmp_path) == before


def test_attach_to_an_ended_run_with_a_torn_last_line_returns(cli, run_and_outside, tmp_path):
    """A truncated metrics.jsonl of a run that ended: attach waited forever for the rest."""
    run, _ = run_and_outside
    metrics = run / "metrics.jsonl"
    metrics.write_bytes(metrics.read_bytes()[:-40])
    result = cli("attach", "--plain", str(run))
    assert result.returncode == 0, result.stderr
    assert "step 1/4" in result.stdout


def test_an_output_that_is_a_link_to_nothing_is_named_so(cli, tmp_path):
    """A dangling link as --output was "another run was just started there"."""
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "nowhere")
    result = cli("--preset", str(DEMO_PRESET), "--output", str(link))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{link}: a symbolic link to nothing ({tmp_path / 'nowhere'}); give a folder" in (
        result.stderr
    )
    assert not (tmp_path / "nowhere").exists()
