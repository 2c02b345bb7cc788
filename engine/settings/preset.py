"""YAML presets, read safely and validated against `TrainSettings`; the settings a command
line asks for (preset, `--set`, flags); a run's own settings.yaml.

`--set` parsing and the errors that name file, line and field are settings/overrides.py;
the fingerprint of a run's inputs is settings/inputs.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..common.errors import InputError, SettingsError
from ..common.safe_io import PRESET_LIMIT, read_text, write_text_atomic
from .inputs import INPUTS, check_saved_inputs, input_fingerprints
from .overrides import apply_overrides, assign, kind_of, override_keys, validate_settings
from .schema import TrainSettings

SECRET_WORDS = ("token", "password", "secret", "api_key")


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
        raise SettingsError(
            f"{path}:1: a preset must be a mapping of sections, not {kind_of(data)}"
        )
    recorded = data.pop(INPUTS, None)  # a run's settings.yaml given as a preset: a new run
    data = apply_overrides(data, overrides or [])
    for dotted, value in (values or {}).items():
        assign(data, dotted.split("."), value, dotted)
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
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: merged below
                continue
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


def with_changes(
    settings: TrainSettings, changes: dict[str, object], source: str = "settings"
) -> TrainSettings:
    """A copy with `section.key` values replaced, validated (SettingsError on a bad value)."""
    data = settings.model_dump()
    for dotted, value in changes.items():
        assign(data, dotted.split("."), value, dotted)
    return validate_settings(data, source=source)


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
