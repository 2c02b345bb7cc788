"""Headless CLI end to end, in subprocesses, as a user over SSH would run it."""

from __future__ import annotations

import json

import pytest
from conftest import DEMO_PRESET, FEW_RECORDS, run_cli, run_python, set_args


@pytest.mark.parametrize(
    ("args", "code", "said"),
    [
        (["--help"], 0, "usage: finetune-tui"),
        (["--no-such-option"], 2, "unrecognized arguments: --no-such-option"),
        (["--preset", "/nonexistent.yaml"], 2, "/nonexistent.yaml: preset file not found"),
    ],
)
def test_the_program_exits_with_mains_code_and_says_it_first(tmp_path, args, code, said):
    """The entry ends the process itself, after every exit handler: the code is still
    main()'s (or argparse's), and what was printed is all there."""
    result = run_cli(tmp_path, *args, timeout=60)
    assert result.returncode == code, result.stderr
    assert said in result.stdout + result.stderr


def test_help_does_not_import_torch():
    code = (
        "import sys\n"
        "from finetune_tui.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported by --help'\n"
        "assert 'transformers' not in sys.modules\n"
    )
    result = run_python(code)
    assert "--preset" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "missing.yaml"], "missing.yaml: preset file not found"),
        (["--preset", str(DEMO_PRESET), "--set", "lora.r=0"], "--set: lora.r: must be > 0"),
        (["--preset", str(DEMO_PRESET), "--set", "lora.rank=8"], "lora.rank: unknown key"),
        (
            ["--preset", str(DEMO_PRESET), "--set", "dataset.path=/nonexistent/data.jsonl"],
            "/nonexistent/data.jsonl",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(cli, tmp_path, args, message):
    result = cli(*args, "--output", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr


def test_no_tty_without_preset_explains_itself(cli):
    result = cli()
    assert result.returncode == 2
    assert "--preset" in result.stderr


def test_demo_trains_headless_and_learns(cli, learned_demo):
    """The README's first command: loss falls clearly and held-out exact-match rises."""
    result, run_dir = learned_demo
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]

    step_lines = [line for line in result.stdout.splitlines() if line.startswith("step ")]
    assert len(step_lines) >= 10
    assert "tok/s" in step_lines[-1] and "eta" in step_lines[-1]
    assert "finished at step" in result.stdout
    # and what keeps the model, as the Try screen says it
    said = f"keep it: finetune-tui merge {run_dir} -o {run_dir}-merged, then finetune-tui ship"
    assert result.stdout.strip().splitlines()[-1].startswith(said)

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert summary["final_loss"] < 0.5 * summary["first_loss"]
    assert summary["backend_changes"] == []  # plain HF changes nothing behind our back
    assert summary["exact_match_after"] >= summary["exact_match_before"] + 0.3
    assert (run_dir / "adapter" / "adapter_config.json").is_file()
    assert (run_dir / "settings.yaml").is_file()
    assert (run_dir / "export" / "train.py").is_file() and summary["export"]
    # the script is written for the format the run detected ("auto" in the preset)
    assert "format: messages" in (run_dir / "export" / "train.yaml").read_text()

    kinds = [json.loads(line)["kind"] for line in (run_dir / "metrics.jsonl").open()]
    assert kinds[0] in {"notice", "started"}
    assert {"started", "step", "eval", "finished"} <= set(kinds)

    again = cli("--preset", str(DEMO_PRESET), "--output", str(run_dir))
    assert again.returncode == 2
    assert "--overwrite" in again.stderr


def test_durations_read_the_same_in_progress_lines_and_the_panel():
    from finetune_tui.engine.runs.events import format_duration

    assert [format_duration(s) for s in (None, 5.4, 65, 3725.6)] == [
        "?",
        "0:05",
        "1:05",
        "1:02:06",
    ]


def test_library_prints_stay_off_the_progress_lines(tmp_path, monkeypatch, capsys):
    """Unsloth prints its banner and notices with print(): headless stdout keeps only the
    progress lines the README promises; the library's text goes to stderr (the run log)."""
    from types import SimpleNamespace

    from finetune_tui.engine.runs.events import Notice
    from finetune_tui.engine.train import runner
    from finetune_tui.main import main

    def noisy(settings, emit, stop=None, run_dir=None, resume=False):
        print("Unsloth: Will patch your computer to enable 2x faster free finetuning.")
        emit(Notice("a progress notice"))
        return SimpleNamespace(status="finished")

    monkeypatch.setattr(runner, "run_training", noisy)
    code = main(["--preset", str(DEMO_PRESET), "--output", str(tmp_path / "run")])
    captured = capsys.readouterr()
    assert code == 0
    assert "a progress notice" in captured.out and "Unsloth" not in captured.out
    assert "Unsloth" in captured.err


def test_the_last_step_is_logged_whatever_logging_steps_says(cli, tmp_path):
    """Three steps at logging_steps 10 logged step 1 only: the finished line's "final loss"
    was step 1's. The last step (and a stop's) is always logged now."""
    run = tmp_path / "run"
    result = cli(
        "--preset", str(DEMO_PRESET), "--output", str(run),
        *set_args("training.max_steps=3", "training.logging_steps=10", FEW_RECORDS,
                  "training.exact_match_samples=0", "dataset.eval_fraction=0"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [e for e in events if e["kind"] == "step"]
    assert [e["step"] for e in steps] == [1, 3]
    finished = next(e for e in events if e["kind"] == "finished")
    assert finished["final_loss"] == steps[-1]["loss"]


def test_an_evaluation_at_the_last_step_is_not_run_again_after_training(cli, tmp_path):
    """eval_steps dividing the steps evaluated the same weights on the same split twice
    (and said it twice)."""
    run = tmp_path / "run"
    result = cli(
        "--preset", str(DEMO_PRESET), "--output", str(run),
        *set_args("training.max_steps=4", "training.eval_steps=2", FEW_RECORDS,
                  "training.exact_match_samples=0"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["kind"] == "eval"] == [2, 4]
    summary = json.loads((run / "summary.json").read_text())
    last = [e for e in events if e["kind"] == "eval"][-1]
    assert summary["eval_loss"] == last["eval_loss"]
