"""Launcher variables inherited from a job system count only inside finetune-tui's own launch:
elsewhere they are dropped, with one warning line, and the run is an ordinary run."""

from __future__ import annotations

import subprocess

import pytest
from conftest import DEMO_PRESET, cli_command, cli_env, set_args

from finetune_tui.engine.errors import InputError
from finetune_tui.engine.launcher_env import LAUNCH_TOKEN, apply_policy, own_launch_environment
from finetune_tui.engine.run_dir.summary import read_summary

QUICK = set_args(
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
        {"RANK": "1"},
        {"WORLD_SIZE": "4"},
        {"RANK": "abc", "LOCAL_RANK": "x", "MASTER_ADDR": "nowhere", "ACCELERATE_USE_FSDP": "1"},
    ],
    ids=["rank-1", "world-size-4", "rank-abc"],
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


def test_commands_that_do_not_train_drop_them_too(tmp_path):
    result = run_with_env(tmp_path, {"RANK": "abc"}, "plan", "--model", "demo", "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("warning: ignoring RANK") == 1


def test_only_the_products_own_worker_keeps_them():
    inherited = {"RANK": "1", "WORLD_SIZE": "2", "MASTER_PORT": "1234", "PATH": "/bin"}
    # a worker the launcher started: kept as they are
    launched = own_launch_environment(dict(inherited))
    assert apply_policy(worker=True, environ=launched) is None
    assert launched["RANK"] == "1" and launched[LAUNCH_TOKEN]
    # a --worker typed by hand, or any other entry, even holding a token: dropped
    for worker, environ in ((True, dict(inherited)), (False, dict(launched))):
        warning = apply_policy(worker=worker, environ=environ)
        assert environ == {"PATH": "/bin"}
        assert "MASTER_PORT, RANK, WORLD_SIZE" in warning and LAUNCH_TOKEN not in warning
    # inside the launch, a rank that is not a number is one line, not a traceback
    with pytest.raises(InputError, match="RANK='abc'"):
        apply_policy(worker=True, environ=own_launch_environment({"RANK": "abc"}))
