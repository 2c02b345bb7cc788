"""`finetune-tui detect` and `finetune-tui plan`: answers in well under a second, no torch."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from finetune_tui.main import add_settings_arguments

from .plan_outcome import NOTHING_FITS, plan_time
from .printable_output import printable_stdout


def register(sub: argparse._SubParsersAction) -> None:
    detect = sub.add_parser("detect", help="show the GPU(s): VRAM, compute capability, bf16")
    detect.add_argument("--json", action="store_true", help="machine-readable output")
    detect.set_defaults(handler=detect_command)

    plan = sub.add_parser("plan", help="predict peak VRAM and pick the fastest setup that fits")
    plan.add_argument(
        "--model",
        help="model folder (only its config.json is read), catalog ID (see --list-models) "
        "or 'demo'",
    )
    plan.add_argument(
        "--list-models", action="store_true", help="list the catalog IDs plan knows offline"
    )
    plan.add_argument("--preset", metavar="FILE", help="start from this preset")
    plan.add_argument("--dataset", metavar="FILE", help="size max_seq_length from this data")
    plan.add_argument("--gpu", metavar="NAME", help="plan for a simulated card")
    plan.add_argument("--vram", metavar="GIB", type=float, help="plan for a card with this VRAM")
    plan.add_argument(
        "--gpus",
        metavar="N",
        type=_positive,
        help="plan each GPU of N per node under each strategy (ddp, fsdp, deepspeed)",
    )
    plan.add_argument("--nodes", metavar="M", type=_positive, help="with --gpus: M machines")
    plan.add_argument(
        "--compare",
        metavar="CARDS",
        help="plan on each of these cards, one table: fits, micro-batch, tokens/s and time "
        '(e.g. "RTX 4090,A100 80GB,H100")',
    )
    plan.add_argument(
        "--measure",
        action="store_true",
        help="train the advisor's top candidates a few steps each on this GPU and pick the "
        "measured fastest that fits",
    )
    add_settings_arguments(plan)
    plan.add_argument("--json", action="store_true", help="machine-readable output")
    plan.set_defaults(handler=printable_stdout(plan_command))


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a whole number of at least 1")
    return value


def _hardware(args):
    from finetune_tui.engine.inspect.hardware import hardware_for

    return hardware_for(args.gpu, args.vram)


def detect_command(args: argparse.Namespace) -> int:
    from finetune_tui.engine.inspect.hardware import describe_hardware, detect_hardware

    hardware = detect_hardware()
    if args.json:
        print(json.dumps(asdict(hardware), indent=2))
        return 0
    from rich.console import Console

    Console(highlight=False).print(describe_hardware(hardware))
    return 0


def plan_command(args: argparse.Namespace) -> int:
    from finetune_tui.engine.common.errors import InputError
    from finetune_tui.engine.inspect.models import inspect_model

    if args.list_models:
        return _list_models()
    if not args.model and not args.preset:
        raise InputError(
            "plan: give --model (a folder with config.json, a catalog ID or demo) or --preset"
        )
    from finetune_tui.engine.plan.advisor import advise
    from finetune_tui.engine.plan.target_names import target_problem
    from finetune_tui.engine.settings.overrides import override_keys
    from finetune_tui.engine.settings.preset import layout_flag_changes, settings_from_arguments
    from finetune_tui.engine.settings.schema import DEMO

    # paths are taken as text, never parsed as YAML: a folder named `yes` stays a folder
    paths = {"model.name_or_path": args.model} if args.model else {}
    if args.dataset:
        paths["dataset.path"] = args.dataset
    settings = settings_from_arguments(args.preset, args.overrides, paths, absolute=False)
    args.model = settings.model.name_or_path  # a preset's own model, when --model is not given
    data = settings.dataset.path  # a preset's data sizes the lengths, as --dataset, when here
    if not args.dataset and args.preset and (data == DEMO or Path(data).expanduser().exists()):
        args.dataset = data
    if args.gpus:  # the layout planned is the flags'; settings naming another one: refused
        layout = {
            "distributed.processes": ("--gpus", args.gpus),
            "distributed.nodes": ("--nodes", args.nodes),
        }
        layout_flag_changes(settings, layout, args.preset, args.overrides)
    fixed = override_keys(args.overrides)
    model = inspect_model(args.model)
    lora = settings.training.method == "lora"  # the run refuses such targets at once
    if lora and (problem := target_problem(model, settings.lora.target_modules)):
        raise InputError(f"lora.target_modules: {problem}")
    stats = _dataset_stats(settings) if args.dataset else None
    hardware = _hardware(args)
    if args.measure:
        _check_measurable(args, hardware)
    if args.compare:
        from .plan_compare import compare_cards

        return compare_cards(args, model, settings, fixed, stats)
    if args.gpus:
        args.nodes = args.nodes or settings.distributed.nodes
        return _plan_on_gpus(args, hardware, model, settings, fixed, stats)
    if (args.nodes or 1) > 1:
        raise InputError("plan --nodes: give --gpus too (GPUs per node)")
    plan = advise(hardware, model, settings, fixed=fixed, dataset_stats=stats)
    if args.measure:
        return _measure(plan, hardware)
    result = _plan_result(plan, model)
    result |= plan_time(model, plan.settings, stats, hardware)
    if not plan.fits and hardware.primary is not None:
        _name_the_way_out(result, hardware, model, plan.settings, fixed)
    return _show(result, args.json)


def _check_measurable(args, hardware) -> None:
    """--measure trains here, on one real GPU: anything else is one line before any work."""
    from finetune_tui.engine.common.errors import InputError
    from finetune_tui.engine.train.measure import measure_refusal

    if args.gpu is not None or args.vram is not None:
        raise InputError("plan --measure trains on this machine's GPU; drop --gpu / --vram")
    if args.gpus or args.json:
        raise InputError("plan --measure: one GPU, printed as a table; drop --gpus / --json")
    if why := measure_refusal(hardware):
        raise InputError(f"plan --measure {why}")


def _measure(plan, hardware) -> int:
    """Each candidate in its own process under a temporary folder, then the table."""
    import tempfile
    from pathlib import Path

    from finetune_tui.engine.train.measure import candidates, measure, subprocess_runner, table

    found = candidates(plan)
    print(f"measuring {len(found)} candidates, each in its own process (a few minutes)...")
    with tempfile.TemporaryDirectory(prefix="finetune-tui-measure-") as work:
        result = measure(found, subprocess_runner(Path(work)), plan.budget_gib)
    print("\n".join(table(result, hardware.primary.name)))
    return 0 if result.picked is not None else NOTHING_FITS


def _show(result: dict, as_json: bool) -> int:
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    else:
        _print_strategies(result)
        _print_plan(result)
    return 0 if result["fits"] else NOTHING_FITS


def _plan_result(plan, model) -> dict:
    from finetune_tui.engine.plan.speed import SPEED_BASELINE

    result = {
        "fits": plan.fits,
        "peak_vram_gib": round(plan.peak_vram_gib, 2),
        "budget_gib": None if plan.budget_gib is None else round(plan.budget_gib, 2),
        "breakdown": plan.breakdown.as_dict(),
        "relative_speed": round(plan.relative_speed, 2),
        "speed_baseline": SPEED_BASELINE,
        "tight": plan.tight,
        "correction": asdict(plan.correction) if plan.correction else None,
        "settings": plan.settings.model_dump(mode="json"),
        "reasons": plan.reasons,
        "alternatives": [asdict(a) for a in plan.alternatives],
        "unavailable": plan.unavailable,
        "model": {
            "name": model.name,
            "architecture": model.architecture,
            "params_total": model.params_total,
            "lora_targets": model.lora_targets,
        },
    }
    if model.is_moe:
        result["model"] |= {"params_active": model.params_active, "experts": asdict(model.moe)}
    return result


def _name_the_way_out(result: dict, hardware, model, settings, fixed) -> None:
    """Nothing fits one card: the fewest such cards on which something does."""
    from finetune_tui.engine.plan.gpu_count import smallest_count

    count = smallest_count(hardware, model, settings, fixed)
    result["gpus_needed"] = _count_result(count, hardware)
    if count is not None and count.gpus > 1:
        result["reasons"]["fits"] += f"; or {count.describe(hardware.primary)}: {count.command()}"


def _count_result(count, hardware) -> dict | None:
    if count is None:
        return None
    return {
        "gpus": count.gpus,
        "gpus_per_node": count.processes,
        "nodes": count.nodes,
        "strategy": count.strategy,
        "cpu_offload": count.cpu_offload,
        "peak_vram_gib": round(count.peak_vram_gib, 2),
        "answer": count.describe(hardware.primary),
        "command": count.command(),
    }


def _plan_on_gpus(args, hardware, model, settings, fixed, stats) -> int:
    """Each GPU's peak under each strategy on --gpus x --nodes cards, the preferred one's
    plan in full, and the fewest cards on which anything fits."""
    from finetune_tui.engine.common.errors import InputError
    from finetune_tui.engine.plan.gpu_count import (
        card_name,
        plans_per_strategy,
        preferred,
        smallest_count,
    )

    if hardware.primary is None:
        raise InputError("plan --gpus: no GPU here to plan for; give --gpu NAME or --vram GIB")
    plans = plans_per_strategy(hardware, model, settings, args.gpus, args.nodes, fixed, stats)
    if not plans:
        from finetune_tui.engine.settings.options import unsloth_refusal

        why = unsloth_refusal(settings.training.method, args.gpus * args.nodes)
        raise InputError(f"plan --gpus: memory.backend unsloth (pinned): {why}")
    chosen = preferred(plans)
    result = _plan_result(chosen.plan, model) | plan_time(
        model, chosen.plan.settings, stats, hardware
    )
    count = smallest_count(hardware, model, settings, fixed)
    result["distributed"] = {
        "gpus_per_node": args.gpus,
        "nodes": args.nodes,
        "world_size": args.gpus * args.nodes,
        "card": card_name(hardware.primary),
        "chosen": chosen.label,
        "strategies": [
            _strategy_result(p, plan_time(model, p.plan.settings, stats, hardware)) for p in plans
        ],
    }
    result["gpus_needed"] = _count_result(count, hardware)
    return _show(result, args.json)


def _strategy_result(p, timing: dict) -> dict:
    plan, s = p.plan, p.plan.settings
    return {
        "tokens_per_s": timing["tokens_per_s"],
        "time_s": timing["time"]["total_s"] if timing["time"] else None,
        "strategy": p.strategy,
        "cpu_offload": p.cpu_offload,
        "label": p.label,
        "fits": plan.fits,
        "tight": plan.tight,
        "peak_vram_gib": round(plan.peak_vram_gib, 2),
        "cpu_ram_gib": round(plan.breakdown.cpu_ram_gib, 2),
        "relative_speed": round(plan.relative_speed, 2),
        "breakdown": plan.breakdown.as_dict(),
        "micro_batch_size": s.training.micro_batch_size,
        "max_seq_length": s.training.max_seq_length,
        "gradient_checkpointing": s.memory.gradient_checkpointing,
        "optimizer": s.training.optimizer,
    }


def _list_models() -> int:
    from finetune_tui.engine.inspect.catalog import UNPLANNED
    from finetune_tui.engine.inspect.models import catalog_ids, inspect_model

    print("catalog IDs (planned offline from their config.json values):")
    for model_id in catalog_ids():
        info = inspect_model(model_id)
        active = f", {info.params_active / 1e9:.1f} B active" if info.is_moe else ""
        print(f"  {model_id:<40} {info.model_type:<12} {info.params_total / 1e9:6.2f} B{active}")
    print("known, not planned yet (transformers builds them; no memory model here):")
    for model_id, why in UNPLANNED.items():
        print(f"  {model_id:<40} {why}")
    print("any other model: --model DIR, a folder holding its config.json (weights not needed)")
    return 0


def _dataset_stats(settings):
    from finetune_tui.engine.data.dataset import dataset_stats

    return dataset_stats(settings)


def _print_strategies(r: dict) -> None:
    """plan --gpus: one line per strategy, then the fewest cards that would do."""
    d, needed = r.get("distributed"), r.get("gpus_needed")
    if d:
        print(
            f"each GPU of {d['world_size']} x {d['card']}"
            + (f" ({d['nodes']} nodes)" if d["nodes"] > 1 else "")
            + f", {r['budget_gib']} GiB usable each:"
        )
        for s in d["strategies"]:
            verdict = "fits" if s["fits"] else "does not fit"
            offload = f", {s['cpu_ram_gib']} GiB CPU RAM per node" if s["cpu_offload"] else ""
            print(
                f"  {s['label']:<24} {s['peak_vram_gib']:>7.2f} GiB  {verdict} (micro-batch "
                f"{s['micro_batch_size']} x {s['max_seq_length']}, checkpointing "
                f"{s['gradient_checkpointing']}, {s['optimizer']}){offload}{_speed_of(s)}"
            )
    if d and needed:
        print(f"needs at least: {needed['answer']} ({needed['command']})")
    elif d:
        print("needs at least: more than 32 nodes of 8 of these cards")
    if d:
        print(f"chosen: {d['chosen']}")


def _speed_of(strategy: dict) -> str:
    """', 9,800 tokens/s, about 1 h 05 min' where predicted."""
    from finetune_tui.engine.plan.run_time import clock

    if strategy["tokens_per_s"] is None:
        return ""
    text = f", {strategy['tokens_per_s']:,} tokens/s"
    return text + (f", about {clock(strategy['time_s'])}" if strategy["time_s"] else "")


def _print_plan(r: dict) -> None:
    b, s = r["breakdown"], r["settings"]
    verdict = "fits" if r["fits"] else "DOES NOT FIT"
    # None is no GPU; 0.0 a card too small for anything (a tiny --vram), which has a budget
    usable = r["budget_gib"] is not None
    budget = f" of {r['budget_gib']} GiB usable" if usable else " (CPU: no VRAM limit)"
    print(
        f"{r['model']['name']} ({r['model']['architecture']}, "
        f"{r['model']['params_total'] / 1e9:.2f} B parameters"
        + (
            f", {r['model']['params_active'] / 1e9:.2f} B active per token"
            if "params_active" in r["model"]
            else ""
        )
        + ")"
    )
    print(
        f"peak VRAM {r['peak_vram_gib']} GiB{budget}: {verdict}; "
        f"speed {r['relative_speed']}x {r['speed_baseline']}"
    )
    print(f"time: {r['time_text']}")
    print(f"disk: up to {r['disk_text']}")
    print("breakdown: " + ", ".join(f"{k.removesuffix('_gib')} {v}" for k, v in b.items()))
    print(
        f"settings: quantization {s['quantization']['mode']}, backend {s['memory']['backend']}, "
        f"checkpointing {s['memory']['gradient_checkpointing']}, micro-batch "
        f"{s['training']['micro_batch_size']} x {s['training']['max_seq_length']} tokens, "
        f"accumulation {s['training']['gradient_accumulation_steps']}, "
        f"optimizer {s['training']['optimizer']}"
    )
    print("why:")
    for field, reason in r["reasons"].items():
        print(f"  {field}: {reason}")
    if r["alternatives"]:
        print("alternatives (peak GiB, relative speed):")
        for a in r["alternatives"][:6]:
            print(
                f"  {a['label']}: {a['peak_vram_gib']} GiB, {a['relative_speed']}x"
                f"{'' if a['fits'] else '  (does not fit)'}"
            )
    for option, why in r["unavailable"].items():
        print(f"  unavailable: {option}: {why}")
