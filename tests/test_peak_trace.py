"""benchmarks/peak_trace.py: the allocator history replayed to its peak names the code that
held the memory then, and the trace hook stays out of the way where there is no GPU."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import peak_trace  # noqa: E402

DS = "/site/deepspeed/runtime/zero/stage3.py"
HF = "/site/transformers/models/llama/modeling_llama.py"
TORCH = "/site/torch/nn/modules/linear.py"


def alloc(addr, size, path, line=1, name="f"):
    frames = [{"filename": TORCH, "line": 9, "name": "forward"}]
    frames.append({"filename": path, "line": line, "name": name})
    return {"action": "alloc", "addr": addr, "size": size, "frames": frames}


def free(addr):
    return {"action": "free_completed", "addr": addr}


def test_the_peak_is_the_most_allocated_moment_and_its_blocks_are_grouped_by_who_asked():
    events = [
        free(99),  # allocated before the history began
        alloc(1, 100, DS, 1306, "initialize_optimizer_states"),
        alloc(2, 40, HF, 50, "forward"),
        alloc(3, 40, HF, 50, "forward"),
        free(1),
        alloc(4, 120, DS, 2000, "step"),  # 200: the peak (180 before)
        free(4),
        alloc(5, 20, HF, 60, "forward"),  # 100
    ]
    summary = peak_trace.peak_of(events)
    assert summary["peak_bytes"] == 200 and summary["peak_event"] == 5
    assert summary["before_trace"] == 1
    groups = {g["where"]: g["bytes"] for g in summary["groups"]}
    assert groups == {
        "deepspeed/runtime/zero/stage3.py:2000 step": 120,
        "transformers/models/llama/modeling_llama.py:50 forward": 80,
    }
    assert [g["blocks"] for g in summary["groups"]] == [1, 2]  # largest first


def test_an_empty_history_has_no_peak():
    assert peak_trace.peak_of([])["peak_bytes"] == 0


def test_the_trace_hook_does_nothing_without_a_gpu(tmp_path):
    """Every process on PYTHONPATH loads the hook: on a CPU machine it must not fail or write."""
    env = os.environ | {
        "PYTHONPATH": str(REPO / "benchmarks" / "trace_site"),
        "FT_PEAK_TRACE": str(tmp_path / "traces"),
        "CUDA_VISIBLE_DEVICES": "",
    }
    done = subprocess.run(
        [sys.executable, "-c", "import sys; print('peak_trace' in sys.modules)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout.strip() == "True", done.stderr
    assert not (tmp_path / "traces").exists()


def test_the_reserved_peak_names_the_code_whose_allocations_made_the_segments():
    def segment(action, addr, size, path=DS, line=7):
        return {**alloc(addr, size, path, line), "action": action}

    events = [
        segment("segment_alloc", 10, 512, HF, 50),
        alloc(1, 100, HF, 50, "forward"),
        segment("segment_alloc", 20, 1024, DS, 7),
        alloc(2, 600, DS, 7, "step"),  # the reserved peak: 1536, 700 allocated
        free(2),
        segment("segment_free", 20, 1024),
        segment("segment_map", 30, 256),
    ]
    summary = peak_trace.peak_of(events)
    assert summary["reserved_peak_gib"] == round(1536 / 2**30, 3)
    assert summary["allocated_at_reserved_peak_gib"] == round(700 / 2**30, 3)
    assert {g["where"]: g["bytes"] for g in summary["segments"]} == {
        "deepspeed/runtime/zero/stage3.py:7 f": 1024,
        "transformers/models/llama/modeling_llama.py:50 f": 512,
    }
