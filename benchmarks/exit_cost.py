"""How long a `finetune-tui` process takes to end after its last line, with the program's
entry (`run`: main, then an exit handler that runs after every other one and ends the
process without the interpreter's teardown) and with main() alone (the collector walks
every object torch, transformers and TRL loaded while the interpreter shuts down).

    python benchmarks/exit_cost.py [--repeats 3]

Prints one JSON line per run: entry, seconds from the final progress line to the exit.
A CPU benchmark: a 4-step demo run in a private folder.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ENTRIES = {
    "run (skips teardown)": "from finetune_tui.main import run; run()",
    "main alone": "import sys; from finetune_tui.main import main; sys.exit(main())",
}
ARGS = [
    "--preset", "presets/demo.yaml",
    "--set", "training.max_steps=4",
    "--set", "dataset.max_samples=512",
    "--set", "training.exact_match_samples=0",
]  # fmt: skip


def tail_seconds(code: str, folder: str) -> float:
    """Seconds between the run's 'finished at step' line and the process's exit."""
    env = {**os.environ, "FINETUNE_TUI_DATA_DIR": folder, "FINETUNE_TUI_CONFIG_DIR": folder}
    command = [sys.executable, "-c", code, *ARGS, "--output", os.path.join(folder, "run")]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    finished = None
    for line in proc.stdout:
        if line.startswith("finished at step"):
            finished = time.perf_counter()
    proc.wait()
    if proc.returncode != 0 or finished is None:
        raise SystemExit(f"{code}: exit {proc.returncode}")
    return time.perf_counter() - finished


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    repeats = parser.parse_args().repeats
    for _ in range(repeats):
        for entry, code in ENTRIES.items():
            with tempfile.TemporaryDirectory() as folder:
                seconds = tail_seconds(code, folder)
            print(json.dumps({"entry": entry, "finished_to_exit_s": round(seconds, 3)}))


if __name__ == "__main__":
    main()
