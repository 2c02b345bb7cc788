"""The name a shipped model is served under: `ollama create NAME`, vLLM's
`--served-model-name NAME` and `--lora-modules NAME=...`, and the GGUF files' names.

One rule for every target, stricter than each: Ollama's types/model/name.go takes ASCII
letters, digits, '_', '.' and '-' only, no '..', at most 128 characters, and compares names
without case; a name that begins with '-' is read as a flag by ollama's and vLLM's command
lines. So: lower-case ASCII letters, digits, '.', '_' and '-', starting with a letter or a
digit, no '..', at most 64 characters.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

from ..common.errors import InputError

NAME_LIMIT = 64
FALLBACK = "model"  # a folder whose name keeps nothing of the rule's characters
VALID = re.compile(rf"(?!.*\.\.)[a-z0-9][a-z0-9._-]{{0,{NAME_LIMIT - 1}}}")
HF_REPO_PREFIX = "models--"  # the Hub's cache: HUB/models--ORG--NAME/snapshots/HASH/


def checked_name(name: str) -> str:
    """A name the user gave (`--name`), or one line saying what the rule allows."""
    if not VALID.fullmatch(name):
        raise InputError(
            f"--name {name!r}: use lower-case ASCII letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit, without '..', at most {NAME_LIMIT} characters"
        )
    return name


def served_name(text: str) -> str:
    """`text` (a folder's name) made to fit the rule: accents dropped (modèle → modele),
    other characters '-', repeated dots one, no '-', '_' or '.' at either end; FALLBACK
    when nothing is left."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    name = re.sub(r"[^a-z0-9._-]", "-", ascii_text.lower())
    name = re.sub(r"\.{2,}", ".", name).strip("._-")
    name = name[:NAME_LIMIT].rstrip("._-")
    return name if VALID.fullmatch(name) else FALLBACK


def hf_cache_repo(folder: Path) -> str | None:
    """'ORG--NAME' when `folder` is a snapshot in the Hugging Face cache; else None. The
    snapshot's own name is a commit hash, which names nothing."""
    folder = Path(os.path.abspath(folder))
    repo = folder.parent.parent.name
    if folder.parent.name == "snapshots" and repo.startswith(HF_REPO_PREFIX):
        return repo[len(HF_REPO_PREFIX) :] or None
    return None
