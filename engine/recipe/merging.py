"""The recipe's merge, written once: a LoRA adapter merged into its base, saved as a model
that loads without PEFT, with the tokenizer and the stop tokens.

`finetune-tui merge` (engine/deliver/merge.py) calls these functions with its memory plan
and its proof between them; the exported script copies them verbatim (MERGE = True), as
it copies engine/recipe/model.py. Same rules: plain values in and out, imports inside.
"""

from .model import load_model


def merge_dtype(on_gpu):
    """bf16 where the GPU has it, else fp32: never fp16 (a merged weight can leave its
    range), never the 4/8-bit weights a QLoRA run trained on (rounding them again loses
    the adapter's update); on a CPU fp32, as training there computed."""
    import torch

    return "bf16" if on_gpu and torch.cuda.is_bf16_supported() else "fp32"


def stop_token_ids(tokenizer):
    """EOS and the chat template's end-of-turn token (<|eot_id|>, <|im_end|>,
    <end_of_turn>...): the special token the template writes right after an answer.
    A generation config naming both keeps a merged chat model from talking on."""
    stops = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if not tokenizer.chat_template:
        return stops
    turns = [{"role": "user", "content": "ping"}, {"role": "assistant", "content": "PONG"}]
    try:
        text = tokenizer.apply_chat_template(turns, tokenize=False)
    except Exception:  # noqa: BLE001 - a template's own raise_exception (other roles...)
        return stops
    after = text.rpartition("PONG")[2].lstrip() if "PONG" in text else ""
    ids = tokenizer(after, add_special_tokens=False).input_ids if after else []
    special = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
    if ids and ids[0] in special and ids[0] not in stops:
        stops.append(ids[0])
    return stops


def adapter_on_base(base_path, adapter_path, dtype, device, trust_remote_code):
    """The saved adapter on its base, the base loaded unquantised in `dtype` (whatever
    quantisation training used) on `device`, with its generation cache on."""
    from peft import PeftModel

    base = load_model(base_path, dtype, "sdpa", "none", False, trust_remote_code)
    base.config.use_cache = True
    return PeftModel.from_pretrained(base.to(device), str(adapter_path))


def save_merged(model, tokenizer, path, max_shard_size):
    """merge_and_unload, then the model as sharded safetensors (transformers 5 writes no
    other format), the tokenizer with its chat template, and a generation config whose
    eos_token_id lists the stop tokens. Returns the merged model."""
    merged = model.merge_and_unload()
    generation = merged.generation_config
    generation.eos_token_id = stop_token_ids(tokenizer)
    if tokenizer.pad_token_id is not None:
        generation.pad_token_id = tokenizer.pad_token_id
    merged.save_pretrained(str(path), max_shard_size=max_shard_size)
    tokenizer.save_pretrained(str(path))
    return merged


def merge_adapter(base_path, adapter_path, merged_path, trust_remote_code):
    """After training: the adapter in `adapter_path` merged into the base, saved in
    `merged_path` (loadable with AutoModelForCausalLM alone). The training copy of the
    model must be gone: this loads the base afresh."""
    import gc

    import torch
    from transformers import AutoTokenizer

    gc.collect()
    on_gpu = torch.cuda.is_available()
    if on_gpu:
        torch.cuda.empty_cache()
    model = adapter_on_base(
        base_path,
        adapter_path,
        merge_dtype(on_gpu),
        "cuda" if on_gpu else "cpu",
        trust_remote_code,
    )
    tokenizer = AutoTokenizer.from_pretrained(
        str(adapter_path), trust_remote_code=trust_remote_code
    )
    save_merged(model, tokenizer, merged_path, "5GB")


# What the exported script copies, after the model side.
MERGE_FUNCTIONS = (merge_dtype, stop_token_ids, adapter_on_base, save_merged, merge_adapter)
