"""The tokenizer of the benchmarks' random-weight models: the demo's (one token per byte,
id = byte value), in the layout transformers reads back under the model's type.

    save_byte_tokenizer(folder)   # after the model's config.json is there
"""

from __future__ import annotations

from pathlib import Path


def save_byte_tokenizer(folder: Path) -> None:
    """The demo's tokenizer files, or its byte-level layout where transformers forces a
    class of its own on this model type (qwen2 among the catalog's); a layout no class
    reads back stops the benchmark."""
    from transformers import AutoTokenizer

    from finetune_tui.engine.common.demo import ensure_demo_model

    AutoTokenizer.from_pretrained(ensure_demo_model()).save_pretrained(folder)
    if not reads_back(folder):
        byte_level_tokenizer().save_pretrained(folder)
        if not reads_back(folder):
            raise SystemExit(f"{folder}: no byte tokenizer reads back under this model type")


def reads_back(folder: Path) -> bool:
    """Whether the tokenizer transformers loads for this folder writes text back (it picks
    Qwen2Tokenizer for a qwen2 config whatever the files say, and that class reads the demo's
    byte-fallback files as an empty vocabulary: every record would train as nothing)."""
    from transformers import AutoTokenizer

    from finetune_tui.engine.train.preflight import PROBE_TEXT

    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"]
    return tokenizer.decode(ids) == PROBE_TEXT


def byte_level_tokenizer():
    """The demo's tokenizer (one token per byte, id = byte value, its specials and chat
    template) in GPT-2's byte-level layout, which the BPE classes transformers forces on
    some model types (Qwen2Tokenizer) read as the same tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    from finetune_tui.engine.common import demo

    to_char = bytes_to_unicode()
    backend = Tokenizer(models.BPE(vocab={to_char[b]: b for b in range(256)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(demo.SPECIAL_TOKENS)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=demo.BOS,
        eos_token=demo.EOS,
        pad_token=demo.PAD,
        additional_special_tokens=[demo.SYSTEM, demo.USER, demo.ASSISTANT, *demo.RESERVED],
        chat_template=demo.CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
    )
