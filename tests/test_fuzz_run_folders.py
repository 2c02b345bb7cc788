"""Property-based: a run folder with random links, pipes, truncations and edits of the files
it holds, before --resume, --overwrite, attach, runs and export.

Whatever was done to the run folder, nothing outside it changes (a sentinel tree beside it
is hashed before and after), and the command succeeds or answers in one line; never an
internal error. A link or pipe where the run writes makes --resume refuse.

The stopped run is trained once (test_run_folder_links) and copied per example. Training
itself is replaced by a stub in the cheap properties (what --resume checks and writes
before training is what is fuzzed); one property resumes for real on a few examples: the
run's last checkpoint is at its last step, so a resume only loads, saves and exports.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_run_folder_links import STEPS, copy_run, outside_tree, stopped_run_in

from finetune_tui.engine.common.errors import TrainingError
from finetune_tui.engine.runs.layout import OWN_DIRS, OWN_FILES
from finetune_tui.engine.runs.pid import is_running
from finetune_tui.main import main

DEMO = Path(__file__).resolve().parent.parent / "presets" / "demo.yaml"
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
STUB_LINE = "fuzz: training is not run here"
ABSENT = ["STOP_NOW", "CHECKPOINT_NOW", "checkpoints/checkpoint-999", "adapter/extra.json"]
DAMAGE = ["truncate", "bytes", "json", "delete"]
ACTIONS = ["link_file", "link_dir", "fifo", *DAMAGE]
JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.sampled_from([10**9, -1, 0, 1.5, float("inf")]),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.just({"nested": {"deep": [1]}}),
)
_examples = itertools.count()


def entries(run: Path) -> list[str]:
    """Every path a run holds, relative, folders included, plus names it may create."""
    found = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    return found + ABSENT


@st.composite
def mutations(draw, names: list[str], actions=ACTIONS) -> list[tuple[str, str, object]]:
    count = draw(st.integers(1, 3))
    return [
        (
            draw(st.sampled_from(names)),
            draw(st.sampled_from(actions)),
            draw(st.one_of(st.integers(0, 4096), st.binary(max_size=64), JSON_VALUES)),
        )
        for _ in range(count)
    ]


def mutate(run: Path, outside: Path, name: str, action: str, value) -> None:
    path = run / name
    if not path.parent.is_dir() or path.parent.is_symlink():
        return
    if action in ("link_file", "link_dir", "fifo", "delete"):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        if action == "link_file":
            path.symlink_to(outside / "notes.txt")
        elif action == "link_dir":
            path.symlink_to(outside / "folder")
        elif action == "fifo":
            os.mkfifo(path)
        return
    if not path.is_file() or path.is_symlink():
        return
    data = path.read_bytes()
    if action == "truncate":
        path.write_bytes(data[: value if isinstance(value, int) and value >= 0 else len(data) // 2])
    elif action == "bytes":
        blob = value if isinstance(value, bytes) else b"\xff\x00garbage"
        at = len(data) // 3
        path.write_bytes(data[:at] + blob + data[at + len(blob) :])
    elif action == "json":
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        try:
            document = json.loads(data)
        except ValueError:
            document = None
        if isinstance(document, dict) and document:
            key = sorted(document)[len(data) % len(document)]
            document[key] = value
            path.write_text(json.dumps(document))
        else:
            path.write_text(json.dumps(value))


def sentinel_hash(root: Path) -> dict[str, str]:
    """Names, kinds, link targets and contents of everything under root, links unfollowed."""
    found = {}
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = Path(folder) / name
            key = str(path.relative_to(root))
            if path.is_symlink():
                found[key] = "link:" + os.readlink(path)
            elif path.is_file():
                found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                found[key] = "dir" if path.is_dir() else "other"
    return found


def written_place(name: str) -> bool:
    """Where the run writes, appends, rotates or deletes: its own files and folders."""
    first = name.split("/")[0]
    return first in OWN_FILES or first in OWN_DIRS


def planted_here(path: Path) -> bool:
    """A link or pipe is at path once every change is made (a later change to the same
    name, or to a folder above it, may have removed it again)."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return False
    return stat.S_ISLNK(mode) or stat.S_ISFIFO(mode)


def assert_one_line_or_success(code: int, err: str) -> None:
    """0, or one line: 2 for what the user gave, 1 for a run that failed (or the stub)."""
    assert "internal error" not in err and "Traceback" not in err, err
    if code == 0:
        return
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("finetune-tui: error: "), err
    assert code in (1, 2), (code, err)


@pytest.fixture(scope="session")
def stopped_template(tmp_path_factory) -> Path:
    """The same trained run as test_run_folder_links' (built once per session)."""
    return stopped_run_in(tmp_path_factory.getbasetemp() / "stopped-run")


@pytest.fixture
def example_root(tmp_path):
    def fresh() -> Path:
        root = tmp_path / f"example-{next(_examples)}"
        root.mkdir()
        return root

    return fresh


@pytest.fixture
def stubbed_training(monkeypatch):
    """run_training stands for a failed start: an overwritten run comes back, nothing trains."""
    from finetune_tui.engine.runs.create import undo_replacement
    from finetune_tui.engine.train import runner

    def stub(settings, sink, stop=None, run_dir=None, resume=False):
        undo_replacement(run_dir)
        raise TrainingError(STUB_LINE)

    monkeypatch.setattr(runner, "run_training", stub)


def prepared(template: Path, root: Path, changes) -> tuple[Path, Path, dict[str, str]]:
    run = copy_run(template, root / "runs" / "run")
    outside = outside_tree(root / "outside")
    for name, action, value in changes:
        mutate(run, outside, name, action, value)
    assume(not is_running(run))  # a pid edited into a live process's would be followed
    return run, outside, sentinel_hash(outside)


COMMANDS = ["resume", "overwrite", "attach", "runs", "runs_json", "export"]


@FUZZ
@given(data=st.data(), command=st.sampled_from(COMMANDS))
def test_a_damaged_run_folder_changes_nothing_outside_it(
    stopped_template, example_root, stubbed_training, capsys, data, command
):
    changes = data.draw(mutations(entries(stopped_template)))
    run, outside, before = prepared(stopped_template, example_root(), changes)
    planted = [name for name, _, _ in changes if written_place(name) and planted_here(run / name)]
    args = {
        "resume": ["--resume", str(run)],
        "overwrite": ["--preset", str(DEMO), "--output", str(run), "--overwrite", *STEPS],
        "attach": ["attach", "--plain", str(run)],
        "runs": ["runs", str(run.parent)],
        "runs_json": ["runs", "--json", str(run.parent)],
        "export": [
            "export", "--preset", str(run / "settings.yaml"), "-o",
            str(run / "export" / "train.py"), "--force",
        ],
    }[command]  # fmt: skip
    code = main(args)
    err = capsys.readouterr().err
    assert_one_line_or_success(code, err)
    assert sentinel_hash(outside) == before, (command, changes)
    if command == "resume" and planted:
        assert code == 2, (changes, err)


@settings(FUZZ, max_examples=2)  # each a real resume (~15 s on 2 cores)
@given(data=st.data())
def test_a_real_resume_of_a_damaged_run_changes_nothing_outside_it(
    stopped_template, example_root, capsys, data
):
    """Training for real (few examples): truncations, edits and deletions of any file (the
    links and pipes, refused before training, are the stubbed property's)."""
    changes = data.draw(mutations(entries(stopped_template), DAMAGE))
    run, outside, before = prepared(stopped_template, example_root(), changes)
    code = main(["--resume", str(run)])
    assert_one_line_or_success(code, capsys.readouterr().err)
    assert sentinel_hash(outside) == before, changes
