"""Property-based: generated bad presets and dataset files never produce a traceback.

Every bad input must end with exit code 2, exactly one line on stderr naming what is
wrong, and nothing written outside the output folder.
"""

from __future__ import annotations

import json
import os
import types
import typing
from pathlib import Path

import pytest
import yaml
from conftest import start_live_run, stop_live_run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finetune_tui.engine.settings.schema import TrainSettings
from finetune_tui.main import main

SECTIONS = {name: field.annotation for name, field in TrainSettings.model_fields.items()}
FIELDS = [
    (section, name, field)
    for section, model in SECTIONS.items()
    for name, field in model.model_fields.items()
]
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
junk_text = st.text(min_size=1, max_size=12).filter(lambda s: s.strip() != "")


def accepts_str(annotation) -> bool:
    """str, also Annotated (a path field's limits) or inside Optional / a union, never a
    list's items: `PathText | None` read as no text took "x..." for an invalid folder name,
    and the example trained a run into the working folder."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if annotation is str:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(accepts_str(member) for member in typing.get_args(annotation))
    return False


def invalid_value(field) -> st.SearchStrategy:
    """Values that cannot validate for this field, whatever its type."""
    annotation = field.annotation
    if accepts_str(annotation):
        return st.sampled_from([{"nested": True}, [{"a": 1}]])
    if typing.get_origin(annotation) is typing.Literal:
        choices = set(typing.get_args(annotation))
        return junk_text.filter(lambda s: s not in choices)
    if annotation is bool:
        return st.sampled_from(["maybe", "2", [1], {"a": 1}])
    return st.one_of(st.just({"nested": True}), st.just([1, 2]), junk_text.map(lambda s: "x" + s))


@st.composite
def bad_presets(draw) -> str:
    kind = draw(st.sampled_from(["unknown_key", "bad_value", "bad_section", "syntax", "top"]))
    if kind == "unknown_key":
        section = draw(st.sampled_from(list(SECTIONS)))
        known = set(SECTIONS[section].model_fields)
        key = draw(st.from_regex(r"[a-z_]{1,12}", fullmatch=True).filter(lambda k: k not in known))
        return yaml.safe_dump({section: {key: 1}})
    if kind == "bad_value":
        section, name, field = draw(st.sampled_from(FIELDS))
        value = draw(invalid_value(field))
        return yaml.safe_dump({section: {name: value}})
    if kind == "bad_section":
        section = draw(st.sampled_from(list(SECTIONS)))
        return yaml.safe_dump({section: draw(st.one_of(st.integers(), junk_text, st.just([1])))})
    if kind == "syntax":
        return draw(st.sampled_from(["a: [1\n", "lora:\n  r: 8\n   alpha: 4: 5\n", "{{{", "- :\n"]))
    return yaml.safe_dump(draw(st.one_of(st.lists(st.integers(), min_size=1), junk_text)))


def snapshot(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in root.rglob("*")}


def assert_clean_failure(code: int, err: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("finetune-tui: error: ")
    assert "Traceback" not in err


@FUZZ
@given(text=bad_presets())
def test_bad_presets_exit_2_with_one_line(tmp_path, capsys, monkeypatch, text):
    monkeypatch.chdir(tmp_path)  # a value that validated after all must not write here
    preset = tmp_path / "bad.yaml"
    preset.write_text(text)
    before = snapshot(tmp_path)
    # no --output: it would mask a bad output.dir (runs go under the private data dir)
    code = main(["--preset", str(preset)])
    assert_clean_failure(code, capsys.readouterr().err)
    assert snapshot(tmp_path) == before


@FUZZ
@given(data=st.binary(min_size=1, max_size=64))
def test_undecodable_or_binary_presets(tmp_path, capsys, data):
    preset = tmp_path / "bin.yaml"
    preset.write_bytes(b"\xff\xfe" + data)
    code = main(["--preset", str(preset), "--output", str(tmp_path / "out")])
    assert_clean_failure(code, capsys.readouterr().err)


@FUZZ
@given(override=st.tuples(st.sampled_from(FIELDS), st.data()))
def test_bad_overrides(tmp_path, capsys, monkeypatch, override):
    monkeypatch.chdir(tmp_path)  # a value that validated after all must not write here
    (section, name, field), data = override
    value = data.draw(invalid_value(field))
    code = main(
        [
            "--preset",
            str(DEMO),
            "--set",
            f"{section}.{name}={json.dumps(value)}",
        ]
    )
    err = capsys.readouterr().err
    assert_clean_failure(code, err)
    assert f"{section}.{name}" in err


DEMO = Path(__file__).resolve().parent.parent / "presets" / "demo.yaml"


# --- dataset files ---------------------------------------------------------------------

not_a_string = st.one_of(st.integers(), st.booleans(), st.lists(st.integers(), max_size=2))
bad_turns = st.one_of(
    not_a_string,
    st.just([]),
    st.lists(st.fixed_dictionaries({"role": junk_text, "content": junk_text}), min_size=1),
    st.just([{"role": "user", "content": "hi"}]),  # no assistant answer
    st.just([{"role": "assistant"}]),
)
bad_records = st.one_of(
    st.fixed_dictionaries({"messages": bad_turns}),
    st.fixed_dictionaries({"conversations": bad_turns}),
    st.fixed_dictionaries({"instruction": not_a_string, "output": junk_text}),
    st.fixed_dictionaries({"instruction": junk_text, "output": st.just("   ")}),
    st.fixed_dictionaries({"text": st.one_of(not_a_string, st.just(""))}),
    st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), st.integers(), min_size=1).filter(
        lambda d: not {"messages", "conversations", "instruction", "output", "text"} & set(d)
    ),
)
GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}


@st.composite
def bad_dataset_files(draw) -> tuple[str, bytes]:
    """(suffix, content) of a dataset file with at least one record that cannot train."""
    kind = draw(st.sampled_from(["records", "syntax", "binary", "json", "csv", "empty"]))
    if kind == "records":  # good lines around a bad one: the error names the bad line
        before = draw(st.integers(0, 3))
        lines = [GOOD] * before + [draw(bad_records)] + [GOOD] * draw(st.integers(0, 2))
        text = "\n".join(json.dumps(line) for line in lines)
        return ".jsonl", text.encode()
    if kind == "syntax":
        broken = draw(st.sampled_from(['{"text": ', "[1, 2", "{'text': 'x'}", "nul", "}"]))
        return ".jsonl", (json.dumps(GOOD) + "\n" + broken + "\n").encode()
    if kind == "binary":
        return draw(st.sampled_from([".jsonl", ".json", ".csv"])), b"\xff\xfe" + draw(st.binary())
    if kind == "json":
        value = draw(st.one_of(st.integers(), junk_text, st.lists(not_a_string, min_size=1)))
        return ".json", json.dumps(value).encode()
    if kind == "csv":
        header = draw(st.from_regex(r"[a-z]{1,8}", fullmatch=True).filter(lambda h: h != "text"))
        return ".csv", f"{header}\n{draw(st.integers())}\n".encode()
    return draw(st.sampled_from([".jsonl", ".json", ".csv"])), draw(st.sampled_from([b"", b"\n "]))


@FUZZ
@given(file=bad_dataset_files())
def test_bad_dataset_files_exit_2_naming_the_file(tmp_path, capsys, file):
    suffix, content = file
    dataset = tmp_path / f"data{suffix}"
    dataset.write_bytes(content)
    before = snapshot(tmp_path)
    code = main(
        ["--preset", str(DEMO), "--set", f"dataset.path={dataset}", "--set", "dataset.format=auto"]
        + ["--output", str(tmp_path / "o")]
    )
    err = capsys.readouterr().err
    assert_clean_failure(code, err)
    assert str(dataset) in err
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "o").exists()


# --- hostile output folders with --overwrite, hostile inputs ----------------------------

SMALL_DATA = json.dumps(GOOD) + "\n"
OUTPUT_KINDS = [
    "foreign",
    "symlink",
    "cwd",
    "cwd_parent",
    "home",
    "live",
    "holds_dataset",
    "holds_preset",
    "a_file",
]


REFUSALS = {  # why each folder is refused: the refusal must be for that reason
    "foreign": ["not a finetune-tui run directory"],
    "symlink": ["symbolic link"],
    "cwd": ["will not replace this folder"],
    "cwd_parent": ["will not replace this folder"],
    "home": ["will not replace this folder"],
    "live": ["still going"],
    "holds_dataset": ["an input of this run"],
    "holds_preset": ["an input of this run"],
    "a_file": ["not a directory"],
}


def marked_run(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".finetune-tui-run").write_text("made by finetune-tui\n")
    (folder / "settings.yaml").write_text("model: {}\n")
    return folder


@pytest.fixture(scope="module")
def live_run(tmp_path_factory):
    """A run folder a live process holds the lock of: what a running run looks like."""
    run = marked_run(tmp_path_factory.mktemp("live") / "live-run")
    holder = start_live_run(run)
    yield run
    stop_live_run(holder)


def hostile_output(kind: str, root: Path, dataset: Path, preset: Path, live: Path, monkeypatch):
    """A folder (or file) that --overwrite must never replace; returns the --output value."""
    if kind == "foreign":
        folder = root / "mine"
        (folder / "src").mkdir(parents=True, exist_ok=True)
        (folder / "thesis.txt").write_text("years of work\n")
        return str(folder)
    if kind == "symlink":
        link = root / "link"
        if not link.is_symlink():
            link.symlink_to(marked_run(root / "real-run"))
        return str(link)
    if kind in ("cwd", "cwd_parent"):
        work = marked_run(root / "cwd-run") / "inner"
        work.mkdir(exist_ok=True)
        monkeypatch.chdir(work if kind == "cwd_parent" else work.parent)
        return ".." if kind == "cwd_parent" else "."
    if kind == "home":
        home = marked_run(root / "home")
        monkeypatch.setenv("HOME", str(home))
        return "~"
    if kind == "live":
        return str(live)
    if kind == "holds_dataset":
        return str(dataset.parent)
    if kind == "holds_preset":
        return str(preset.parent)
    path = root / "a-file"
    path.write_text("not a folder\n")
    return str(path)


@FUZZ
@given(kind=st.sampled_from(OUTPUT_KINDS), use_name=st.booleans())
def test_overwrite_never_replaces_what_finetune_tui_did_not_make(
    tmp_path, capsys, monkeypatch, live_run, kind, use_name
):
    root = tmp_path / "fuzz"
    dataset = marked_run(root / "data-run") / "data.jsonl"
    dataset.write_text(SMALL_DATA)
    preset = marked_run(root / "preset-run") / "job.yaml"
    preset.write_text(DEMO.read_text())
    with monkeypatch.context() as patch:
        output = hostile_output(kind, root, dataset, preset, live_run, patch)
        before = tree_with_contents(root)
        args = ["--preset", str(preset), "--set", f"dataset.path={dataset}", "--overwrite"]
        args += ["--set", "training.max_steps=1"]
        if use_name and kind not in ("cwd", "cwd_parent", "home"):  # via output.dir instead
            args += ["--set", f"output.dir={output}"]
        else:
            args += ["--output", output]
        code = main(args)
    err = capsys.readouterr().err
    assert_clean_failure(code, err)
    assert any(reason in err for reason in REFUSALS[kind]), (kind, err)
    assert tree_with_contents(root) == before


def tree_with_contents(root: Path) -> dict[str, bytes | None]:
    return {
        str(p): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
        for p in root.rglob("*")
    }


@st.composite
def hostile_inputs(draw, root: Path) -> tuple[list[str], str]:
    """Arguments whose preset or dataset is a pipe, a device, deeply nested or non-finite."""
    kind = draw(st.sampled_from(["fifo", "device", "deep", "non_finite", "link_to_device"]))
    target = draw(st.sampled_from(["preset", "dataset"]))
    device = draw(st.sampled_from(["/dev/zero", "/dev/null", "/dev/urandom"]))
    depth = draw(st.integers(2000, 50000))
    section, name, _ = draw(st.sampled_from(FLOAT_FIELDS))
    number = draw(st.sampled_from([".inf", "-.inf", ".nan", "1e309", "-1e999"]))
    if kind == "non_finite":
        target = "preset"
    path = root / f"{kind}-{target}-{depth}-{name}{'.yaml' if target == 'preset' else '.jsonl'}"
    if path.exists() or path.is_symlink():
        pass
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "link_to_device":
        path.symlink_to(device)
    elif kind == "deep":
        body = "[" * depth + "]" * depth
        path.write_text(f"lora: {body}\n" if target == "preset" else f'{{"text": {body}}}\n')
    elif kind == "non_finite":
        path.write_text(f"{section}:\n  {name}: {number}\n")
    if kind == "device":
        path = Path(device)
    why = {"deep": "nested too deeply", "non_finite": "must be a finite number"}
    reason = why.get(kind, "not a regular file")
    if target == "preset":
        return ["--preset", str(path)], reason
    fmt = ["--set", "dataset.format=auto"]
    return ["--preset", str(DEMO), "--set", f"dataset.path={path}", *fmt], reason


FLOAT_FIELDS = [f for f in FIELDS if f[2].annotation in (float, float | None)]


@FUZZ
@given(data=st.data())
def test_pipes_devices_deep_nesting_and_non_finite_numbers_are_one_line(tmp_path, capsys, data):
    root = tmp_path / "inputs"
    root.mkdir(exist_ok=True)
    args, reason = data.draw(hostile_inputs(root))
    before = snapshot(tmp_path)
    code = main([*args, "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert_clean_failure(code, err)
    assert reason in err, (args, err)
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "out").exists()
