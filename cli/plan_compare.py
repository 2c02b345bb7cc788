"""`finetune-tui plan --compare "RTX 4090,A100 80GB,H100"`: which card, how long. The
advisor plans the run on each card; one row each: fits or not, the choice, the predicted
tokens/s and the whole run's time."""

from __future__ import annotations

import json

from finetune_tui.engine.common.errors import InputError

HEADER = ("card", "fits", "peak GiB", "setup", "tokens/s", "time")


def compare_cards(args, model, settings, fixed, stats) -> int:
    from finetune_tui.engine.plan.advisor import advise

    from .plan_outcome import NOTHING_FITS, plan_time

    for flag in ("gpu", "vram", "gpus", "nodes", "measure"):
        if getattr(args, flag, None):
            raise InputError(f"plan --compare names its cards; drop --{flag}")
    rows = []
    for hardware in _cards(args.compare):
        plan = advise(hardware, model, settings, fixed=fixed, dataset_stats=stats)
        rows.append(
            _row(hardware.primary.name, plan, plan_time(model, plan.settings, stats, hardware))
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_table(model.name, rows)
    return 0 if any(row["fits"] for row in rows) else NOTHING_FITS


def _cards(given: str) -> list:
    """Each card the comma-separated names mean, once, in the order given; a name that
    means no card or several stops the comparison in one line naming it."""
    from finetune_tui.engine.inspect.hardware import card_problem, simulated_hardware

    names = [name.strip() for name in given.split(",") if name.strip()]
    if not names:
        raise InputError('plan --compare: give card names, e.g. "RTX 4090,H100"')
    cards = {}
    for name in names:
        problem = card_problem(name)
        if problem:
            raise InputError(f"plan --compare {problem} (cards are separated by commas)")
        hardware = simulated_hardware(gpu=name)
        cards.setdefault(hardware.primary.name, hardware)
    return list(cards.values())


def _row(card: str, plan, timing: dict) -> dict:
    s = plan.settings
    setup = (
        f"{s.quantization.mode} {s.memory.backend}, ckpt {s.memory.gradient_checkpointing}, "
        f"b{s.training.micro_batch_size} x {s.training.max_seq_length}"
        + (
            f" x{s.training.gradient_accumulation_steps}"
            if s.training.gradient_accumulation_steps > 1
            else ""
        )
    )
    return {
        "card": card,
        "fits": plan.fits,
        "peak_vram_gib": round(plan.peak_vram_gib, 2),
        "budget_gib": None if plan.budget_gib is None else round(plan.budget_gib, 2),
        "setup": setup,
        "tokens_per_s": timing["tokens_per_s"],
        "time_s": timing["time"]["total_s"] if timing["time"] else None,
        "time_text": timing["time_text"],
        "basis": timing["throughput_basis"],
    }


def _print_table(model_name: str, rows: list[dict]) -> None:
    from finetune_tui.engine.plan.run_time import clock

    cells = [HEADER]
    for r in rows:
        cells.append(
            (
                r["card"],
                "yes" if r["fits"] else "no",
                f"{r['peak_vram_gib']:.1f} / {r['budget_gib']:.1f}",
                r["setup"],
                "-" if r["tokens_per_s"] is None else f"{r['tokens_per_s']:,}",
                "-" if r["time_s"] is None or not r["fits"] else clock(r["time_s"]),
            )
        )
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADER))]
    print(f"{model_name}: the advisor's plan on each card")
    for row in cells:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    bases = sorted({r["basis"] for r in rows if r["basis"]})
    if any(r["time_s"] is not None for r in rows):
        print("time: the whole run, starting up, evaluation and checkpoint saves included")
    else:
        print("time: give --dataset for the whole run's time")
    for basis in bases:  # which cards each basis is for: a reader matches them by name
        cards = ", ".join(r["card"] for r in rows if r["basis"] == basis)
        print(f"tokens/s on {cards}: {basis}")
