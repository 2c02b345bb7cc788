"""A finished or stopped run's model, loaded once for inference, beside its base.

Under LoRA the base answers come from the same model with the adapter switched off
(PEFT's `disable_adapter()`), so trying a run costs one copy of the weights; under full
fine-tuning the run's folder holds the whole tuned model and the base is loaded beside it.
The run's own tokenizer (saved with its adapter) carries the chat template it trained
with. `load_run_model` is public and small: merging reuses it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..common.errors import FinetuneError, InputError
from ..inspect.hardware import GIB
from ..runs.event_text import printable
from ..runs.layout import ADAPTER_DIR
from ..runs.registry import holds_run
from ..runs.status import refuse_while_training
from ..settings.schema import TrainSettings
from .model_folder import load_checked_adapter


class NoRoomError(FinetuneError):
    """The run's weights do not fit the GPU's free memory (checked before loading)."""


@dataclass
class RunModel:
    """The tuned model, its tokenizer, and where its base answers come from."""

    run_dir: Path
    settings: TrainSettings
    model: object  # PeftModel under LoRA, the whole tuned model under full fine-tuning
    tokenizer: object
    device: str  # "cuda" | "cpu"
    data_format: str  # how the run's prompts were written: messages, sharegpt, alpaca, text
    base: object | None = None  # full fine-tuning only: the base model, loaded apart

    @contextmanager
    def base_model(self) -> Iterator[object]:
        """The base: LoRA's own model with the adapter off, or the separate copy."""
        if self.base is not None:
            yield self.base
            return
        with self.model.disable_adapter():
            yield self.model

    def render(self, text: str) -> str:
        """A typed prompt as the run's model read prompts in training."""
        from .generate import render

        return render(self.tokenizer, text, self.data_format)

    def stream(self, prompt: str, base: bool = False, max_new_tokens: int = 0) -> Iterator[str]:
        """The tuned (or base) model's greedy answer to a rendered prompt, as generated."""
        from .generate import MAX_NEW_TOKENS, stream

        limit = max_new_tokens or MAX_NEW_TOKENS
        if not base:
            yield from stream(self.model, self.tokenizer, prompt, limit)
            return
        with self.base_model() as model:
            yield from stream(model, self.tokenizer, prompt, limit)

    def answer(self, prompt: str, base: bool = False, max_new_tokens: int = 0) -> str:
        return "".join(self.stream(prompt, base, max_new_tokens))


def adapter_dir(run_dir: Path) -> Path:
    return Path(run_dir) / ADAPTER_DIR


def check_run_folder(run_dir: Path) -> TrainSettings:
    """The run's settings, or one line saying why this folder has no model to try: not a
    run, still training, or nothing saved yet."""
    run_dir = Path(run_dir)
    name = printable(run_dir)
    if not holds_run(run_dir):
        raise InputError(f"{name}: not a run folder (no settings.yaml)")
    refuse_while_training(run_dir, "try it")
    from ..settings.preset import load_preset

    settings = load_preset(Path(run_dir) / "settings.yaml", saved_run=True)
    full = settings.training.method == "full"
    wanted = "config.json" if full else "adapter_config.json"
    if not (adapter_dir(run_dir) / wanted).is_file():
        raise InputError(
            f"{name}: no {ADAPTER_DIR}/{wanted} yet (a run saves it when it finishes or stops)"
        )
    from .model_folder import check_adapter_folder, check_model_folder

    (check_model_folder if full else check_adapter_folder)(adapter_dir(run_dir))
    return settings


def memory_problem(settings: TrainSettings, copies: int, free_bytes: int, card: str) -> str | None:
    """One line when `copies` of the model's weights (the planner's bytes) exceed the
    card's free memory; None when they fit."""
    from ..inspect.models import inspect_model
    from ..plan.memory import base_weight_bytes

    need = base_weight_bytes(inspect_model(settings.model.name_or_path), settings) * copies
    if need <= free_bytes:
        return None
    what = "the base and the tuned model" if copies > 1 else "the model"
    return (
        f"{settings.model.name_or_path}: {what} need {need / GIB:.1f} GiB of weights, "
        f"{card} has {free_bytes / GIB:.1f} GiB free; free the GPU or use a larger card"
    )


def load_run_model(run_dir: Path) -> RunModel:
    """The run's model on the best device (CUDA when present), ready to generate."""

    run_dir = Path(run_dir)
    settings = check_run_folder(run_dir)
    with _quiet_libraries():
        return _load(run_dir, settings)


def _load(run_dir: Path, settings: TrainSettings) -> RunModel:
    from ..settings.preset import with_changes
    from ..train import loading
    from .held_out import data_format

    device = loading.choose_device(settings)
    full = settings.training.method == "full"
    run_settings, fmt = settings, data_format(settings)
    if device.kind == "cuda":
        import torch

        free = torch.cuda.mem_get_info()[0]
        problem = memory_problem(settings, 2 if full else 1, free, device.name)
        if problem:
            raise NoRoomError(problem)
    elif settings.quantization.mode != "none":  # bitsandbytes needs CUDA; the adapter does not
        settings = with_changes(settings, {"quantization.mode": "none"})
    base_path = loading.resolve_model_path(settings.model.name_or_path)
    attn = loading.attention_implementation(settings, base_path)
    if device.kind == "cpu" and attn == "flash_attention_2":
        attn = "sdpa"
    tokenizer = loading.load_tokenizer(str(adapter_dir(run_dir)), settings)
    base = _ready(loading.load_model(base_path, settings, device, attn), settings, device)
    if full:
        tuned = loading.load_model(str(adapter_dir(run_dir)), settings, device, attn)
        tuned = _ready(tuned, settings, device)
        return RunModel(run_dir, run_settings, tuned, tokenizer, device.kind, fmt, base)
    from peft import PeftModel

    adapter = adapter_dir(run_dir)
    tuned = load_checked_adapter(lambda: PeftModel.from_pretrained(base, str(adapter)), adapter)
    return RunModel(run_dir, run_settings, tuned.eval(), tokenizer, device.kind, fmt)


def _ready(model, settings: TrainSettings, device) -> object:
    """On the device (quantised weights were placed as they loaded), in evaluation mode,
    with the generation cache on (the recipe turns it off for training)."""
    if device.kind == "cuda" and settings.quantization.mode == "none":
        model = model.to("cuda")
    model.config.use_cache = True
    return model.eval()


@contextmanager
def _quiet_libraries() -> Iterator[None]:
    """Loading prints progress bars and notices meant for training logs (transformers'
    weight loading, bitsandbytes' optional CPU kernels): errors only, while it loads."""
    import logging

    from transformers.utils import logging as hf_logging

    level, bnb = hf_logging.get_verbosity(), logging.getLogger("bitsandbytes")
    bnb_level, bars = bnb.level, hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    bnb.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        bnb.setLevel(bnb_level)
        if bars:
            hf_logging.enable_progress_bar()
