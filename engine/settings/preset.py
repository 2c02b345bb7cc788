"""YAML presets and `--set key=value` overrides, validated against `TrainSettings`.

Errors name the file, the line and the field (`demo.yaml:7: lora.r: must be > 0`) so a
user can fix a preset without reading a traceback.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..common.errors import DatasetError, InputError, ModelError, SettingsError
from ..common.safe_io import PRESET_LIMIT, open_regular, read_text, write_text_atomic
from .schema import DEMO, TrainSettings, is_local_model

SECRET_WORDS = ("token", "password", "secret", "api_key")
INPUTS = "inputs"  # a run's settings.yaml: the fingerprint of what it trained on
CHUNK = 2**20


def load_preset(
    path: str | Path,
    overrides: list[str] | None = None,
    values: dict | None = None,
    saved_run: bool = False,
    absolute: bool = True,
) -> TrainSettings:
    """Read a preset safely, apply overrides, validate; raise SettingsError naming the field.

    `overrides` are `--set key=value` strings (values parsed as YAML scalars); `values`
    are typed `section.key` values from dedicated flags such as `--output`, taken as is.
    `saved_run`: the file is a run's own settings.yaml (tolerates keys older runs wrote);
    its dataset and model folder must still be the ones it recorded (check_saved_inputs).
    A new run's local paths are made absolute, so its settings.yaml names them for good.
    """
    path = Path(path)
    try:
        text = read_text(path, PRESET_LIMIT, "run settings" if saved_run else "preset file")
    except InputError as exc:
        raise SettingsError(str(exc)) from None
    data, root = parse_yaml(text, str(path))
    if saved_run:
        _check_names_its_inputs(data, path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path}:1: a preset must be a mapping of sections, not {_kind(data)}")
    recorded = data.pop(INPUTS, None)  # a run's settings.yaml given as a preset: a new run
    data = apply_overrides(data, overrides or [])
    for dotted, value in (values or {}).items():
        _assign(data, dotted.split("."), value, dotted)
    overridden = override_keys(overrides or []) | set(values or {})
    context = {"saved_run": saved_run}
    settings = validate_settings(data, str(path), root, overridden, context)
    if saved_run:
        check_saved_inputs(settings, recorded, path)
        return settings
    return settings.with_absolute_paths() if absolute else settings


def _check_names_its_inputs(data: object, path: Path) -> None:
    """A run's own settings.yaml names its model and dataset: an empty or partial file is
    one line (and is never rewritten with the defaults)."""
    if data is None:
        raise SettingsError(f"{path}: empty; a run's settings name its model and dataset")
    for section, key in (("model", "name_or_path"), ("dataset", "path")):
        if not isinstance(data, dict) or not isinstance(data.get(section), dict):
            raise SettingsError(f"{path}: no {section} section; not the settings of a run")
        if key not in data[section]:
            raise SettingsError(f"{path}: no {section}.{key}; not the settings of a run")


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, but a key given twice is an error instead of a silent replace."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"'{key}' given twice (lines {seen[key]} and {key_node.start_mark.line + 1})",
                    key_node.start_mark,
                )
            if isinstance(key, str):
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, source: str) -> tuple[Any, Any]:
    """(data, node tree) of one YAML document; any problem is one SettingsError line."""
    loader = _StrictLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise SettingsError(f"{where}: invalid YAML: {problem}") from None
    except RecursionError:
        raise SettingsError(f"{source}: invalid YAML: nested too deeply") from None
    finally:
        loader.dispose()
    return data, root


def preset_fields(path: str | Path) -> set[str]:
    """The `section.key` fields a preset file sets (what its author chose)."""
    text = read_text(Path(path), PRESET_LIMIT, "preset file")
    data, _ = parse_yaml(text, str(path))
    if not isinstance(data, dict):
        return set()
    return {
        f"{section}.{key}"
        for section, values in data.items()
        if isinstance(values, dict) and section != INPUTS
        for key in values
    }


def layout_flag_changes(
    settings: TrainSettings,
    flags: dict[str, tuple[str, object]],
    preset: str | Path | None,
    overrides: list[str],
) -> dict[str, object]:
    """Command-line layout flags (`--gpus`, `--nodes` ...) against the settings: the changes
    the flags make to fields the preset and `--set` left alone; a field they name must
    agree with its flag, or the command stops in one line (one of the two would otherwise
    be ignored without a word).

    `flags`: {"section.key": (flag, value or None when not given)}.
    """
    named = override_keys(overrides) | (preset_fields(preset) if preset else set())
    changes = {}
    for field, (flag, value) in flags.items():
        if value is None or settings.value(field) == value:
            continue
        if field in named:
            where = "--set" if field in override_keys(overrides) else str(preset)
            raise SettingsError(
                f"{flag} {value}: {where} sets {field}: {settings.value(field)}; give one of "
                "them, or the same value in both"
            )
        changes[field] = value
    return changes


def override_keys(overrides: list[str]) -> set[str]:
    """The `section.key` fields that `--set KEY=VALUE` strings name (pinned by the user)."""
    return {item.partition("=")[0].strip() for item in overrides}


def settings_from_overrides(overrides: list[str]) -> TrainSettings:
    """Defaults plus `--set` overrides, for runs started without a preset."""
    return validate_settings(apply_overrides({}, overrides), source="--set")


def settings_from_arguments(
    preset: str | Path | None,
    overrides: list[str],
    values: dict | None = None,
    absolute: bool = True,
) -> TrainSettings:
    """What a command line asks for: the preset (else the defaults), `--set` overrides, then
    `values` taken as they are (paths, never parsed as YAML). Local paths are made absolute
    unless `absolute` is false (a plan shows them as typed; it records nothing)."""
    if preset:  # load_preset makes the paths absolute itself
        return load_preset(preset, overrides, values or {}, absolute=absolute)
    settings = settings_from_overrides(overrides)
    settings = with_changes(settings, values, source="--set") if values else settings
    return settings.with_absolute_paths() if absolute else settings


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
        if not sep or not key:
            raise SettingsError(f"--set {item!r}: expected KEY=VALUE, e.g. lora.r=32")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        _assign(data, key.split("."), value, item)
    return data


def with_changes(
    settings: TrainSettings, changes: dict[str, object], source: str = "settings"
) -> TrainSettings:
    """A copy with `section.key` values replaced, validated (SettingsError on a bad value)."""
    data = settings.model_dump()
    for dotted, value in changes.items():
        _assign(data, dotted.split("."), value, dotted)
    return validate_settings(data, source=source)


def _assign(data: dict, parts: list[str], value: Any, item: str) -> None:
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


def dump_preset(settings: TrainSettings) -> str:
    """The settings as a preset YAML: every field, in schema order, no secrets."""
    data = settings.model_dump(mode="json")
    _check_no_secrets(data)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


def save_preset(settings: TrainSettings, path: str | Path) -> Path:
    """A run's own settings.yaml: local paths absolute, and the fingerprint of its dataset
    and model folder, which `--resume` compares before it trains."""
    path = Path(path)
    settings = settings.with_absolute_paths()
    text = dump_preset(settings)
    recorded = input_fingerprints(settings)
    if recorded:
        text += yaml.safe_dump({INPUTS: recorded}, sort_keys=False, default_flow_style=False)
    write_text_atomic(path, text)
    return path


def _check_no_secrets(data: dict, prefix: str = "") -> None:
    """The schema has no secret fields; this guards against one being added by mistake."""
    for key, value in data.items():
        name = f"{prefix}{key}"
        if any(word in key.lower() for word in SECRET_WORDS):
            raise ValueError(f"{name}: secrets must never be written into a preset")
        if isinstance(value, dict):
            _check_no_secrets(value, name + ".")


# --- a run's inputs ----------------------------------------------------------------------


def input_fingerprints(settings: TrainSettings) -> dict:
    """What a resume must find again: the dataset's size and SHA-256 (streamed, every file
    of a save_to_disk folder) and the local model folder's config.json SHA-256. What cannot
    be read now is left out (the run's own checks name it)."""
    recorded: dict = {}
    if settings.dataset.path != DEMO:
        try:
            recorded["dataset"] = dataset_fingerprint(Path(settings.dataset.path))
        except (OSError, InputError):
            pass
    if is_local_model(settings.model.name_or_path):
        try:
            recorded["model_config"] = _sha256(Path(settings.model.name_or_path) / "config.json")
        except (OSError, InputError):
            pass
    return recorded


def dataset_fingerprint(path: Path) -> dict:
    """{"bytes", "sha256"} of a dataset file, or of a folder's regular files (names and
    contents, in name order; links are not followed)."""
    if not path.is_dir():
        with open_regular(path, "dataset file", mode="rb") as file:
            digest, size = _stream(file, hashlib.sha256())
        return {"bytes": size, "sha256": digest.hexdigest()}
    digest, total = hashlib.sha256(), 0
    for folder, _, files in sorted(os.walk(path)):  # every run walks in the same order
        for name in sorted(files):
            file_path = Path(folder) / name
            if not stat.S_ISREG(os.lstat(file_path).st_mode):
                continue
            digest.update(f"{file_path.relative_to(path)}\0".encode("utf-8", "surrogateescape"))
            with open_regular(file_path, "dataset file", mode="rb") as file:
                digest, size = _stream(file, digest)
            total += size
    return {"bytes": total, "sha256": digest.hexdigest()}


def _sha256(path: Path) -> str:
    with open_regular(path, "model config", mode="rb") as file:
        return _stream(file, hashlib.sha256())[0].hexdigest()


def _stream(file, digest):
    size = 0
    while chunk := file.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest, size


def check_saved_inputs(settings: TrainSettings, recorded: object, source: Path) -> None:
    """A resumed run trains on what it started with, or says why not in one line.

    Its settings.yaml names absolute paths; one written before this rule may hold a
    relative one, which would be read from wherever --resume is typed: refused, since what
    it named cannot be known. A recorded fingerprint that no longer matches stops the run.
    """
    dataset, model = settings.dataset.path, settings.model.name_or_path
    for field, value, local in (
        ("dataset.path", dataset, dataset != DEMO),
        ("model.name_or_path", model, is_local_model(model)),
    ):
        if local and not os.path.isabs(os.path.expanduser(value)):
            raise SettingsError(
                f"{source}: {field}: {value!r} is relative (saved by an older version) and "
                "would be read from the current folder; write its absolute path there to resume"
            )
    recorded = _recorded_fingerprints(recorded, source)
    if dataset != DEMO and "dataset" in recorded:
        try:
            now = dataset_fingerprint(Path(dataset))
        except OSError as exc:
            raise DatasetError(
                f"{dataset}: cannot read the run's dataset: {exc.strerror}"
            ) from None
        except InputError as exc:
            raise DatasetError(f"{exc} (the dataset of {source.parent})") from None
        was = recorded["dataset"]
        if (was.get("bytes"), was.get("sha256")) != (now["bytes"], now["sha256"]):
            raise DatasetError(
                f"{dataset}: changed since the run started ({_describe_fingerprint(was)} then, "
                f"{_describe_fingerprint(now)} now); resuming would train on other data: put "
                "the original back, or start a new run"
            )
    if is_local_model(model) and "model_config" in recorded:
        config = Path(model) / "config.json"
        try:
            now_config = _sha256(config)
        except (OSError, InputError):
            raise ModelError(
                f"{config}: the run's model folder has no readable config.json"
            ) from None
        if now_config != recorded["model_config"]:
            raise ModelError(
                f"{config}: changed since the run started; resuming would train another model: "
                "put the original back, or start a new run"
            )


def _recorded_fingerprints(recorded: object, source: Path) -> dict:
    """The `inputs` section as save_preset writes it; a damaged one is not a reason to
    train unchecked: it is named, and removing it is the user's explicit choice."""
    if recorded is None:
        return {}  # saved before fingerprints existed
    dataset = recorded.get("dataset") if isinstance(recorded, dict) else None
    config = recorded.get("model_config") if isinstance(recorded, dict) else None
    intact = (
        isinstance(recorded, dict)
        and set(recorded) <= {"dataset", "model_config"}
        and (
            dataset is None
            or isinstance(dataset, dict)
            and type(dataset.get("bytes")) is int
            and isinstance(dataset.get("sha256"), str)
        )
        and (config is None or isinstance(config, str))
    )
    if not intact:
        raise SettingsError(
            f"{source}: {INPUTS}: damaged fingerprint of the run's inputs; remove the "
            f"{INPUTS} section to resume without checking them"
        )
    return {key: value for key, value in recorded.items() if value is not None}


def _describe_fingerprint(fingerprint: dict) -> str:
    size, digest = fingerprint.get("bytes"), fingerprint.get("sha256")
    size = f"{size:,} bytes" if isinstance(size, int) else "? bytes"
    return f"{size}, sha256 {str(digest)[:12]}"


# --- error messages ---------------------------------------------------------------------


def _describe(exc: ValidationError, source: str, root: Any, overridden: set[str]) -> str:
    errors = exc.errors()
    first = _located(errors[0])
    loc = [str(p) for p in first["loc"] if _is_field_name(p)]
    field = ".".join(loc) if loc else "(top level)"
    if any(_same_branch(field, key) for key in overridden):
        where = "--set"
    else:
        line = _line_of(root, first["loc"])
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
        return f"must be a section (mapping), got {_kind(error.get('input'))}"
    if kind == "finite_number":
        return "must be a finite number"
    if kind in {"too_short", "string_too_short"}:
        return "must not be empty"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"])).split(": ", 1)[-1]
    return error["msg"][0].lower() + error["msg"][1:]


def _suggestion(loc: list[str]) -> str:
    """Closest valid key for a typo, from the schema itself."""
    model: type[BaseModel] = TrainSettings
    for part in loc[:-1]:
        info = model.model_fields.get(part)
        if info is None or not isinstance(info.annotation, type):
            return ""
        model = info.annotation
    close = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _line_of(root: Any, loc: tuple) -> int | None:
    """1-based line of the deepest YAML node on `loc` (the key itself when it exists)."""
    node, line = root, None
    for part in (p for p in loc if _is_field_name(p)):
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


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )
