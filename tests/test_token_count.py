"""Tokens/s counts the real tokens of training batches, the same way for every backend."""

from __future__ import annotations

import json

from conftest import DEMO_PRESET, FEW_RECORDS, call_main, set_args


def trained_steps(run, *settings: str):
    """The demo trained with these settings: the command's result and its step events."""
    sets = set_args(*settings, "training.exact_match_samples=0")
    result = call_main("--preset", str(DEMO_PRESET), "--output", str(run), *sets)
    assert result.returncode == 0, result.stderr[-2000:]
    events = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    return result, [e for e in events if e["kind"] == "step"]


def test_our_token_count_matches_trl_and_skips_evaluation(tmp_path):
    run = tmp_path / "run"
    result, steps = trained_steps(
        run,
        "training.max_steps=6",
        FEW_RECORDS,
        "training.logging_steps=2",
        "training.save_steps=6",
        "training.eval_steps=2",
    )
    ours = {e["step"]: e["tokens_seen"] for e in steps}
    state = json.loads((run / "checkpoints" / "checkpoint-6" / "trainer_state.json").read_text())
    trl = {e["step"]: e["num_tokens"] for e in state["log_history"] if "num_tokens" in e}
    assert {2, 4, 6} <= set(ours) <= set(trl) and all(ours[s] > 0 for s in ours)
    assert all(ours[step] == trl[step] for step in ours), (ours, trl)  # trained, not fetched
    lines = [line for line in result.stdout.splitlines() if line.startswith("step ")]
    assert all(" 0 tok/s" not in line for line in lines)


def test_the_last_step_of_an_epoch_counts_its_own_tokens(tmp_path):
    """The loader fetches a batch ahead except at an epoch's end: counted when batched, the
    last step of each epoch read 0 tokens/s and the next one double. Counted when trained,
    every step carries its own micro-batch."""
    _, steps = trained_steps(
        tmp_path / "run",
        "training.max_steps=null",
        "training.epochs=2",
        "dataset.max_samples=40",
        "dataset.eval_fraction=0",
        "training.micro_batch_size=8",
        "training.logging_steps=1",
    )
    assert len(steps) == 10  # 5 a epoch
    seen = [0] + [e["tokens_seen"] for e in steps]
    per_step = [b - a for a, b in zip(seen, seen[1:], strict=False)]
    assert min(per_step) > 0 and max(per_step) < 2 * min(per_step), per_step


def test_a_moved_length_limit_is_a_change_only_when_longer_samples_train():
    """Unsloth sets SFTConfig.max_length to None and truncates the data itself: that is no
    change. A sample longer than the asked limit reaching a batch is one, said once."""
    from types import SimpleNamespace

    import torch

    from finetune_tui.engine.train.callbacks import DriftCallback
    from finetune_tui.engine.train.token_count import TokenCounter

    notices = []
    drift = DriftCallback(notices.append, {"max_length": 8, "per_device_train_batch_size": 2}, None)
    padded = {
        "input_ids": torch.ones(2, 8),
        "attention_mask": torch.tensor([[1] * 8, [1] * 5 + [0] * 3]),
    }
    drift.counter = TokenCounter(lambda features: padded)
    args = SimpleNamespace(max_length=None, per_device_train_batch_size=2)
    drift.on_train_begin(args, None, None)
    drift.counter([])
    assert drift.counter.tokens == 0  # batched, not trained yet
    drift.counter.trained()
    drift.on_step_end(args, None, None)
    assert drift.changes == [] and notices == []
    assert drift.counter.tokens == 13 and drift.counter.longest == 8

    packed = {
        "input_ids": torch.ones(1, 14),
        "position_ids": torch.tensor([list(range(12)) + [0, 1]]),
    }
    drift.counter.collate = lambda features: packed
    drift.counter([])
    drift.on_step_end(args, None, None)
    drift.on_step_end(args, None, None)
    assert drift.counter.longest == 12
    assert drift.changes == ["max_length: asked 8, trained on samples of 12 tokens"]
    assert len(notices) == 1
