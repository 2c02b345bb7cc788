"""The speed model corrected by what runs measured on this machine.

A step's fixed part (kernel launches, the Python of PEFT, bitsandbytes and the Trainer) is
paced by the machine as much as by the card: one configuration took 0.31 to 0.63 s a step on
four H100 machines (docs/BENCHMARKS.md, "A step's pace is the machine's"),
more than the speed model's error on any one of them. No published figure
tells a host's pace, so the runs the user made on it do: the median ratio of measured to
predicted tokens/s of the last RECENT runs on this card and backend scales the plan's
tokens/s, both ways, and its basis says so. The family's own runs where there are any (a
plan's error has a family part besides the machine's: on one machine the Llama calibration
ran 1.23x its plan, Gemma-2-9B after it 1.09x: docs/BENCHMARKS.md, "Machine D" and
"Machine E"); else any family's.

The ratios come from measured.py's store (a cache: damaged lines are skipped there).
Only SFT runs of one process count: the speed model predicts nothing else.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass

from ..inspect.hardware import card_key
from ..settings.schema import TrainSettings
from .measured import RECENT, measurements

# How far a plan without a correction may be from a first run on a machine: the worst of
# the held-out whole runs planned so (seventeen runs, eight H100/H200 machines: 48.0 %, one
# machine's; the median 6.6 %: docs/BENCHMARKS.md, "Machine F"; tests/test_throughput.py
# recomputes it), rounded up
FIRST_RUN_SPREAD = 0.50
SPEED_RANGE = (0.25, 4.0)  # outside it a ratio is a broken run or a forged line
MIN_SHIFT = 0.03  # within 3 % of the plan: no correction


@dataclass(frozen=True)
class SpeedCorrection:
    factor: float  # measured / predicted tokens/s
    runs: int
    family: str | None = None  # the runs were all of this family
    others: bool = False  # ... all of other families than the planned model's

    def describe(self) -> str:
        runs = f"{self.runs} {self.family + ' ' if self.family else ''}run"
        runs += "s" if self.runs != 1 else ""
        runs += " of other families" if self.others else ""
        shift = (self.factor - 1) * 100
        return f"corrected by your runs on this card ({runs}, measured {shift:+.0f} % against plan)"


def speed_correction(
    card: str | None, backend: str, family: str | None = None
) -> SpeedCorrection | None:
    """What the last RECENT SFT runs of this backend on this card measured against the plan:
    those of `family` (a model_type) where there are any, else those of every family."""
    if not card:
        return None
    ratios: list[tuple[str, float]] = []
    for m in measurements():
        if m.backend != backend or m.objective != "sft" or card_key(m.card) != card_key(card):
            continue
        if m.tokens_per_second and m.predicted_tokens_per_second:
            ratio = m.tokens_per_second / m.predicted_tokens_per_second
            if SPEED_RANGE[0] <= ratio <= SPEED_RANGE[1]:
                ratios.append((m.family, ratio))
    own = [ratio for kind, ratio in ratios if kind == family]
    recent = (own or [ratio for _, ratio in ratios])[-RECENT:]
    if not recent or abs((factor := statistics.median(recent)) - 1) < MIN_SHIFT:
        return None
    if own:
        return SpeedCorrection(round(factor, 3), len(recent), family)
    return SpeedCorrection(round(factor, 3), len(recent), others=family is not None)


def corrected(speed, settings: TrainSettings, card: str | None, family: str | None = None):
    """throughput.Throughput scaled by this card's correction (unchanged without one);
    `family`: the model's model_type."""
    if speed is None or settings.distributed.world_size > 1:
        return speed
    found = speed_correction(card, settings.memory.backend, family)
    if found is None:
        spread = f"±{FIRST_RUN_SPREAD * 100:.0f} % until a run on this card measures its pace"
        return dataclasses.replace(speed, basis=f"{speed.basis}; {spread}")
    return dataclasses.replace(
        speed,
        tokens_per_s=speed.tokens_per_s * found.factor,
        mfu=speed.mfu * found.factor,
        basis=f"{speed.basis}; {found.describe()}",
        correction=found.factor,
    )
