"""Which memory backends can train a model family: Liger's families, read from the
installed liger-kernel's own table (library_tables), and the families Unsloth trains with
its own kernels.
"""

from __future__ import annotations

from .library_tables import liger_model_types

# Unsloth 2026.10's FastLanguageModel trains these with its own hand-written kernels (its
# loader dispatches them by model_type); every other type goes to FastModel, a generic path
# compiled with torch.compile on the first step.
UNSLOTH_TYPES = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2"}
UNSLOTH_GENERIC_REASON = (
    "Unsloth trains {type} through its generic compiled path (FastModel): measured 17-21 % "
    "above the plan on Gemma-3 and Phi-3, with 30-150 s first steps; use liger or hf"
)
UNSLOTH_GENERIC_MEASURED = {"gemma3_text", "gemma3", "phi3"}


def liger_problem(model_types: list[str]) -> str | None:
    """Why Liger cannot patch a model of these types (the loaded class's type first:
    a multimodal model is patched by its outer type), or None when it can."""
    types = liger_model_types()
    if types is None:
        return "liger-kernel is not installed (or its model table could not be read)"
    if any(t in types for t in model_types):
        return None
    return f"Liger has no kernels for {model_types[0]}"


def unsloth_problem(model_type: str) -> str | None:
    """Why the plan does not offer Unsloth for this family, or None."""
    if model_type in UNSLOTH_TYPES:
        return None
    if model_type in UNSLOTH_GENERIC_MEASURED:
        return UNSLOTH_GENERIC_REASON.format(type=model_type)
    return f"Unsloth is not measured for {model_type} here; use liger or hf"


def supported_backends(model_type: str, loaded_type: str | None) -> dict[str, str | None]:
    """Backend → None if it can train this family, else why not. Liger patches a loaded
    model by its class's type (a multimodal model's outer type), else by its text type."""
    return {
        "hf": None,
        "liger": liger_problem([t for t in (loaded_type, model_type) if t]),
        "unsloth": unsloth_problem(model_type),
    }
