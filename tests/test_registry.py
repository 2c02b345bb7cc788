"""The run registry is a cache (issue 25, item 6): damaged entries are skipped one by one,
names are stored on one line and printed escaped, and a registry that cannot be written
costs one warning line, never the run. One run's damaged files never hide the others."""

from __future__ import annotations

import json
import os

import pytest
from conftest import DEMO_PRESET, FEW_RECORDS, gpu_run_events, set_args, write_run

from finetune_tui.engine.common.places import data_dir
from finetune_tui.engine.runs.event_text import printable
from finetune_tui.engine.runs.layout import RUN_MARKER
from finetune_tui.engine.runs.registry import REGISTRY_FILE, register_run, registered_runs
from finetune_tui.engine.runs.status import list_runs
from finetune_tui.engine.settings.schema import TrainSettings

ESCAPE = "\x1b]0;owned\x07\x1b[2J"  # sets the terminal's title, clears the screen


def registry():
    return data_dir() / REGISTRY_FILE


def finished_run(folder):
    write_run(folder, gpu_run_events(steps=3))
    return folder


def test_a_damaged_registry_skips_only_its_damaged_entries(cli, tmp_path):
    good = [finished_run(tmp_path / "elsewhere" / f"run{i}") for i in range(2)]
    registry().parent.mkdir(parents=True)
    lines = [
        f"{good[0]}\n".encode(),
        os.urandom(4000).replace(b"\n", b"") + b"\n",  # random bytes
        b"/" + b"x" * 100_000 + b"\n",  # overlong: once an internal error for every run
        b"relative/run\n",
        f"{good[1]}\x1b[31m\n".encode(),  # a raw control character: not an entry of ours
        b"\xff\xfe not utf-8\n",
        f"{good[1]}\n".encode(),
        os.urandom(300).replace(b"\n", b""),  # torn: no final newline
    ]
    registry().write_bytes(b"".join(lines))
    assert registered_runs() == good

    listed = cli("runs", "--json")
    assert listed.returncode == 0, listed.stderr
    assert sorted(row["path"] for row in json.loads(listed.stdout)) == [str(p) for p in good]

    late = finished_run(tmp_path / "elsewhere" / "late")  # after a torn line: its own line
    register_run(late)
    assert registered_runs() == [*good, late]


def test_names_with_newlines_and_escapes_stay_one_line_and_print_escaped(cli, tmp_path):
    folder = finished_run(tmp_path / f"two\nlines{ESCAPE}\udcff")  # \udcff: the byte 0xff
    register_run(folder)
    register_run(folder)  # once only
    assert registry().read_bytes().count(b"\n") == 1
    assert registered_runs() == [folder]

    for args in (["runs"], ["attach", str(folder), "--plain"]):
        result = cli(*args)
        assert result.returncode == 0, result.stderr
        assert "\x1b" not in result.stdout + result.stderr
        assert "\\x1b]0;owned\\x07" in result.stdout
    missing = cli("attach", f"nothing{ESCAPE}")
    assert "\x1b" not in missing.stderr and "nothing\\x1b]0;owned" in missing.stderr


@pytest.mark.parametrize("blocker", ["fifo", "directory", "home is a file"])
def test_an_unwritable_registry_warns_and_the_run_folder_is_made(
    tmp_path, blocker, capfd, monkeypatch
):
    from finetune_tui.engine.runs.create import prepare_run_dir

    if blocker == "home is a file":  # what a read-only home does: the folder cannot be made
        (tmp_path / "home").write_text("")
        monkeypatch.setenv("FINETUNE_TUI_DATA_DIR", str(tmp_path / "home" / "data"))
    else:
        registry().parent.mkdir(parents=True)
        os.mkfifo(registry()) if blocker == "fifo" else registry().mkdir()
    run = tmp_path / "out" / "run"
    settings = TrainSettings.model_validate({"output": {"dir": str(run)}})
    assert prepare_run_dir(settings) == run  # a FIFO blocked here forever
    assert (run / RUN_MARKER).is_file()
    warning = capfd.readouterr().err.splitlines()
    assert len(warning) == 1 and warning[0].startswith("finetune-tui: warning: "), warning
    assert "runs.txt" in warning[0] and f"finetune-tui runs {run.parent}" in warning[0]


def test_a_run_trains_past_a_registry_that_is_a_fifo(cli, tmp_path):
    """Through the CLI's main(): the run once hung after making its folder."""
    registry().parent.mkdir(parents=True)
    os.mkfifo(registry())
    run = tmp_path / "run"
    sets = set_args("training.max_steps=1", "training.exact_match_samples=0", FEW_RECORDS)
    result = cli("--preset", str(DEMO_PRESET), "--output", str(run), *sets)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.count("finetune-tui: warning:") == 1
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


def test_a_run_with_wrong_types_is_listed_as_damaged_and_the_others_still_are(cli, tmp_path):
    runs = data_dir() / "runs"
    finished_run(runs / "good")
    events = [e.to_json() for e in gpu_run_events(steps=3)]
    events[2]["loss"] = "abc"  # a string where a number belongs
    (runs / "bad-metrics").mkdir(parents=True)
    (runs / "bad-metrics" / "settings.yaml").write_text("model: {}\n")
    (runs / "bad-metrics" / "metrics.jsonl").write_text(
        "".join(json.dumps(e) + "\n" for e in events)
    )
    for name, summary in {"bad-summary": {"status": 5}, "odd-status": {"status": ESCAPE}}.items():
        finished_run(runs / name)
        (runs / name / "summary.json").write_text(json.dumps(summary))

    listed = {r.name: r for r in list_runs()}
    assert (listed["good"].step, listed["good"].total_steps) == (3, 3)
    assert {name: r.status for name, r in listed.items()} == {
        "good": "interrupted",  # no summary.json: killed, resumable
        "bad-metrics": "damaged",
        "bad-summary": "damaged",
        "odd-status": "damaged",
    }
    for args in (["runs"], ["runs", "--json"], ["attach", "bad-metrics", "--plain"]):
        result = cli(*args)
        assert result.returncode == 0 and result.stderr == "", result.stderr
    attached = cli("attach", "bad-metrics", "--plain").stdout
    assert "step 1/3" in attached and "abc" not in attached  # the damaged line is skipped


def test_printable_escapes_what_a_terminal_would_obey():
    assert printable("plain name-1.0 ünï 日本") == "plain name-1.0 ünï 日本"
    assert printable(f"a\nb\tc{ESCAPE}") == "a\\nb\\tc\\x1b]0;owned\\x07\\x1b[2J"
    assert printable("\x9b31m") == "\\x9b31m"  # C1: the one-byte CSI
    assert printable("evil\u202etxt.py") == "evil\\u202etxt.py"  # right-to-left override
    assert printable(os.fsdecode(b"caf\xe9")) == "caf\\xe9"  # a name that is not UTF-8
    assert printable(printable(ESCAPE)) == printable(ESCAPE)  # escaping twice changes nothing


# --- properties ---------------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PROPERTY = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
names = st.text(min_size=1, max_size=20).filter(lambda s: "/" not in s and s not in (".", ".."))


@PROPERTY
@given(names=st.lists(names, min_size=1, max_size=4, unique=True), junk=st.lists(st.binary()))
def test_any_names_and_any_junk_leave_every_registered_run_listed(tmp_path, names, junk):
    """Whatever a name holds and whatever else the registry holds, every registered run is
    listed once, in order, and nothing raises."""
    root = tmp_path / str(len(os.listdir(tmp_path)))
    folders = []
    for name in names:
        folder = root / os.fsdecode(os.fsencode(name.replace("\0", "")) or b"x")
        if folder in folders:
            continue
        folders.append(finished_run(folder))
    registry().parent.mkdir(parents=True, exist_ok=True)
    registry().write_bytes(b"\n".join(junk))
    for folder in folders:
        register_run(folder)
    found = registered_runs()
    assert [p for p in found if p in folders] == folders
    assert {r.path for r in list_runs()} >= set(folders)


@PROPERTY
@given(text=st.text() | st.binary().map(os.fsdecode))
def test_printable_leaves_no_control_character(text):
    shown = printable(text)
    assert not any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in shown)  # C0, DEL, C1
    assert not any(0xD800 <= ord(c) <= 0xDFFF or 0x202A <= ord(c) <= 0x202E for c in shown)
    shown.encode("utf-8")  # printable on any terminal encoding that takes UTF-8


def test_the_list_names_each_run_as_it_is_typed(cli, tmp_path, monkeypatch):
    """Runs made with --output often share a name ("run"): the list shows what to type to
    reach each one (merge, attach, --resume): its name in the runs folder, else its path."""
    from finetune_tui.engine.runs.layout import runs_root

    inside = finished_run(runs_root() / "r1")
    elsewhere = [finished_run(tmp_path / where / "run") for where in ("a", "b")]
    for run in elsewhere:
        register_run(run)
    monkeypatch.setenv("HOME", str(tmp_path))
    listed = cli("runs").stdout.splitlines()[1:]
    assert sorted(line.split()[0] for line in listed) == ["r1", "~/a/run", "~/b/run"]
    assert inside.parent == runs_root()
