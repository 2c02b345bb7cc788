"""Hardware, model facts, the memory model and the advisor — all without a GPU or torch."""

from __future__ import annotations

import json
import sys
import types
from collections import Counter
from pathlib import Path

import pytest
from conftest import run_python
from published_sizes import PUBLISHED_SIZES

from finetune_tui.engine.common.errors import InputError, ModelError
from finetune_tui.engine.inspect.hardware import (
    GPU,
    GpuTelemetry,
    Hardware,
    detect_hardware,
    simulated_hardware,
)
from finetune_tui.engine.inspect.models import catalog_ids, inspect_model
from finetune_tui.engine.plan.advisor import advise, evaluate
from finetune_tui.engine.plan.peak import predict_memory
from finetune_tui.engine.settings.preset import settings_from_overrides

QLORA = [
    "quantization.mode=nf4",
    "training.optimizer=adamw_8bit",
    "training.max_seq_length=1024",
    "training.micro_batch_size=2",
]


@pytest.mark.parametrize(("model_id", "published"), sorted(PUBLISHED_SIZES.items()))
def test_parameter_counts_match_published_sizes(model_id, published):
    assert inspect_model(model_id).params_total == pytest.approx(published, rel=0.002)


def test_lora_targets_per_family():
    assert inspect_model("meta-llama/Llama-3.1-8B").lora_targets == [
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    ]
    assert inspect_model("cyberagent/open-calm-7b").lora_targets == [
        "query_key_value",
        "dense",
        "dense_h_to_4h",
        "dense_4h_to_h",
    ]
    assert inspect_model("microsoft/phi-4").lora_targets[0] == "qkv_proj"


def test_backend_support_by_architecture():
    neox = inspect_model("cyberagent/open-calm-7b").supported_backends
    assert neox["hf"] is None and "gpt_neox" in neox["liger"] and "gpt_neox" in neox["unsloth"]
    assert inspect_model("google/gemma-2-9b").supported_backends["liger"] is None


def test_local_folder_and_unknown_ids(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["LlamaForCausalLM"],
                "model_type": "llama",
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "vocab_size": 100,
            }
        )
    )
    assert inspect_model(str(tmp_path)).num_layers == 2
    with pytest.raises(ModelError, match="not in the catalog"):
        inspect_model("someone/unknown-model")
    assert "meta-llama/Llama-3.1-8B" in catalog_ids()


@pytest.fixture
def no_driver(monkeypatch):
    """A machine without an NVIDIA driver, whatever this one has: NVML fails to start as
    pynvml does where libnvidia-ml is missing."""

    class NVMLError(Exception):
        pass

    def init():
        raise NVMLError("NVML Shared Library Not Found")

    fake = types.SimpleNamespace(NVMLError=NVMLError, nvmlInit=init)
    monkeypatch.setitem(sys.modules, "pynvml", fake)


def test_detect_is_clean_without_a_driver(no_driver):
    hardware = detect_hardware()
    assert hardware.gpus == [] and "CPU" in hardware.note


def test_panel_telemetry_is_none_without_a_driver_and_closes_cleanly(no_driver):
    telemetry = GpuTelemetry(0)
    assert telemetry.read() is None and telemetry.read() is None
    telemetry.close()


def test_panel_telemetry_keeps_one_nvml_session(monkeypatch):
    """Polled every second: NVML is initialised once, not once per poll."""
    calls = Counter()

    class Memory:
        total, free = 24 * 2**30, 20 * 2**30

    class Utilization:
        gpu = 87

    fake = types.SimpleNamespace(
        nvmlInit=lambda: calls.update(["init"]),
        nvmlShutdown=lambda: calls.update(["shutdown"]),
        nvmlDeviceGetHandleByIndex=lambda index: f"gpu{index}",
        nvmlDeviceGetMemoryInfo=lambda handle: Memory,
        nvmlDeviceGetUtilizationRates=lambda handle: Utilization,
        nvmlDeviceGetTemperature=lambda handle, sensor: 61,
        nvmlDeviceGetPowerUsage=lambda handle: 250_000,
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    telemetry = GpuTelemetry(0)
    polls = [telemetry.read() for _ in range(5)]
    telemetry.close()
    assert calls == {"init": 1, "shutdown": 1}
    assert polls[-1].utilization_pct == 87 and polls[-1].power_w == 250.0
    assert polls[-1].free_gib == 20.0 and polls[-1].temperature_c == 61


def test_simulated_cards():
    laptop = simulated_hardware("RTX 4060 Laptop")
    assert laptop.primary.total_gib == 8.0 and laptop.simulated
    assert simulated_hardware("T4").primary.bf16 is False
    assert simulated_hardware(vram_gib=12).primary.total_gib == 12
    with pytest.raises(InputError, match="unknown card"):
        simulated_hardware("RTX 9999")
    with pytest.raises(InputError) as long_name:  # echoed whole, it covered the wizard
        simulated_hardware("x" * 5000)
    assert "... (5,000 characters): unknown card" in str(long_name.value)
    assert len(str(long_name.value)) < 200


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--vram", "0"], "--vram 0.0: must be a number of GiB above 0"),
        (["--gpu", ""], "--gpu '': unknown card"),
    ],
)
def test_an_empty_card_is_refused_not_taken_for_this_machine(cli, args, said):
    """`--vram 0` and `--gpu ""` were read as not given: a plan for this CPU, "fits"."""
    result = cli("plan", "--model", "meta-llama/Llama-3.2-1B", *args)
    assert result.returncode == 2 and said in result.stderr


def test_a_card_the_cuda_context_fills_has_nothing_usable():
    """A 0.5 GiB card: "-0.1 GiB usable" was printed; nothing is usable, nothing fits."""
    from finetune_tui.engine.plan.headroom import usable_gib

    assert usable_gib(simulated_hardware(vram_gib=0.5)) == 0.0
    plan = advise(
        simulated_hardware(vram_gib=0.5),
        inspect_model("meta-llama/Llama-3.2-1B"),
        settings_from_overrides([]),
    )
    assert not plan.fits


def test_plan_text_tells_a_zero_budget_from_no_gpu(cli):
    """`--vram 0.001` leaves 0.0 GiB usable: the text said "(CPU: no VRAM limit): DOES NOT
    FIT", while --json said budget_gib 0.0; only a plan without a card has no limit."""
    tiny = cli("plan", "--model", "demo", "--vram", "0.001")
    assert tiny.returncode == 3, tiny.stderr
    assert "GiB of 0.0 GiB usable: DOES NOT FIT" in tiny.stdout
    assert "no VRAM limit" not in tiny.stdout
    cpu = cli("plan", "--model", "demo")
    assert "GiB (CPU: no VRAM limit): fits" in cpu.stdout


@pytest.mark.parametrize(
    ("change", "part", "direction"),
    [
        ("quantization.mode=none", "base_weights_gib", +1),
        ("quantization.mode=8bit", "base_weights_gib", +1),
        ("quantization.double_quant=false", "base_weights_gib", +1),
        ("lora.r=64", "lora_gib", +1),
        ("training.optimizer=adamw_torch", "lora_gib", +1),
        ("memory.gradient_checkpointing=on", "activations_gib", -1),
        ("training.micro_batch_size=4", "activations_gib", +1),
        ("training.max_seq_length=2048", "activations_gib", +1),
        ("memory.backend=liger", "activations_gib", -1),
    ],
)
def test_every_option_moves_its_part_of_the_breakdown(change, part, direction):
    model = inspect_model("meta-llama/Llama-3.1-8B")
    base = predict_memory(model, settings_from_overrides(QLORA))
    changed = predict_memory(model, settings_from_overrides([*QLORA, change]))
    assert (getattr(changed, part) - getattr(base, part)) * direction > 0


def test_unsloth_offloaded_checkpointing_is_the_smallest():
    model = inspect_model("meta-llama/Llama-3.1-8B")
    on = predict_memory(
        model, settings_from_overrides([*QLORA, "memory.gradient_checkpointing=on"])
    )
    unsloth = predict_memory(
        model,
        settings_from_overrides(
            [*QLORA, "memory.backend=unsloth", "memory.gradient_checkpointing=unsloth"]
        ),
    )
    assert unsloth.activations_gib < on.activations_gib


def test_nine_b_model_on_an_eight_gb_card_finds_a_configuration():
    plan = advise(
        simulated_hardware("RTX 4060 Laptop"),
        inspect_model("google/gemma-2-9b"),
        settings_from_overrides(QLORA),
        fixed={"lora.r"},
    )
    assert plan.fits and plan.peak_vram_gib <= plan.budget_gib
    assert plan.settings.quantization.mode == "nf4"
    assert plan.settings.memory.gradient_checkpointing != "off"
    assert "quantization.mode" in plan.reasons and "GiB" in plan.reasons["quantization.mode"]


def test_eighty_gb_card_spends_memory_on_speed():
    plan = advise(
        simulated_hardware(vram_gib=80),
        inspect_model("meta-llama/Llama-3.1-8B"),
        settings_from_overrides(QLORA),
        fixed={"lora.r", "training.max_seq_length"},
    )
    assert plan.settings.memory.gradient_checkpointing == "off"
    assert plan.settings.training.micro_batch_size >= 4
    assert plan.relative_speed >= 3.0
    assert plan.alternatives and all(
        a.relative_speed <= plan.relative_speed + 0.01 for a in plan.alternatives if a.fits
    )


def test_pinned_options_are_never_changed():
    plan = advise(
        simulated_hardware(vram_gib=80),
        inspect_model("meta-llama/Llama-3.1-8B"),
        settings_from_overrides([*QLORA, "memory.gradient_checkpointing=on"]),
        fixed={"memory.gradient_checkpointing"},
    )
    assert plan.settings.memory.gradient_checkpointing == "on"


def test_a_pinned_choice_is_said_to_be_the_users_and_compared_with_nothing_unplanned():
    """With the mode pinned to 16-bit the reason read "no NF4 configuration fits 23.4 GiB"
    (NF4 was never planned: it fits at 10 GiB), a pinned backend "predicted fastest"."""
    card, llama = simulated_hardware(gpu="RTX 4090"), inspect_model("meta-llama/Llama-3.1-8B")
    for field, value in (("quantization.mode", "none"), ("memory.backend", "hf")):
        settings = settings_from_overrides([f"{field}={value}"])
        reason = advise(card, llama, settings, fixed={field}).reasons[field]
        assert reason.startswith(f"{value}: ") and "set by you" in reason, reason
        assert "NF4 configuration" not in reason and "fastest" not in reason
    free = advise(card, llama, settings_from_overrides([])).reasons["quantization.mode"]
    assert "set by you" not in free and "16-bit configuration that fits" in free


def test_refusals_are_named():
    cpu = advise(Hardware(), inspect_model("demo"), settings_from_overrides([]))
    assert cpu.settings.quantization.mode == "none" and cpu.settings.memory.backend == "hf"
    assert "needs an NVIDIA GPU" in cpu.unavailable["memory.backend=liger"]
    two = Hardware([GPU(i, "H100", 80, 80, (9, 0), True, None, None) for i in range(2)])
    assert (
        "one GPU"
        in advise(
            two, inspect_model("meta-llama/Llama-3.1-8B"), settings_from_overrides(QLORA)
        ).unavailable["memory.backend=unsloth"]
    )
    t4 = advise(
        simulated_hardware("T4"),
        inspect_model("meta-llama/Llama-3.2-1B"),
        settings_from_overrides(QLORA),
    )
    assert t4.settings.quantization.compute_dtype == "fp16"
    assert "no bf16" in t4.unavailable["quantization.compute_dtype=bf16"]
    neox = advise(
        simulated_hardware(vram_gib=24),
        inspect_model("cyberagent/open-calm-7b"),
        settings_from_overrides(QLORA),
    )
    assert neox.settings.memory.backend == "hf"


def test_evaluate_reports_does_not_fit():
    plan = evaluate(
        simulated_hardware(vram_gib=8),
        inspect_model("meta-llama/Llama-3.1-8B"),
        settings_from_overrides(["quantization.mode=none"]),
    )
    assert not plan.fits and plan.peak_vram_gib > 8


def test_plan_cli_json_without_torch():
    code = (
        "import sys, io, json, contextlib\n"
        "from finetune_tui.main import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    rc = main(['plan', '--model', 'google/gemma-2-9b', '--vram', '8', '--json'])\n"
        "assert rc == 0\n"
        "data = json.loads(out.getvalue())\n"
        "keys = {'fits', 'peak_vram_gib', 'breakdown', 'settings', 'reasons', 'alternatives'}\n"
        "assert keys <= set(data)\n"
        "assert data['fits'] is True\n"
        "assert 'torch' not in sys.modules, 'plan imported torch'\n"
    )
    run_python(code)


@pytest.mark.parametrize(
    "args",
    [
        ["detect"],
        ["detect", "--json"],
        ["plan", "--model", "google/gemma-2-9b", "--gpu", "RTX 4090"],
        ["plan", "--list-models"],
        ["plan", "--model", "google/gemma-2-9b", "--dataset", "demo", "--compare", "T4,H100"],
    ],
)
def test_detect_and_plan_import_neither_the_ui_nor_torch(args):
    """The CLI answers from the engine: no Textual (~200 ms), no torch."""
    code = (
        "import sys, io, contextlib\n"
        "from finetune_tui.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    rc = main({args!r})\n"
        "assert rc == 0, rc\n"
        "loaded = [m for m in ('textual', 'torch') if m in sys.modules]\n"
        "assert not loaded, f'imported {loaded}'\n"
    )
    run_python(code)


def test_plan_cli_bad_model_is_one_line(cli):
    result = cli("plan", "--model", "nope/x")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "not in the catalog" in result.stderr


def test_plan_refuses_lora_targets_the_run_would_refuse_in_one_line(cli):
    """The plan said "fits" (exit 0) for a target the run refuses at its first check."""
    result = cli("plan", "--model", "meta-llama/Llama-3.1-8B", "--gpu", "RTX 4090",
                 "--set", "lora.target_modules=[nonexistent_proj]")  # fmt: skip
    assert result.returncode == 2 and not result.stdout
    assert result.stderr.strip().splitlines() == [
        "finetune-tui: error: lora.target_modules: nonexistent_proj: no linear layer of this "
        "model has that name (its layers: down_proj, gate_proj, k_proj, o_proj, q_proj, "
        "up_proj, v_proj): the run refuses a name that matches none"
    ]
    full = ("--set", "training.method=full", "--set", "lora.target_modules=[nonexistent_proj]")
    assert cli("plan", "--model", "demo", *full).returncode == 0  # LoRA's: read only for LoRA


def test_plan_text_shows_outside_names_escaped(cli, tmp_path):
    """A config.json's `architectures` and a folder's name reached the terminal raw: an
    escape sequence in them retitled or cleared it."""
    from finetune_tui.engine.inspect.catalog import CATALOG

    config = dict(CATALOG["meta-llama/Llama-3.2-1B"], architectures=["\x1b]0;PWNED\x07X"])
    folder = tmp_path / "m\x1b[2J"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    result = cli("plan", "--model", str(folder), "--gpu", "H100")
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert "\x1b" not in result.stdout and first.startswith(f"{tmp_path}/m\\x1b[2J (")
    assert "\\x1b]0;PWNED\\x07X" in first


def test_plan_takes_model_and_dataset_paths_as_text(tmp_path, monkeypatch, capsys):
    """A folder named like a YAML value (`yes`, `1e3`) is a folder, not a bool or a number."""
    from finetune_tui.engine.inspect.models import load_config
    from finetune_tui.main import main

    config = load_config("meta-llama/Llama-3.2-1B")
    (tmp_path / "yes").mkdir()
    (tmp_path / "yes" / "config.json").write_text(json.dumps(config))
    from datasets import Dataset

    Dataset.from_list([{"text": "hello world"}] * 4).save_to_disk(str(tmp_path / "1e3"))
    monkeypatch.chdir(tmp_path)
    code = main(["plan", "--model", "yes", "--dataset", "1e3", "--gpu", "RTX 4090", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["settings"]["model"]["name_or_path"] == "yes"


def test_plan_exits_3_when_nothing_fits_and_explains_the_experts(capsys):
    from finetune_tui.main import main

    code = main(["plan", "--model", "mistralai/Mixtral-8x7B-v0.1", "--gpu", "RTX 4090", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 3 and data["fits"] is False
    assert data["model"]["params_active"] < data["model"]["params_total"] / 3
    assert "stay resident in 16-bit" in data["reasons"]["model.experts"]
    needed = int(data["reasons"]["fits"].split("at least ")[1].split()[0])
    from finetune_tui.engine.plan.headroom import usable_gib

    assert usable_gib(simulated_hardware(vram_gib=needed)) >= data["peak_vram_gib"]
    assert main(["plan", "--model", "meta-llama/Llama-3.1-8B", "--vram", "80"]) == 0


def test_list_models_names_every_catalog_id(capsys):
    """And the families transformers builds that the planner cannot plan yet, with why."""
    from finetune_tui.engine.inspect.catalog import CATALOG, UNPLANNED
    from finetune_tui.main import main

    assert main(["plan", "--list-models"]) == 0
    out = capsys.readouterr().out
    assert all(model_id in out for model_id in CATALOG)
    assert all(f"{model_id:<40} {why}" in out for model_id, why in UNPLANNED.items())
    assert "B active" in out and "config.json" in out


def test_a_fit_says_its_headroom_and_a_tight_one_says_back_off_is_armed():
    """Llama-3.1-8B on an 8 GB card at 1024 tokens: the flat 7 % margin stopped at b2 x acc2
    (4,712 tokens/s on the H100); Unsloth b4 (9,208 tokens/s) is inside the planner's error
    band, and the runner's back-off to b2 surely fits, so it is taken and called tight."""
    from finetune_tui.engine.plan.headroom import judge
    from finetune_tui.engine.plan.oom_policy import back_off
    from finetune_tui.engine.plan.peak import predict_memory

    model = inspect_model("meta-llama/Llama-3.1-8B")
    roomy = advise(simulated_hardware(gpu="RTX 4090"), model, settings_from_overrides([]))
    assert "GiB to spare" in roomy.reasons["fits"] and "tight" not in roomy.reasons["fits"]
    eight = simulated_hardware(vram_gib=8)
    base = settings_from_overrides(["training.max_seq_length=1024"])
    plan = advise(eight, model, base, fixed={"training.max_seq_length"})
    t = plan.settings.training
    assert plan.fits and plan.tight
    assert (plan.settings.memory.backend, t.micro_batch_size) == ("unsloth", 4)
    assert "back-off is armed" in plan.reasons["fits"]
    fallback, _ = back_off(plan.settings)
    peak = predict_memory(model, fallback, eight).reserved_gib
    assert not judge(model, fallback, eight, peak).tight


def test_a_tight_fit_with_nothing_to_back_off_to_fits_but_says_so():
    """Gemma-2-9B, Liger + checkpointing, batch 1, 1,300 tokens on an 8 GB card (a source
    document's author trained 1,200): 0.4 GiB to spare of 7.4 usable. It fits, without a net."""
    model = inspect_model("google/gemma-2-9b")
    pins = {
        "training.max_seq_length": 1300,
        "training.micro_batch_size": 1,
        "memory.backend": "liger",
        "memory.gradient_checkpointing": "on",
    }
    base = settings_from_overrides([f"{k}={v}" for k, v in pins.items()])
    plan = advise(simulated_hardware(vram_gib=8), model, base, fixed=set(pins))
    assert plan.fits and plan.tight
    assert "nothing left to back off to" in plan.reasons["fits"]
    assert "longest that safely fits" in plan.reasons["training.max_seq_length"]
    assert not advise(simulated_hardware(vram_gib=7), model, base, fixed=set(pins)).fits
    free = advise(simulated_hardware(vram_gib=8), model, settings_from_overrides([]))
    assert free.fits and "nothing left" not in free.reasons["fits"]  # a safe pick exists


def test_does_not_fit_names_the_longest_length_that_does():
    """Asked for 8192 tokens on an 8 GB card: the advisor shortens to the longest length (in
    steps of 128) at which a configuration safely fits, and 128 more does not."""
    from finetune_tui.engine.plan.speed import SPEED_BASELINE

    model = inspect_model("meta-llama/Llama-3.1-8B")
    eight = simulated_hardware(vram_gib=8)
    plan = advise(eight, model, settings_from_overrides(["training.max_seq_length=8192"]))
    length = plan.settings.training.max_seq_length
    assert plan.fits and length % 128 == 0 and 128 <= length < 8192
    assert f"{length}: the longest" in plan.reasons["training.max_seq_length"]
    longer = settings_from_overrides([f"training.max_seq_length={length + 128}"])
    pinned = advise(eight, model, longer, fixed={"training.max_seq_length"})
    assert not pinned.fits or pinned.tight
    assert SPEED_BASELINE in plan.reasons["memory.backend"]
    batch = plan.settings.training.micro_batch_size
    assert f"{batch} x {length}" in plan.reasons["training.micro_batch_size"]


def test_plan_of_a_preset_is_its_model_sized_by_its_data_when_the_data_is_here(
    tmp_path, monkeypatch, capsys
):
    """`plan --preset FILE` plans what the preset would train: its model, and its dataset's
    lengths when that file is on this machine (a cluster's path is planned without them)."""
    from finetune_tui.main import main

    monkeypatch.chdir(tmp_path)
    rows = [{"text": "word " * 40}] * 64
    Path("data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for name, data in (("here", "data.jsonl"), ("elsewhere", "/cluster/data.jsonl")):
        Path(f"{name}.yaml").write_text(
            "model:\n  name_or_path: meta-llama/Llama-3.2-1B\n"
            f"dataset:\n  path: {data}\ntraining:\n  max_seq_length: 4096\n"
        )
    planned = {}
    for name in ("here", "elsewhere"):
        code = main(["plan", "--preset", f"{name}.yaml", "--gpu", "RTX 4090", "--json"])
        data = json.loads(capsys.readouterr().out)
        assert code == 0 and data["model"]["name"] == "meta-llama/Llama-3.2-1B"
        planned[name] = data["settings"]["training"]["max_seq_length"]
    assert planned["here"] < 512 < planned["elsewhere"], planned


def test_lora_dropout_is_planned_and_its_reason_says_what_it_costs():
    """Dropout above 0 raises the planned peak (a copy and a mask of each adapted input); the
    reason gives both peaks, and under Unsloth says its fast LoRA kernels need 0."""
    model = inspect_model("meta-llama/Llama-3.2-1B")
    fixed = [*QLORA, "memory.gradient_checkpointing=off", "memory.backend=hf"]
    card = simulated_hardware(gpu="H100")
    at_zero = evaluate(card, model, settings_from_overrides(fixed))
    dropped = evaluate(card, model, settings_from_overrides([*fixed, "lora.dropout=0.05"]))
    assert dropped.breakdown.activations_gib > at_zero.breakdown.activations_gib * 1.3
    plan = advise(card, model, settings_from_overrides(["lora.dropout=0.1"]))
    reason = plan.reasons["lora.dropout"]
    assert reason.startswith("0.1: each adapted linear keeps a dropped copy")
    assert ("Unsloth's fast LoRA kernels need 0" in reason) == (
        plan.settings.memory.backend == "unsloth"
    )
    assert "lora.dropout" not in advise(card, model, settings_from_overrides([])).reasons


def test_the_plan_stays_inside_the_models_context_and_says_when_set_past_it():
    """Llama-2-7B reads 4,096 positions: long documents were planned at 8,192 with no word;
    the advisor now covers the data only up to the context, and a length set past it is
    said (the run goes on: positions past it were never trained)."""
    from finetune_tui.engine.data.lengths import stats_from_lengths

    model = inspect_model("meta-llama/Llama-2-7b-hf")
    card = simulated_hardware(gpu="H100")
    long_documents = stats_from_lengths([7000 + n for n in range(500)], 8192)
    plan = advise(card, model, settings_from_overrides([]), dataset_stats=long_documents)
    assert plan.settings.training.max_seq_length == 4096
    assert "past the model's context" not in str(plan.reasons)
    pinned = settings_from_overrides(["training.max_seq_length=8192"])
    asked = advise(card, model, pinned, fixed={"training.max_seq_length"})
    assert asked.settings.training.max_seq_length == 8192
    assert asked.reasons["training.max_seq_length"].endswith(
        "training.max_seq_length 8,192 is past the model's context of 4,096 tokens "
        "(max_position_embeddings): positions beyond it were never trained"
    )
    cpu = advise(Hardware([]), model, pinned, fixed={"training.max_seq_length"})
    assert "past the model's context of 4,096" in cpu.reasons["training.max_seq_length"]


def test_a_run_past_its_models_context_says_so_as_it_starts():
    """The demo model reads 512 positions: the same warning, from the loaded model's own
    config (a preset run headless may never have been planned)."""
    from transformers import AutoModelForCausalLM

    from finetune_tui.engine.common.demo import ensure_demo_model
    from finetune_tui.engine.train.trainer_build import _warn_past_context

    model = AutoModelForCausalLM.from_pretrained(ensure_demo_model())
    said = []
    for length in (512, 1024):
        settings = settings_from_overrides([f"training.max_seq_length={length}"])
        _warn_past_context(settings, model, said.append)
    assert [(n.level, n.message) for n in said] == [
        (
            "warning",
            "training.max_seq_length 1,024 is past the model's context of 512 tokens "
            "(max_position_embeddings): positions beyond it were never trained",
        )
    ]


def test_the_plan_says_which_lora_targets_the_run_would_refuse():
    """Qwen3-30B-A3B's gate/up/down names are moved by PEFT onto the fused experts, and a
    name no layer has matches nothing: the run's preflight refuses both, where the plan had
    counted them as 0 GiB of LoRA and said only "fits"."""
    card = simulated_hardware(gpu="H100")
    fixed = {"lora.target_modules"}

    def said(model_id: str, targets: str) -> str | None:
        settings = settings_from_overrides([f"lora.target_modules={targets}"])
        plan = advise(card, inspect_model(model_id), settings, fixed=fixed)
        return plan.reasons.get("lora.target_modules")

    moved = said("Qwen/Qwen3-30B-A3B", "[gate_proj,up_proj,down_proj]")
    assert moved.startswith("down_proj, gate_proj, up_proj: PEFT moves them onto the fused")
    unknown = said("meta-llama/Llama-3.1-8B", "[q_proj,nonexistent,embed_tokens]")
    assert unknown.startswith("nonexistent: no linear layer of this model has that name")
    output = said("meta-llama/Llama-3.1-8B", "[q_proj,lm_head]")  # TRL's trainers refuse it
    assert output.startswith("lm_head: the model's output layer, whose weight TRL's trainers")
    assert said("meta-llama/Llama-3.1-8B", "[q_proj,model.layers.0.mlp.down_proj]") is None
    assert said("Qwen/Qwen3-30B-A3B", "[q_proj,k_proj]") is None
