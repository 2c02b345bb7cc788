"""Where finetune-tui keeps its own files on this machine: the data folder (runs,
the run registry, measured memory); FINETUNE_TUI_DATA_DIR overrides it."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """User data folder (runs live under it); FINETUNE_TUI_DATA_DIR overrides for tests."""
    override = os.environ.get("FINETUNE_TUI_DATA_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_data_dir("finetune-tui"))
