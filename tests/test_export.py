"""Exported scripts: standalone, lint-clean, safe with hostile strings, and reproducing the run."""

from __future__ import annotations

import ast
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import (
    DEMO_PRESET,
    FEW,
    FEW_RECORDS,
    REPO,
    cli_command,
    cli_env,
    run_exported,
    set_args,
)

from finetune_tui.engine.export.files import export_run
from finetune_tui.engine.export.script import comment, literal, render_script
from finetune_tui.engine.settings.preset import load_preset

SHORT = ["training.max_steps=12", "training.logging_steps=1", "training.exact_match_samples=0"]
SHORT += [FEW_RECORDS]


def constants(script: str) -> dict[str, object]:
    """Top-level NAME = literal assignments, evaluated without running the script."""
    found = {}
    for node in ast.parse(script).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return found


def test_exported_script_reproduces_the_in_process_losses(tmp_path):
    from finetune_tui.engine.train.runner import run_training

    settings = load_preset(DEMO_PRESET, [*SHORT, f"output.dir={tmp_path / 'run'}"])
    run_training(settings, lambda event: None)
    expected = {}
    for line in (tmp_path / "run" / "metrics.jsonl").open():
        event = json.loads(line)
        if event["kind"] == "step":
            expected[event["step"]] = event["loss"]

    script = tmp_path / "train.py"
    exported = export_run(settings, script)
    assert exported.preset.is_file()
    result = run_exported(tmp_path, script, "--output", str(tmp_path / "script-out"))
    assert result.returncode == 0, result.stderr[-3000:]
    got = {}
    for line in (tmp_path / "script-out" / "losses.jsonl").open():
        record = json.loads(line)
        got[record["step"]] = record["loss"]
    steps = sorted(expected)[:10]
    assert len(steps) == 10 and sorted(got)[:10] == steps
    diffs = [abs(got[s] - expected[s]) for s in steps]
    assert max(diffs) < 1e-4, list(zip(steps, diffs, strict=True))

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from finetune_tui.engine.common.demo import ensure_demo_model

    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(ensure_demo_model()),
        tmp_path / "script-out" / "adapter",
    )
    assert any("lora_B" in name for name, _ in model.named_parameters())

    # the run's own script, run again as it is, wrote its adapter over the run's: refused
    adapter = (tmp_path / "run" / "adapter" / "adapter_model.safetensors").read_bytes()
    again = run_exported(tmp_path, tmp_path / "run" / "export" / "train.py", "--max-steps", "1")
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert again.stderr.strip().endswith("never writes over it: give another --output")
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").read_bytes() == adapter


def test_script_is_standalone():
    script = render_script(load_preset(DEMO_PRESET), {})
    tree = ast.parse(script)
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module)])
    }
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    ours = [f.name for f in functions if "finetune_tui" in ast.get_source_segment(script, f)]
    assert ours == ["located"]  # only to find the demo model and data, and only for "demo"
    assert imported <= {
        "argparse",
        "ast",
        "gc",
        "importlib",
        "inspect",
        "warnings",
        "os",
        "json",
        "math",
        "operator",
        "pathlib",
        "re",
        "signal",
        "torch",
        "transformers",
        "datasets",
        "peft",
        "trl",
        "csv",
        "pyarrow",
        "unsloth",
        "liger_kernel",
        "finetune_tui",
    }
    assert "# requirements" in script and "#   trl==" in script


def with_text_records(overrides: list[str], tmp_path) -> list[str]:
    """A text-format variant needs text records: the export checks the data as the run
    does (the demo's are chat records)."""
    if "dataset.format=text" not in overrides:
        return overrides
    data = tmp_path / "texts.jsonl"
    data.write_text("".join(json.dumps({"text": f"hello {i}"}) + "\n" for i in range(8)))
    return [*overrides, f"dataset.path={data}"]


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["quantization.mode=nf4", "training.optimizer=adamw_8bit", "memory.backend=liger"],
        ["memory.backend=unsloth", "memory.gradient_checkpointing=unsloth"],
        ["dataset.format=text", "memory.packing=true", "memory.gradient_checkpointing=on"],
    ],
)
def test_every_variant_compiles_and_passes_ruff(tmp_path, overrides):
    settings = load_preset(DEMO_PRESET, with_text_records(overrides, tmp_path))
    script = tmp_path / "train.py"
    script.write_text(render_script(settings, {}))
    script.chmod(0o755)
    subprocess.run([sys.executable, "-m", "py_compile", str(script)], check=True)
    ruff = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated", str(script)],
        capture_output=True,
        text=True,
    )
    assert ruff.returncode == 0, ruff.stdout
    text = script.read_text()
    main_body = text[text.index("def main():") :]
    # unsloth patches transformers, trl and peft as it is imported: before any of them
    assert main_body.index("import unsloth") < main_body.index("import torch")
    assert "\nimport " not in text and "\nfrom " not in text  # imports live in the functions
    backend = next((o.split("=")[1] for o in overrides if o.startswith("memory.backend")), "hf")
    assert constants(text)["BACKEND"] == backend


def test_every_shipped_preset_exports(tmp_path):
    for preset in sorted((REPO / "presets").glob("*.yaml")):
        script = tmp_path / f"{preset.stem}.py"
        script.write_text(render_script(load_preset(preset), {}))
        subprocess.run([sys.executable, "-m", "py_compile", str(script)], check=True)


HOSTILE = [
    'it\'s "quoted"',
    "back\\slash\\",
    "new\nline",
    '"""; import os; os.system("echo pwned") #',
    "'); import os; os.system('x')#",
    "{braces} %s \\N{BULLET} \x1b[31m \u2028",
]


def test_a_nul_character_is_refused_before_it_reaches_a_path():
    settings = load_preset(DEMO_PRESET)
    with pytest.raises(ValueError, match="NUL"):
        settings.output.dir = "a\x00b"


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_strings_round_trip_as_data(tmp_path, value):
    assert ast.literal_eval(literal(value)) == value
    folder = tmp_path / "data"
    folder.mkdir()
    data = folder / "d.jsonl"
    data.write_text(json.dumps({"text": "hello"}) + "\n")
    settings = load_preset(DEMO_PRESET, [f"dataset.path={data}", "dataset.format=text"])
    settings.output.dir = value
    settings.model.name_or_path = value
    script = render_script(settings, {"lora.r": value})
    found = constants(script)
    assert found["OUTPUT"] == value and found["MODEL"] == value
    assert "pwned" not in "".join(
        line
        for line in script.splitlines()
        if not line.lstrip().startswith(("#", "MODEL", "OUTPUT"))
    )
    assert f"# {comment(value)}\nLORA_R = " in script  # the reason stays one comment line
    assert "\n" not in comment(value) and "\x00" not in script


def test_export_command_writes_script_preset_and_accelerate_config(tmp_path):
    out = tmp_path / "job" / "train.py"
    result = subprocess.run(
        cli_command(
            "export",
            "--preset",
            str(DEMO_PRESET),
            "-o",
            str(out),
            "--gpus",
            "2",
            "--distributed",
            "deepspeed",
        ),
        capture_output=True,
        text=True,
        env=cli_env(tmp_path),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert out.is_file() and (tmp_path / "job" / "train.yaml").is_file()
    config = yaml.safe_load((tmp_path / "job" / "accelerate_config.yaml").read_text())
    # DeepSpeed's own settings in its own file, named absolutely; no mixed_precision beside
    # it (accelerate refuses both): the Trainer fills the file's "auto" values
    deepspeed_file = tmp_path / "job" / "deepspeed_config.json"
    assert config["deepspeed_config"] == {
        "deepspeed_config_file": str(deepspeed_file.resolve()),
        "zero3_init_flag": True,
    }
    assert "mixed_precision" not in config
    zero = json.loads(deepspeed_file.read_text())
    assert zero["zero_optimization"]["stage"] == 3
    assert zero["zero_optimization"]["offload_optimizer"] == {"device": "cpu", "pin_memory": True}
    assert zero["optimizer"]["type"] == "AdamW"  # offload steps DeepSpeed's CPU Adam
    assert "accelerate launch --config_file" in result.stdout
    assert load_preset(tmp_path / "job" / "train.yaml") == load_preset(DEMO_PRESET)
    assert "token" not in (tmp_path / "job" / "train.yaml").read_text().lower()


def test_slurm_export_launches_accelerate_once_per_node_with_slurms_variables(tmp_path):
    """The sbatch script run under stand-ins for srun, scontrol and accelerate: one launch
    per node, the main node's address from the node list, the rank from SLURM_NODEID."""
    from finetune_tui.engine.export.files import export_run

    out = tmp_path / "job" / "train.py"
    exported = export_run(load_preset(DEMO_PRESET), out, gpus=8, nodes=2, slurm=True)
    assert "num_machines: 2" in exported.accelerate_config.read_text()
    assert "num_processes: 16" in exported.accelerate_config.read_text()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fakes = {
        "scontrol": 'printf "gpu-node-a\\ngpu-node-b\\n"',
        "srun": 'for id in 0 1; do SLURM_NODEID=$id "${@:2}"; done',  # drops --kill-on-bad-exit
        "accelerate": f'echo "$@" >> {tmp_path / "launches"}',
    }
    for name, body in fakes.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SLURM_JOB_NODELIST": "gpu-node-[a-b]"}
    env["SLURM_NNODES"] = "2"
    result = subprocess.run(
        ["bash", str(exported.sbatch)], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    launches = (tmp_path / "launches").read_text().splitlines()
    assert len(launches) == 2
    for rank, line in enumerate(launches):
        assert f"--machine_rank {rank} " in line and "--num_processes 16 " in line
        assert "--main_process_ip gpu-node-a --main_process_port 29500" in line
        assert line.endswith(str(out.resolve()))


def test_a_preset_that_names_its_nodes_exports_for_slurm(tmp_path, capsys):
    from finetune_tui.main import main

    preset = REPO / "presets" / "llama2-70b-fsdp-2x8.yaml"
    out = tmp_path / "job" / "train.py"
    assert main(["export", "--preset", str(preset), "-o", str(out), "--slurm"]) == 0
    sbatch = out.with_suffix(".sbatch").read_text()
    assert "#SBATCH --nodes=2" in sbatch and "#SBATCH --gpus-per-node=8" in sbatch
    assert "sbatch " in capsys.readouterr().out
    assert main(["export", "-o", str(tmp_path / "one.py"), "--slurm"]) == 2  # one GPU: no


def test_scripts_never_carry_tokens(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value_123")
    script = render_script(load_preset(DEMO_PRESET), {})
    assert "hf_secret_value_123" not in script


@pytest.mark.parametrize(
    "overrides",
    [
        ["quantization.mode=nf4", "memory.backend=liger"],
        ["memory.backend=unsloth", "memory.gradient_checkpointing=unsloth"],
        ["dataset.format=text", "memory.packing=true"],
        ["training.method=full"],
    ],
)
def test_the_script_is_the_recipe_and_reads_every_constant_it_defines(overrides, tmp_path):
    """The model, data and trainer sides are engine/recipe/model.py's and recipe_data.py's
    functions byte for byte, so the script cannot drift from the runner; and no constant is
    there for show (changing it changes the run)."""
    import ast
    import inspect

    from finetune_tui.engine.recipe import examples as recipe_data
    from finetune_tui.engine.recipe import lora_targets as recipe_lora
    from finetune_tui.engine.recipe import main as recipe_main
    from finetune_tui.engine.recipe import merging
    from finetune_tui.engine.recipe import model as recipe
    from finetune_tui.engine.recipe import trainer as recipe_trainer

    script = render_script(load_preset(DEMO_PRESET, with_text_records(overrides, tmp_path)), {})
    tree = ast.parse(script)
    defined = {
        node.name: ast.get_source_segment(script, node)
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
    }
    copied = (
        *recipe_data.DATA_FUNCTIONS,
        *recipe.MODEL_FUNCTIONS,
        *recipe_lora.LORA_FUNCTIONS,
        *recipe_trainer.TRAINER_FUNCTIONS,
        *merging.MERGE_FUNCTIONS,
        *recipe_main.MAIN_FUNCTIONS,
    )
    assert list(defined) == [function.__name__ for function in copied]
    for function in copied:
        assert defined[function.__name__] == inspect.getsource(function).rstrip("\n")
    # nothing else is code: constants, the recipe's functions, and the call of main()
    assert all(isinstance(node, ast.Assign | ast.FunctionDef | ast.Expr) for node in tree.body[:-1])
    assert ast.unparse(tree.body[-1]) == "if __name__ == '__main__':\n    run_script()"
    constants = {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name) and target.id.isupper()
    }
    read = {
        node.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
    }
    assert constants and constants <= read, sorted(constants - read)
    # main()'s stand-ins in engine/recipe/main.py name exactly the settings the script writes
    settings = constants - set(recipe_data.DATA_CONSTANTS)
    assert settings == {name for name in vars(recipe_main) if name.isupper()} - {"MAIN_FUNCTIONS"}
    assert 'device_map={"": 0}' not in script and "+cpu" not in script


def test_a_one_process_deepspeed_preset_exports_its_launch(tmp_path):
    """ZeRO-3 with CPU offload helps one GPU: the export launches it through accelerate
    too, and the script builds its arguments before the model (zero.Init needs them)."""
    preset = REPO / "presets" / "full-zero3-offload.yaml"
    exported = export_run(load_preset(preset), tmp_path / "job" / "train.py")
    assert exported.accelerate_config is not None
    assert (tmp_path / "job" / "deepspeed_config.json").is_file()
    assert exported.commands[0].startswith("accelerate launch --config_file")
    script = exported.script.read_text()
    main_body = script[script.index("def main():") :]
    assert main_body.index("config_class(**arguments)") < main_body.index("= model_and_lora(")


def test_set_changes_any_constant_or_trainer_argument_and_refuses_unknown_names(tmp_path):
    """--set NAME=VALUE, nanoGPT's configurator: a constant (OUTPUT) or one of SFTConfig's
    arguments in TRAINER (max_steps); an unknown name is one line, before anything loads."""
    script = tmp_path / "train.py"
    script.write_text(render_script(load_preset(DEMO_PRESET), {}))
    assert constants(script.read_text())["TRAINER"]["max_steps"] == -1  # 4 epochs as exported
    sets = ("max_steps=3", "logging_steps=1", "OUTPUT=out", f"MAX_SAMPLES={FEW}")
    result = run_exported(tmp_path, script, *set_args(*sets))
    assert result.returncode == 0, result.stderr[-3000:]
    losses = (tmp_path / "out" / "losses.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in losses] == [1, 2, 3]
    assert (tmp_path / "out" / "adapter" / "adapter_config.json").is_file()

    for wrong, named in (("NO_SUCH=1", "--set NO_SUCH: unknown name"), ("MODEL", "NAME=VALUE")):
        refused = run_exported(tmp_path, script, "--set", wrong)
        assert refused.returncode == 1
        assert len(refused.stderr.strip().splitlines()) == 1 and named in refused.stderr


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("LORA_R=0", "expected above 0"),
        ("OUTPUT=None", "expected a string, not None"),
        ("OUTPUT=", "expected a non-empty string"),
        ("QUANTIZATION=nf5", "expected one of 'none', '8bit', 'nf4', 'fp4'"),
        ("LORA_DROPOUT=1e999", "expected a finite number, not inf"),
        ("LORA_ALPHA=True", "expected an integer, not True"),
        ("EVAL_FRACTION=0.5", "expected below 0.5"),
        ("MAX_SAMPLES=-3", "expected above 0, not -3 or expected None"),
        ("LORA_TARGETS=[]", "expected a non-empty list or expected 'auto'"),
        ("DATA_FORMAT=auto", "expected one of 'messages'"),
        ("TRUST_REMOTE_CODE=1", "expected True or False, not 1"),
        ("learning_rate=-1", "expected above 0.0, not -1"),  # a TRAINER key, as its setting
        ("per_device_train_batch_size=0", "expected above 0, not 0"),
        ("MODEL=", "expected a non-empty string"),
        # the script's own machinery is no setting: RULES={} switched every check off
        ("RULES={}", "not a setting"),
        ("TRAINER=5", "not a setting"),
        ("ALPACA_PROMPT=5", "not a setting"),
    ],
)
def test_a_set_value_its_setting_refuses_is_one_line_before_anything_loads(tmp_path, given, said):
    """The settings schema's rule for each constant travels in the script (RULES, as JSON
    Schema): a value it refuses stops the script in one line naming it, before torch loads
    (before, LORA_R=0 was PEFT's traceback and OUTPUT=None a TypeError)."""
    script = tmp_path / "train.py"
    script.write_text(render_script(load_preset(DEMO_PRESET), {}))
    refused = run_exported(tmp_path, script, "--set", given)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"--set {given}: " + refused.stderr.split(": ", 1)[1].strip()
    ]
    assert said in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "finetune-output").exists()


def test_a_constant_edited_out_of_its_range_is_one_line_and_trainer_errors_are_trls_line(
    tmp_path,
):
    """A hand edit at the top of the script is checked as a --set is; a TRAINER value that
    TRL's config refuses is that refusal's first line, not its traceback."""
    script = tmp_path / "train.py"
    text = render_script(load_preset(DEMO_PRESET), {})
    assert "\nLORA_R = 32\n" in text
    script.write_text(text.replace("\nLORA_R = 32\n", "\nLORA_R = -1\n"))
    refused = run_exported(tmp_path, script)
    assert refused.returncode == 1
    assert refused.stderr.strip() == "LORA_R = -1 (top of this script): expected above 0, not -1"

    script.write_text(text)
    refused = run_exported(
        tmp_path, script, *set_args("lr_scheduler_type='nope'", f"MAX_SAMPLES={FEW}")
    )
    assert refused.returncode == 1, refused.stderr[-2000:]
    line = refused.stderr.strip().splitlines()[-1]
    assert line.startswith("TRAINER: ") and "nope" in line, refused.stderr[-2000:]
    assert "Traceback" not in refused.stderr


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (None, "no-such.jsonl: No such file or directory"),
        ('{"messages": []}\n\n{oops\n', "data.jsonl:3: not a JSON record (Expecting"),
        ('{"instruction": "a"}\n', "data.jsonl: record 1: no field 'messages' (messages records)"),
        ('["a"]\n', "data.jsonl: record 1: expected an object of fields, not list"),
    ],
)
def test_a_data_file_the_script_cannot_train_on_is_one_line_naming_it(tmp_path, data, said):
    """DATA can be any file once exported (the product validated the export's own): a file
    that is not there, a line that is not JSON or a record its format cannot read stops the
    script in one line naming file and line or record, before the model loads."""
    script = tmp_path / "train.py"
    script.write_text(render_script(load_preset(DEMO_PRESET), {}))
    given = tmp_path / ("no-such.jsonl" if data is None else "data.jsonl")
    if data is not None:
        given.write_text(data)
    refused = run_exported(tmp_path, script, "--data", str(given))
    assert refused.returncode == 1
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr[-2000:]
    assert said in refused.stderr and str(tmp_path) in refused.stderr
    assert not (tmp_path / "finetune-output").exists()  # OUTPUT only once records are read


def test_a_folder_that_is_no_saved_dataset_is_one_line_naming_it(tmp_path):
    """--data DIR, DIR not written by Dataset.save_to_disk, was datasets' traceback (and an
    empty OUTPUT left behind)."""
    script = tmp_path / "train.py"
    script.write_text(render_script(load_preset(DEMO_PRESET), {}))
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "records.jsonl").write_text('{"text": "hello"}\n')
    refused = run_exported(tmp_path, script, "--data", str(folder))
    assert refused.returncode == 1
    said = f"{folder}: folder is not a dataset saved with save_to_disk"
    assert refused.stderr.strip() == said, refused.stderr[-2000:]
    assert not (tmp_path / "finetune-output").exists()


def test_max_steps_below_one_is_one_line_before_anything_loads(tmp_path):
    """TRAINER's max_steps is -1 (every epoch) or a count of steps: 0 trained nothing and
    said "adapter saved", -7 trained every epoch."""
    from finetune_tui.engine.recipe.main import value_problem

    script = tmp_path / "train.py"
    script.write_text(render_script(load_preset(DEMO_PRESET), {}))
    rule = constants(script.read_text())["RULES"]["max_steps"]
    assert value_problem(-1, rule) is None and value_problem(5, rule) is None
    for steps in ("0", "-7"):
        refused = run_exported(tmp_path, script, "--max-steps", steps)
        assert refused.returncode == 1
        said = f"--set max_steps={steps}: expected above 0, not {steps} or expected -1"
        assert refused.stderr.strip() == said, refused.stderr[-2000:]
    assert not (tmp_path / "finetune-output").exists()


def test_an_output_no_file_system_can_name_is_one_line(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(render_script(load_preset(DEMO_PRESET), {}))
    refused = run_exported(tmp_path, script, "--output", "x" * 300)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [f"{'x' * 300}/adapter: File name too long"]


def test_a_full_fine_tuning_export_says_nothing_of_lora_or_adapters():
    """The header, the docstring and every setting but the method's own say full
    fine-tuning's truth; LoRA's settings sit under a line saying they are read only for it."""
    script = render_script(load_preset(DEMO_PRESET, ["training.method=full"]), {})
    written = script[: script.index("\ndef ")]  # all that is not the recipe's functions
    before, method = written.split("\n# --- the method", 1)
    lora_group, after = method.split("\n\n", 1)
    assert lora_group.startswith('; the six after it are read only when it is "lora"')
    after, rules = after.split("\nRULES = ")  # METHOD's rule names its choices, lora one
    for text in (before, after):
        assert "lora" not in text.lower() and "adapter" not in text.lower(), text
    assert "full fine-tuning" in before and "#   peft" not in before
    assert constants(script)["METHOD"] == "full"


def test_the_demo_export_holds_no_path_of_this_machine(tmp_path):
    """'demo' stays 'demo': the script finds the model and data where it runs."""
    import os
    import tempfile

    from finetune_tui.engine.common.demo import cache_root, demo_dataset_path, ensure_demo_model

    script = export_run(load_preset(DEMO_PRESET), tmp_path / "train.py").script.read_text()
    found = constants(script)
    assert found["MODEL"] == "demo" and found["DATA"] == "demo"
    machine = {str(ensure_demo_model()), str(demo_dataset_path()), str(cache_root()), str(REPO)}
    machine |= {os.path.expanduser("~"), sys.prefix, tempfile.gettempdir(), str(tmp_path)}
    assert not [path for path in machine if path in script]


def test_a_write_the_system_refuses_names_the_file_asked_for(tmp_path, monkeypatch):
    """A read-only folder (or a full disk) named the staging file `.train.py.1234.tmp`,
    which the user never asked for: the line names train.py."""
    import errno

    from finetune_tui.engine.common.errors import InputError
    from finetune_tui.engine.export import files

    def refused(path, text):
        staging = path.with_name(f".{path.name}.1234.tmp")
        raise OSError(errno.EROFS, "Read-only file system", str(staging))

    monkeypatch.setattr(files, "write_text_atomic", refused)
    script = tmp_path / "job" / "train.py"
    with pytest.raises(InputError) as refusal:
        export_run(load_preset(DEMO_PRESET), script)
    assert str(refusal.value) == f"{script}: cannot write: Read-only file system"


def test_a_runs_record_is_never_replaced_through_a_link_and_dotdot(
    cli, finished_template, tmp_path
):
    """`-o elsewhere/link/../settings.py --force`, the link pointing into the run's export/:
    the check read the path as text (`..` dropped) while the system followed the link, and
    the run's settings.yaml was replaced."""
    from conftest import copy_finished_run

    run = copy_finished_run(finished_template, tmp_path / "run")
    (run / "export").mkdir(exist_ok=True)
    record = (run / "settings.yaml").read_text()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "link").symlink_to(run / "export")
    target = f"{elsewhere}/link/../settings.py"
    result = cli("export", "--preset", str(DEMO_PRESET), "-o", target, "--force")
    assert result.returncode == 2 and "its record; never replaced" in result.stderr
    assert (run / "settings.yaml").read_text() == record
    assert not (run / "settings.py").exists()
    fine = cli("export", "--preset", str(DEMO_PRESET), "-o", f"{elsewhere}/link/again.py")
    assert fine.returncode == 0, fine.stderr  # the run's export/ stays writable


def test_a_trainer_key_deleted_by_hand_is_trls_default_not_a_traceback():
    """Deleting `"data_seed": 42,` from TRAINER was a KeyError from the checks: the key is
    left to TRL's default, as before the checks."""
    from finetune_tui.engine.recipe.main import checked

    rules = {"LORA_R": {"type": "integer", "exclusiveMinimum": 0}, "data_seed": {"type": "integer"}}
    checked({"LORA_R": 8, "TRAINER": {"seed": 1}}, rules)
    with pytest.raises(SystemExit, match="LORA_R = 0 .top of this script.: expected above 0"):
        checked({"LORA_R": 0, "TRAINER": {}}, rules)


# A demo script's short run, its every step's loss logged.
SIGNALLED = set_args(f"MAX_SAMPLES={FEW}", "logging_steps=1")


def step_losses_of(output) -> dict[int, float]:
    lines = (output / "losses.jsonl").read_text().splitlines()
    return {record["step"]: record["loss"] for record in map(json.loads, lines)}


def signalled(tmp_path, script, args, *signals, gap=0.5, launcher=(), to=None):
    """The script run with `args` (through `launcher`, python's arguments before the script)
    and sent `signals`, `gap` seconds apart, as soon as its first step is logged (training:
    its handlers are in), to the process `to(pid)` names (the script's own by default); out
    and err in files (a pipe left unread fills)."""
    losses = tmp_path / args[args.index("--output") + 1] / "losses.jsonl"
    out, err = (open(tmp_path / name, "w+") for name in ("out.txt", "err.txt"))
    with out, err:
        proc = subprocess.Popen(
            [sys.executable, *launcher, str(script), *args],
            stdout=out, stderr=err, text=True, env=cli_env(tmp_path), cwd=tmp_path,
        )  # fmt: skip
        deadline = time.monotonic() + 300
        while not losses.is_file() or "\n" not in losses.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, err.read()[-2000:]
            time.sleep(0.02)
        for signum in signals:
            os.kill(to(proc.pid) if to else proc.pid, signum)
            time.sleep(gap)
        try:
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:  # hung: it and the workers it launched go
                for pid in [*children_of(proc.pid), proc.pid]:
                    os.kill(pid, signal.SIGKILL)
                proc.wait()
        out.seek(0), err.seek(0)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read())


def test_sigterm_saves_a_checkpoint_and_resume_gives_the_uninterrupted_losses(tmp_path):
    """Preemption's SIGTERM killed the script silently, and a rerun into the same OUTPUT was
    refused: the work was lost. It saves a checkpoint at the end of the step and says where
    (exit 143); --resume continues from it to the losses of a run never stopped."""
    script = tmp_path / "train.py"
    script.write_text(render_script(load_preset(DEMO_PRESET), {}))
    args = [*SIGNALLED, "--max-steps", "12"]
    straight = run_exported(tmp_path, script, *args, "--output", "straight", "--resume")
    assert straight.returncode == 0, straight.stderr[-2000:]
    no_checkpoint = "--resume: no complete checkpoint in straight/checkpoints: starting from step 0"
    assert no_checkpoint in straight.stdout.splitlines()
    expected = step_losses_of(tmp_path / "straight")
    assert sorted(expected) == list(range(1, 13))

    stopped = signalled(tmp_path, script, [*args, "--output", "broken"], signal.SIGTERM)
    assert stopped.returncode == 143, stopped.stderr[-2000:]
    assert "Traceback" not in stopped.stderr
    checkpoints = tmp_path / "broken" / "checkpoints"
    (checkpoint,) = checkpoints.glob("checkpoint-*")
    step = int(checkpoint.name.split("-")[1])
    assert 1 <= step < 12 and not (tmp_path / "broken" / "adapter").exists()
    assert stopped.stdout.strip().splitlines()[-1] == (
        f"stopped: checkpoint saved to broken/checkpoints/{checkpoint.name}; to continue, "
        "run the same command with --resume"
    )

    again = run_exported(tmp_path, script, *args, "--output", "broken")
    assert again.returncode == 1 and again.stderr.strip() == (
        "broken/checkpoints: holds an earlier run's checkpoints; this script never writes "
        "over them: --resume continues that run, or give another --output"
    )
    half = checkpoints / f"checkpoint-{step + 1}"  # cut off mid-save: passed over
    shutil.copytree(checkpoint, half)
    (half / "trainer_state.json").write_text('{"global_st')
    with open(tmp_path / "broken" / "losses.jsonl", "a") as losses:  # logged after the save
        losses.write(json.dumps({"step": step + 1, "loss": 99.0}) + '\n{"st')
    resumed = run_exported(tmp_path, script, *args, "--output", "broken", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming from broken/checkpoints/{checkpoint.name}" in resumed.stdout.splitlines()
    got = step_losses_of(tmp_path / "broken")
    assert sorted(got) == sorted(expected)  # each step once: the resume trained it again
    assert len((tmp_path / "broken" / "losses.jsonl").read_text().splitlines()) == 12
    diffs = {s: abs(got[s] - expected[s]) for s in expected}
    assert max(diffs.values()) < 1e-4, diffs
    assert (tmp_path / "broken" / "adapter" / "adapter_config.json").is_file()


@pytest.mark.parametrize(
    ("signum", "code", "saved"), [(signal.SIGINT, 130, False), (signal.SIGTERM, 143, True)]
)
def test_a_second_ctrl_c_exits_at_once_a_second_sigterm_lets_the_save_finish(
    tmp_path, signum, code, saved
):
    """Steps of a second or two (16 batches each): the second signal comes mid-step. A
    job system's SIGTERM can come twice (its own and accelerate's launcher's copy). Ctrl-C
    was a KeyboardInterrupt traceback, nothing saved; the first now asks for the save."""
    script = tmp_path / "train.py"
    script.write_text(render_script(load_preset(DEMO_PRESET), {}))
    args = [*set_args("MAX_SAMPLES=1024", "logging_steps=1", "gradient_accumulation_steps=16")]
    args += ["--max-steps", "50", "--output", "out"]
    stopped = signalled(tmp_path, script, args, signum, signum, gap=0.3)
    assert stopped.returncode == code, stopped.stderr[-2000:]
    assert "Traceback" not in stopped.stderr and "KeyboardInterrupt" not in stopped.stderr
    name = signal.Signals(signum).name
    assert f"{name}: saving a checkpoint after this step, then stopping" in stopped.stderr
    checkpoints = list((tmp_path / "out" / "checkpoints").glob("checkpoint-*"))
    assert len(checkpoints) == saved and ("checkpoint saved to" in stopped.stdout) == saved


def children_of(parent: int) -> dict[int, list[bytes]]:
    """{pid: its environment's NAME=VALUE entries} of `parent`'s child processes."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                found[int(stat.parent.name)] = (stat.parent / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):  # gone meanwhile
            continue
    return found


def worker_of_rank(launcher: int, rank: int) -> int:
    """The pid of the launcher's worker of `rank` (its RANK variable)."""
    (pid,) = [pid for pid, env in children_of(launcher).items() if f"RANK={rank}".encode() in env]
    return pid


@pytest.mark.xdist_group("launch")  # launches take turns: see pyproject addopts
def test_under_accelerate_launch_a_signal_to_one_process_stops_every_one_at_one_step(
    tmp_path, monkeypatch
):
    """Under accelerate launch each process gets the signal on its own, maybe in different
    steps: one that stopped alone would leave the others waiting at a collective. SIGTERM
    to rank 1 alone: both save their part of one checkpoint, rank 0 says where."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # two processes on CPU (gloo)
    two = ["distributed.strategy=ddp", "distributed.processes=2"]
    exported = export_run(load_preset(DEMO_PRESET, two), tmp_path / "job" / "train.py")
    launcher = ("-m", "accelerate.commands.launch", "--config_file")
    launcher += (str(exported.accelerate_config),)
    args = [*SIGNALLED, "--max-steps", "2000", "--output", "out"]
    stopped = signalled(
        tmp_path, exported.script, args, signal.SIGTERM, launcher=launcher,
        to=lambda pid: worker_of_rank(pid, 1),
    )  # fmt: skip
    assert stopped.returncode != 0
    (checkpoint,) = (tmp_path / "out" / "checkpoints").glob("checkpoint-*")
    assert {"rng_state_0.pth", "rng_state_1.pth", "trainer_state.json"} <= {
        path.name for path in checkpoint.iterdir()
    }
    said = f"stopped: checkpoint saved to out/checkpoints/{checkpoint.name}"
    assert stopped.stdout.count(said) == 1, stopped.stderr[-3000:]
