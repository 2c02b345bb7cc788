"""Kernel backends beyond plain Hugging Face: Liger (layer kernels) and Unsloth.

Liger is applied deliberately to the loaded model and then verified: a patch that silently
did nothing (unsupported architecture, version drift) must not be reported as Liger. TRL
1.15 computes the loss with its own chunked fused LM head and refuses Liger's fused linear
cross-entropy, so Liger contributes its RMSNorm, SwiGLU/GeGLU and RoPE kernels.

Unsloth must be imported before transformers/trl/peft to patch them; `import_unsloth_first`
is called at the very start of a run that uses it.

Liger's patches also reach transformers' module-level classes, so a later model of the same
family in the same process (a second run from the TUI) gets Liger's kernels too; the runner
detects that with the same verification and says so.
"""

from __future__ import annotations

import sys

from ..common.errors import InputError


def apply_liger(model) -> list[str]:
    """Patch the model instance with Liger's layer kernels; return what was patched."""
    from ..recipe.model import keep_kernel_tunings

    keep_kernel_tunings()
    from liger_kernel.transformers.monkey_patch import _apply_liger_kernel_to_instance

    # the families the plan offers Liger for
    from ..inspect.library_tables import liger_model_types

    model_type = model.config.model_type
    if model_type not in (liger_model_types() or ()):
        raise InputError(f"memory.backend: Liger has no kernels for the {model_type} architecture")
    _apply_liger_kernel_to_instance(model=model, fused_linear_cross_entropy=False)
    patched = liger_patched_modules(model)
    if not patched:
        raise InputError(f"memory.backend: Liger patched nothing in this {model_type} model")
    return patched


def liger_patched_modules(model) -> list[str]:
    """Kinds of modules whose forward now comes from liger_kernel (the verification)."""
    kinds = set()
    for module in model.modules():
        forward = getattr(module, "forward", None)
        owner = getattr(getattr(forward, "__func__", forward), "__module__", "") or ""
        if owner.startswith("liger_kernel") or type(module).__module__.startswith("liger_kernel"):
            kinds.add(type(module).__name__)
    return sorted(kinds)


def tunes_on_first_use(model) -> bool:
    """Whether Liger gave the model its fused MoE experts, whose Triton kernels time dozens
    of variants on their first use on a machine before the first step can run."""
    return any(
        getattr(getattr(module, "forward", None), "__qualname__", "").startswith("LigerExperts")
        for module in model.modules()
    )


def liger_leak_warning(leaked: list[str]) -> str:
    """Liger patches transformers' classes for the whole process, not just one model."""
    return (
        f"Liger kernels from an earlier run in this process are still active on "
        f"{', '.join(leaked)}: this run is not plain Hugging Face; restart finetune-tui "
        "for one"
    )


def import_unsloth_first() -> None:
    """Import Unsloth before transformers/trl/peft, or its patches cannot take effect."""
    late = [name for name in ("transformers", "trl", "peft") if name in sys.modules]
    try:
        import unsloth  # noqa: F401
    except ImportError as exc:
        raise InputError(
            f"memory.backend: unsloth cannot be imported ({exc}); "
            "pip install 'finetune-tui[unsloth]' on a CUDA machine"
        ) from None
    if late:
        import warnings

        warnings.warn(
            f"unsloth imported after {', '.join(late)}: some of its patches may be missing",
            stacklevel=2,
        )


def load_unsloth_model(model_path: str, settings, device):
    """Unsloth's FastLanguageModel path: its own loader, LoRA and checkpointing; "auto"
    adapts the same layers as the Hugging Face path, or the run stops before step 1."""
    from ..recipe.model import load_unsloth_model

    lora = settings.lora
    try:
        return load_unsloth_model(
            model_path,
            settings.training.max_seq_length,
            device.compute_dtype,
            settings.quantization.mode,
            "auto" if lora.target_modules == "auto" else list(lora.target_modules),
            lora.r,
            lora.alpha,
            lora.dropout,
            lora.use_rslora,
            settings.memory.gradient_checkpointing,
            settings.training.seed,
        )
    except ValueError as exc:
        if str(exc).startswith("Unsloth adapted"):  # the recipe's own check: before step 1
            raise InputError(f"memory.backend: {exc}") from None
        raise
