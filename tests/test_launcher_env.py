"""Launcher variables inherited from a job system count only inside finetune-tui's own launch:
elsewhere they are dropped, with one warning line, and the run is an ordinary run."""

from __future__ import annotations

import subprocess

import pytest
from conftest import DEMO_PRESET, FEW_RECORDS, cli_command, cli_env, set_args

from finetune_tui.engine.common.errors import InputError
from finetune_tui.engine.launch.environment import (
    LAUNCH_TOKEN,
    apply_policy,
    own_launch_environment,
)
from finetune_tui.engine.runs.summary import read_summary

QUICK = set_args(
    FEW_RECORDS,
    "training.max_steps=4",
    "training.exact_match_samples=0",
    "dataset.eval_fraction=0",
    "training.logging_steps=1",
)


def run_with_env(tmp_path, extra: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        cli_command(*args),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={**cli_env(tmp_path), **extra},
        timeout=600,
    )


@pytest.mark.parametrize(
    "inherited",
    [
        {"RANK": "1"},  # trained as a non-main rank: no settings, metrics or summary
        # accelerate waited for 4 processes at MASTER_ADDR; RANK=abc was an internal error
        {"WORLD_SIZE": "4", "RANK": "abc", "MASTER_ADDR": "nowhere", "ACCELERATE_USE_FSDP": "1"},
    ],
    ids=["rank-1", "world-size-4-rank-abc"],
)
def test_inherited_launcher_variables_are_ignored_with_one_warning(tmp_path, inherited):
    run_dir = tmp_path / "r1"
    result = run_with_env(
        tmp_path, inherited, "--preset", str(DEMO_PRESET), "--output", str(run_dir), *QUICK
    )
    assert result.returncode == 0, result.stderr[-2000:]
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and all(name in warnings[0] for name in inherited), result.stderr
    assert "internal error" not in result.stderr
    # an ordinary run: listed, resumable, with its settings, metrics and summary
    for name in ("settings.yaml", "metrics.jsonl", "summary.json"):
        assert (run_dir / name).is_file(), name
    summary = read_summary(run_dir)
    assert summary.status == "finished" and summary.processes == 1 and summary.step == 4


def test_commands_that_do_not_train_drop_them_too(cli, monkeypatch):
    monkeypatch.setenv("RANK", "abc")
    result = cli("plan", "--model", "demo", "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("warning: ignoring RANK") == 1


def test_only_the_products_own_worker_keeps_them():
    inherited = {"RANK": "1", "WORLD_SIZE": "2", "MASTER_PORT": "1234", "PATH": "/bin"}
    # a worker the launcher started: kept as they are
    launched = own_launch_environment("launcher-token", dict(inherited))
    assert apply_policy(worker=True, environ=launched) is None
    assert launched["RANK"] == "1" and launched[LAUNCH_TOKEN]
    # a --worker typed by hand, or any other entry, even holding a token: dropped
    for worker, environ in ((True, dict(inherited)), (False, dict(launched))):
        warning = apply_policy(worker=worker, environ=environ)
        assert environ == {"PATH": "/bin"}
        assert "MASTER_PORT, RANK, WORLD_SIZE" in warning and LAUNCH_TOKEN not in warning
    # inside the launch, a rank that is not a number is one line, not a traceback
    with pytest.raises(InputError, match="RANK='abc'"):
        apply_policy(worker=True, environ=own_launch_environment("launcher-token", {"RANK": "abc"}))


# --- the layout: settings and command-line flags that contradict each other -------------


DDP = "distributed:\n  strategy: ddp\n  processes: 2\n"


@pytest.mark.parametrize(
    "args, named",
    [
        (["export", "--preset", "ddp.yaml", "--slurm", "--gpus", "8", "--nodes", "3"], "--gpus 8"),
        (["export", "--preset", "ddp.yaml", "--distributed", "fsdp"], "--distributed fsdp"),
        (
            [
                "plan",
                "--model",
                "demo",
                "--gpus",
                "2",
                *set_args("distributed.strategy=ddp", "distributed.processes=8"),
            ],
            "--gpus 2",
        ),
        (["plan", "--model", "demo", "--preset", "ddp.yaml", "--gpus", "4"], "--gpus 4"),
        (["export", *set_args("distributed.cpu_offload=true")], "distributed.cpu_offload"),
        (["export", *set_args("distributed.strategy=ddp", "distributed.cpu_offload=true")], "DDP"),
    ],
    ids=["slurm-gpus", "strategy", "plan-set", "plan-preset", "offload-alone", "offload-ddp"],
)
def test_a_layout_the_settings_contradict_is_one_line_and_writes_nothing(
    tmp_path, monkeypatch, capsys, args, named
):
    from finetune_tui.main import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "ddp.yaml").write_text(DDP)
    code = main([*args, "--gpu", "RTX 4090"] if args[0] == "plan" else [*args, "-o", "x/t.py"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and named in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp.yaml"]


def test_a_flag_fills_what_the_settings_leave_open(tmp_path, monkeypatch, capsys):
    """The ddp preset names 2 processes and no nodes: --nodes 3 gives 3 nodes x 2 GPUs,
    and the exported preset says so too."""
    import yaml

    from finetune_tui.main import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "ddp.yaml").write_text(DDP)
    assert main(["export", "--preset", "ddp.yaml", "--slurm", "--nodes", "3", "-o", "t.py"]) == 0
    sbatch = (tmp_path / "t.sbatch").read_text()
    assert "#SBATCH --nodes=3" in sbatch and "#SBATCH --gpus-per-node=2" in sbatch
    exported = yaml.safe_load((tmp_path / "t.yaml").read_text())["distributed"]
    assert (exported["processes"], exported["nodes"]) == (2, 3)
