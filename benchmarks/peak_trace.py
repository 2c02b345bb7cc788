"""Where a run's peak GPU allocation comes from: torch's CUDA allocator history of a worker,
replayed to the moment the most memory was allocated, its live blocks grouped by the library
code that asked for them. For a plan that misses (ZeRO-3 offload, Gemma-2 at large batch),
this names the tensors at the peak instead of guessing them from totals.

Used by benchmarks/trace_site/sitecustomize.py (`PEAK_TRACE=1 bash benchmarks/gpu_run.sh
...`): every Python process started with FT_PEAK_TRACE=DIR records its allocations and
writes DIR/peak-PID.json at exit if it used the GPU. Recording may set CUDA up in processes
that would not (a launcher), and costs time: read nvidia-smi figures and speed from untraced
runs. Summarise written traces again with

    python benchmarks/peak_trace.py DIR/peak-*.json
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

# frames in these are how memory gets allocated, not who asked for it
PLUMBING = ("torch/", "contextlib.py", "functools.py", "/threading.py", "peak_trace.py")
LIBRARIES = ("deepspeed", "transformers", "peft", "trl", "liger_kernel", "bitsandbytes")
LIBRARIES += ("accelerate", "unsloth", "finetune_tui")
MAX_ENTRIES = 3_000_000  # allocator events kept; the oldest go first past it
TOP = 25


def start(folder: str) -> None:
    """Record allocations from now on, and summarise them when the process exits."""
    import atexit

    import torch

    if not torch.cuda.is_available():
        return
    torch.cuda.memory._record_memory_history(stacks="python", max_entries=MAX_ENTRIES)
    atexit.register(_write, Path(folder))
    leave = os._exit

    def write_then_leave(code: int) -> None:  # finetune-tui leaves through os._exit, which
        _write(Path(folder))  # skips atexit handlers registered before its own
        leave(code)

    os._exit = write_then_leave


_written: list[bool] = []


def _write(folder: Path) -> None:
    import torch

    if _written or not torch.cuda.is_initialized() or torch.cuda.max_memory_allocated() == 0:
        return
    _written.append(True)
    snapshot = torch.cuda.memory._snapshot()
    traces = snapshot.get("device_traces") or [[]]
    summary = peak_of(traces[torch.cuda.current_device()])
    summary |= {"argv": sys.argv[:4], "max_memory_allocated": torch.cuda.max_memory_allocated()}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"peak-{os.getpid()}.json").write_text(json.dumps(summary, indent=1))


def peak_of(events: list[dict]) -> dict:
    """Replay alloc / free events; at the most allocated moment, the live blocks grouped by
    the code that asked for them (largest first). Frees of blocks allocated before the
    history began are skipped: `before_trace` says how many."""
    peak, index, unknown = 0, None, 0
    for i, total, known in _replay(events):
        unknown += not known
        if total > peak:
            peak, index = total, i
    live = _live_at(events, index) if index is not None else {}
    return {
        "peak_bytes": peak,
        "peak_gib": round(peak / 2**30, 3),
        "events": len(events),
        "peak_event": index,
        "before_trace": unknown,
        "groups": _grouped(live.values()),
    } | reserved_peak_of(events)


def reserved_peak_of(events: list[dict]) -> dict:
    """The most reserved moment (segments the allocator holds, counted from the history's
    start), what was allocated then, and the segments held grouped by the code whose
    allocation made them: where reserved runs far above allocated, which sizes did it."""
    peak, index, held = 0, None, {}
    for i, total, segments in _segment_replay(events):
        if total > peak:
            peak, index, held = total, i, dict(segments)  # the segments held at the peak
    if index is None:
        return {"reserved_peak_gib": 0.0}
    allocated = 0  # the most allocated while the reservation stays at its peak
    for i, total_allocated, _ in _replay(events):
        if i > index and "segment" in events[i].get("action", ""):
            break
        if i >= index:
            allocated = max(allocated, total_allocated)
    return {
        "reserved_peak_gib": round(peak / 2**30, 3),
        "allocated_at_reserved_peak_gib": round(allocated / 2**30, 3),
        "segments": _grouped(held.values()),
    }


def _segment_replay(events: list[dict]):
    """(index, bytes reserved after it, the segments held then) for each event; a segment is
    made by segment_alloc (segment_map under expandable segments) and given back by
    segment_free (segment_unmap)."""
    held, total = {}, 0
    for i, event in enumerate(events):
        action = event.get("action")
        if action in ("segment_alloc", "segment_map"):
            held[event["addr"]] = event
            total += event["size"]
        elif action in ("segment_free", "segment_unmap"):
            total -= held.pop(event["addr"], {"size": 0})["size"]
        yield i, total, held


def _replay(events: list[dict]):
    """(index, bytes allocated after it, whether a free found its block) for each event."""
    sizes, total = {}, 0
    for i, event in enumerate(events):
        action, known = event.get("action"), True
        if action == "alloc":
            sizes[event["addr"]] = event["size"]
            total += event["size"]
        elif action == "free_completed":
            size = sizes.pop(event["addr"], None)
            known = size is not None
            total -= size or 0
        yield i, total, known


def _live_at(events: list[dict], index: int) -> dict:
    live = {}
    for event in events[: index + 1]:
        if event.get("action") == "alloc":
            live[event["addr"]] = event
        elif event.get("action") == "free_completed":
            live.pop(event["addr"], None)
    return live


def _grouped(blocks) -> list[dict]:
    groups: dict[str, dict] = {}
    for block in blocks:
        key = asked_by(block.get("frames") or [])
        group = groups.setdefault(key, {"where": key, "bytes": 0, "blocks": 0})
        group["bytes"] += block["size"]
        group["blocks"] += 1
    ranked = sorted(groups.values(), key=lambda g: -g["bytes"])[:TOP]
    for group in ranked:
        group["gib"] = round(group["bytes"] / 2**30, 3)
    return ranked


def asked_by(frames: list[dict]) -> str:
    """The innermost library frame and the innermost frame beyond torch's own plumbing,
    e.g. 'deepspeed/runtime/zero/stage3.py:1306 initialize_optimizer_states'."""
    own = [f for f in frames if not any(p in f.get("filename", "") for p in PLUMBING)]
    named = [f for f in own if any(f"/{lib}/" in f.get("filename", "") for lib in LIBRARIES)]
    chosen = (named or own or frames)[:2]
    return " < ".join(_where(f) for f in chosen) or "unknown"


def _where(frame: dict) -> str:
    path = frame.get("filename", "?")
    for lib in LIBRARIES:
        if f"/{lib}/" in path:
            path = lib + "/" + path.split(f"/{lib}/", 1)[1]
            break
    else:
        path = Path(path).name
    return f"{path}:{frame.get('line', '?')} {frame.get('name', '?')}"


def main(paths: list[str]) -> None:
    for path in paths:
        summary = json.loads(Path(path).read_text())
        print(f"{path}: peak {summary['peak_gib']} GiB ({' '.join(summary.get('argv', []))})")
        for group in summary["groups"]:
            print(f"  {group['gib']:8.3f} GiB  {group['blocks']:5d}  {group['where']}")
        if summary.get("segments"):
            print(
                f"  reserved peak {summary['reserved_peak_gib']} GiB, allocated then "
                f"{summary['allocated_at_reserved_peak_gib']} GiB; segments made by:"
            )
            for group in summary["segments"]:
                print(f"  {group['gib']:8.3f} GiB  {group['blocks']:5d}  {group['where']}")


if __name__ == "__main__":
    main(sys.argv[1:])
