"""The whole run's predicted wall time: steps and real tokens from the data, starting up
from committed GPU runs, evaluation and saves (engine/plan/run_time.py)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from conftest import DEMO_PRESET

from finetune_tui.engine.data.dataset import dataset_stats
from finetune_tui.engine.inspect.models import inspect_model
from finetune_tui.engine.plan import run_time as rt
from finetune_tui.engine.settings.preset import load_preset

DEMO_MODEL = inspect_model("demo")
LLAMA_8B = inspect_model("meta-llama/Llama-3.1-8B")

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


def demo(*pairs: str):
    settings = load_preset(DEMO_PRESET, list(pairs))
    return settings, dataset_stats(settings)


def test_startup_is_what_the_committed_gpu_runs_spent_outside_their_steps():
    """Each benchmark run's wall time less its steps at its own tokens/s: the median per
    backend is the constant (so a changed constant or a new row shows here)."""
    spent: dict[str, list[float]] = {}
    for _, backend, seconds in spent_outside_steps(sorted(RESULTS.glob("backends*.jsonl"))):
        spent.setdefault(backend, []).append(seconds)
    assert set(spent) == set(rt.STARTUP_S)
    for backend, seconds in spent.items():
        assert len(seconds) >= 9
        assert statistics.median(seconds) == pytest.approx(rt.STARTUP_S[backend], abs=0.06)


def spent_outside_steps(paths) -> list[tuple[str, str, float]]:
    """(architecture, backend, seconds outside the steps) of every committed one-GPU run
    that trained unpacked: its wall time less its steps at its own tokens/s."""
    found = []
    for path in paths:
        for row in map(json.loads, path.read_text().splitlines()):
            s = row.get("settings", {})
            if not row.get("ok") or s.get("memory.packing") or not row.get("tokens_per_s"):
                continue
            tokens = s["training.micro_batch_size"] * s["training.max_seq_length"]
            tokens *= s.get("training.gradient_accumulation_steps", 1)
            steps = row.get("steps") or s["training.max_steps"]
            backend = s.get("memory.backend", "hf")
            found.append(
                (row["arch"], backend, row["wall_s"] - steps * tokens / row["tokens_per_s"])
            )
    return found


def test_small_models_start_up_nearly_as_slowly_as_8b_ones():
    """Imports and building the trainer do not shrink with the model: the committed runs of
    1-3 B models (and layer-cut mixtures of experts) spent about 0.785 x an 8 B model's
    start-up outside their steps, the floor STARTUP_FLOOR keeps."""
    import sys

    sys.path.insert(0, str(RESULTS.parent))
    from backends import ARCHS, LAYERS, family_config

    from finetune_tui.engine.inspect.models import inspect_config

    files = [*RESULTS.glob("calib*.jsonl"), *RESULTS.glob("backends*.jsonl")]
    files += [*RESULTS.glob("moe-h100*.jsonl")]
    ratios = []
    for arch, backend, seconds in spent_outside_steps(sorted(files)):
        model = inspect_config(ARCHS[arch], family_config(ARCHS[arch], LAYERS.get(arch)))
        if model.params_total < rt.STARTUP_PARAMS / 2:
            ratios.append(seconds / rt.STARTUP_S[backend])
    assert len(ratios) >= 25
    assert statistics.median(ratios) == pytest.approx(rt.STARTUP_FLOOR, abs=0.05)
    tiny = rt.run_time(*demo(), DEMO_MODEL, tokens_per_s=10_000.0, basis="b")
    assert tiny.startup_s == pytest.approx(rt.STARTUP_S["hf"] * rt.STARTUP_FLOOR)


def test_a_first_run_of_ligers_fused_experts_is_planned_with_their_kernel_tuning():
    """Liger's fused MoE experts spent 44-231 s on a machine's first step of their shapes
    (the family matrix's rows), 2 s on later ones: the constant is the cold first steps'
    median less the same families' first step under HF, and a plan that runs them says so."""
    from finetune_tui.engine.inspect.library_tables import liger_fused_expert_types
    from finetune_tui.engine.inspect.models import inspect_config

    cold, plain = [], []
    for path in sorted(RESULTS.glob("families-*.jsonl")):
        for row in map(json.loads, path.read_text().splitlines()):
            if not (row.get("ok") and row.get("first_step_s") and "config" in row):
                continue
            model = inspect_config(row["catalog"], row["config"])
            if model.is_moe and model.model_type in liger_fused_expert_types():
                if row["backend"] == "hf":
                    plain.append(row["first_step_s"])
                elif row["first_step_s"] > 20:  # tuned now; the rest found the tunings kept
                    cold.append(row["first_step_s"])
    assert len(cold) >= 9 and len(plain) >= 9
    extra = statistics.median(cold) - statistics.median(plain)
    assert rt.FUSED_EXPERTS_TUNING_S == pytest.approx(extra, abs=1.0)
    settings, stats = demo("model.name_or_path=Qwen/Qwen3-30B-A3B", "memory.backend=liger")
    moe = inspect_model("Qwen/Qwen3-30B-A3B")
    liger = rt.run_time(settings, stats, moe, tokens_per_s=10_000.0, basis="b")
    settings, stats = demo("model.name_or_path=Qwen/Qwen3-30B-A3B", "memory.backend=hf")
    hf = rt.run_time(settings, stats, moe, tokens_per_s=10_000.0, basis="b")
    size = max(rt.STARTUP_FLOOR, moe.params_total / rt.STARTUP_PARAMS)
    backends = (rt.STARTUP_S["liger"] - rt.STARTUP_S["hf"]) * size
    assert liger.startup_s - hf.startup_s == pytest.approx(rt.FUSED_EXPERTS_TUNING_S + backends)
    assert "Liger tunes its MoE kernels" in liger.describe()
    assert "tunes" not in hf.describe()


def test_the_demo_takes_its_248_steps_over_the_training_records():
    """2,200 records, 10 % held out, micro-batch 32, 4 epochs: 62 steps an epoch."""
    settings, stats = demo()
    timing = rt.run_time(settings, stats, DEMO_MODEL, tokens_per_s=10_000.0, basis="b")
    assert timing.steps == 248
    mean = sum(min(n, 64) for n in stats.sample) / len(stats.sample)
    assert timing.real_tokens == pytest.approx(1980 * 4 * mean, rel=0.01)
    assert timing.train_s == pytest.approx(timing.real_tokens / 10_000.0)
    assert timing.eval_s > 0  # the held-out 220 are evaluated once, at the end
    parts = timing.train_s + timing.startup_s + timing.eval_s + timing.save_s
    assert timing.total_s == pytest.approx(parts)


def test_max_steps_fixes_the_run_and_no_data_without_it_is_no_answer():
    settings, stats = demo("training.max_steps=10")
    assert rt.run_time(settings, stats, DEMO_MODEL, 1000.0, "b").steps == 10
    assert rt.run_time(settings, None, DEMO_MODEL, 1000.0, "b").steps == 10
    settings, _ = demo()
    assert rt.run_time(settings, None, DEMO_MODEL, 1000.0, "b") is None


def test_packing_and_more_processes_take_fewer_steps_for_the_same_tokens():
    settings, stats = demo()
    padded = rt.run_time(settings, stats, LLAMA_8B, 1000.0, "b")
    packed = rt.run_time(*demo("memory.packing=true"), LLAMA_8B, 1000.0, "b")
    # the demo's 33-token records in 64-token bins: TRL's best-fit-decreasing puts 1.25 in a
    # bin (two fit only where both are short), not the 1.9 a 97 % fill would give
    assert packed.steps == pytest.approx(padded.steps / 1.25, rel=0.02)
    assert packed.real_tokens == pytest.approx(padded.real_tokens, rel=0.02)
    two = rt.run_time(
        *demo("distributed.strategy=ddp", "distributed.processes=2"), LLAMA_8B, 1000.0, "b"
    )
    assert two.steps == 31 * 4  # 1,980 records / (2 x 32) per step, 4 epochs


def test_saves_and_evaluations_follow_their_settings():
    settings, stats = demo("training.save_steps=100", "training.eval_steps=50")
    timing = rt.run_time(settings, stats, LLAMA_8B, 1000.0, "b")
    assert rt.scheduled_saves(settings, timing.steps, 62) == 2  # and the end's
    assert rt._eval_passes(settings, timing.steps) == 5  # 50, 100, 150, 200, and 248
    full = rt.run_time(*demo("training.method=full"), LLAMA_8B, 1000.0, "b")
    lora = rt.run_time(*demo(), LLAMA_8B, 1000.0, "b")
    # no checkpoint scheduled: the end writes the whole 16-bit model, or an adapter
    assert full.save_s == pytest.approx(LLAMA_8B.params_total * 2 / 1e9, rel=0.01)
    assert full.save_s > 30 * lora.save_s
    saving = rt.run_time(
        *demo("training.method=full", "training.save_steps=100"), LLAMA_8B, 1e3, "b"
    )
    assert saving.save_s > 4 * full.save_s  # two checkpoints: weights, moments of every weight


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(44.6, "45 s"), (600, "10 min"), (11_400, "3 h 10 min"), (3 * 86_400 + 7_200, "3 d 2 h")],
)
def test_a_time_reads_as_precisely_as_it_is_known(seconds, text):
    assert rt.clock(seconds) == text


def test_a_run_records_its_real_tokens_per_second_after_the_first_step(finished_template):
    """summary.json's tokens_per_s leaves the first step out (its compiling and patching
    is start-up, which the plan counts apart), as the Step events show it."""
    summary = json.loads((finished_template / "summary.json").read_text())
    steps = [
        e
        for e in map(json.loads, (finished_template / "metrics.jsonl").read_text().splitlines())
        if e["kind"] == "step"
    ]
    first, last = steps[0], steps[-1]
    assert first["step"] == 1 and last["step"] == 4
    expected = (last["tokens_seen"] - first["tokens_seen"]) / (
        last["elapsed_s"] - first["elapsed_s"]
    )
    assert summary["tokens_per_s"] == pytest.approx(expected, rel=0.25)
    assert "predicted_tokens_per_s" not in summary  # a CPU run: no card to predict for


def test_plan_says_how_long_on_the_card_and_adds_up_in_json(cli):
    text = cli("plan", "--model", "meta-llama/Llama-3.1-8B", "--gpu", "H100", "--dataset", "demo")
    assert text.returncode == 0, text.stderr
    line = next(x for x in text.stdout.splitlines() if x.startswith("time: "))
    assert line.startswith("time: about ") and "fitted to H100 measurements" in line
    result = cli(
        "plan", "--model", "meta-llama/Llama-3.1-8B", "--gpu", "RTX 4090", "--dataset", "demo",
        "--json",
    )  # fmt: skip
    r = json.loads(result.stdout)
    t = r["time"]
    parts = t["train_s"] + t["startup_s"] + t["eval_s"] + t["save_s"]
    assert t["total_s"] == pytest.approx(parts, abs=0.3)
    assert r["tokens_per_s"] == round(t["tokens_per_s"]) > 0
    assert "scaled from H100" in r["throughput_basis"] and "165 vs 989" in r["throughput_basis"]
    cpu = cli("plan", "--model", "demo", "--dataset", "demo", "--json")
    assert json.loads(cpu.stdout)["time"] is None
    assert "no prediction on a CPU" in json.loads(cpu.stdout)["time_text"]
    no_data = cli("plan", "--model", "meta-llama/Llama-3.1-8B", "--gpu", "H100")
    spread = "±50 % until a run on this card measures its pace"
    assert (
        f"tokens/s (fitted to H100 measurements; {spread}); the run's time needs its dataset"
        in (no_data.stdout)
    )


def test_compare_plans_each_card_in_one_table(cli):
    args = ["plan", "--model", "meta-llama/Llama-3.1-8B", "--dataset", "demo"]
    result = cli(*args, "--compare", "RTX 4090, A100 80GB,H100")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].split() == ["card", "fits", "peak", "GiB", "setup", "tokens/s", "time"]
    assert [line.split()[0] for line in lines[2:5]] == ["RTX", "A100", "H100"]
    assert any(
        line.startswith("tokens/s on H100 80GB: fitted to H100 measurements;") for line in lines
    )
    assert any(line.startswith("tokens/s on RTX 4090: scaled from H100") for line in lines)
    rows = json.loads(cli(*args, "--compare", "RTX 4090,A100 80GB,H100", "--json").stdout)
    assert [r["card"] for r in rows] == ["RTX 4090", "A100 80GB", "H100 80GB"]
    speed = {r["card"]: r["tokens_per_s"] for r in rows}
    assert speed["H100 80GB"] > speed["A100 80GB"] > 0 and all(r["time_s"] > 0 for r in rows)
    assert all(r["fits"] for r in rows)
    # a card that cannot hold the run says so in its row; the exit code says nothing fits
    small = cli("plan", "--model", "meta-llama/Llama-3.1-70B", "--compare", "T4", "--json")
    assert small.returncode == 3 and json.loads(small.stdout)[0]["fits"] is False
    # a card named twice, in two forms, is one row
    twice = json.loads(cli(*args, "--compare", "H100,h100 80GB,NVIDIA H100", "--json").stdout)
    assert [r["card"] for r in twice] == ["H100 80GB"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--compare", "RTX 9999"], "plan --compare 'RTX 9999': unknown card"),
        # another separator, or a name of several cards: refused, never one of them
        (["--compare", "RTX 4090;H100"], "'RTX 4090;H100': unknown card"),
        (["--compare", "H100,A100"], "'A100': names 2 cards (A100 40GB, A100 80GB): name one"),
        (["--compare", "T4", "--nodes", "2"], "plan --compare names its cards; drop --nodes"),
        (["--compare", " , "], "plan --compare: give card names"),
        (["--compare", "T4", "--gpu", "H100"], "plan --compare names its cards; drop --gpu"),
    ],
)
def test_compare_refuses_in_one_line(cli, extra, message):
    result = cli("plan", "--model", "demo", *extra)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr


def test_plan_gpus_gives_each_strategy_its_time_and_none_for_cpu_offload(cli):
    result = cli(
        "plan", "--model", "meta-llama/Llama-3.1-8B", "--gpu", "RTX 4090", "--gpus", "2",
        "--dataset", "demo", "--json",
    )  # fmt: skip
    strategies = {s["label"]: s for s in json.loads(result.stdout)["distributed"]["strategies"]}
    assert strategies["ddp"]["tokens_per_s"] > 0 and strategies["ddp"]["time_s"] > 0
    offloaded = strategies["deepspeed + cpu offload"]
    assert offloaded["tokens_per_s"] is None and offloaded["time_s"] is None
    text = cli(
        "plan", "--model", "meta-llama/Llama-3.1-8B", "--gpu", "RTX 4090", "--gpus", "2",
        "--dataset", "demo",
    )  # fmt: skip
    ddp = next(line for line in text.stdout.splitlines() if line.strip().startswith("ddp "))
    assert "tokens/s, about " in ddp and "communication not counted" in text.stdout


def test_a_run_on_a_card_starts_with_its_predicted_speed_and_mfu_denominator(monkeypatch):
    """What the Started event carries to the panel's tokens/s chart (train/run_speed.py):
    on a known card the planner's tokens/s and the tokens/s at its bf16 peak, the same
    figures `plan` gives; for an objective it cannot predict, why; on a CPU, why."""
    import torch

    from finetune_tui.engine.inspect.models import inspect_model
    from finetune_tui.engine.plan.throughput import predicted_throughput
    from finetune_tui.engine.train.run_speed import ON_CPU, predicted_speed

    card = "NVIDIA H100 80GB HBM3"
    settings, stats = demo("model.name_or_path=meta-llama/Llama-3.1-8B")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert predicted_speed(settings) == {"speed_unpredicted": ON_CPU}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: card)
    speed = predicted_speed(settings)
    model = inspect_model(settings.model.name_or_path)
    planned = predicted_throughput(model, settings, stats, card)
    assert speed["predicted_tokens_per_s"] == pytest.approx(planned.tokens_per_s, abs=0.1)
    assert speed["predicted_tokens_per_s"] / speed["tokens_per_s_at_peak"] == pytest.approx(
        planned.mfu, rel=1e-3
    )
    assert speed["predicted_wall_time_s"] > 0 and speed["speed_unpredicted"] is None
    dpo = predicted_speed(load_preset(DEMO_PRESET.with_name("demo-dpo.yaml")))
    assert dpo["predicted_tokens_per_s"] is None and dpo["tokens_per_s_at_peak"] is None
    assert dpo["speed_unpredicted"].startswith("not predicted for dpo yet")


def test_a_run_counts_its_tokens_as_its_own_tokenizer_does(learned_demo, monkeypatch):
    """The characters' estimate (3.6 a token, English through a BPE vocabulary) is a quarter
    high on the demo's short uppercase records; the run has its tokenizer, and the real
    tokens it predicts are the ones it then trains on (the last step's tokens_seen)."""
    import torch

    from finetune_tui.engine.train import run_speed
    from finetune_tui.engine.train.loading import load_tokenizer_for

    _, run = learned_demo
    steps = list(map(json.loads, (run / "metrics.jsonl").read_text().splitlines()))
    last = [e for e in steps if e["kind"] == "step"][-1]
    settings, estimated = demo()
    tokenizer = load_tokenizer_for(settings)
    counted = dataset_stats(settings, tokenizer)
    assert counted.count == estimated.count == 2200

    def tokens_by(step, stats):
        timing = rt.run_time(settings, stats, DEMO_MODEL, tokens_per_s=1.0, basis="b")
        return timing.real_tokens * step / timing.steps

    assert tokens_by(last["step"], counted) == pytest.approx(last["tokens_seen"], rel=0.02)
    assert tokens_by(last["step"], estimated) > 1.2 * last["tokens_seen"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "NVIDIA H100 80GB HBM3")
    with_tokenizer = run_speed.predicted_speed(settings, tokenizer)["predicted_tokens_per_s"]
    assert with_tokenizer < run_speed.predicted_speed(settings)["predicted_tokens_per_s"]


@pytest.mark.parametrize(
    "record",
    [
        lambda i: {"text": "hello world " * i},
        lambda i: {"instruction": "Say hi " * i, "input": "", "output": "hi there " * i},
        lambda i: {
            "conversations": [
                {"from": "human", "value": "q " * i},
                {"from": "gpt", "value": "a " * i},
            ]
        },
    ],
    ids=["text", "alpaca", "sharegpt"],
)
def test_each_format_is_counted_as_the_run_trains_on_it(tmp_path, record):
    """One epoch, nothing held out: the tokens the run trained on are the records' lengths
    the tokenizer gives, whatever the format (its template, its EOS)."""
    from conftest import call_main, own_folders, set_args

    from finetune_tui.engine.train.loading import load_tokenizer_for

    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(record(1 + i % 3)) + "\n" for i in range(24)))
    pairs = ["dataset.eval_fraction=0", "training.epochs=1", "training.micro_batch_size=4"]
    pairs += ["training.max_seq_length=256"]  # Alpaca's template alone is 147 tokens
    pairs += [f"dataset.path={data}", "training.exact_match_samples=0", "training.logging_steps=1"]
    with own_folders(tmp_path):
        result = call_main(
            "--preset", str(DEMO_PRESET), "--output", str(tmp_path / "r"), *set_args(*pairs)
        )
    assert result.returncode == 0, result.stderr[-2000:]
    events = map(json.loads, (tmp_path / "r" / "metrics.jsonl").read_text().splitlines())
    seen = [e for e in events if e["kind"] == "step"][-1]["tokens_seen"]
    settings = load_preset(DEMO_PRESET, pairs)
    counted = dataset_stats(settings, load_tokenizer_for(settings))
    assert counted.count == 24 and counted.mean * 24 == pytest.approx(seen, rel=0.01)


def test_a_tokenizer_that_cannot_render_the_records_leaves_the_estimate():
    """Chat records and a tokenizer without a chat template: the characters' estimate, not
    a run without a prediction."""
    from finetune_tui.engine.train.loading import load_tokenizer_for

    settings, estimated = demo()
    tokenizer = load_tokenizer_for(settings)
    tokenizer.chat_template = None
    assert dataset_stats(settings, tokenizer) == estimated


def records(folder: Path, count: int) -> Path:
    data = folder / f"records-{count}.jsonl"
    line = json.dumps({"text": "a record of a few words"}) + "\n"
    data.write_text(line * count)
    return data


@pytest.mark.parametrize(
    ("count", "steps_an_epoch", "epochs", "in_two_steps"),
    [(1, 1, 10_000, 2), (100, 4, 3, 64)],  # 100 records at 32 a step: 3 full steps and 4 left
)
def test_max_steps_and_epochs_count_the_same_steps_alike(
    tmp_path, count, steps_an_epoch, epochs, in_two_steps
):
    """A step never holds more samples than the training split has: one record for 10,000
    steps was planned as 32 a step under max_steps (1.28 M tokens) but one under epochs."""
    data = f"dataset.path={records(tmp_path, count)}"
    fixed = ["dataset.eval_fraction=0", "training.micro_batch_size=32", data]
    by_epochs = rt.run_time(*demo(*fixed, f"training.epochs={epochs}"), LLAMA_8B, 1e3, "b")
    steps = steps_an_epoch * epochs
    by_steps = rt.run_time(*demo(*fixed, f"training.max_steps={steps}"), LLAMA_8B, 1e3, "b")
    assert by_epochs.steps == by_steps.steps == steps
    assert by_steps.real_tokens == by_epochs.real_tokens
    per_sample = rt._real_tokens_per_sample(*demo(*fixed))
    assert by_steps.real_tokens == round(count * epochs * per_sample)
    # full steps until an epoch runs out of records: one record is one a step
    two = rt.run_time(*demo(*fixed, "training.max_steps=2"), LLAMA_8B, 1e3, "b")
    assert two.real_tokens == round(in_two_steps * per_sample)


def test_plan_json_times_one_record_alike_by_max_steps_and_by_epochs(cli, tmp_path):
    args = ["plan", "--model", "meta-llama/Llama-3.1-8B", "--gpu", "H100", "--json"]
    args += ["--dataset", str(records(tmp_path, 1))]
    times = [
        json.loads(cli(*args, "--set", f"training.{key}=10000").stdout)["time"]
        for key in ("max_steps", "epochs")
    ]
    assert times[0] == times[1] and times[0]["steps"] == 10_000
