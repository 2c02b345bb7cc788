"""The embedded default: a tiny random-weight Llama, a one-token-per-byte tokenizer and a small
task.

Nothing here touches the network. `ensure_demo_model()` builds the model once from a fixed
seed and caches it; `demo_dataset_path()` is the shipped JSONL (regenerate it with
`benchmarks/make_demo_data.py`); `engine/train/exact_match.py` greedy-answers held-out chat
records so a run can show the task being learned, not only the loss falling.

The model is deliberately small (4 layers, hidden 128, ~0.8M parameters): on 2 CPU cores
a wider one (hidden 256, 3.3M) took three times as long per step and had learned far less
after a minute. Tuning numbers are in presets/demo.yaml.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

CACHE_ENV = "FINETUNE_TUI_CACHE_DIR"
MODEL_DIR_PREFIX = "demo-model-v2"  # bump when the build code changes in a way not fingerprinted
MODEL_SEED = 1234

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
SYSTEM, USER, ASSISTANT = "<|system|>", "<|user|>", "<|assistant|>"
RESERVED = ["<|reserved_0|>", "<|reserved_1|>"]  # fill the vocabulary to the model's rows
SPECIAL_TOKENS = [PAD, BOS, EOS, SYSTEM, USER, ASSISTANT, *RESERVED]  # ids 256.. in this order
BYTE_TOKENS = 256  # token id == byte value
VOCAB_SIZE = 264  # 256 bytes + 8 specials: a multiple of 8, and every row a token
SPACE = "\u2581"  # SentencePiece's mark for a space: the name of token 32

# Every turn is `<|role|>content<|eos|>`; the model learns to end its answer with EOS.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('demo chat roles are system, user and assistant') }}"
    "{% endif %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + eos_token }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def demo_model_config() -> dict:
    """LlamaConfig fields of the demo model, as plain data (no torch needed to read them)."""
    hidden = 128
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": VOCAB_SIZE,
        "hidden_size": hidden,
        "intermediate_size": 344,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "head_dim": 32,
        "hidden_act": "silu",
        "max_position_embeddings": 512,
        # 1/sqrt(hidden) rather than Llama's 0.02: with a frozen random output head, 0.02 caps
        # the logits near +-5 and LoRA cannot make the model confident (measured: no learning).
        "initializer_range": round(hidden**-0.5, 4),
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "attention_bias": False,
        "mlp_bias": False,
        # Tied: a frozen head that matches the embeddings makes copying a token easy to learn.
        "tie_word_embeddings": True,
        "bos_token_id": BYTE_TOKENS + SPECIAL_TOKENS.index(BOS),
        "eos_token_id": BYTE_TOKENS + SPECIAL_TOKENS.index(EOS),
        "pad_token_id": BYTE_TOKENS + SPECIAL_TOKENS.index(PAD),
        "dtype": "float32",
    }


def cache_root() -> Path:
    """`$FINETUNE_TUI_CACHE_DIR`, else the platform's user cache folder for finetune-tui."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("finetune-tui"))


def demo_model_dir() -> Path:
    """Where the demo model is (or will be) cached.

    The folder name carries a fingerprint of everything that defines the model, so a
    changed config, template or seed builds a new folder instead of reusing a stale one.
    """
    recipe = {
        "config": demo_model_config(),
        "special_tokens": SPECIAL_TOKENS,
        "chat_template": CHAT_TEMPLATE,
        "seed": MODEL_SEED,
    }
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]
    return cache_root() / f"{MODEL_DIR_PREFIX}-{digest}"


def built_demo_model() -> Path | None:
    """The demo model folder if it is built already (never builds it)."""
    target = demo_model_dir()
    return target if _complete(target) else None


def ensure_demo_model() -> Path:
    """The demo model folder, built on first use (random weights, fixed seed) and cached.

    The build goes to a private temporary folder that is renamed into place in one step,
    so concurrent processes never see a half-written model; the loser of a race drops its
    copy and uses the winner's (both are identical). A cache that cannot be written (a
    read-only home) falls back to a private folder in the temporary directory; when that
    fails too, the error is one line naming both and FINETUNE_TUI_CACHE_DIR.
    """
    target = demo_model_dir()
    if _complete(target):
        return target
    try:
        return _build_into(target)
    except OSError as exc:
        problem = exc.strerror or str(exc)
    try:
        fallback = _private_temp_cache() / target.name
        return fallback if _complete(fallback) else _build_into(fallback)
    except OSError as exc:
        from .errors import ModelError

        raise ModelError(
            f"{target.parent}: cannot build the demo model there ({problem}) nor in the "
            f"temporary folder ({exc.strerror or exc}); set {CACHE_ENV} to a writable folder"
        ) from None


def _build_into(target: Path) -> Path:
    if _complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        os.chmod(staging, 0o755)  # mkdtemp makes it private; a cache folder need not be
        _build_model(staging)
        _build_tokenizer().save_pretrained(str(staging))
        try:
            os.rename(staging, target)
        except OSError:
            if not _complete(target):  # not a lost race: a real error
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _private_temp_cache() -> Path:
    """$TMPDIR/finetune-tui-UID: made by this user, for this user only; a folder of that
    name that someone else made or can write to is not used."""
    folder = Path(tempfile.gettempdir()) / f"finetune-tui-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise OSError(errno.EPERM, f"{folder} is not a private folder of this user")
    return folder


def _complete(folder: Path) -> bool:
    return all(
        (folder / name).is_file()
        for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
    )


def _build_model(folder: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    fields = demo_model_config()
    fields.pop("model_type")
    dtype = getattr(torch, fields.pop("dtype"))
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG state alone
        torch.manual_seed(MODEL_SEED)
        model = LlamaForCausalLM(LlamaConfig(**fields)).to(dtype)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a one-off build; its progress bar would be noise
    try:
        model.save_pretrained(str(folder), safe_serialization=True)
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def _build_tokenizer():
    """One token per byte (id == byte value) plus the chat specials, written the way
    SentencePiece byte-fallback tokenizers are (Llama 2's tokenizer.json): tokens `<0xNN>`,
    a space is `▁` (token 32), no merges, no space put before a text. llama.cpp's converter
    knows this layout (a byte-level BPE it knows only by a hash of its merges), so the demo
    and its fine-tunes become GGUF files that tokenize every text as this tokenizer does."""
    from tokenizers import Tokenizer, decoders, models, normalizers
    from transformers import PreTrainedTokenizerFast

    vocab = {SPACE if byte == 32 else f"<0x{byte:02X}>": byte for byte in range(BYTE_TOKENS)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], byte_fallback=True))
    backend.normalizer = normalizers.Replace(" ", SPACE)
    backend.decoder = decoders.Sequence(
        [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    backend.add_special_tokens(SPECIAL_TOKENS)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[SYSTEM, USER, ASSISTANT, *RESERVED],
        chat_template=CHAT_TEMPLATE,
        model_max_length=demo_model_config()["max_position_embeddings"],
        clean_up_tokenization_spaces=False,
    )


# The same task for each objective (benchmarks/make_demo_data.py writes all three): chat
# `messages`; prompt / chosen / rejected pairs; KTO's prompt / completion / label.
DEMO_DATASETS = {
    "sft": "demo.jsonl",
    "dpo": "demo_preference.jsonl",
    "orpo": "demo_preference.jsonl",
    "kto": "demo_kto.jsonl",
}


def demo_dataset_path(objective: str = "sft") -> Path:
    """The shipped demo dataset for a training objective (see benchmarks/make_demo_data.py)."""
    return Path(__file__).parent / "assets" / DEMO_DATASETS[objective]
