"""Checkpoints that store their weights quantised (config.json's `quantization_config`):
what they train as, read from the config and from what transformers publishes.

transformers keeps a stored quantisation whatever `quantization_config` the run passes:
bitsandbytes 4/8-bit weights load 4/8-bit (LoRA trains on them, as QLoRA); MXFP4, FP8 and
the other formats whose loading config takes `dequantize` load as 16-bit weights when asked
to (their own kernels train nothing); any other format trains only through its own
library's kernels, which finetune-tui neither installs nor plans. A bitsandbytes config
passed for a checkpoint stored in another format is a load error, so 4/8-bit is ruled out
there: the plan must not pick what the run cannot load.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..common.errors import ModelError
from ..settings.options import QUANTIZATIONS
from .library_tables import dequantizing_formats


class StoredFormatError(ModelError):
    """Weights stored in a format no run here trains: refused even where the family's
    memory cannot be planned (preflight lets the loader judge those)."""


@dataclass(frozen=True)
class StoredQuantization:
    method: str  # as config.json names it: "bitsandbytes", "mxfp4", "fp8", ...
    loads_as: str  # the quantization.mode its weights train in: "nf4", "fp4", "8bit", "none"

    @property
    def bitsandbytes(self) -> bool:
        return self.method == "bitsandbytes"


def stored_quantization(name: str, config: dict) -> StoredQuantization | None:
    """The checkpoint's stored quantisation, None for 16/32-bit weights; a format no run
    here can train is one line naming it."""
    stored = config.get("quantization_config")
    if stored is None:
        return None
    where = f"{name}: config.json: quantization_config"
    if not isinstance(stored, dict):
        raise ModelError(f"{where}: must be a JSON object, not {type(stored).__name__}")
    if stored.get("load_in_4bit") is True:
        mode = stored.get("bnb_4bit_quant_type", "fp4")  # BitsAndBytesConfig's default
        if mode not in ("nf4", "fp4"):
            raise ModelError(f"{where}: bnb_4bit_quant_type {mode!r} is not nf4 or fp4")
        return StoredQuantization("bitsandbytes", mode)
    if stored.get("load_in_8bit") is True:
        return StoredQuantization("bitsandbytes", "8bit")
    method = stored.get("quant_method")
    if not isinstance(method, str):
        raise ModelError(f"{where}: no quant_method naming how the weights are stored")
    if method == "bitsandbytes":
        raise ModelError(f"{where}: bitsandbytes, but neither load_in_4bit nor load_in_8bit")
    if dequantizes_on_load(method):
        return StoredQuantization(method, "none")
    raise StoredFormatError(
        f"{where}: weights stored as {method}, which train only through that format's own "
        "kernels; finetune-tui plans and trains 16-bit and bitsandbytes checkpoints: use the "
        "unquantised model (quantization.mode nf4 quantises it as it loads)"
    )


def dequantizes_on_load(method: str) -> bool:
    """Whether transformers' loading config for this stored format takes `dequantize`
    (MXFP4, FP8): the weights then load as 16-bit ones, as the recipe asks. Read from its
    source (library_tables): plan stays torch-free."""
    return method in dequantizing_formats()


def ruled_out_by_storage(stored: StoredQuantization | None, architecture: str) -> dict[str, str]:
    """Option value → why the stored weights rule it out (candidates.ruled_out_by_model)."""
    if stored is None:
        return {}
    if stored.bitsandbytes:
        kept = f"{architecture}'s weights are stored {stored.loads_as} by bitsandbytes"
        out = {
            f"quantization.mode={mode}": f"{kept}: they load {stored.loads_as} whatever is asked"
            for mode in QUANTIZATIONS
            if mode != stored.loads_as
        }
        out["training.method=full"] = f"{kept}: quantised weights take no gradient (train LoRA)"
        return out
    why = (
        f"{architecture}'s weights are stored as {stored.method} and load dequantised to "
        "16-bit; bitsandbytes cannot quantise them again (a bitsandbytes copy of the model "
        "trains in 4-bit)"
    )
    return {f"quantization.mode={mode}": why for mode in QUANTIZATIONS if mode != "none"}
