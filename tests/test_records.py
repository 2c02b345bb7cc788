"""Records are bounded before they are parsed whole (issue 25, items 7 and 10): a record
over the limit is one line naming file:line and the limit, found without holding the
record in memory; CSV records are named by the physical line they start on; an empty chat
answer is refused as an empty Alpaca output is."""

from __future__ import annotations

import json
import tracemalloc

import pytest
from conftest import DEMO_PRESET, set_args
from test_nothing_lost import one_line_error

from finetune_tui.engine.data.formats import validate_records
from finetune_tui.engine.data.reading import RECORD_LIMIT, load_records, record_limit
from finetune_tui.engine.recipe.examples import read_records
from finetune_tui.engine.settings.schema import TrainSettings

CHAT = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}


def chat(answer: str) -> dict:
    return {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": answer}]
    }


def jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_a_huge_record_is_one_line_before_the_run_folder_exists(cli, tmp_path):
    """50 MB took 13.8 GB and 85 s of validation; now one line and no run folder."""
    data = jsonl(tmp_path / "data.jsonl", [CHAT, CHAT, chat("a" * (3 * RECORD_LIMIT)), CHAT])
    run = tmp_path / "run"
    result = cli(
        "--preset",
        str(DEMO_PRESET),
        *set_args(f"dataset.path={data}"),
        "--output",
        str(run),
    )
    line = one_line_error(result)
    assert f"{data}:3: record is larger than 1 MiB, the limit per record" in line
    assert not run.exists()


def test_an_overlong_line_is_skipped_without_being_held_in_memory(tmp_path):
    path = tmp_path / "data.jsonl"
    with path.open("w") as file:
        file.write(json.dumps(CHAT) + "\n")
        file.write('{"text": "' + "x" * (40 * RECORD_LIMIT) + '"}\n')  # 40 MiB on one line
        file.write(json.dumps(CHAT) + "\n")
    tracemalloc.start()
    try:
        records = load_records(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * RECORD_LIMIT  # the whole line was read: 40+ MiB, twice over
    assert [r.where for r in records] == [f"{path}:{n}" for n in (1, 2, 3)]
    assert records[1].data is None and "larger than 1 MiB" in records[1].error
    assert records[0].data == records[2].data == CHAT


def test_the_limit_follows_max_seq_length(tmp_path):
    long_context = TrainSettings.model_validate({"training": {"max_seq_length": 2**17}})
    assert record_limit(TrainSettings()) == RECORD_LIMIT
    assert record_limit(long_context) == 32 * 2**17  # 4 MiB
    data = tmp_path / "data.jsonl"
    jsonl(data, [chat("a" * (2 * RECORD_LIMIT))])
    assert load_records(data, record_limit(long_context))[0].data is not None
    assert load_records(data)[0].error.startswith("record is larger than 1 MiB")


@pytest.mark.parametrize("suffix", [".json", ".parquet"])
def test_records_of_files_read_whole_are_bounded_before_validation(tmp_path, suffix):
    rows = [CHAT, {"text": "é" * (RECORD_LIMIT // 2 + 1)}]  # 2 bytes each in UTF-8
    path = tmp_path / f"data{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(rows))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist([{"text": "a"}, {"text": rows[1]["text"]}]), path)
    records = load_records(path)
    assert records[0].data is not None
    assert records[1].where == f"{path}: record 2" and "larger than 1 MiB" in records[1].error


def test_csv_problems_name_the_physical_line_a_record_starts_on(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text(
        'instruction,output\n"multi\nline\ninstruction",fine\n\n"also\nmulti",\nlast,ok\n'
    )
    records = load_records(path)
    assert [r.where for r in records] == [f"{path}:{n}" for n in (2, 6, 8)]
    problems = validate_records(records, "alpaca")
    assert [str(p) for p in problems] == [f"{path}:6: missing field 'output'"]
    assert [r.data for r in records] == read_records(path)  # the script reads the same


def test_a_csv_line_over_the_limit_is_named(cli, tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("instruction,output\nhi,yo\n" + "x," * RECORD_LIMIT + "\n")
    result = cli("plan", "--model", "demo", "--dataset", str(path))
    assert f"{path}:3: record is larger than 1 MiB" in one_line_error(result)


def test_line_endings_read_as_the_exported_script_reads_them(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(
        b"\xef\xbb\xbf" + json.dumps(CHAT).encode() + b"\r\n"
        + json.dumps(chat("cr")).encode() + b"\r"
        + json.dumps(chat("lf")).encode() + b"\n"
    )  # fmt: skip
    records = load_records(path)
    assert [r.data for r in records] == read_records(path)
    assert [r.where for r in records] == [f"{path}:{n}" for n in (1, 2, 3)]


def test_a_line_that_is_not_utf8_is_named(cli, tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(json.dumps(CHAT).encode() + b"\n" + b'{"text": "\xff"}\n')
    result = cli("plan", "--model", "demo", "--dataset", str(path))
    assert f"{path}:2: not UTF-8 text (bad byte at column 11)" in one_line_error(result)


@pytest.mark.parametrize(
    "record",
    [
        chat("   "),
        {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": ""}]},
    ],
)
def test_an_empty_chat_answer_is_refused_like_an_empty_alpaca_output(cli, tmp_path, record):
    data = jsonl(tmp_path / "data.jsonl", [record])
    result = cli("--preset", str(DEMO_PRESET), *set_args(f"dataset.path={data}"),
        "--output", str(tmp_path / "run"),
    )  # fmt: skip
    assert f"{data}:1:" in one_line_error(result) and "answer is empty" in result.stderr
    assert not (tmp_path / "run").exists()


# --- properties ---------------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from finetune_tui.engine.common.errors import DatasetError  # noqa: E402

lines = st.lists(
    st.binary(max_size=64) | st.sampled_from([json.dumps(CHAT).encode(), b'{"text": "a"}']),
    max_size=12,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    parts=lines,
    ending=st.sampled_from([b"\n", b"\r\n", b"\r"]),
    suffix=st.sampled_from([".jsonl", ".csv"]),
)
def test_any_bytes_read_as_records_or_one_dataset_error(tmp_path, parts, ending, suffix):
    """Whatever a JSONL or CSV file holds: records named by a line that exists, each
    under the limit, or one DatasetError; never another exception."""
    path = tmp_path / f"data{suffix}"
    path.write_bytes(ending.join(parts))
    try:
        records = load_records(path, limit=40)
    except DatasetError as exc:
        assert "\n" not in str(exc)
        return
    count = len(path.read_bytes().replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"))
    for record in records:
        assert 1 <= int(record.where.rsplit(":", 1)[1]) <= count
        assert record.data is None or len(json.dumps(record.data)) <= 200


def test_export_detects_the_format_within_the_runs_own_bound(tmp_path):
    """Long-context records over the default 1 MiB but within max_seq_length's bound: the
    export reads them as the run does (it detected the format with the default bound)."""
    from finetune_tui.main import main

    data = jsonl(tmp_path / "long.jsonl", [chat("a" * (RECORD_LIMIT + 1000))] * 2)
    script = tmp_path / "train.py"
    code = main(
        ["export", "--preset", str(DEMO_PRESET), "-o", str(script)]
        + set_args(f"dataset.path={data}", "training.max_seq_length=65536")
    )
    assert code == 0 and 'DATA_FORMAT = "messages"' in script.read_text()
