"""Reading a dataset's records with their locations, with bounded reads.

The file / folder (JSONL, JSON, CSV, Parquet, save_to_disk) is read record by record,
remembering each record's line for error messages: a JSONL or CSV line longer than the
record limit is skipped unread (never held whole in memory) and reported, and no record over
the limit reaches validation or a tokenizer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..common.errors import DatasetError
from ..common.safe_io import check_regular_file, open_regular, read_json
from ..recipe.examples import json_records
from ..settings.schema import DEMO, TrainSettings

JSON_LIMIT = 2 * 2**30  # a whole-file JSON dataset is parsed in memory
# One record, in bytes: at least RECORD_LIMIT, or BYTES_PER_TOKEN per token of
# training.max_seq_length. Training keeps max_seq_length tokens (~4 bytes each), so a larger
# record is mostly cut; reading and tokenizing it cost hundreds of bytes of memory per byte
# (a demo run with one 5 MB record peaked at 1.8 GB resident, one with a 50 MB record at 13.8).
RECORD_LIMIT = 2**20
BYTES_PER_TOKEN = 32
_LONE_CR = re.compile(rb"(?<=\r)(?!\n)")  # text mode's newline="" also ends a line at a lone \r
SUFFIXES = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


@dataclass
class Record:
    """One raw record and where it came from (for `file:line:` messages)."""

    data: dict | None
    where: str  # "data.jsonl:12" or "data.parquet: record 3"
    error: str | None = None  # set when the line could not be read as a record


def resolve_dataset_path(path: str, objective: str = "sft") -> Path:
    """The dataset's file or folder; 'demo' is the embedded task for the objective."""
    if path == DEMO:
        from ..common.demo import demo_dataset_path

        return demo_dataset_path(objective)
    return Path(path).expanduser()


def record_limit(settings: TrainSettings) -> int:
    """The largest record, in bytes, that these settings read (see RECORD_LIMIT)."""
    return max(RECORD_LIMIT, BYTES_PER_TOKEN * settings.training.max_seq_length)


def _too_large(limit: int) -> str:
    return (
        f"record is larger than {_size(limit)}, the limit per record (32 bytes per token of "
        f"training.max_seq_length, at least {_size(RECORD_LIMIT)}); shorten or split it"
    )


def _size(count: int) -> str:
    return f"{count / 2**20:g} MiB" if count >= 2**20 else f"{count / 2**10:g} KiB"


def load_records(path: Path, limit: int = RECORD_LIMIT) -> list[Record]:
    """Read every record with its location; one-line DatasetError on any failure.
    A record larger than `limit` bytes is a Record with an error, never parsed whole."""
    if not path.exists():
        raise DatasetError(f"{path}: dataset not found")
    try:
        if path.is_dir():
            return _load_saved(path, limit)
        check_regular_file(path, "dataset file")
        kind = SUFFIXES.get(path.suffix.lower())
        if kind is None:
            raise DatasetError(
                f"{path}: unknown dataset type '{path.suffix}' (use .jsonl, .json, .csv, "
                ".parquet or a save_to_disk folder)"
            )
        records = {
            "jsonl": _load_jsonl,
            "json": _load_json,
            "csv": _load_csv,
            "parquet": _load_parquet,
        }[kind](path, limit)
    except PermissionError:
        raise DatasetError(f"{path}: permission denied") from None
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not UTF-8 text") from None
    if not records:
        raise DatasetError(f"{path}: dataset is empty")
    return records


def _lines(file, limit: int) -> Iterator[bytes | None]:
    """The lines of a binary file as text mode with newline="" splits them (at \\n, \\r\\n
    or a lone \\r; a leading BOM dropped), read at most `limit` + 1 bytes at a time: a
    longer line is skipped in pieces and given as None."""
    first = True
    while raw := file.readline(limit + 1):
        if len(raw) > limit and not raw.endswith(b"\n"):
            while (rest := file.readline(2**16)) and not rest.endswith(b"\n"):
                pass
            yield None
            continue
        if first:
            raw, first = raw.removeprefix(b"\xef\xbb\xbf"), False
        yield from (part for part in _LONE_CR.split(raw) if part) if b"\r" in raw else (raw,)


def _text(line: bytes) -> str | None:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _not_utf8(line: bytes) -> str:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8 text (bad byte at column {exc.start + 1})"
    return "not UTF-8 text"


def _load_jsonl(path: Path, limit: int) -> list[Record]:
    records = []
    with open_regular(path, "dataset file", mode="rb") as file:
        for number, line in enumerate(_lines(file, limit), start=1):
            where = f"{path}:{number}"
            if line is None:
                records.append(Record(None, where, _too_large(limit)))
            elif (text := _text(line)) is None:
                records.append(Record(None, where, _not_utf8(line)))
            elif text.strip():
                records.append(_parse_jsonl_line(text, where))
    return records


def _parse_jsonl_line(line: str, where: str) -> Record:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        return Record(None, where, f"invalid JSON ({exc.msg})")
    except ValueError:  # an integer past Python's 4,300-digit conversion limit
        return Record(None, where, "a number too long to read (over 4,300 digits)")
    except RecursionError:
        return Record(None, where, "JSON nested too deeply")
    if not isinstance(value, dict):
        return Record(None, where, "a record must be a JSON object")
    return Record(value, where)


def _load_json(path: Path, limit: int) -> list[Record]:
    value = json_records(read_json(path, JSON_LIMIT, "dataset file"))  # the script's rule
    if value is None:
        raise DatasetError(f"{path}: expected a list of records (or one key holding it)")
    return _records_from_rows(value, str(path), "record", limit)


def _load_csv(path: Path, limit: int) -> list[Record]:
    """Rows as csv.DictReader gives them (empty cells are missing fields), each named by the
    physical line it starts on: a quoted cell may span lines."""
    import csv

    records: list[Record] = []
    header, end = None, 0
    with open_regular(path, "dataset file", mode="rb") as file:
        reader = csv.reader(_csv_lines(path, file, limit))
        try:
            for row in reader:
                start, end = end + 1, reader.line_num
                if header is None:
                    header = row
                    continue
                if not row:
                    continue
                where = f"{path}:{start}"  # a blank line is a row [] of its own
                cells = dict(zip(header, row, strict=False))  # extra cells dropped, missing None
                data = {k: v for k, v in cells.items() if v not in (None, "")}
                records.append(_bounded(data, where, limit))
        except csv.Error as exc:
            raise DatasetError(f"{path}:{reader.line_num}: cannot read CSV ({exc})") from None
    return records


def _csv_lines(path: Path, file, limit: int) -> Iterator[str]:
    for number, line in enumerate(_lines(file, limit), start=1):
        if line is None:
            raise DatasetError(f"{path}:{number}: {_too_large(limit)}")
        text = _text(line)
        if text is None:
            raise DatasetError(f"{path}:{number}: {_not_utf8(line)}")
        yield text


def _load_parquet(path: Path, limit: int) -> list[Record]:
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DatasetError(f"{path}: cannot read Parquet ({exc})") from None
    return _records_from_rows(rows, str(path), "record", limit)


def _load_saved(path: Path, limit: int) -> list[Record]:
    """A save_to_disk folder, read as the exported script reads it (the recipe's rule)."""
    from ..recipe.examples import saved_records

    try:
        rows = saved_records(path)
    except ValueError as exc:
        raise DatasetError(str(exc)) from None
    return _records_from_rows(rows, str(path), "record", limit)


def _records_from_rows(rows: list, source: str, unit: str, limit: int) -> list[Record]:
    """Records of a file parsed whole (JSON, Parquet, save_to_disk): the file's own bound
    held it; each record is still bounded before validation and tokenizing."""
    return [
        _bounded(row, f"{source}: {unit} {i + 1}", limit)
        if isinstance(row, dict)
        else Record(None, f"{source}: {unit} {i + 1}", "a record must be an object")
        for i, row in enumerate(rows)
    ]


def _bounded(data: dict, where: str, limit: int) -> Record:
    if _text_bytes(data, limit) > limit:
        return Record(None, where, _too_large(limit))
    return Record(data, where)


def _text_bytes(value: object, limit: int, depth: int = 0) -> int:
    """About how many bytes a record holds (its text as UTF-8, 8 per other value), counted
    only until `limit` is passed."""
    if isinstance(value, str):
        return (
            len(value)
            if len(value) > limit or value.isascii()
            else len(value.encode("utf-8", "surrogatepass"))
        )
    if depth > 32 or not isinstance(value, dict | list | tuple):
        return 8
    total = 0
    for item in value.values() if isinstance(value, dict) else value:
        total += _text_bytes(item, limit - total, depth + 1) + 8
        if total > limit:
            break
    return total
