"""Dataset formats: detect one from a record's keys, validate every record against it.

Validation collects every record's problem without raising, so the TUI can list them; each
names its record as `file:line`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..common.errors import DatasetError
from ..common.safe_io import encoding_problem
from ..recipe.examples import SHAREGPT_ROLES
from .preference import answer_form, check_paired, check_unpaired
from .reading import Record

CHAT_ROLES = {"system", "user", "assistant"}


@dataclass
class Problem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def detect_format(records: list[Record]) -> str:
    """Format from the first readable record's keys: preference (chosen / rejected),
    unpaired_preference (completion / label), messages, sharegpt, alpaca or text."""
    first = next((r for r in records if r.data is not None), None)
    if first is None:
        raise DatasetError(f"{records[0].where}: {records[0].error}")
    keys = set(first.data)
    if "chosen" in keys or "rejected" in keys:
        return "preference"
    if "label" in keys and "completion" in keys:
        return "unpaired_preference"
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
        "'messages', 'conversations', 'instruction'/'output', 'text', 'chosen'/'rejected' or "
        "'completion'/'label' (or set dataset.format)"
    )


def validate_records(records: list[Record], fmt: str) -> list[Problem]:
    """Every problem of every record, without raising (the TUI lists them)."""
    check = {
        "messages": _check_messages,
        "sharegpt": _check_sharegpt,
        "alpaca": _check_alpaca,
        "text": _check_text,
        "preference": check_paired,
        "unpaired_preference": check_unpaired,
    }[fmt]
    problems, first = [], None  # a preference file's form: the first good record's
    for record in records:
        message = record.error or _unencodable(record.data) or check(record.data)
        if not message and fmt in ("preference", "unpaired_preference"):
            form = answer_form(record.data)
            first = first or (form, record.where)
            if form != first[0]:  # TRL reads a whole file's form off its first record
                message = (
                    f"answers are {form}, the first record's ({first[1]}) {first[0]}: "
                    "a file holds one form"
                )
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
