"""Tokens/s counts the real tokens of training batches, the same way for every backend."""

from __future__ import annotations

import json

from conftest import DEMO_PRESET, run_cli, set_args


def test_our_token_count_matches_trl_and_skips_evaluation(tmp_path):
    run = tmp_path / "run"
    sets = set_args(
        "training.max_steps=6",
        "training.logging_steps=2",
        "training.save_steps=6",
        "training.eval_steps=2",
        "training.exact_match_samples=0",
    )
    result = run_cli(tmp_path, "--preset", str(DEMO_PRESET), "--output", str(run), *sets)
    assert result.returncode == 0, result.stderr[-2000:]
    ours = {
        e["step"]: e["tokens_seen"]
        for e in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
        if e["kind"] == "step"
    }
    state = json.loads((run / "checkpoints" / "checkpoint-6" / "trainer_state.json").read_text())
    trl = {e["step"]: e["num_tokens"] for e in state["log_history"] if "num_tokens" in e}
    assert {2, 4, 6} <= set(ours) <= set(trl) and all(ours[s] > 0 for s in ours)
    batch_tokens = 32 * 64  # one micro-batch at most: the loader may fetch one ahead
    for step in ours:
        assert 0 <= ours[step] - trl[step] <= batch_tokens, (step, ours, trl)
    lines = [line for line in result.stdout.splitlines() if line.startswith("step ")]
    assert all(" 0 tok/s" not in line for line in lines)
