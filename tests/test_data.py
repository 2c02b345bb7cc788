"""Datasets: every file type and format, located problems, split, stats, preview."""

from __future__ import annotations

import json

import pytest

from finetune_tui.engine.common.errors import DatasetError, InputError
from finetune_tui.engine.data.dataset import prepare_datasets
from finetune_tui.engine.data.formats import detect_format
from finetune_tui.engine.data.lengths import stats_from_lengths
from finetune_tui.engine.data.reading import load_records
from finetune_tui.engine.recipe.examples import ALPACA_PROMPT_NO_INPUT
from finetune_tui.engine.settings.schema import TrainSettings

CHAT = {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}
SHAREGPT = {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}
ALPACA = {"instruction": "Add", "input": "2 and 2", "output": "4"}
TEXT = {"text": "plain text sample"}


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def settings_for(path, **dataset):
    return TrainSettings.model_validate({"dataset": {"path": str(path), **dataset}})


@pytest.mark.parametrize(
    ("row", "fmt"), [(CHAT, "messages"), (SHAREGPT, "sharegpt"), (ALPACA, "alpaca"), (TEXT, "text")]
)
def test_each_format_is_detected_and_converted(tmp_path, row, fmt):
    path = write_jsonl(tmp_path / "d.jsonl", [row] * 20)
    prepared = prepare_datasets(settings_for(path), eos_token="</s>")
    assert prepared.format == fmt
    assert len(prepared.train) == 18 and len(prepared.eval) == 2
    example = prepared.train[0]
    if fmt in {"messages", "sharegpt"}:
        assert example["completion"][0]["role"] == "assistant"
        assert example["prompt"][-1]["role"] == "user"
    elif fmt == "alpaca":
        assert example["prompt"].startswith("Below is an instruction")
        assert "### Input:\n2 and 2" in example["prompt"]
        assert example["completion"] == "4</s>"
    else:
        assert example == {"text": "plain text sample"}


def test_alpaca_without_input_uses_the_short_template(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"instruction": "Say hi", "output": "hi"}] * 4)
    prepared = prepare_datasets(settings_for(path, eval_fraction=0), eos_token="<eos>")
    assert prepared.train[0]["prompt"] == ALPACA_PROMPT_NO_INPUT.format(instruction="Say hi")
    assert prepared.eval is None


def test_json_csv_parquet_and_saved_folders(tmp_path):
    from datasets import Dataset, DatasetDict

    rows = [dict(ALPACA, output=str(i)) for i in range(10)]
    (tmp_path / "d.json").write_text(json.dumps({"data": rows}))
    Dataset.from_list(rows).to_parquet(str(tmp_path / "d.parquet"))
    Dataset.from_list(rows).to_csv(str(tmp_path / "d.csv"), index=False)
    DatasetDict({"train": Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "saved"))
    for name in ("d.json", "d.parquet", "d.csv", "saved"):
        records = load_records(tmp_path / name)
        assert [r.data["output"] for r in records] == [str(i) for i in range(10)], name
        assert detect_format(records) == "alpaca"


def test_the_scripts_reader_reads_what_the_runner_reads(tmp_path):
    """The exported script reads files with recipe_data.read_records, the runner through
    data.load_records (bounded, validated): the same records from every file type."""
    from datasets import Dataset, DatasetDict

    from finetune_tui.engine.recipe.examples import read_records

    rows = [dict(ALPACA, output=f"é {i}", input="" if i % 2 else "x") for i in range(6)]
    (tmp_path / "d.jsonl").write_text(
        "\ufeff" + "\n\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n",
        encoding="utf-8",
    )
    (tmp_path / "d.json").write_text(json.dumps({"data": rows}))
    Dataset.from_list(rows).to_parquet(str(tmp_path / "d.parquet"))
    Dataset.from_list(rows).to_csv(str(tmp_path / "d.csv"), index=False)
    DatasetDict({"train": Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "saved"))
    for name in ("d.jsonl", "d.json", "d.parquet", "d.csv", "saved"):
        runner = [r.data for r in load_records(tmp_path / name)]
        assert read_records(tmp_path / name) == runner, name
        assert runner[1]["output"] == "é 1", name


@pytest.mark.parametrize(
    "document",
    [
        [ALPACA, ALPACA],  # a list of records
        {"data": [ALPACA, ALPACA], "name": "mine", "version": 2},  # one key holds the list
        {"train": [ALPACA], "test": [ALPACA, ALPACA]},  # several lists: which one? refused
        {"data": ALPACA},  # no list at all
        ALPACA,
    ],
)
def test_one_json_rule_for_the_runner_and_the_script(tmp_path, document):
    """A .json dataset is a list of records or an object with exactly one key holding a
    list: data.load_records and the script's read_records keep or refuse the same files."""
    from finetune_tui.engine.recipe.examples import read_records

    path = tmp_path / "d.json"
    path.write_text(json.dumps(document))
    try:
        runner = [r.data for r in load_records(path)]
    except DatasetError as exc:
        assert str(exc) == f"{path}: expected a list of records (or one key holding it)"
        with pytest.raises(ValueError, match="expected a list of records"):
            read_records(path)
    else:
        assert read_records(path) == runner and len(runner) == 2


def test_several_top_level_json_values_are_refused_by_both_readers(tmp_path):
    """A JSONL file named .json is not silently read as its first record."""
    from finetune_tui.engine.recipe.examples import read_records

    path = tmp_path / "d.json"
    path.write_text(json.dumps([ALPACA]) + "\n" + json.dumps([ALPACA]) + "\n")
    with pytest.raises(InputError, match=f"{path}:2: invalid JSON"):
        load_records(path)
    with pytest.raises(ValueError):
        read_records(path)


def test_format_override(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "a", "instruction": "b", "output": "c"}] * 4)
    assert prepare_datasets(settings_for(path), "</s>").format == "alpaca"
    assert prepare_datasets(settings_for(path, format="text"), "</s>").format == "text"


def test_malformed_records_are_reported_with_lines_and_a_count(tmp_path):
    path = write_jsonl(
        tmp_path / "bad.jsonl",
        [
            ALPACA,
            {"instruction": "x"},
            "{not json",
            ALPACA,
            {"instruction": "y", "output": 3},
            {"instruction": "z", "output": ""},
            ALPACA,
        ],
    )
    with pytest.raises(DatasetError) as err:
        prepare_datasets(settings_for(path), "</s>")
    message = str(err.value)
    assert message == (
        f"{path}:2: missing field 'output'; {path}:3: invalid JSON (Expecting property name "
        f"enclosed in double quotes); {path}:5: field 'output' must be a string "
        "(4 records with problems); records read as alpaca (detected)"
    )
    assert "\n" not in message


def test_chat_problems_name_the_turn(tmp_path):
    path = write_jsonl(
        tmp_path / "c.jsonl",
        [
            CHAT,
            {"messages": [{"role": "bot", "content": "x"}, {"role": "assistant", "content": "y"}]},
            {"messages": [{"role": "user", "content": "x"}]},
            {"conversations": "nope"},
        ],
    )
    with pytest.raises(
        DatasetError,
        match=r"c.jsonl:2: messages\[0\].role: unknown role 'bot'; "
        r".*c.jsonl:3: messages: the last turn must be",
    ):
        prepare_datasets(settings_for(path), "</s>")


def test_csv_lines_count_the_header(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("instruction,output\nadd,4\nsub,\n")
    with pytest.raises(DatasetError, match=r"d.csv:3: missing field 'output'"):
        prepare_datasets(settings_for(path), "</s>")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing.jsonl", "missing.jsonl: dataset not found"),
        (lambda p: (p / "x.txt").write_text("hi") and p / "x.txt", "unknown dataset type '.txt'"),
        (lambda p: (p / "e.jsonl").write_text("\n") and p / "e.jsonl", "e.jsonl: dataset is empty"),
        (lambda p: (p / "folder").mkdir() or p / "folder", "not a dataset saved with save_to_disk"),
        (lambda p: (p / "u.jsonl").write_bytes(b"\xff\xfe\x00") and p / "u.jsonl", "not UTF-8"),
        (lambda p: write_jsonl(p / "k.jsonl", [{"foo": 1}]), "cannot tell the format"),
    ],
)
def test_unreadable_inputs_are_one_line(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(DatasetError, match=message) as err:
        prepare_datasets(settings_for(path), "</s>")
    assert "\n" not in str(err.value)


def test_split_is_deterministic_and_max_samples_caps_train(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [dict(TEXT, text=f"s{i}") for i in range(50)])
    first = prepare_datasets(settings_for(path, eval_fraction=0.2), "</s>")
    second = prepare_datasets(settings_for(path, eval_fraction=0.2), "</s>")
    assert first.eval["text"] == second.eval["text"] and len(first.eval) == 10
    capped = prepare_datasets(settings_for(path, eval_fraction=0.2, max_samples=7), "</s>")
    assert capped.train["text"] == first.train["text"][:7]


def test_demo_dataset_loads(tmp_path):
    prepared = prepare_datasets(TrainSettings(), "</s>")
    assert prepared.format == "messages"
    assert len(prepared.train) > 100


def test_stats_from_lengths():
    stats = stats_from_lengths([1, 2, 3, 4, 100], max_seq_length=50, bins=4)
    assert (stats.p50, stats.max, stats.truncated_fraction) == (3, 100, 0.2)
    assert stats.histogram[0] == (0, 4) and stats.histogram[-1] == (75, 1)
