"""plan --measure: candidates trained a few steps each, each in its own process, predicted
beside measured, the measured fastest that fits picked; on a CPU machine, one line."""

from __future__ import annotations

from pathlib import Path

from conftest import DEMO_PRESET

from finetune_tui.engine.settings.preset import load_preset, with_changes
from finetune_tui.engine.train.measure import (
    NEEDS_GPU,
    Candidate,
    Measured,
    measure,
    subprocess_runner,
    table,
)


def candidate(label: str, batch: int, predicted_gib: float = 1.0) -> Candidate:
    small = ["dataset.max_samples=200", "training.max_seq_length=48"]  # quick to prepare
    settings = load_preset(DEMO_PRESET, [f"training.micro_batch_size={batch}", *small])
    return Candidate(label, settings, predicted_gib, 1.0)


def test_the_pick_is_the_measured_fastest_that_fits():
    a, b, c, d = (candidate(n, 4) for n in "abcd")
    outcomes = {
        "a": Measured(a, "finished", 9.0, 1000.0),
        "b": Measured(b, "finished", 12.5, 3000.0),  # fastest, over the card
        "c": Measured(c, "finished", 10.0, 2000.0),
        "d": Measured(d, "backed off", 8.0, 2500.0, "micro-batch 4 -> 2"),  # not as planned
    }
    result = measure([a, b, c, d], lambda cand: outcomes[cand.label], usable_gib=11.0)
    assert result.picked is outcomes["c"]
    lines = table(result, "RTX 4090")
    assert lines[0] == "measured on RTX 4090, 11.0 GiB usable, 6 steps each:"
    assert any(line.startswith("* c ") for line in lines)
    assert any("backed off: micro-batch 4 -> 2" in line for line in lines)
    assert lines[-1] == "picked: c (* the measured fastest that fits)"
    failed = measure([a], lambda cand: Measured(cand, "failed", detail="exit 1: boom"), 11.0)
    assert failed.picked is None and "picked: none" in table(failed, "RTX 4090")[-1]


def test_two_candidates_really_train_in_their_own_processes(tmp_path):
    """The real path on the CPU: the headless command on a temporary preset, twice; no GPU
    peak to measure, and the table says so instead of inventing one."""
    found = [candidate("micro-batch 4", 4, 0.3), candidate("micro-batch 16", 16, 0.4)]
    result = measure(found, subprocess_runner(tmp_path, steps=3), usable_gib=None)
    assert [m.status for m in result.measured] == ["finished", "finished"], result.measured
    assert all(m.peak_gib is None and m.tokens_per_second > 0 for m in result.measured)
    assert result.picked is max(result.measured, key=lambda m: m.tokens_per_second)
    for number, m in enumerate(result.measured, start=1):
        ran = load_preset(tmp_path / f"candidate-{number}" / "settings.yaml")
        assert ran.training.max_steps == 3
        assert ran.training.micro_batch_size == m.candidate.settings.training.micro_batch_size
    lines = table(result, "CPU", steps=3)
    rows = [line for line in lines if "micro-batch" in line and "x" in line]
    assert len(rows) == 2 and all("no VRAM" in row for row in rows)
    assert "  no VRAM: these runs trained on the CPU; no GPU peak was measured" in lines


def test_a_candidate_that_fails_is_one_line_of_the_table(tmp_path):
    bad = candidate("a missing dataset", 4)
    bad = Candidate(
        bad.label, with_changes(bad.settings, {"dataset.path": "/nonexistent.jsonl"}), 1, 1
    )
    result = measure([bad], subprocess_runner(tmp_path, steps=1), usable_gib=None)
    (m,) = result.measured
    assert m.status == "failed" and m.detail.startswith("exit 2: finetune-tui: error:")
    assert "/nonexistent.jsonl" in m.detail and result.picked is None


def test_plan_measure_on_a_machine_without_a_gpu_is_one_line(cli):
    result = cli("plan", "--model", "demo", "--measure")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"finetune-tui: error: plan --measure {NEEDS_GPU}\n"
    simulated = cli("plan", "--model", "demo", "--measure", "--gpu", "RTX 4090")
    assert simulated.returncode == 2 and "drop --gpu / --vram" in simulated.stderr


def test_the_candidates_are_different_strategies_and_the_advised_says_what_it_is():
    """The alternatives are named by what they change; the advised row names the choices
    they change from (a GPU row of Gemma-2-2B printed only 'advised'), and a candidate that
    repeats one before in backend, quantisation, batch and checkpointing is not measured
    (on the H200 the three differed in the optimizer and grouping alone, within 3 %)."""
    from finetune_tui.engine.plan.advisor import Alternative
    from finetune_tui.engine.train.measure import candidates

    settings = with_changes(
        load_preset(DEMO_PRESET),
        {"memory.backend": "liger", "training.micro_batch_size": 16},
    )
    alternatives = [
        Alternative("optimizer=adamw_torch", {"training.optimizer": "adamw_torch"}, 5.1, True, 2),
        Alternative("micro_batch_size=64", {"training.micro_batch_size": 64}, 99.0, False, 2.1),
        Alternative("gradient_checkpointing=on", {CKPT: "on"}, 3.0, True, 1.5),
        Alternative("gradient_checkpointing=on, optimizer=adamw_torch", BOTH, 3.1, True, 1.5),
        Alternative("memory.backend=hf", {"memory.backend": "hf"}, 5.5, True, 1.2),
    ]
    plan = type(
        "Plan",
        (),
        {
            "settings": settings,
            "peak_vram_gib": 5.0,
            "relative_speed": 2.0,
            "alternatives": alternatives,
        },
    )()
    # the optimizer alone, a batch that does not fit and a repeat of a strategy are skipped
    advised, checkpointed, hf = candidates(plan)
    assert advised.label == "advised: liger none b16 no ckpt"
    assert checkpointed.label == "gradient_checkpointing=on"
    assert checkpointed.settings.memory.gradient_checkpointing == "on"
    assert hf.label == "memory.backend=hf" and hf.settings.memory.backend == "hf"


CKPT = "memory.gradient_checkpointing"
BOTH = {CKPT: "on", "training.optimizer": "adamw_torch"}


def test_a_candidate_whose_speed_was_not_steady_is_flagged_in_the_table():
    """Steps after the first that still differ more than 1.5x in speed (kernels tuning for
    new shapes, a shared card) make a figure the table flags instead of presenting as
    measured; steady steps say nothing."""
    from finetune_tui.engine.runs.events import Step
    from finetune_tui.engine.train.measure import unsteady

    def steps(*rates):
        return [
            Step(i, 6, 0.0, 1.0, 1e-4, None, rate, 1.0, float(i), None)
            for i, rate in enumerate(rates, start=1)
        ]

    assert unsteady(steps(900, 30000, 31000, 29500)) == ""  # the first step is warm-up
    said = unsteady(steps(900, 9000, 30000, 18000, 31000))
    assert said == "not steady: 9,000-31,000 tokens/s over steps 2-5"
    a = candidate("a", 4)
    result = measure([a], lambda cand: Measured(cand, "finished", 2.0, 18000.0, said), None)
    (row,) = [line for line in table(result, "H100") if line.startswith("* a ")]
    assert row.endswith("(not steady: 9,000-31,000 tokens/s over steps 2-5)")


def test_a_candidate_stops_and_saves_when_its_measurer_is_killed(tmp_path):
    """SIGKILL of the process measuring (no handler can run there): its candidate notices
    its parent is gone, saves and stops as on SIGTERM, and leaves nothing running."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import REPO, cli_env

    script = (
        "import sys; sys.path.insert(0, sys.argv[2]);"
        "from pathlib import Path; from test_measure import candidate;"
        "from finetune_tui.engine.train.measure import subprocess_runner;"
        "subprocess_runner(Path(sys.argv[1]), steps=5000)(candidate('long', 4))"
    )
    measurer = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path), str(REPO / "tests")], env=cli_env(tmp_path)
    )
    run = tmp_path / "candidate-1"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (
        (run / "metrics.jsonl").is_file() and (run / "metrics.jsonl").stat().st_size
    ):
        time.sleep(0.3)
    child = int((run / "run.pid").read_text().split()[0])
    os.kill(measurer.pid, signal.SIGKILL)
    measurer.wait()
    while time.monotonic() < deadline and Path(f"/proc/{child}").exists():
        time.sleep(0.3)
    assert not Path(f"/proc/{child}").exists()
    summary = (run / "summary.json").read_text()
    assert '"status": "stopped"' in summary
    assert (run / "adapter" / "adapter_config.json").is_file()


def test_an_inherited_parent_variable_naming_another_process_is_ignored(monkeypatch):
    """A job system's environment may carry the variable from elsewhere: it counts only
    when it names this process's own parent, and it is not passed on."""
    import os
    import threading

    from finetune_tui.engine.train.measure import PARENT_ENV
    from finetune_tui.headless import stop_with_parent

    monkeypatch.setenv(PARENT_ENV, str(os.getppid() + 1))
    before = threading.active_count()
    stop_with_parent()
    assert PARENT_ENV not in os.environ and threading.active_count() == before
