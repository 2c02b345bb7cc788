"""User datasets: read them, detect the format, validate every record, measure lengths.

1. read the records of the file / folder (JSONL, JSON, CSV, Parquet, save_to_disk),
   remembering each record's line for error messages, with bounded reads: a JSONL or CSV
   line longer than the record limit is skipped unread (never held whole in memory) and
   reported, and no record over the limit reaches validation or a tokenizer;
2. detect the format from the first record's keys (or take `dataset.format`);
3. validate every record; report `file:line: problem` for the first few, with a count;
4. convert and split with the recipe (engine/recipe/examples.py), as the exported script does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..common.errors import DatasetError
from ..common.safe_io import check_regular_file, encoding_problem, open_regular, read_json
from ..recipe.examples import SHAREGPT_ROLES, json_records, split_examples, to_example
from ..settings.schema import DEMO, TrainSettings

CHAT_ROLES = {"system", "user", "assistant"}
MAX_REPORTED = 3
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


@dataclass
class Problem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class Prepared:
    train: object  # datasets.Dataset
    eval: object | None
    format: str
    source: str
    total_records: int


# --- loading ---------------------------------------------------------------------------


def resolve_dataset_path(path: str) -> Path:
    if path == DEMO:
        from ..common.demo import demo_dataset_path

        return demo_dataset_path()
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
    from datasets import DatasetDict, load_from_disk

    try:
        loaded = load_from_disk(str(path))
    except (FileNotFoundError, ValueError):
        raise DatasetError(f"{path}: folder is not a dataset saved with save_to_disk") from None
    if isinstance(loaded, DatasetDict):
        if "train" not in loaded:
            raise DatasetError(f"{path}: saved DatasetDict has no 'train' split")
        loaded = loaded["train"]
    return _records_from_rows(loaded.to_list(), str(path), "record", limit)


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


# --- formats ---------------------------------------------------------------------------


def detect_format(records: list[Record]) -> str:
    """Format from the first readable record's keys: messages, sharegpt, alpaca or text."""
    first = next((r for r in records if r.data is not None), None)
    if first is None:
        raise DatasetError(f"{records[0].where}: {records[0].error}")
    keys = set(first.data)
    if "messages" in keys:
        return "messages"
    if "conversations" in keys:
        return "sharegpt"
    if "instruction" in keys or "output" in keys:
        return "alpaca"
    if "text" in keys:
        return "text"
    raise DatasetError(
        f"{first.where}: cannot tell the format from keys {sorted(keys)}; expected "
        "'messages', 'conversations', 'instruction'/'output' or 'text' (or set dataset.format)"
    )


def validate_records(records: list[Record], fmt: str) -> list[Problem]:
    """Every problem of every record, without raising (the TUI lists them)."""
    check = {
        "messages": _check_messages,
        "sharegpt": _check_sharegpt,
        "alpaca": _check_alpaca,
        "text": _check_text,
    }[fmt]
    problems = []
    for record in records:
        message = record.error or _unencodable(record.data) or check(record.data)
        if message:
            problems.append(Problem(record.where, message))
    return problems


def _unencodable(value: object, depth: int = 0) -> str | None:
    """Text anywhere in a record that cannot be written as UTF-8."""
    if isinstance(value, str):
        problem = encoding_problem(value)
        return f"text {problem}" if problem else None
    if depth > 32:
        return "nested too deeply"
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return next((m for m in (_unencodable(v, depth + 1) for v in items) if m), None)


def _check_text(data: dict) -> str | None:
    return _string_field(data, "text")


def _check_alpaca(data: dict) -> str | None:
    for name in ("instruction", "output"):
        message = _string_field(data, name)
        if message:
            return message
    if data.get("input") is not None and not isinstance(data["input"], str):
        return "field 'input' must be a string"
    return None


def _check_messages(data: dict) -> str | None:
    return _check_turns(data, "messages", "role", "content", CHAT_ROLES)


def _check_sharegpt(data: dict) -> str | None:
    return _check_turns(data, "conversations", "from", "value", set(SHAREGPT_ROLES))


def _check_turns(data: dict, key: str, role_key: str, text_key: str, roles: set) -> str | None:
    turns = data.get(key)
    if turns is None:
        return f"missing field '{key}'"
    if not isinstance(turns, list) or not turns:
        return f"field '{key}' must be a non-empty list"
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            return f"{key}[{i}] must be an object"
        if turn.get(role_key) not in roles:
            return f"{key}[{i}].{role_key}: unknown role {turn.get(role_key)!r}"
        if not isinstance(turn.get(text_key), str):
            return f"{key}[{i}]: missing field '{text_key}'"
    roles_in_order = [SHAREGPT_ROLES.get(t[role_key], t[role_key]) for t in turns]
    if roles_in_order[-1] != "assistant":
        return f"{key}: the last turn must be the assistant's answer"
    if not turns[-1][text_key].strip():  # as an empty Alpaca output: nothing to learn
        return f"{key}[{len(turns) - 1}].{text_key}: the assistant's answer is empty"
    if "user" not in roles_in_order[:-1]:
        return f"{key}: needs a user turn before the assistant's answer"
    return None


def _string_field(data: dict, name: str) -> str | None:
    if name not in data or data[name] is None:
        return f"missing field '{name}'"
    if not isinstance(data[name], str):
        return f"field '{name}' must be a string"
    if not data[name].strip():
        return f"field '{name}' is empty"
    return None


# --- the pipeline ----------------------------------------------------------------------


def read_dataset(settings: TrainSettings) -> tuple[Path, list[Record], str]:
    """Steps 1–2: the records with their locations, and their format (set or detected)."""
    path = resolve_dataset_path(settings.dataset.path)
    records = load_records(path, record_limit(settings))
    fmt = settings.dataset.format
    return path, records, detect_format(records) if fmt == "auto" else fmt


def load_validated(settings: TrainSettings) -> tuple[Path, list[Record], str]:
    """Steps 1–3: records, their format, and a DatasetError listing any problems."""
    path, records, fmt = read_dataset(settings)
    how = (
        "set by dataset.format; 'auto' detects it"
        if settings.dataset.format != "auto"
        else "detected"
    )
    _raise_if(validate_records(records, fmt), f"records read as {fmt} ({how})")
    return path, records, fmt


def prepare_datasets(settings: TrainSettings, eos_token: str) -> Prepared:
    """Steps 1–6: train and eval `datasets.Dataset`s in TRL's format."""
    path, records, fmt = load_validated(settings)
    examples = [to_example(r.data, fmt, eos_token) for r in records]
    train, evaluation = split_examples(
        examples,
        settings.dataset.eval_fraction,
        settings.dataset.max_samples,
        settings.training.seed,
    )
    return Prepared(train, evaluation, fmt, str(path), len(records))


def _raise_if(problems: list[Problem], context: str = "") -> None:
    if not problems:
        return
    shown = "; ".join(str(p) for p in problems[:MAX_REPORTED])
    more = f" ({len(problems)} records with problems)" if len(problems) > MAX_REPORTED else ""
    raise DatasetError(shown + more + (f"; {context}" if context else ""))


# --- statistics and preview ------------------------------------------------------------


@dataclass
class TokenStats:
    count: int
    mean: float
    p50: int
    p95: int
    max: int
    truncated_fraction: float
    histogram: list[tuple[int, int]]  # (bin start, count)
    sample: list[int] = field(default_factory=list)  # up to 512 sorted lengths, evenly spaced


@dataclass
class AnswerCut:
    """Records whose prompt alone fills max_seq_length: (prompt tokens, full tokens) each."""

    records: list[tuple[int, int]]
    total: int

    def __bool__(self) -> bool:
        return bool(self.records)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def shortest_prompt(self) -> int:
        return min(p for p, _ in self.records)

    @property
    def longest_record(self) -> int:
        return max(f for _, f in self.records)


def answer_cut_lengths(
    records: list[Record], fmt: str, limit: int, tokenizer, batch: int = 512
) -> AnswerCut:
    """Measure prompt and full lengths with the tokenizer and chat template TRL will use."""
    rows = [to_example(r.data, fmt, tokenizer.eos_token) for r in records]
    cut = []
    if fmt != "text":
        for start in range(0, len(rows), batch):
            chunk = rows[start : start + batch]
            prompts, fulls = _prompt_and_full_ids(chunk, tokenizer)
            cut += [
                (len(p), len(f)) for p, f in zip(prompts, fulls, strict=True) if len(p) >= limit
            ]
    return AnswerCut(cut, len(rows))


def _prompt_and_full_ids(rows: list[dict], tokenizer) -> tuple[list, list]:
    if isinstance(rows[0]["prompt"], list):
        prompts = [list(r["prompt"]) for r in rows]
        fulls = [list(r["prompt"]) + list(r["completion"]) for r in rows]
        template = tokenizer.apply_chat_template
        return (
            template(prompts, tokenize=True, add_generation_prompt=True, return_dict=True)[
                "input_ids"
            ],
            template(fulls, tokenize=True, return_dict=True)["input_ids"],
        )
    return (
        tokenizer([r["prompt"] for r in rows])["input_ids"],
        tokenizer([r["prompt"] + r["completion"] for r in rows])["input_ids"],
    )


def stats_from_lengths(lengths: list[int], max_seq_length: int, bins: int = 12) -> TokenStats:
    if not lengths:
        return TokenStats(0, 0.0, 0, 0, 0, 0.0, [])
    ordered = sorted(lengths)
    top = ordered[-1]
    width = max(1, -(-top // bins))
    histogram = [(i * width, 0) for i in range(bins)]
    counts = [0] * bins
    for value in ordered:
        counts[min(value // width, bins - 1)] += 1
    histogram = [(start, n) for (start, _), n in zip(histogram, counts, strict=True)]
    return TokenStats(
        count=len(ordered),
        mean=sum(ordered) / len(ordered),
        p50=ordered[len(ordered) // 2],
        p95=ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))],
        max=top,
        truncated_fraction=sum(v > max_seq_length for v in ordered) / len(ordered),
        histogram=histogram,
        sample=_even_sample(ordered),
    )


def _even_sample(ordered: list[int], size: int = 512) -> list[int]:
    """At most `size` evenly spaced values of a sorted list: enough to estimate padding."""
    if len(ordered) <= size:
        return ordered
    return [ordered[i * (len(ordered) - 1) // (size - 1)] for i in range(size)]


def estimate_token_stats(
    records: list[Record], fmt: str, max_seq_length: int, chars_per_token: float = 3.6
) -> TokenStats:
    """Without a tokenizer (planner, first screen): characters / chars_per_token."""
    valid = [r for r in records if r.data is not None and not validate_records([r], fmt)]
    lengths = [
        int(len(json.dumps(to_example(r.data, fmt, ""), ensure_ascii=False)) / chars_per_token)
        for r in valid
    ]
    return stats_from_lengths(lengths, max_seq_length)
