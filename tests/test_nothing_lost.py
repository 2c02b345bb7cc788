"""Nothing of the user's is ever lost, and bad input is one line before anything is written.

Every test snapshots the folders around the command and asserts what changed: a refusal
changes nothing; a replacement changes only the run it replaced.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import (
    DEMO_PRESET,
    FEW_RECORDS,
    call_main,
    cli_env,
    copy_finished_run,
    read_until,
    set_args,
    start_cli,
    start_live_run,
    stop_live_run,
)

SHORT = ["--set", "training.max_steps=3", "--set", "training.exact_match_samples=0"]
SHORT += ["--set", "dataset.eval_fraction=0", "--set", "training.logging_steps=1"]
SHORT += ["--set", FEW_RECORDS]


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under root with its content (None for folders): what a user would lose."""
    found: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        found[key] = path.read_bytes() if path.is_file() and not path.is_symlink() else None
    return found


def one_line_error(result: subprocess.CompletedProcess, code: int = 2) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stdout[-1500:] + result.stderr[-1500:]
    assert len(lines) == 1 and lines[0].startswith("finetune-tui: error: "), result.stderr
    return lines[0]


def marked(folder: Path) -> Path:
    """A folder carrying the run marker: what finetune-tui made earlier."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".finetune-tui-run").write_text("made by an earlier run\n")
    return folder


def user_folder(root: Path) -> Path:
    folder = root / "X"
    (folder / "src").mkdir(parents=True)
    (folder / "thesis.txt").write_text("three years of work\n")
    (folder / "src" / "main.py").write_text("print('mine')\n")
    return folder


# --- 1. --overwrite deletes only finetune-tui runs --------------------------------------


def test_overwrite_refuses_a_folder_finetune_tui_did_not_make(cli, tmp_path):
    folder = user_folder(tmp_path)
    before = tree(tmp_path)
    result = cli("--preset", str(DEMO_PRESET), "--output", str(folder), "--overwrite")
    assert "not a finetune-tui run directory" in one_line_error(result)
    assert tree(tmp_path) == before


def test_overwrite_refuses_the_working_directory_even_when_it_is_a_run(cli, tmp_path, monkeypatch):
    cwd = marked(tmp_path / "work")
    (cwd / "notes.md").write_text("keep me\n")
    before = tree(tmp_path)
    monkeypatch.chdir(cwd)
    result = cli("--preset", str(DEMO_PRESET), "--output", ".", "--overwrite")
    assert "will not replace this folder" in one_line_error(result)
    assert tree(tmp_path) == before


def test_overwrite_refuses_a_run_that_holds_the_dataset_or_the_preset(cli, tmp_path):
    run = marked(tmp_path / "run")
    (run / "data.jsonl").write_text(
        json.dumps(
            {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "A"}]}
        )
        + "\n"
    )
    preset = run / "job.yaml"
    preset.write_text(DEMO_PRESET.read_text())
    before = tree(tmp_path)
    for args in (
        ["--preset", str(DEMO_PRESET), "--set", f"dataset.path={run / 'data.jsonl'}"],
        ["--preset", str(preset)],
    ):
        result = cli(*args, "--output", str(run), "--overwrite")
        assert "an input of this run" in one_line_error(result)
    assert tree(tmp_path) == before


def test_overwrite_refuses_a_symlink_and_a_live_run(cli, tmp_path):
    target = user_folder(tmp_path)
    (target / ".finetune-tui-run").write_text("run\n")
    link = tmp_path / "link"
    link.symlink_to(target)
    live = marked(tmp_path / "live")
    (live / "metrics.jsonl").write_text("")
    holder = start_live_run(live)
    try:
        before = tree(tmp_path)
        result = cli("--preset", str(DEMO_PRESET), "--output", str(link), "--overwrite")
        assert "symbolic link" in one_line_error(result)
        result = cli("--preset", str(DEMO_PRESET), "--output", str(live), "--overwrite")
        assert "still going" in one_line_error(result)
        assert tree(tmp_path) == before
    finally:
        stop_live_run(holder)


def test_overwrite_refuses_a_run_that_holds_another_and_no_run_starts_inside_one(cli, tmp_path):
    """--overwrite of runs/outer deleted runs/outer/inner with it, a live run left training
    into a gutted folder; a run inside another's folder was taken without a word."""
    outer = marked(tmp_path / "outer")
    (outer / "metrics.jsonl").write_text("")
    inner = marked(outer / "inner")
    (inner / "settings.yaml").write_text("model: {}\n")
    before = tree(tmp_path)
    result = cli("--preset", str(DEMO_PRESET), "--output", str(outer), "--overwrite")
    assert f"holds another run, {inner}; not replaced" in one_line_error(result)
    result = cli("--preset", str(DEMO_PRESET), "--output", str(outer / "a" / "new"))
    assert f"inside the run folder {outer}" in one_line_error(result)
    assert tree(tmp_path) == before


def test_a_replacement_killed_before_it_trained_gives_the_old_run_back(
    cli, finished_template, tmp_path
):
    """A second Ctrl-C just after an --overwrite run began left the old run aside
    (.run.replaced) and a folder of start files: a later --overwrite was refused for good
    and a --resume started from step 0 and deleted the old run."""
    from finetune_tui.engine.runs.create import replaced_path

    run = copy_finished_run(finished_template, tmp_path / "run")
    kept = tree(run)
    aside = replaced_path(run)
    run.rename(aside)
    marked(run)
    (run / ".finetune-tui-run").write_text(f"made\nreplaces: {aside.name}\n")
    (run / "settings.yaml").write_text((aside / "settings.yaml").read_text())
    result = cli("--resume", str(run))
    assert result.returncode == 0 and "already finished" in result.stdout, result.stderr
    assert tree(run) == kept and not aside.exists()


@pytest.mark.parametrize("name", [".", "..", "../../x", "/", "/tmp/x", "a/b", "''", "a\tb", "-x"])
def test_run_name_is_a_plain_folder_name(cli, tmp_path, name):
    runs = tmp_path / "data" / "runs"
    (runs / "earlier").mkdir(parents=True)
    (runs / "earlier" / "settings.yaml").write_text("model: {}\n")
    before = tree(tmp_path)
    result = cli("--preset", str(DEMO_PRESET), "--set", f"output.run_name={name}", "--overwrite")
    assert "output.run_name" in one_line_error(result)
    assert tree(tmp_path) == before


def test_overwrite_is_never_a_setting(cli, tmp_path):
    preset = tmp_path / "shared.yaml"
    preset.write_text(DEMO_PRESET.read_text() + "output:\n  dir: ~\n  overwrite: true\n")
    result = cli("--preset", str(preset))
    assert "pass --overwrite on the command line" in one_line_error(result)


def test_overwrite_replaces_a_run_only_once_the_new_one_has_started(
    cli, finished_template, tmp_path
):
    run = copy_finished_run(finished_template, tmp_path / "run")
    saved = (run / "settings.yaml").read_text()
    assert "overwrite:" not in saved
    old_summary = (run / "summary.json").stat().st_mtime_ns  # a tiny run's numbers can repeat

    # a rerun of the saved settings never replaces the run silently
    again = cli("--preset", str(run / "settings.yaml"), "--output", str(run))
    assert "--overwrite" in one_line_error(again)

    # a start that fails after the directory was made puts the old run back
    broken = tmp_path / "broken-model"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        source = _demo_model_file(tmp_path, name)
        (broken / name).write_bytes(source.read_bytes())
    from safetensors.torch import save_file
    from torch import zeros

    save_file({"model.embed_tokens.weight": zeros(3, 3)}, broken / "model.safetensors")
    before = tree(tmp_path)
    failed = cli(
        *("--preset", str(DEMO_PRESET), "--output", str(run), "--overwrite", *SHORT),
        *("--set", f"model.name_or_path={broken}"),
    )
    assert "has shape [3, 3]" in one_line_error(failed)  # preflight: before the folder is touched
    assert tree(tmp_path) == before
    failed = call_main(  # flash-attn is not installed: loading fails after the folder was made
        *("--preset", str(DEMO_PRESET), "--output", str(run), "--overwrite", *SHORT),
        *("--set", "model.attn_implementation=flash_attention_2"),
    )
    assert "FlashAttention2" in one_line_error(failed, code=1)
    assert tree(tmp_path) == before

    replaced = call_main("--preset", str(DEMO_PRESET), "--output", str(run), "--overwrite", *SHORT)
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    assert (run / "summary.json").stat().st_mtime_ns != old_summary
    assert not (tmp_path / ".run.replaced").exists()
    # beside the run: the model folder and finetune-tui's own data folder (its run registry)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken-model", "data", "run"]


def _demo_model_file(tmp_path: Path, name: str) -> Path:
    from finetune_tui.engine.common.demo import ensure_demo_model

    return Path(ensure_demo_model()) / name


# --- 2. export never writes over its inputs or existing files ---------------------------


def test_export_never_overwrites_its_inputs_or_existing_files(cli, tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text(DEMO_PRESET.read_text())
    (tmp_path / "existing.py").write_text("# mine\n")
    (tmp_path / "adir").mkdir()
    before = tree(tmp_path)
    cases = {
        str(tmp_path / "job.py"): "an input of this export",
        str(tmp_path / "train.yaml"): "the same file",
        str(tmp_path / "adir"): "is a directory",
        str(tmp_path / "existing.py"): "use --force",
    }
    for output, message in cases.items():
        result = cli("export", "--preset", str(job), "-o", output)
        assert message in one_line_error(result), output
    assert tree(tmp_path) == before

    forced = cli("export", "--preset", str(job), "-o", str(tmp_path / "existing.py"), "--force")
    assert forced.returncode == 0, forced.stderr
    assert (tmp_path / "existing.py").read_text() != "# mine\n"
    assert job.read_text() == DEMO_PRESET.read_text()


def test_export_force_never_writes_over_a_device_a_pipe_or_into_the_model_folder(cli, tmp_path):
    """--force replaced /dev/null (run as root) and a FIFO with the script, and wrote the
    script over the model's own config.json: --force replaces plain files of the user's.
    (A device follows the FIFO's rule, safe_io.entry_problem; not tried here on /dev/null.)"""
    import os
    import shutil

    from finetune_tui.engine.common.demo import ensure_demo_model

    fifo = tmp_path / "pipe.py"
    os.mkfifo(fifo)
    model = tmp_path / "model"
    shutil.copytree(ensure_demo_model(), model)
    config = (model / "config.json").read_bytes()
    cases = {
        str(fifo): "is a pipe, socket or device; export writes plain files only",
        str(model / "config.json"): "an input of this export",
        str(model / "train.py"): f"inside {model.resolve()}, an input of this export",
    }
    for output, message in cases.items():
        result = cli(
            "export", "--set", f"model.name_or_path={model}", "-o", output, "--force"
        )  # fmt: skip
        assert message in one_line_error(result), output
    assert fifo.is_fifo() and (model / "config.json").read_bytes() == config
    assert not (model / "train.py").exists() and not (model / "train.yaml").exists()


def test_export_quotes_the_commands_it_prints(cli, tmp_path):
    out = tmp_path / "my job's dir" / "train $HOME.py"
    result = cli("export", "--preset", str(DEMO_PRESET), "-o", str(out))
    assert result.returncode == 0, result.stderr
    command = next(line for line in result.stdout.splitlines() if "python " in line).strip()
    shown = subprocess.run(
        ["bash", "-c", f"printf '%s\\n' {command.removeprefix('python ')}"],
        capture_output=True,
        text=True,
    )
    assert shown.stdout.strip() == str(out)


def test_a_non_finite_number_renders_as_valid_python():
    from finetune_tui.engine.export.script import literal

    assert eval(literal(float("inf"))) == float("inf")  # noqa: S307 - the point of the test
    assert eval(literal([float("-inf")])) == [float("-inf")]  # noqa: S307


# --- 3-5. resume -------------------------------------------------------------------------


def test_resume_of_a_finished_run_changes_nothing(cli, finished_template, tmp_path):
    run = copy_finished_run(finished_template, tmp_path / "run")
    before = tree(tmp_path)
    again = cli("--resume", str(run))
    assert again.returncode == 0, again.stderr
    assert "already finished" in again.stdout
    assert tree(tmp_path) == before


@pytest.mark.parametrize(
    "extra",
    [["--preset", str(DEMO_PRESET)], ["--set", "lora.r=-5"], ["--output", "x"], ["--overwrite"]],
)
def test_resume_refuses_options_it_would_ignore(cli, tmp_path, extra):
    run = tmp_path / "run"
    run.mkdir()
    (run / "settings.yaml").write_text("model: {}\n")
    before = tree(tmp_path)
    result = cli("--resume", str(run), *extra)
    assert "cannot be combined" in one_line_error(result)
    assert tree(tmp_path) == before


def test_a_damaged_checkpoint_is_named_and_the_previous_one_used(tmp_path):
    import torch
    from safetensors.torch import save_file

    from finetune_tui.engine.runs.checkpoints import last_complete_checkpoint

    for step in (4, 8):
        folder = tmp_path / "checkpoints" / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        (folder / "adapter_config.json").write_text("{}")
        save_file({"w": torch.zeros(2)}, str(folder / "adapter_model.safetensors"))
        torch.save({"x": 1}, folder / "optimizer.pt")
        torch.save({"x": 1}, folder / "scheduler.pt")
    newest = tmp_path / "checkpoints" / "checkpoint-8"
    assert last_complete_checkpoint(tmp_path) == newest
    for damage in ("trainer_state.json", "optimizer.pt"):
        original = (newest / damage).read_bytes()
        (newest / damage).write_bytes(original[: len(original) // 2])
        skipped: list[str] = []
        assert last_complete_checkpoint(tmp_path, skipped).name == "checkpoint-4"
        assert skipped and damage in skipped[0]
        (newest / damage).write_bytes(original)


def test_a_signal_after_the_last_step_ends_finished_with_exit_0(tmp_path):
    run = tmp_path / "run"
    proc = start_cli(tmp_path, "--preset", str(DEMO_PRESET), "--output", str(run), *SHORT)
    read_until(proc, lambda line: line.startswith("step 3/3"))
    proc.send_signal(2)
    out, err = proc.communicate(timeout=120)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert proc.returncode == 0, err[-2000:]
    assert "finished and its adapter is saved" in out


# --- 6. every read is bounded and of a regular file ---------------------------------------


def test_pipes_and_devices_are_refused_not_read(cli, tmp_path):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    data_fifo = tmp_path / "data.jsonl"
    os.mkfifo(data_fifo)
    zero = tmp_path / "zero.jsonl"
    zero.symlink_to("/dev/zero")
    out = ["--output", str(tmp_path / "o")]
    cases = [
        ["--preset", str(fifo), *out],
        ["--preset", "/dev/zero", *out],
        ["--preset", str(DEMO_PRESET), "--set", f"dataset.path={data_fifo}", *out],
        ["--preset", str(DEMO_PRESET), "--set", f"dataset.path={zero}", *out],
        ["export", "--preset", str(fifo), "-o", str(tmp_path / "o" / "train.py")],
        ["plan", "--model", "demo", "--preset", "/dev/zero"],
    ]
    for args in cases:
        started = time.monotonic()
        result = cli(*args)
        assert "not a regular file" in one_line_error(result), args
        assert time.monotonic() - started < 30
    assert not (tmp_path / "o").exists()


def test_attach_and_runs_survive_hostile_run_files(cli, tmp_path):
    runs = tmp_path / "data" / "runs"
    fifo_run = runs / "fifo"
    fifo_run.mkdir(parents=True)
    (fifo_run / "settings.yaml").write_text("model: {}\n")
    os.mkfifo(fifo_run / "metrics.jsonl")
    odd = runs / "odd"
    odd.mkdir()
    (odd / "settings.yaml").write_text("model: {}\n")
    (odd / "run.pid").write_text("99999999999999999999\n")
    (odd / "metrics.jsonl").write_bytes(b'\xff\xfe{"kind": "step"\n' + b"[" * 100000 + b"\n")
    for pid in ("0", "-1"):
        folder = runs / f"pid{pid}"
        folder.mkdir()
        (folder / "settings.yaml").write_text("model: {}\n")
        (folder / "run.pid").write_text(pid)
    listed = cli("runs", "--json")
    assert listed.returncode == 0, listed.stderr
    status = {row["name"]: row["status"] for row in json.loads(listed.stdout)}
    assert status == {
        "fifo": "interrupted",
        "odd": "interrupted",
        "pid0": "interrupted",
        "pid-1": "interrupted",
    }
    for name in ("fifo", "odd"):
        attached = cli("attach", name, "--plain")
        assert attached.returncode == 0, attached.stderr
        assert "Traceback" not in attached.stderr


# --- 7. no tracebacks ---------------------------------------------------------------------


def test_deeply_nested_input_is_one_line(cli, tmp_path):
    deep_yaml = tmp_path / "deep.yaml"
    deep_yaml.write_text("a: " + "[" * 100000 + "]" * 100000 + "\n")
    deep_jsonl = tmp_path / "deep.jsonl"
    deep_jsonl.write_text('{"text": ' + "[" * 100000 + "]" * 100000 + "}\n")
    result = cli("--preset", str(deep_yaml))
    assert "nested too deeply" in one_line_error(result)
    result = cli(
        "--preset",
        str(DEMO_PRESET),
        "--set",
        f"dataset.path={deep_jsonl}",
        "--set",
        "dataset.format=auto",
    )
    assert "nested too deeply" in one_line_error(result)


def test_a_number_past_pythons_digit_limit_is_one_line(cli, tmp_path):
    """json.loads refuses an integer of over 4,300 digits with a bare ValueError: it was an
    internal error for a dataset line and a config.json."""
    huge = "9" * 5000
    data = tmp_path / "big.jsonl"
    data.write_text('{"text": "a", "n": ' + huge + "}\n")
    result = cli("plan", "--model", "demo", "--dataset", str(data))
    assert f"{data}:1: a number too long to read" in one_line_error(result)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"hidden_size": ' + huge + "}")
    result = cli("plan", "--model", str(model))
    assert f"{model / 'config.json'}: a number too long to read" in one_line_error(result)


def test_plan_with_a_config_that_is_not_an_object(cli, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("[1, 2]")
    result = cli("plan", "--model", str(model))
    assert "must be a JSON object" in one_line_error(result)


def test_plan_into_a_closed_pipe_is_quiet(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "finetune_tui", "plan", "--model", "demo", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(tmp_path),
    )
    proc.stdout.close()
    assert proc.wait(timeout=60) == 141
    assert proc.stderr.read() == b""


# --- 8. the model is checked before anything is written -----------------------------------


def test_model_problems_are_found_before_the_run_directory_exists(cli, tmp_path):
    empty = tmp_path / "empty-model"
    empty.mkdir()
    (empty / "config.json").write_text(json.dumps({"model_type": "llama"}))
    cases = {
        str(tmp_path / "nowhere" / "model"): "model folder not found",
        str(empty): "no tokenizer files",
        "some-org/not-cached-model": "HF_HUB_OFFLINE",
    }
    for model, message in cases.items():
        result = cli(
            "--preset",
            str(DEMO_PRESET),
            "--set",
            f"model.name_or_path={model}",
            "--output",
            str(tmp_path / "run"),
        )
        assert message in one_line_error(result), model
        assert not (tmp_path / "run").exists()


def test_a_hub_id_without_network_fails_in_seconds(tmp_path):
    env = cli_env(tmp_path)
    env.update(HF_HUB_OFFLINE="0", TRANSFORMERS_OFFLINE="0", HF_ENDPOINT="http://127.0.0.1:9")
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "finetune_tui",
            "--preset",
            str(DEMO_PRESET),
            "--set",
            "model.name_or_path=some-org/some-model",
            "--output",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert "cannot reach the Hugging Face Hub" in one_line_error(result)
    assert time.monotonic() - started < 30
    assert not (tmp_path / "run").exists()


# --- 9-11. values the schema must refuse; smaller traps -----------------------------------


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("training.epochs=.inf", "training.epochs"),
        ("training.epochs=1e309", "training.epochs"),
        ("training.learning_rate=.nan", "training.learning_rate"),
        ("training.seed=100000000000000000000", "training.seed"),
        ("training.micro_batch_size=100000000000000000000", "training.micro_batch_size"),
        ("training.max_steps=1.0e+20", "training.max_steps"),
        ("lora.target_modules=[]", "lora.target_modules"),
        ("lora.r=true", "lora.r"),
        ("output.run_name=a/b", "output.run_name"),
        ("a.b.c=1", "a: unknown key"),
    ],
)
def test_values_training_would_reject_are_refused_up_front(cli, tmp_path, override, field):
    result = cli("--preset", str(DEMO_PRESET), "--set", override, "--output", str(tmp_path / "run"))
    line = one_line_error(result)
    assert field in line and "--set" in line, line
    assert not (tmp_path / "run").exists()


def test_input_problems_are_one_line_before_anything_is_written(cli, tmp_path):
    only_answer = tmp_path / "answer.jsonl"
    only_answer.write_text(json.dumps({"messages": [{"role": "assistant", "content": "x"}]}) + "\n")
    surrogate = tmp_path / "surrogate.jsonl"
    surrogate.write_text('{"text": "bad \\ud800 char"}\n')
    twice = tmp_path / "twice.yaml"
    twice.write_text("lora:\n  r: 8\ntraining:\n  seed: 1\nlora:\n  r: 4\n")
    cases = [
        (["--preset", str(DEMO_PRESET), "--set", f"dataset.path={only_answer}"], "user turn"),
        (
            [
                "--preset",
                str(DEMO_PRESET),
                "--set",
                f"dataset.path={surrogate}",
                "--set",
                "dataset.format=auto",
            ],
            "surrogate",
        ),
        (["--preset", str(twice)], "given twice (lines 1 and 5)"),
        (["--preset", str(DEMO_PRESET), "--set", "output.report_to=[wandb]"], "wandb"),
    ]
    for args, message in cases:
        result = cli(*args, "--output", str(tmp_path / "run"))
        assert message in one_line_error(result), args
        assert not (tmp_path / "run").exists()
    empty = cli("--preset", str(DEMO_PRESET), "--output", "")
    assert "--output: empty path" in one_line_error(empty)


def test_records_longer_than_the_sequence_are_refused_with_the_length_that_fits(cli, tmp_path):
    data = tmp_path / "alpaca.jsonl"
    rows = [{"instruction": f"Say hello number {i}", "output": "hello"} for i in range(30)]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")

    def arguments(length: int, *extra: str) -> list[str]:
        sets = [f"dataset.path={data}", f"training.max_seq_length={length}"]
        args = [arg for pair in sets for arg in ("--set", pair)]
        output = ["--output", str(tmp_path / "run")]
        return ["--preset", str(DEMO_PRESET), *args, *output, *extra]

    line = one_line_error(cli(*arguments(128)))
    assert "30 of 30 records lose their whole answer" in line
    needed = int(line.split("at least ")[1].split()[0])
    assert needed > 128
    assert not (tmp_path / "run").exists()
    fits = call_main(*arguments(needed, *SHORT))
    assert fits.returncode == 0, fits.stderr[-2000:]


def test_a_csv_with_a_byte_order_mark_reads_its_header(tmp_path):
    from finetune_tui.engine.data.formats import detect_format
    from finetune_tui.engine.data.reading import load_records

    data = tmp_path / "data.csv"
    data.write_bytes("\ufeffinstruction,output\nsay hi,hi\n".encode())
    records = load_records(data)
    assert detect_format(records) == "alpaca"
    assert records[0].data == {"instruction": "say hi", "output": "hi"}


def test_a_folder_named_like_the_trigger_does_not_stop_training(tmp_path):
    run = tmp_path / "run"
    sets = set_args("training.max_steps=12", "training.exact_match_samples=0", FEW_RECORDS)
    proc = start_cli(tmp_path, "--preset", str(DEMO_PRESET), "--output", str(run), *sets)
    read_until(proc, lambda line: line.startswith("step "))
    (run / "CHECKPOINT_NOW").mkdir()
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-2000:]
    assert "finished at step 12/12" in out
    assert "not a file" in out


def test_runs_saved_before_the_rule_still_resume(tmp_path):
    """Older runs saved `overwrite: true` in settings.yaml; --resume must still read them."""
    from finetune_tui.engine.common.errors import SettingsError
    from finetune_tui.engine.settings.preset import load_preset

    saved = tmp_path / "settings.yaml"
    saved.write_text(DEMO_PRESET.read_text() + "output:\n  overwrite: true\n")
    assert load_preset(saved, saved_run=True).output.dir is None
    with pytest.raises(SettingsError, match="pass --overwrite on the command line"):
        load_preset(saved)
