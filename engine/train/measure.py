"""`plan --measure`: the advisor's top candidates trained a few steps each on this GPU, each
in its own process, and the measured fastest that fits picked.

`measure` is the orchestration (candidates in, one `run_one` per candidate, the pick out);
`subprocess_runner` is the real `run_one`: the product's own headless command on a
temporary preset and run folder, read back from its summary.json and metrics.jsonl. Each
GPU run leaves its measured peak in the store (engine/plan/measured.py) as every run does, so
the next plan on this card is corrected by it.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..common.safe_io import write_text_atomic
from ..settings.preset import dump_preset, with_changes
from ..settings.schema import TrainSettings

MEASURE_STEPS = 6  # the first is warm-up; tokens/s is read over the others
# A candidate whose steps after the first still differ this much in speed was not steady
# (kernels still tuning for new shapes, a card shared): its figure is flagged, not trusted
UNSTEADY_SPREAD = 1.5
CANDIDATES = 3
TIMEOUT_S = 1800  # one candidate: loading a large model takes minutes
NEEDS_GPU = "needs an NVIDIA GPU (CUDA) to train the candidates on; this machine has none"
PARENT_ENV = "FINETUNE_TUI_STOP_WITH_PARENT"  # a candidate stops when its measurer is gone


def measure_refusal(hardware) -> str | None:
    """Why candidates cannot be measured here (said after "plan --measure" or the button)."""
    if hardware is None:
        return "needs the machine's hardware: open the Hardware screen first"
    if hardware.simulated:
        return "trains on this machine's GPU, not on a simulated card"
    return NEEDS_GPU if hardware.primary is None else None


@dataclass(frozen=True)
class Candidate:
    label: str
    settings: TrainSettings
    predicted_gib: float
    predicted_speed: float  # relative, the advisor's scale


@dataclass(frozen=True)
class Measured:
    candidate: Candidate
    status: str  # "finished", "backed off" (it did not fit as planned) or "failed"
    peak_gib: float | None = None  # None on CPU: there is no VRAM to measure
    tokens_per_second: float | None = None
    detail: str = ""  # the back-off or the failure, in one line

    def fits(self, usable_gib: float | None) -> bool:
        within = self.peak_gib is None or usable_gib is None or self.peak_gib <= usable_gib
        return self.status == "finished" and within


@dataclass(frozen=True)
class MeasureResult:
    measured: list[Measured]
    picked: Measured | None  # the measured fastest that fits
    usable_gib: float | None


def candidates(plan, count: int = CANDIDATES) -> list[Candidate]:
    """The advisor's pick, then its fastest alternatives predicted to fit that differ from
    every candidate before in backend, quantisation, micro-batch or checkpointing: on an
    H200 the next alternatives changed only the optimizer or length grouping, measured
    within 3 % of each other, and minutes went on telling them apart."""
    advised = f"advised: {described(plan.settings)}"
    out = [Candidate(advised, plan.settings, plan.peak_vram_gib, plan.relative_speed)]
    seen = {described(plan.settings)}
    for alt in plan.alternatives:
        if len(out) >= count:
            break
        settings = with_changes(plan.settings, alt.changes)
        if alt.fits and (strategy := described(settings)) not in seen:
            seen.add(strategy)
            out.append(Candidate(alt.label, settings, alt.peak_vram_gib, alt.relative_speed))
    return out


def described(settings: TrainSettings) -> str:
    """The choices a candidate's speed and peak turn on, in a few words (the alternatives
    are named by what they change from these)."""
    t, m = settings.training, settings.memory
    checkpointing = "ckpt" if m.gradient_checkpointing != "off" else "no ckpt"
    return f"{m.backend} {settings.quantization.mode} b{t.micro_batch_size} {checkpointing}"


def measure(
    found: list[Candidate], run_one: Callable[[Candidate], Measured], usable_gib: float | None
) -> MeasureResult:
    """Run every candidate, one after the other, and pick the measured fastest that fits."""
    measured = [run_one(candidate) for candidate in found]
    fitting = [m for m in measured if m.fits(usable_gib) and m.tokens_per_second]
    picked = max(fitting, key=lambda m: m.tokens_per_second, default=None)
    return MeasureResult(measured, picked, usable_gib)


def subprocess_runner(
    workdir: Path, steps: int = MEASURE_STEPS, timeout_s: float = TIMEOUT_S
) -> Callable[[Candidate], Measured]:
    """`run_one` for `measure`: each candidate is `finetune-tui --preset P --output DIR` in
    its own process (a crash or an out-of-memory error stays there), under `workdir`."""
    numbers = itertools.count(1)

    def run_one(candidate: Candidate) -> Measured:
        number = next(numbers)
        preset, folder = workdir / f"candidate-{number}.yaml", workdir / f"candidate-{number}"
        short = {
            "training.max_steps": steps,
            "training.logging_steps": 1,
            "training.exact_match_samples": 0,
            "dataset.eval_fraction": 0.0,
        }
        write_text_atomic(preset, dump_preset(with_changes(candidate.settings, short)))
        command = [sys.executable, "-m", "finetune_tui", "--preset", str(preset)]
        try:
            done = subprocess.run(
                [*command, "--output", str(folder)],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout_s,
                env=dict(os.environ, PYTHONUNBUFFERED="1", **{PARENT_ENV: str(os.getpid())}),
            )
        except subprocess.TimeoutExpired:
            return Measured(candidate, "failed", detail=f"no result within {timeout_s:.0f} s")
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            return Measured(candidate, "failed", detail=f"exit {done.returncode}: {last}")
        return read_measurement(candidate, folder)

    return run_one


def read_measurement(candidate: Candidate, folder: Path) -> Measured:
    """What one short run measured: peak reserved from summary.json, tokens/s over the
    steps after the first (the first pays for warm-up) from metrics.jsonl."""
    from ..runs.events import Step
    from ..runs.metrics import read_events
    from ..runs.summary import read_summary

    summary = read_summary(folder)
    if summary is None:
        return Measured(candidate, "failed", detail=f"{folder}: no summary.json")
    steps = [e for e in read_events(folder) if isinstance(e, Step)]
    speed = None
    if len(steps) >= 2:
        first, last = steps[0], steps[-1]
        spent = last.elapsed_s - first.elapsed_s
        if last.tokens_seen is not None and first.tokens_seen is not None and spent > 0:
            speed = (last.tokens_seen - first.tokens_seen) / spent
    elif steps:
        speed = steps[0].tokens_per_second
    if summary.oom_backoffs:  # it trained, but not as planned: it did not fit
        detail = "; ".join(summary.oom_backoffs)
        return Measured(candidate, "backed off", summary.peak_reserved_gib, speed, detail)
    return Measured(candidate, "finished", summary.peak_reserved_gib, speed, unsteady(steps))


def unsteady(steps: list) -> str:
    """Why the speed read over the steps after the first is not to be trusted, or ""."""
    rates = [s.tokens_per_second for s in steps[1:] if s.tokens_per_second]
    if len(rates) < 2 or max(rates) <= UNSTEADY_SPREAD * min(rates):
        return ""
    return (
        f"not steady: {min(rates):,.0f}-{max(rates):,.0f} tokens/s over steps "
        f"{steps[1].step}-{steps[-1].step}"
    )


def _note(m: Measured) -> str:
    """What a row says beside its figures: a run that did not finish as planned, or one
    whose figure is flagged."""
    if m.status != "finished":
        return f"  {m.status}: {m.detail}"
    return f"  ({m.detail})" if m.detail else ""


def table(result: MeasureResult, card: str, steps: int = MEASURE_STEPS) -> list[str]:
    """Predicted beside measured, one line per candidate, then the pick, as plain lines."""
    usable = "" if result.usable_gib is None else f", {result.usable_gib:.1f} GiB usable"
    lines = [
        f"measured on {card}{usable}, {steps} steps each:",
        f"  {'candidate':<44} {'predicted':^19}   {'measured':^19}",
        f"  {'':<44} {'peak GiB':>9} {'speed':>9}   {'peak GiB':>9} {'tokens/s':>9}",
    ]
    for m in result.measured:
        c = m.candidate
        peak = "no VRAM" if m.peak_gib is None else f"{m.peak_gib:.2f}"
        speed = "-" if m.tokens_per_second is None else f"{m.tokens_per_second:,.0f}"
        mark = "*" if m is result.picked else " "
        lines.append(
            f"{mark} {c.label[:44]:<44} {c.predicted_gib:>9.2f} {c.predicted_speed:>8.2f}x"
            f"   {peak:>9} {speed:>9}{_note(m)}"
        )
    if any(m.peak_gib is None and m.status == "finished" for m in result.measured):
        lines.append("  no VRAM: these runs trained on the CPU; no GPU peak was measured")
    if result.picked is None:
        lines.append("picked: none; no candidate finished within the card")
    else:
        lines.append(f"picked: {result.picked.candidate.label} (* the measured fastest that fits)")
    return lines
