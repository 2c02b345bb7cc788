"""End to end in a real terminal: the installed `finetune-tui` driven through tmux."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DEMO_PRESET, FEW_RECORDS, cli_env

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")
EXE = str(Path(sys.executable).parent / "finetune-tui")


class Tmux:
    def __init__(self, name: str, command: str, env: dict[str, str]):
        self.name = name
        exports = " ".join(
            f"{k}='{v}'" for k, v in env.items() if k.startswith(("FINETUNE", "HF_"))
        )
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
        subprocess.run(
            [
                "tmux",
                "new-session",
                "-d",
                "-s",
                name,
                "-x",
                "100",
                "-y",
                "32",
                f"env {exports} TERM=xterm-256color {command}; sleep 30",
            ],
            check=True,
        )

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def screen(self) -> str:
        return subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True, text=True
        ).stdout

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.5)
        raise AssertionError(f"{text!r} never appeared; screen:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


def wizard_training(name: str, tmp_path, steps: int) -> Tmux:
    """The wizard on the demo in a real terminal, Start pressed on its Train screen."""
    tmux = Tmux(
        name,
        f"{EXE} --tui --preset {DEMO_PRESET} --set training.max_steps={steps} "
        f"--set training.exact_match_samples=0 --set {FEW_RECORDS} --output {tmp_path / 'run'}",
        cli_env(tmp_path),
    )
    try:
        tmux.wait_for("1 Hardware", 60)
        tmux.keys("6")
        tmux.wait_for("Start training", 20)
        tmux.keys("s")
    except BaseException:
        tmux.close()
        raise
    return tmux


def test_wizard_trains_the_demo_to_the_end(tmp_path):
    run_dir = tmp_path / "run"
    tmux = wizard_training("ft-wizard", tmp_path, steps=20)
    try:
        tmux.wait_for("finished", 240)
        screen = tmux.screen()
        assert "step 20/20" in screen and "tokens/s" in screen
        tmux.keys("q")
    finally:
        tmux.close()
    assert (run_dir / "adapter" / "adapter_config.json").is_file()


@pytest.mark.parametrize("how", ["closed terminal", "SIGTERM"])
def test_a_closed_terminal_or_sigterm_mid_training_saves_before_the_wizard_leaves(tmp_path, how):
    """SSH drops (SIGHUP as the terminal closes) or a scheduler ends the job (SIGTERM): the
    wizard's training stops at its next step with a checkpoint and the adapter saved."""
    import json
    import os
    import signal

    run_dir = tmp_path / "run"
    tmux = wizard_training(f"ft-hangup-{how[:4]}", tmp_path, steps=5000)
    try:
        deadline = time.monotonic() + 240
        metrics = run_dir / "metrics.jsonl"
        while time.monotonic() < deadline and not (metrics.is_file() and metrics.stat().st_size):
            time.sleep(0.5)
        pid = int((run_dir / "run.pid").read_text().split()[0])
        if how == "SIGTERM":
            os.kill(pid, signal.SIGTERM)
    finally:
        tmux.close()  # the terminal goes: SIGHUP
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (run_dir / "summary.json").is_file():
        time.sleep(0.5)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "stopped" and summary["step"] < 5000
    assert (run_dir / "adapter" / "adapter_config.json").is_file()
    assert any((run_dir / "checkpoints").glob("checkpoint-*/trainer_state.json"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.2)  # and the wizard has left: nothing keeps running
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_detach_then_runs_then_attach(tmp_path):
    env = cli_env(tmp_path)
    run_dir = tmp_path / "data" / "runs" / "bg run"  # a space: the printed command quotes it
    started = subprocess.run(
        [
            EXE,
            "--preset",
            str(DEMO_PRESET),
            "--output",
            str(run_dir),
            "--detach",
            "--set",
            "training.max_steps=60",
            "--set",
            "training.logging_steps=1",
            "--set",
            "training.exact_match_samples=0",
            "--set",
            FEW_RECORDS,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert started.returncode == 0, started.stderr
    assert str(run_dir) in started.stdout
    listing = subprocess.run([EXE, "runs"], capture_output=True, text=True, env=env)
    assert "bg" in listing.stdout and "running" in listing.stdout
    watch = next(line for line in started.stdout.splitlines() if line.startswith("watch it: "))
    pasted = watch.removeprefix("watch it: ").replace("finetune-tui", EXE, 1)  # as typed
    tmux = Tmux("ft-attach", pasted, env)
    try:
        tmux.wait_for("attached to", 60)
        tmux.wait_for("step", 180)
        tmux.keys("q")
    finally:
        tmux.close()
    deadline = time.monotonic() + 300
    status = ""
    while time.monotonic() < deadline and '"status": "finished"' not in status:
        time.sleep(1)
        status = subprocess.run(
            [EXE, "runs", "--json"], capture_output=True, text=True, env=env
        ).stdout
    assert '"status": "finished"' in status


def test_first_time_path_on_a_simulated_4090_opens_on_a_plan_that_fits(tmp_path):
    """A new user planning Llama-3.1-8B for an RTX 4090: Strategy shows a plan that fits,
    with its reasons; Review says which values were recommended; ? lists the keys."""
    tmux = Tmux(
        "ft-first",
        f"{EXE} --tui --gpu 'RTX 4090' --set model.name_or_path=meta-llama/Llama-3.1-8B",
        cli_env(tmp_path),
    )
    try:
        tmux.wait_for("1 Hardware", 60)
        tmux.keys("4")
        screen = tmux.wait_for("predicted peak", 20)
        assert "fits" in screen and "DOES NOT FIT" not in screen
        assert "quantization.mode:" in screen
        tmux.keys("5")
        assert "recommended)" in tmux.wait_for("Differs from the defaults", 20)
        tmux.keys("?")
        tmux.wait_for("Screens", 10)
        tmux.keys("Escape", "q")
    finally:
        tmux.close()
