"""Cost of the live panel: the same training headless and inside the TUI, tokens/s compared.

The TUI run is the real `finetune-tui --tui` on a pseudo-terminal (full rendering, escape
sequences written and read), driven by keystrokes: `6` (Train screen), `s` (start), `q`
when the run's summary.json appears. The headless run is `finetune-tui --preset`. Runs
alternate after an uncounted warm-up of each (headless, tui, headless, tui, …) so drift on
the machine hits both. Step rates come from each run's metrics.jsonl, steps after the
first two. Prints JSON lines:

    python benchmarks/panel_overhead.py --preset presets/demo.yaml --repeats 2 \
        --set training.max_steps=40 --out panel.jsonl
    python benchmarks/panel_overhead.py --arch llama-3.2-1b --set training.max_steps=40  # GPU

With --arch, the preset is written from benchmarks/backends.py's QLoRA base settings on a
random-weight model of that architecture (see backends.py), built once.
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

CLI = [sys.executable, "-m", "finetune_tui"]


def run_headless(preset: str, overrides: list[str], run_dir: Path) -> float:
    """Plain progress lines, no terminal: the reference speed."""
    cmd = [*CLI, "--preset", preset, *_sets(overrides, run_dir)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.time()


def run_tui(preset: str, overrides: list[str], run_dir: Path, timeout: float) -> float:
    """The app on a pty, 120×40; output is drained (as a terminal would) and discarded."""
    cmd = [*CLI, "--preset", preset, "--tui", *_sets(overrides, run_dir)]
    pid, fd = pty.fork()
    if pid == 0:  # child: a terminal the size of a laptop's
        os.environ.update(COLUMNS="120", LINES="40", TERM="xterm-256color")
        os.execvp(cmd[0], cmd)
    deadline = time.monotonic() + timeout
    _drain(fd, seconds=4.0)  # first screen up
    for key in (b"6", b"s"):
        os.write(fd, key)
        _drain(fd, seconds=1.0)
    while not (run_dir / "summary.json").exists():
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            raise TimeoutError(f"TUI run did not finish in {timeout:.0f} s")
        _drain(fd, seconds=0.5)
    os.write(fd, b"q")
    _drain(fd, seconds=3.0)
    os.waitpid(pid, 0)
    return time.time()


def _drain(fd: int, seconds: float) -> None:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                os.read(fd, 65536)
            except OSError:
                return


def _sets(overrides: list[str], run_dir: Path) -> list[str]:
    pairs = [*overrides, f"output.dir={run_dir}"]
    return [arg for pair in pairs for arg in ("--set", pair)] + ["--overwrite"]


def speed(run_dir: Path) -> dict:
    """Steps/s and tokens/s over the steps after warm-up, from the run's own metrics.

    Both modes train the same settings, so tokens per step are equal and the ratio of
    step rates is the panel's cost.
    """
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    steps = [e for e in map(json.loads, lines) if e.get("kind") == "step"]
    warm = steps[2:]  # logged steps (every training.logging_steps optimizer steps)
    span = warm[-1]["elapsed_s"] - steps[1]["elapsed_s"]
    rates = [s["tokens_per_second"] for s in warm]
    return {
        "steps": steps[-1]["step"],
        "steps_per_s": round((warm[-1]["step"] - steps[1]["step"]) / span, 4),
        "tokens_per_s": round(sum(rates) / len(rates), 1),
    }


def arch_preset(arch: str, work: Path) -> str:
    """A preset for backends.py's base settings on a random-weight `arch` model."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from backends import BASE, CPU_BASE, build_model, write_dataset

    from finetune_tui.engine.settings.preset import save_preset, settings_from_overrides

    base = CPU_BASE if arch == "tiny" else BASE  # "tiny": the demo model, on a CPU
    model = build_model(arch, work)
    seq = int(base["training.max_seq_length"])
    data = write_dataset(work / f"data-{seq}.jsonl", seq, samples=512)
    pairs = {**base, "model.name_or_path": model, "dataset.path": data}
    settings = settings_from_overrides([f"{k}={v}" for k, v in pairs.items()])
    return str(save_preset(settings, work / f"{arch}.yaml"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--preset")
    group.add_argument("--arch", help="a backends.py architecture, e.g. llama-3.2-1b")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--work", default="/tmp/ftpanel")
    parser.add_argument("--timeout", type=float, default=500)
    parser.add_argument("--out", default="panel.jsonl")
    args = parser.parse_args()
    if args.arch:
        Path(args.work).mkdir(parents=True, exist_ok=True)
        args.preset = arch_preset(args.arch, Path(args.work))
    results = {"headless": [], "tui": []}
    # Uncounted warm-up of both modes: caches, kernels, and the first import of Textual's
    # modules (the GPU image installs wheels without bytecode), which otherwise lands in
    # the first TUI run's steps.
    run_headless(args.preset, args.overrides, Path(args.work) / "warm-up")
    run_tui(args.preset, args.overrides, Path(args.work) / "warm-up-tui", args.timeout)
    for repeat in range(args.repeats):
        for mode in ("headless", "tui"):
            run_dir = Path(args.work) / f"{mode}-{repeat}"
            start = time.time()
            if mode == "tui":
                run_tui(args.preset, args.overrides, run_dir, args.timeout)
            else:
                run_headless(args.preset, args.overrides, run_dir)
            record = {"mode": mode, "repeat": repeat, "wall_s": round(time.time() - start, 1)}
            record.update(speed(run_dir))
            results[mode].append(record["steps_per_s"])
            _emit(record, args.out)
    mean = {mode: sum(v) / len(v) for mode, v in results.items()}
    _emit(
        {
            "summary": True,
            "preset": args.preset,
            "overrides": args.overrides,
            "headless_steps_per_s": round(mean["headless"], 4),
            "tui_steps_per_s": round(mean["tui"], 4),
            "panel_overhead_pct": round(100 * (1 - mean["tui"] / mean["headless"]), 2),
            "date": time.strftime("%Y-%m-%d"),
        },
        args.out,
    )


def _emit(record: dict, out: str) -> None:
    line = json.dumps(record)
    print(line, flush=True)
    with open(out, "a") as file:
        file.write(line + "\n")


if __name__ == "__main__":
    main()
