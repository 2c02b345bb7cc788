"""Nothing a user can cause is an internal error (issue 25, items 8 and 10): closed standard
streams, a full disk, a demo cache that cannot be written, model configs with impossible
sizes, `export -o` naming a folder or starting with '-', an --output that is not UTF-8."""

from __future__ import annotations

import errno
import json
import os
import shlex
import shutil
import subprocess
import tempfile

import pytest
from conftest import DEMO_PRESET, cli_command, cli_env, set_args
from test_nothing_lost import one_line_error, tree

from finetune_tui.engine.common import demo
from finetune_tui.engine.common.errors import ModelError
from finetune_tui.main import main

CLOSED_OUT = "standard output is closed"


def shell(tmp_path, args: list[str], redirect: str, cwd=None) -> subprocess.CompletedProcess:
    """`finetune-tui ARGS REDIRECT` as a shell runs it (`>&-`, `<&-`, `2>&-`, `> /dev/full`)."""
    line = " ".join(shlex.quote(a) for a in cli_command(*args)) + " " + redirect
    return subprocess.run(
        ["bash", "-c", line], capture_output=True, text=True, env=cli_env(tmp_path), cwd=cwd
    )


@pytest.mark.parametrize(
    "args",
    [
        ["plan", "--model", "demo"],
        ["detect"],
        ["runs"],
        ["export", "--preset", str(DEMO_PRESET), "-o", "out/train.py"],
    ],
)
def test_a_closed_stdout_is_one_line_and_nothing_is_written(tmp_path, args):
    before = tree(tmp_path)
    result = shell(tmp_path, args, ">&-", cwd=tmp_path)
    assert CLOSED_OUT in one_line_error(result)
    assert tree(tmp_path) == before  # export wrote nothing it could not report
    both = shell(tmp_path, args, ">&- 2>&-", cwd=tmp_path)
    assert (both.returncode, both.stderr) == (2, "")  # said by the exit code alone


def test_a_closed_stdin_is_no_internal_error(tmp_path):
    wizard = shell(tmp_path, [], "<&-")
    assert wizard.returncode == 2 and "no terminal" in wizard.stderr
    assert "internal error" not in wizard.stderr
    plan = shell(tmp_path, ["plan", "--model", "demo"], "<&-")
    assert plan.returncode == 0 and plan.stderr == ""


def test_stdout_on_a_full_disk_is_named(tmp_path):
    result = shell(tmp_path, ["plan", "--model", "demo"], "> /dev/full")
    line = one_line_error(result, code=1)
    assert line == "finetune-tui: error: standard output: no space left on device"


def test_a_full_disk_anywhere_is_one_line(tmp_path, monkeypatch, capsys):
    """--resume on a full disk failed in save_preset with 'internal error: OSError'."""
    import finetune_tui.headless as headless

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(headless, "run_headless", full)
    assert main(["--resume", str(tmp_path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "finetune-tui: error: no space left on device (a write failed; free some space or "
        "choose another folder)"
    ]

    def read_only(args):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "run" / "run.pid"))

    monkeypatch.setattr(headless, "run_headless", read_only)
    assert main(["--resume", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (
        f"finetune-tui: error: {tmp_path / 'run' / 'run.pid'}: read-only file system\n"
    )


@pytest.mark.parametrize(
    "field, value",
    [
        ("num_attention_heads", 0),
        ("num_hidden_layers", 0),
        ("num_hidden_layers", -3),
        ("hidden_size", -128),
        ("vocab_size", 0),
        ("num_key_value_heads", 0),
        ("head_dim", -1),
        ("num_attention_heads", True),
    ],
)
def test_a_config_with_impossible_sizes_is_one_line_naming_the_field(cli, tmp_path, field, value):
    model = tmp_path / "model"
    model.mkdir()
    config = demo.demo_model_config() | {field: value}
    (model / "config.json").write_text(json.dumps(config))
    line = one_line_error(cli("plan", "--model", str(model)))
    assert f"{model}: config.json" in line and f"'{field}'" in line  # not "fits", no crash


def test_a_model_folder_with_zero_heads_is_refused_before_the_run_folder(cli, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(demo.ensure_demo_model(), model)
    config = json.loads((model / "config.json").read_text()) | {"num_attention_heads": 0}
    (model / "config.json").write_text(json.dumps(config))
    run = tmp_path / "run"
    sets = set_args(f"model.name_or_path={model}")
    result = cli("--preset", str(DEMO_PRESET), *sets, "--output", str(run))
    assert "'num_attention_heads' is 0" in one_line_error(result)  # was ZeroDivisionError
    assert not run.exists()


def test_export_to_a_folder_is_one_line(cli, tmp_path, monkeypatch):
    (tmp_path / "adir").mkdir()
    before = tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    for output, hint in {
        "/": "/train.py",
        ".": "./train.py",
        "adir": "adir/train.py",
        "newdir/": "newdir/train.py",  # wrote a file named newdir
    }.items():
        result = cli("export", "--preset", str(DEMO_PRESET), "-o", output)
        assert f"is a directory; give the script's file name, e.g. {hint}" in one_line_error(result)
    assert tree(tmp_path) == before


def test_an_exported_command_never_reads_the_script_as_an_option(cli, tmp_path, monkeypatch):
    name = "-cprint(1)#.py"
    monkeypatch.chdir(tmp_path)
    result = cli("export", "--preset", str(DEMO_PRESET), f"--output={name}")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / name).is_file()
    commands = [line.strip() for line in result.stdout.splitlines() if line.startswith("  ")]
    for command in commands:  # pasted into a shell: every argument is a path, no option
        words = shlex.split(command)
        assert not any(word.startswith("-c") for word in words), command
        assert str(tmp_path / name) in words or str(tmp_path / "-cprint(1)#.yaml") in words


def test_a_read_only_cache_builds_the_demo_model_in_a_private_temporary_folder(
    tmp_path, monkeypatch
):
    (tmp_path / "home").write_text("")  # like a read-only home: nothing can be made under it
    monkeypatch.setenv(demo.CACHE_ENV, str(tmp_path / "home" / "cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    folder = demo.ensure_demo_model()  # was an internal error
    assert folder.parent == tmp_path / "tmp" / f"finetune-tui-{os.getuid()}"
    assert (folder.parent.stat().st_mode & 0o777) == 0o700
    assert demo.ensure_demo_model() == folder  # built once

    shutil.rmtree(folder.parent)
    (tmp_path / "tmp" / f"finetune-tui-{os.getuid()}").mkdir(mode=0o777)
    os.chmod(tmp_path / "tmp" / f"finetune-tui-{os.getuid()}", 0o777)  # others may write
    with pytest.raises(ModelError) as caught:
        demo.ensure_demo_model()
    assert "FINETUNE_TUI_CACHE_DIR" in str(caught.value) and "\n" not in str(caught.value)


def test_an_output_that_is_not_utf8_is_named_as_output(cli, tmp_path):
    output = os.fsdecode(os.fsencode(tmp_path) + b"/\xffrun")
    result = cli("--preset", str(DEMO_PRESET), "--output", output)
    line = one_line_error(result)  # was "--set: output.dir: holds a character ..."
    assert line.startswith(f"finetune-tui: error: --output {tmp_path}/\\xffrun: ")
    assert "--set" not in line and not os.path.exists(output)
