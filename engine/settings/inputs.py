"""A run's inputs: the fingerprint of the dataset and the local model folder a run's
settings.yaml records, and the check that a resumed run finds them unchanged.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from ..common.errors import DatasetError, InputError, ModelError, SettingsError
from ..common.safe_io import open_regular
from .schema import DEMO, TrainSettings, is_local_model

INPUTS = "inputs"  # a run's settings.yaml: the fingerprint of what it trained on
CHUNK = 2**20


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
                f"{_describe_fingerprint(now)} now): not the data the run trained on; put "
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
                f"{config}: changed since the run started: not the model the run trained; put "
                "the original back, or start a new run"
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
