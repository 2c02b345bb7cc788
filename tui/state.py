"""What the wizard remembers between screens and between sessions.

`WizardState` holds the one `TrainSettings` every screen edits; `remember` / `recall` keep
the last model, dataset and output in the platform config folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from finetune_tui.engine.settings.schema import TrainSettings

DEMO_PRESET = Path(__file__).resolve().parent.parent / "presets" / "demo.yaml"
# what the user chooses and the recommendation depends on (never the advisor's pick)
INPUT_FIELDS = {"model.name_or_path", "dataset.path"}

REMEMBERED = ("model.name_or_path", "dataset.path", "output.dir")


@dataclass
class WizardState:
    settings: TrainSettings = field(default_factory=TrainSettings)
    simulated_gpu: str | None = None
    simulated_vram: float | None = None
    recommended: TrainSettings | None = None
    reasons: dict[str, str] = field(default_factory=dict)  # why each recommended value
    pinned: set[str] = field(default_factory=set)  # fields the user set: never re-recommended
    last_run_dir: Path | None = None


def config_file() -> Path:
    override = os.environ.get("FINETUNE_TUI_CONFIG_DIR")
    if override:
        return Path(override) / "last.json"
    import platformdirs

    return Path(platformdirs.user_config_dir("finetune-tui")) / "last.json"


def recall() -> dict[str, str]:
    from finetune_tui.engine.common.errors import InputError
    from finetune_tui.engine.common.safe_io import SMALL_LIMIT, read_json

    try:
        data = read_json(config_file(), SMALL_LIMIT, "remembered settings")
    except InputError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if k in REMEMBERED and isinstance(v, str)}


def remember(settings: TrainSettings) -> None:
    values = {
        "model.name_or_path": settings.model.name_or_path,
        "dataset.path": settings.dataset.path,
        "output.dir": settings.output.dir,
    }
    path = config_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({k: v for k, v in values.items() if v}, indent=2))
    except OSError:
        pass  # remembering is a convenience, never a reason to fail
