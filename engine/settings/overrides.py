"""`--set section.key=value` overrides, and validation whose error names where the bad
value came from: the file and line (`demo.yaml:7: lora.r: must be > 0`), or `--set` when an
override caused it, so a user can fix a preset without reading a traceback.
"""

from __future__ import annotations

import difflib
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..common.errors import SettingsError
from .schema import TrainSettings


def override_keys(overrides: list[str]) -> set[str]:
    """The `section.key` fields that `--set KEY=VALUE` strings name (pinned by the user)."""
    return {item.partition("=")[0].strip() for item in overrides}


def validate_settings(
    data: dict,
    source: str = "settings",
    root: Any = None,
    overridden: set[str] = frozenset(),
    context: dict | None = None,
) -> TrainSettings:
    """Validate; an error names the file and line, or `--set` when an override caused it."""
    try:
        return TrainSettings.model_validate(data, context=context)
    except ValidationError as exc:
        raise SettingsError(_describe(exc, source, root, overridden)) from None


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `section.key=value` strings (values parsed as YAML scalars) to a nested dict."""
    data = dict(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or not all(part.strip() for part in key.split(".")):
            raise SettingsError(f"--set {item!r}: expected KEY=VALUE, e.g. lora.r=32")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        assign(data, key.split("."), value, item)
    return data


def assign(data: dict, parts: list[str], value: Any, item: str) -> None:
    """Set `parts` (a dotted key's parts) in a nested dict, copying the sections on the way."""
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise SettingsError(f"--set {item}: {'.'.join(parts[: i + 1])} is not a section")
        else:
            child = node[part] = dict(child)
        node = child
    node[parts[-1]] = value


def _describe(exc: ValidationError, source: str, root: Any, overridden: set[str]) -> str:
    errors = exc.errors()
    first = _located(errors[0])
    loc = _field_path(first)
    field = ".".join(loc) if loc else "(top level)"
    if any(_same_branch(field, key) for key in overridden):
        where = "--set"
    else:
        line = _line_of(root, loc)
        where = f"{source}:{line}" if line else source
    message = _message(first, loc)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {field}: {message}{more}"


def _located(error: dict) -> dict:
    """A check across fields (a model validator) names its field first, `section.key: why`:
    take that as the error's location, so the message names the field and its line."""
    text = str(error.get("ctx", {}).get("error", ""))
    field, sep, _ = text.partition(": ")
    if error["loc"] or error["type"] != "value_error" or not sep or "." not in field:
        return error
    parts = field.split(".")
    if not all(p.isidentifier() for p in parts):
        return error
    return {**error, "loc": tuple(parts)}  # _message drops the field from the text


def _field_path(error: dict) -> list[str]:
    """The error's location as keys: pydantic's union-branch tags (`list[str]`) left out,
    but an unknown key kept whatever it is spelled (`learning-rate`: the typo to name)."""
    loc = [str(p) for p in error["loc"]]
    if error["type"] == "extra_forbidden" and loc:
        return [p for p in loc[:-1] if _is_field_name(p)] + [loc[-1]]
    return [p for p in loc if _is_field_name(p)]


def _is_field_name(part: object) -> bool:
    """Loc parts that name a field, not pydantic's union-branch tags like `list[str]`."""
    return isinstance(part, int) or str(part).isidentifier()


def _same_branch(field: str, key: str) -> bool:
    """An error on `field` was caused by the override `key` (either may be deeper)."""
    return field == key or field.startswith(key + ".") or key.startswith(field + ".")


def _message(error: dict, loc: list[str]) -> str:
    kind = error["type"]
    ctx = error.get("ctx", {})
    if kind == "extra_forbidden":
        return "unknown key" + _suggestion(loc)
    bounds = {
        "greater_than": "must be > {gt}",
        "greater_than_equal": "must be >= {ge}",
        "less_than": "must be < {lt}",
        "less_than_equal": "must be <= {le}",
    }
    if kind in bounds:
        return bounds[kind].format(**ctx)
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '')}"
    if kind in {"int_parsing", "int_type", "int_from_float"}:
        return f"must be an integer, got {error.get('input')!r}"
    if kind in {"float_parsing", "float_type"}:
        return f"must be a number, got {error.get('input')!r}"
    if kind in {"bool_parsing", "bool_type"}:
        return f"must be true or false, got {error.get('input')!r}"
    if kind in {"model_type", "model_attributes_type", "dict_type"}:
        return f"must be a section (mapping), got {kind_of(error.get('input'))}"
    if kind == "finite_number":
        return "must be a finite number"
    if kind in {"too_short", "string_too_short"}:
        return "must not be empty"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"])).split(": ", 1)[-1]
    return error["msg"][0].lower() + error["msg"][1:]


def _suggestion(loc: list[str]) -> str:
    """Closest valid key for a typo, from the schema itself."""
    if not loc:
        return ""
    model: type[BaseModel] = TrainSettings
    for part in loc[:-1]:
        info = model.model_fields.get(part)
        if info is None or not isinstance(info.annotation, type):
            return ""
        model = info.annotation
    close = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _line_of(root: Any, loc: list[str]) -> int | None:
    """1-based line of the deepest YAML node on `loc` (the key itself when it exists)."""
    node, line = root, None
    for part in loc:
        if not isinstance(node, yaml.MappingNode):
            break
        for key_node, value_node in node.value:
            if key_node.value == str(part):
                line = key_node.start_mark.line + 1
                node = value_node
                break
        else:
            line = node.start_mark.line + 1 if line is None else line
            break
    return line


def kind_of(value: Any) -> str:
    """What a YAML value is, in a message's words ("a list")."""
    return {list: "a list", str: "a string", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )
