"""What runs measured is kept per model family, backend, objective and card, and the next
plan on that card says it was corrected by them; a damaged or hostile store never stops a plan."""

from __future__ import annotations

import json
import os

import pytest

from finetune_tui.engine.plan import measured
from finetune_tui.engine.plan.measured import Measurement, correction_for, record, store_path

CARD = "NVIDIA GeForce RTX 4090"  # what NVML calls the card `--gpu "RTX 4090"` simulates
LLAMA = "meta-llama/Llama-3.1-8B"


def entry(measured_gib: float, card: str = CARD, backend: str = "unsloth", **more) -> dict:
    return {
        "family": "llama",
        "backend": backend,
        "card": card,
        "measured_gib": measured_gib,
        "predicted_gib": 10.0,
        **more,
    }


def write_store(*lines: str | dict | bytes) -> None:
    path = store_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as file:
        for line in lines:
            if isinstance(line, dict):
                line = json.dumps(line)
            file.write((line if isinstance(line, bytes) else line.encode()) + b"\n")


def plan_json(cli, *args: str) -> dict:
    result = cli("plan", "--model", LLAMA, "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_next_plan_on_that_card_is_corrected_by_the_runs(cli):
    before = plan_json(cli, "--gpu", "RTX 4090")
    assert before["correction"] is None and "measured" not in before["reasons"]
    write_store(entry(11.0), entry(12.0), entry(12.5))
    after = plan_json(cli, "--gpu", "RTX 4090")
    assert after["settings"] == before["settings"]  # same pick, a larger peak
    assert after["peak_vram_gib"] == pytest.approx(before["peak_vram_gib"] * 1.2, abs=0.01)
    assert after["correction"] == {"factor": 1.2, "runs": 3}
    assert after["reasons"]["measured"].startswith(
        "corrected by your runs (3 runs, measured +20 % over plan): peak"
    )
    text = cli("plan", "--model", LLAMA, "--gpu", "RTX 4090").stdout
    assert "measured: corrected by your runs (3 runs, measured +20 % over plan)" in text


def test_only_the_same_card_family_and_backend_count():
    write_store(entry(12.0), entry(12.0, card="NVIDIA H100 80GB HBM3"), entry(15.0, backend="hf"))
    assert correction_for("llama", "unsloth", "RTX 4090").factor == 1.2
    assert correction_for("llama", "unsloth", "GPU with 24 GiB") is None  # --vram: no name
    assert correction_for("llama", "unsloth", "A100 80GB") is None  # another card
    assert correction_for("llama", "unsloth", "H100 80GB").factor == 1.2  # NVML's H100
    assert correction_for("qwen2", "unsloth", "RTX 4090") is None
    assert correction_for("llama", "hf", "RTX 4090").factor == 1.5
    write_store(entry(9.0), entry(9.5), entry(12.0))  # the median says: within the plan
    assert correction_for("llama", "unsloth", "RTX 4090") is None


def test_a_preference_objectives_runs_correct_only_its_own_plans():
    """DPO's memory (and the allocator its runs set) is not SFT's: a DPO run that measured
    more corrects the next DPO plan, not an SFT one; a line of an objective the product
    does not know is skipped."""
    write_store(entry(12.0, backend="hf", objective="dpo"), entry(15.0, objective="nonsense"))
    assert correction_for("llama", "hf", "RTX 4090", "dpo").factor == 1.2
    assert correction_for("llama", "hf", "RTX 4090") is None  # sft
    assert correction_for("llama", "hf", "RTX 4090", "orpo") is None
    assert correction_for("llama", "unsloth", "RTX 4090") is None  # the unknown line
    assert [m.objective for m in measured.measurements()] == ["dpo"]


def test_a_damaged_or_hostile_store_never_stops_a_plan(cli):
    write_store(
        entry(12.0),
        "not json",
        b"\xff\xfe binary",
        "[1, 2]",
        "[" * 100_000,  # too deep, and too long
        json.dumps(entry(12.0, card="\x1b[2J")),  # a forged name
        json.dumps(entry(float("nan"))),
        json.dumps(entry(1e9)),  # absurd: 100 million times the plan
        json.dumps(entry(True)),
        json.dumps(entry(12.0, tokens_per_second="fast")),
        entry(12.0)["family"],
        json.dumps(entry(12.0))[:40],  # a torn write
    )
    assert [m.measured_gib for m in measured.measurements()] == [12.0]
    assert plan_json(cli, "--gpu", "RTX 4090")["correction"] == {"factor": 1.2, "runs": 1}


@pytest.mark.parametrize("kind", ["folder", "fifo", "huge"])
def test_a_store_that_is_no_file_or_too_large_is_read_as_far_as_it_is_safe(cli, kind):
    path = store_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)  # reading it would block forever
    else:  # only the newest STORE_LIMIT bytes are read: the old entries fall out
        old = (json.dumps(entry(20.0)) + "\n").encode() * (measured.STORE_LIMIT // 100)
        path.write_bytes(old + (json.dumps(entry(12.0)) + "\n").encode() * measured.RECENT)
    expected = {"factor": 1.2, "runs": measured.RECENT} if kind == "huge" else None
    assert plan_json(cli, "--gpu", "RTX 4090")["correction"] == expected
    problem = record(Measurement("llama", "hf", CARD, 12.0, 10.0))  # a run: one line, no raise
    assert (problem is None) == (kind == "huge")
    assert kind == "huge" or "cannot remember this run's measured memory" in problem


def test_record_appends_a_line_of_its_own_and_refuses_links(tmp_path):
    write_store(entry(12.0))
    with open(store_path(), "ab") as file:
        file.write(b'{"family": "lla')  # a write torn by a crash
    assert record(Measurement("llama", "unsloth", CARD, 13.0, 10.0, 1234.5)) is None
    assert [m.measured_gib for m in measured.measurements()] == [12.0, 13.0]
    assert record(Measurement("llama", "unsloth", CARD, 0.4, 0.3)) is None  # the demo: skipped
    assert len(measured.measurements()) == 2
    store_path().unlink()
    os.symlink(tmp_path / "elsewhere", store_path())
    problem = record(Measurement("llama", "unsloth", CARD, 13.0, 10.0))
    assert "cannot remember this run's measured memory" in problem
    assert not (tmp_path / "elsewhere").exists()


def test_the_store_is_read_again_only_when_it_changes(monkeypatch):
    """The index is kept under the file's identity (path, time, size, inode) and rebuilt only
    when that changes: a plan does not reread the store it has just read."""
    write_store(entry(12.0), entry(13.0))
    measured.measurements()
    reads = []
    monkeypatch.setattr(measured, "_read", lambda path: reads.append(path) or [])
    assert len(measured.measurements()) == 2 and reads == []
    write_store(entry(12.0))
    assert measured.measurements() == [] and len(reads) == 1
