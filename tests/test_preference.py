"""Preference tuning (DPO, ORPO, KTO): trained from their presets in this process, their data
validated with file:line, objective and data format made to agree, SFT left as it was."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import call_main, own_folders, read_until, run_exported, start_cli

from finetune_tui.engine.common import demo
from finetune_tui.engine.data.formats import detect_format, validate_records
from finetune_tui.engine.data.reading import Record
from finetune_tui.engine.recipe.examples import to_example
from finetune_tui.engine.settings.preset import load_preset
from finetune_tui.engine.settings.schema import TrainSettings
from finetune_tui.engine.settings.trainer_names import trainer_settings

REPO = Path(__file__).resolve().parent.parent
PRESETS = REPO / "presets"
SHORT = ("--set", "training.max_steps=3", "--set", "dataset.max_samples=48")
LOGGED = ("--set", "training.logging_steps=1")  # a loss for every step, to compare
DPO_STEPS = 20  # the demo preset's 60 steps, shortened for the suite (see the preset)


def preset(objective: str) -> str:
    return str(PRESETS / ("demo.yaml" if objective == "sft" else f"demo-{objective}.yaml"))


def summary_of(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def events_of(run: Path, kind: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["kind"] == kind]


def step_losses(run: Path) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in events_of(run, "step")}


def script_losses(run: Path, tmp_path: Path) -> dict[int, float]:
    """The run's own exported train.py, run as its user runs it: the loss of each step."""
    out = tmp_path / "script-out"
    done = run_exported(tmp_path, run / "export" / "train.py", "--output", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    lines = (out / "losses.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines)}


def assert_same_losses(got: dict, expected: dict, steps: int) -> None:
    assert sorted(got) == sorted(expected) == list(range(1, steps + 1))
    assert all(abs(got[step] - loss) < 1e-4 for step, loss in expected.items()), (got, expected)


@pytest.fixture(scope="session")
def dpo_run(tmp_path_factory):
    """The DPO demo, trained once for the module."""
    root = tmp_path_factory.mktemp("dpo")
    with own_folders(root):
        args = ("--output", str(root / "run"), "--set", f"training.max_steps={DPO_STEPS}")
        result = call_main("--preset", preset("dpo"), *args)
    assert result.returncode == 0, result.stderr[-2000:]
    return result, root / "run"


def test_dpo_demo_learns_to_prefer_the_right_answer(dpo_run):
    result, run = dpo_run
    summary = summary_of(run)
    assert summary["objective"] == "dpo"
    # step 0: the policy is its reference, every reward 0, no chosen answer ahead yet
    assert summary["preference_accuracy_before"] == 0.0
    assert summary["preference_accuracy_after"] >= 0.9, summary
    assert summary["reward_margin"] > 0.5
    assert summary["final_loss"] < summary["first_loss"]
    steps = events_of(run, "step")
    assert steps[-1]["reward_accuracy"] > steps[0]["reward_accuracy"]
    assert "pref-acc" in next(line for line in result.stdout.splitlines() if "step " in line)
    assert "held-out preference accuracy 0.0% -> " in result.stdout
    script = (run / "export" / "train.py").read_text()  # the recipe trains DPO too
    assert summary["export"] and 'OBJECTIVE = "dpo"' in script and "DPOTrainer" in script


@pytest.mark.parametrize("objective", ["orpo", "kto"])
def test_orpo_and_kto_train_from_their_presets_and_their_scripts_repeat_them(
    cli, tmp_path, objective
):
    """ORPO's odds-ratio loss and KTO's unpaired one, as DPO's: the exported script's
    trainer, data and losses are the run's (steps 1-3 within 1e-4)."""
    run = tmp_path / "run"
    result = cli("--preset", preset(objective), "--output", str(run), *SHORT, *LOGGED)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = summary_of(run)
    assert summary["objective"] == objective and summary["step"] == 3
    assert summary["reward_margin"] is not None
    # ORPO's reward is the policy's own odds: an accuracy from the start; KTO's are unpaired
    has_accuracy = summary["preference_accuracy_after"] is not None
    assert has_accuracy == (objective == "orpo")
    assert events_of(run, "step")[0]["tokens_seen"] > 0
    assert (run / "adapter" / "adapter_config.json").is_file()
    assert_same_losses(script_losses(run, tmp_path), step_losses(run), steps=3)


def test_full_fine_tuning_dpo_has_a_reference_copy(cli, tmp_path):
    """Without an adapter to switch off, TRL loads the reference as a second model."""
    run = tmp_path / "run"
    result = cli(
        "--preset", preset("dpo"), "--output", str(run), *SHORT,
        "--set", "training.method=full", "--set", "training.learning_rate=1e-4",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    summary = summary_of(run)
    assert summary["method"] == "full" and summary["preference_accuracy_after"] is not None


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


GOOD = {"prompt": "Q", "chosen": "yes", "rejected": "no"}
CHAT = [{"role": "user", "content": "Q"}]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"prompt": "Q", "chosen": "yes"}, "missing field 'rejected'"),
        ({"prompt": "Q", "chosen": "yes", "rejected": CHAT}, "both be strings or both"),
        ({"prompt": "Q", "chosen": "same", "rejected": "same"}, "nothing to prefer"),
        ({"prompt": "Q", "chosen": 3, "rejected": 4},
         "field 'chosen' must be a string or a list of messages, not int"),
        ({"chosen": "yes", "rejected": "no"}, "missing field 'prompt'"),
        ({"prompt": CHAT, "chosen": CHAT, "rejected": [{"role": "assistant", "content": "n"}]},
         "chosen: holds the assistant's answer only"),
        ({"chosen": [*CHAT, {"role": "assistant", "content": "a"}],
          "rejected": [{"role": "user", "content": "Z"}, {"role": "assistant", "content": "b"}]},
         "share every turn but the last"),
        # each record good alone: TRL read the file's form off its first and failed later
        ({"prompt": CHAT, "chosen": [{"role": "assistant", "content": "y"}],
          "rejected": [{"role": "assistant", "content": "n"}]},
         "answers are chat messages, the first record's (" ),
    ],
)  # fmt: skip
def test_bad_preference_records_are_one_line_with_file_and_line(cli, tmp_path, bad, message):
    data = write_jsonl(tmp_path / "pairs.jsonl", [GOOD, bad])
    result = cli(
        "--preset", preset("dpo"), "--output", str(tmp_path / "run"),
        "--set", f"dataset.path={data}",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{data}:2: " in lines[0] and message in lines[0], lines
    assert not (tmp_path / "run").exists()


def test_kto_trains_a_file_sorted_by_label_in_a_seeded_mixed_order():
    """KTO's sampler is sequential (its KL term pairs neighbours) and TRL does not shuffle:
    without a held-out split a file of 100 good then 100 bad answers trained every good one
    first. The split shuffles, with its seed, whether or not it holds records out."""
    from finetune_tui.engine.recipe.examples import split_examples

    rows = [{"prompt": f"Q{i}", "completion": "a", "label": i < 100} for i in range(200)]
    train, evaluation = split_examples(rows, 0.0, None, 42)
    assert evaluation is None and len(train) == 200
    first = train.select(range(32))["label"]
    assert 8 <= sum(first) <= 24, first
    assert split_examples(rows, 0.0, None, 42)[0]["prompt"] == train["prompt"]  # seeded


@pytest.mark.parametrize("objective", ["dpo", "kto"])
def test_a_preference_runs_held_out_prompts_expect_the_preferred_answer(objective):
    """compare and the Try screen found no held-out records in a DPO run (they looked for an
    SFT completion) and took a KTO run's undesirable completions as the expected answers."""
    from transformers import AutoTokenizer

    from finetune_tui.engine.deliver.held_out import held_out_prompts

    tokenizer = AutoTokenizer.from_pretrained(str(demo.ensure_demo_model()))
    settings = load_preset(preset(objective))
    prompts = held_out_prompts(settings, tokenizer)
    assert len(prompts) == 5 and all(p.text.startswith("Uppercase: ") for p in prompts)
    assert all(p.rendered.endswith("<|assistant|>") for p in prompts)
    right = [p.text.removeprefix("Uppercase: ").upper() for p in prompts]
    if objective == "dpo":
        assert [p.expected for p in prompts] == right
    else:  # an undesirable completion is no expected answer
        assert {p.expected for p in prompts} - {None} <= set(right)
        assert None in {p.expected for p in prompts}


def test_the_exported_scripts_beta_is_checked_as_the_setting_is(tmp_path):
    """`--set beta=-1` trained the script silently toward the rejected answers (the CLI
    refused it): TRAINER's arguments that hold a setting as it is carry its rule."""
    from finetune_tui.engine.export.script import render_script

    script = tmp_path / "train.py"
    script.write_text(render_script(load_preset(preset("dpo")), {}))
    for given, said in (("beta=-1", "expected above 0.0"), ("beta='0.5'", "expected a number")):
        refused = run_exported(tmp_path, script, "--set", given)
        assert refused.returncode == 1 and said in refused.stderr, refused.stderr[-800:]
        assert refused.stderr.startswith(f"--set {given}: ") and "Traceback" not in refused.stderr
    kto = tmp_path / "kto.py"  # KTO trains at micro-batch 2 or more: TRL refused 1 at start
    kto.write_text(render_script(load_preset(preset("kto")), {}))
    for given, said in (("per_device_train_batch_size=1", "expected at least 2, not 1"),):
        refused = run_exported(tmp_path, kto, "--set", given)
        assert refused.returncode == 1 and said in refused.stderr, refused.stderr[-800:]
        assert refused.stderr.startswith(f"--set {given}: ") and "Traceback" not in refused.stderr


def test_kto_labels_from_csv_cells_and_numbers_are_read_as_trl_reads_them(tmp_path):
    """A CSV cell is text: every KTO row of a CSV file was refused ("must be true or
    false"); 0 / 1, which TRL trains on, were refused too, and the exported script trained
    on them anyway. Each is now the bool TRL reads, in the run and the script alike."""
    from finetune_tui.engine.data.reading import load_records
    from finetune_tui.engine.recipe.examples import kto_label

    assert [kto_label(v) for v in (True, "true", " False ", "TRUE", 1, 0, "1", " 0 ")] == [
        True, True, False, True, True, False, True, False
    ]  # fmt: skip
    assert [kto_label(v) for v in ("yes", 2, None, 1.0, [])] == [None] * 5
    data = tmp_path / "kto.csv"
    data.write_text("prompt,completion,label\n" + "Q,a,true\nQ,b,False\n" * 20)
    records = load_records(data, 1000)
    assert [r.data["label"] for r in records[:2]] == ["true", "False"]  # text, as CSV holds it
    assert validate_records(records, "unpaired_preference") == []
    assert to_example(records[1].data, "unpaired_preference", "")["label"] is False


def test_unpaired_records_need_a_true_or_false_label(tmp_path):
    rows = [
        {"prompt": "Q", "completion": "yes", "label": True},
        {"prompt": "Q", "completion": "no", "label": "no"},
        {"prompt": CHAT, "completion": "text", "label": False},
        {"prompt": CHAT, "completion": [{"role": "assistant", "content": "n"}], "label": True},
    ]
    records = [Record(row, f"f.jsonl:{i + 1}") for i, row in enumerate(rows)]
    assert detect_format(records) == "unpaired_preference"
    problems = [str(p) for p in validate_records(records, "unpaired_preference")]
    assert problems == [
        "f.jsonl:2: field 'label' must be true or false (or 1 / 0), not 'no'",
        "f.jsonl:3: field 'prompt' must be a string, as 'completion' is",
        "f.jsonl:4: answers are chat messages, the first record's (f.jsonl:1) strings: "
        "a file holds one form",
    ]


@pytest.mark.parametrize(
    ("objective", "data", "message"),
    [
        ("sft", demo.demo_dataset_path("dpo"), "training.objective: sft trains on answers"),
        ("dpo", demo.demo_dataset_path("sft"), "the dataset is messages records, which train sft"),
        ("orpo", demo.demo_dataset_path("kto"), "unpaired_preference records, which train kto"),
    ],
)
def test_objective_and_data_must_agree_before_any_run_folder(
    cli, tmp_path, objective, data, message
):
    """A preference record never trains as SFT, nor an SFT record as a preference."""
    run = tmp_path / "run"
    result = cli(
        "--preset", preset(objective), "--output", str(run), "--set", f"dataset.path={data}"
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and message in lines[0], lines
    assert str(data) in lines[0] and "detected" in lines[0]
    assert not run.exists() and not (tmp_path / "data" / "runs").exists()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (["dataset.format=messages"], "training.objective: dpo trains on preference pairs"),
        (["memory.packing=true"], "memory.packing: TRL's preference trainers do not pack"),
        (["memory.group_by_length=true"], "memory.group_by_length: "),
        (["training.exact_match_samples=5"], "training.exact_match_samples: "),
        (["training.objective=kto", "training.dpo_loss=ipo"], "training.dpo_loss: only"),
        (["training.dpo_loss=nonsense"], "training.dpo_loss: "),
        (["training.beta=0"], "training.beta: "),
        (["training.dpo_loss=exo_pair"], "training.dpo_loss: "),  # needs label smoothing
        (["training.objective=kto", "training.micro_batch_size=1"],
         "training.micro_batch_size: kto trains at 2 or more"),
        (["lora.target_modules=[q_proj,lm_head]"], "'lm_head' is the model's output layer"),
    ],
)  # fmt: skip
def test_settings_a_preference_run_cannot_use_are_one_line(cli, tmp_path, changes, message):
    args = [item for change in changes for item in ("--set", change)]
    result = cli("--preset", preset("dpo"), "--output", str(tmp_path / "run"), *args)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and message in lines[0], lines


def test_an_sft_run_refuses_preference_settings_it_would_ignore():
    with pytest.raises(ValueError, match="training.beta: only the preference objectives"):
        TrainSettings.model_validate({"training": {"beta": 0.3}})
    with pytest.raises(ValueError, match="memory.backend: finetune-tui runs Unsloth with SFT"):
        TrainSettings.model_validate(
            {"training": {"objective": "orpo"}, "memory": {"backend": "unsloth"}}
        )


def test_export_refuses_data_of_another_objective_and_writes_nothing(cli, tmp_path):
    out = tmp_path / "out" / "train.py"
    sft_data = f"dataset.path={demo.demo_dataset_path('sft')}"
    result = cli("export", "--preset", preset("kto"), "-o", str(out), "--set", sft_data)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, lines
    assert "training.objective: kto trains on labelled completions" in lines[0]
    assert not out.parent.exists()


def test_export_refuses_records_the_run_would_refuse_and_writes_nothing(cli, tmp_path):
    """A file of pairs whose answers are the same exported, and its script trained on it
    (the run refuses it in one line)."""
    data = write_jsonl(
        tmp_path / "pairs.jsonl", [GOOD, {"prompt": "Q", "chosen": "a", "rejected": "a"}]
    )
    out = tmp_path / "out" / "train.py"
    result = cli(
        "export", "--preset", preset("dpo"), "-o", str(out), "--set", f"dataset.path={data}"
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, lines
    assert f"{data}:2: fields 'chosen' and 'rejected' are the same" in lines[0]
    assert not out.parent.exists()


def test_sft_settings_reach_sftconfig_as_before():
    """The default objective is SFT, with SFTConfig's arguments and no preference ones."""
    arguments = trainer_settings(TrainSettings())
    assert TrainSettings().training.objective == "sft"
    assert arguments["packing"] is False and arguments["train_sampling_strategy"] == "random"
    assert "beta" not in arguments and "loss_type" not in arguments
    dpo = trainer_settings(TrainSettings.model_validate({"training": {"objective": "dpo"}}))
    assert dpo["beta"] == 0.1 and dpo["loss_type"] == ["sigmoid"] and "packing" not in dpo
    kto = trainer_settings(TrainSettings.model_validate({"training": {"objective": "kto"}}))
    assert kto["train_sampling_strategy"] == "sequential"


def test_preference_records_become_trls_columns():
    chosen = [*CHAT, {"role": "assistant", "content": "A", "weight": 1}]
    rejected = [*CHAT, {"role": "assistant", "content": "B"}]
    implicit = to_example({"chosen": chosen, "rejected": rejected}, "preference", "<eos>")
    assert implicit == {
        "prompt": CHAT,
        "chosen": [{"role": "assistant", "content": "A"}],
        "rejected": [{"role": "assistant", "content": "B"}],
    }
    assert to_example({**GOOD, "id": 7}, "preference", "<eos>") == GOOD  # TRL adds the EOS
    unpaired = {"prompt": "Q", "completion": "A", "label": False, "source": "x"}
    assert to_example(unpaired, "unpaired_preference", "") == {
        "prompt": "Q",
        "completion": "A",
        "label": False,
    }


def test_demo_preference_data_regenerates_identically(tmp_path):
    out = tmp_path / "demo.jsonl"
    generator = REPO / "benchmarks" / "make_demo_data.py"
    subprocess.run([sys.executable, str(generator), "--out", str(out)], check=True)
    for objective in ("sft", "dpo", "kto"):
        shipped = demo.demo_dataset_path(objective)
        assert (tmp_path / shipped.name).read_bytes() == shipped.read_bytes(), shipped.name


def test_a_prompt_that_fills_max_seq_length_is_refused_before_any_run_folder(cli, tmp_path):
    """Chosen and rejected both follow the prompt: a prompt as long as the limit leaves no
    answer to prefer (TRL would drop the pair), told with the record and the length that
    fits."""
    run = tmp_path / "run"
    result = cli(
        "--preset", preset("dpo"), "--output", str(run), "--set", "training.max_seq_length=12"
    )  # fmt: skip
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, lines
    assert f"{demo.demo_dataset_path('dpo')}:1: 2200 of 2200 records lose their whole" in lines[0]
    assert "at training.max_seq_length 12; set it to at least" in lines[0] and not run.exists()


def needed_length(line: str) -> int:
    return int(line.split("set it to at least ")[1].split()[0])


def length_check(data: Path, objective: str, length: int) -> None:
    """The check a run makes before its folder exists (preflight), on these settings."""
    from finetune_tui.engine.settings.preset import load_preset
    from finetune_tui.engine.train.preflight import check_run_inputs

    sets = [f"dataset.path={data}", f"training.max_seq_length={length}"]
    check_run_inputs(load_preset(Path(preset(objective)), sets))


SHARED = "The capital of France is a city on the Seine, famous for its museums, and it is "


@pytest.mark.parametrize("chat", [False, True], ids=["text", "messages"])
def test_a_pair_cut_before_its_answers_differ_is_refused_with_its_line(cli, tmp_path, chat):
    """Cut to the limit, chosen and rejected would be the same tokens: nothing to prefer.
    Measured through the tokenizer (and chat template) as TRL will; the length told fits."""

    def pair(chosen: str, rejected: str) -> dict:
        if not chat:
            return {"prompt": "Q: ", "chosen": chosen, "rejected": rejected}
        turn = lambda text: [{"role": "assistant", "content": text}]  # noqa: E731
        return {"prompt": CHAT, "chosen": turn(chosen), "rejected": turn(rejected)}

    rows = [pair("Paris.", "Rome.")] * 30 + [pair(SHARED + "Paris.", SHARED + "Rome.")]
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    args = ("--preset", preset("dpo"), "--output", str(tmp_path / "run"))
    result = cli(*args, "--set", f"dataset.path={data}", "--set", "training.max_seq_length=30")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"finetune-tui: error: {data}:31: 1 of 31 records lose what")
    assert "this pair's answers are the same up to it" in lines[0]
    assert not (tmp_path / "run").exists()
    needed = needed_length(lines[0])
    length_check(data, "dpo", needed)  # the length it tells keeps the pair whole
    length_check(data, "dpo", needed - 1)  # an answer's end cut, past where they differ: kept


def test_a_kto_completion_whose_prompt_fills_the_limit_is_refused_with_its_line(cli, tmp_path):
    rows = [{"prompt": "Q", "completion": "yes", "label": True}] * 20
    rows.insert(4, {"prompt": SHARED * 2, "completion": "no", "label": False})
    data = write_jsonl(tmp_path / "unpaired.jsonl", rows)
    result = cli(
        "--preset", preset("kto"), "--output", str(tmp_path / "run"),
        "--set", f"dataset.path={data}", "--set", "training.max_seq_length=64",
    )  # fmt: skip
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, lines
    assert f"{data}:5: 1 of 21 records lose their whole answer (this one's prompt" in lines[0]
    length_check(data, "kto", needed_length(lines[0]))


def test_message_pairs_need_a_chat_template(cli, tmp_path):
    """Conversational pairs become text through the model's chat template; plain-text pairs
    train on a model without one."""
    model = tmp_path / "plain-model"
    shutil.copytree(demo.ensure_demo_model(), model)
    config = json.loads((model / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (model / "tokenizer_config.json").write_text(json.dumps(config))
    for template in model.glob("chat_template.*"):
        template.unlink()
    args = ("--preset", preset("dpo"), "--set", f"model.name_or_path={model}")
    result = cli(*args, "--output", str(tmp_path / "run"))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, lines
    assert "no chat template, which preference records of messages need" in lines[0]
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [GOOD] * 40)
    result = cli(
        *args, "--output", str(tmp_path / "plain"), *SHORT, "--set", f"dataset.path={pairs}"
    )
    assert result.returncode == 0, result.stderr[-2000:]


SMALL = (
    *("--set", "training.max_steps=8", "--set", "training.micro_batch_size=8"),
    *("--set", "training.logging_steps=1", "--set", "dataset.max_samples=64"),
)


@pytest.fixture(scope="session")
def small_dpo_run(tmp_path_factory) -> Path:
    """Eight small DPO steps, each logged: what a resumed run and the script must repeat."""
    root = tmp_path_factory.mktemp("small-dpo")
    with own_folders(root):
        result = call_main("--preset", preset("dpo"), "--output", str(root / "run"), *SMALL)
    assert result.returncode == 0, result.stderr[-2000:]
    return root / "run"


def test_the_runs_own_script_reproduces_its_dpo_losses(small_dpo_run, tmp_path):
    """The exported script is the runner's recipe: the same trainer, data and losses."""
    got = script_losses(small_dpo_run, tmp_path)
    assert_same_losses(got, step_losses(small_dpo_run), steps=8)


def test_a_stopped_dpo_run_resumes_where_it_stopped(small_dpo_run, tmp_path):
    """SIGTERM checkpoints a DPO run; --resume continues it to the losses of a run never
    stopped (the same checkpoints and resume as SFT)."""
    broken = tmp_path / "broken"
    proc = start_cli(tmp_path, "--preset", preset("dpo"), "--output", str(broken), *SMALL)
    read_until(proc, lambda line: line.startswith("step "), count=3)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 143 and summary_of(broken)["status"] == "stopped"
    resumed = call_main("--resume", str(broken))
    assert resumed.returncode == 0 and "resuming from" in resumed.stdout, resumed.stderr[-2000:]
    assert_same_losses(step_losses(broken), step_losses(small_dpo_run), steps=8)
    assert summary_of(broken)["preference_accuracy_after"] is not None


@pytest.mark.parametrize("objective", ["dpo", "orpo", "kto"])
def test_plan_on_a_preference_preset_picks_only_what_the_objective_runs(cli, objective):
    """The advisor once chose Unsloth and packing for a DPO preset, which the settings
    refuse: plan failed with a settings error. It plans what can run, and says how its
    memory is planned and that the time is not predicted."""
    result = cli(
        "plan", "--preset", str(PRESETS / f"demo-{objective}.yaml"), "--model",
        "meta-llama/Llama-3.1-8B", "--gpu", "RTX 4090", "--dataset", "demo", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    memory = plan["settings"]["memory"]
    assert memory["backend"] != "unsloth" and not memory["packing"]
    assert not memory["group_by_length"]
    assert "the only filling" in plan["reasons"]["memory.packing"]
    assert "memory planned from how TRL runs it" in plan["reasons"]["training.objective"]
    assert plan["time"] is None and f"not predicted for {objective}" in plan["time_text"]
