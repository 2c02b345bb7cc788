"""Greedy answers from a run's model, the same decoding for the base and the tuned one.

A prompt is rendered the way the run trained: chat records through the run's own chat
template (with the generation prompt), Alpaca records through the Alpaca template, plain
text as it is. Generation stops at EOS or the template's end-of-turn token, or after
`max_new_tokens`. `stream` yields text as it is generated (transformers'
TextIteratorStreamer, for the wizard and the REPL); `answer` returns it whole.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from ..common.errors import InputError, ModelError
from ..recipe.examples import ALPACA_PROMPT_NO_INPUT

MAX_NEW_TOKENS = 128
MAX_NEW_TOKENS_LIMIT = 4096
CHAT_FORMATS = ("messages", "sharegpt")


def render(tokenizer, text: str, data_format: str) -> str:
    """A typed prompt as the model saw prompts in training."""
    if data_format == "alpaca":
        return ALPACA_PROMPT_NO_INPUT.format(instruction=text)
    if data_format == "text":
        return text
    return render_messages(tokenizer, [{"role": "user", "content": text}])


def render_messages(tokenizer, messages: list[dict]) -> str:
    """Chat turns through the run's chat template, ready for the assistant's answer."""
    if not getattr(tokenizer, "chat_template", None):
        raise ModelError("the run's tokenizer has no chat template; it cannot render chat prompts")
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def end_of_turn_id(tokenizer) -> int | None:
    """The special token the chat template closes an assistant turn with (<|eot_id|>,
    <|im_end|>, <end_of_turn>...), read from the template itself by the recipe's rule
    (recipe/merging.py, which a merged model's generation config is written with);
    None without one, or when it is EOS itself."""
    from ..recipe.merging import stop_token_ids

    others = [i for i in stop_token_ids(tokenizer) if i != tokenizer.eos_token_id]
    return others[0] if others else None


def adds_bos(tokenizer) -> bool:
    """Whether the tokenizer puts BOS before a text by itself (a post-processor, as Llama 3's
    and Gemma's do): a runtime that tokenizes by the model's rule adds it too."""
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("").input_ids[:1] == [bos]


def stop_ids(model, tokenizer) -> list[int]:
    """EOS (the tokenizer's and the model's generation config's) and the end-of-turn token."""
    found: list[int] = []
    config = getattr(model, "generation_config", None)
    for value in (tokenizer.eos_token_id, getattr(config, "eos_token_id", None)):
        found += value if isinstance(value, list) else [value]
    found.append(end_of_turn_id(tokenizer))
    return sorted({i for i in found if i is not None})


def generation_config(model, tokenizer, max_new_tokens: int = MAX_NEW_TOKENS):
    """Greedy decoding, bounded, stopping at every stop token."""
    from transformers import GenerationConfig

    if not 1 <= max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
        raise ValueError(f"max_new_tokens must be 1..{MAX_NEW_TOKENS_LIMIT}")
    stops = stop_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=stops,
        pad_token_id=pad,
        use_cache=True,
    )


def stream(model, tokenizer, prompt: str, max_new_tokens: int = MAX_NEW_TOKENS) -> Iterator[str]:
    """The answer to a rendered prompt, piece by piece as it is generated."""
    from transformers import StoppingCriteriaList, TextIteratorStreamer

    inputs = _inputs(model, tokenizer, prompt)
    config = generation_config(model, tokenizer, _new_tokens(model, inputs, max_new_tokens))
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    failed: list[BaseException] = []
    abandoned = threading.Event()  # the caller stopped reading (Ctrl-C, closed screen)

    def generate() -> None:
        try:
            model.generate(
                **inputs,
                generation_config=config,
                streamer=streamer,
                stopping_criteria=StoppingCriteriaList([_StopWhenSet(abandoned)]),
            )
        except BaseException as exc:  # raised again below, in the caller's thread
            failed.append(exc)
            streamer.end()

    thread = threading.Thread(target=generate, name="generate", daemon=True)
    thread.start()
    try:
        yield from streamer
    finally:  # an abandoned answer ends at its next token, not after the whole of it
        abandoned.set()
        thread.join()
    if failed:
        raise failed[0]


class _StopWhenSet:
    """A stopping criterion (transformers calls it after every token) that ends the
    generation once `event` is set."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), device=input_ids.device)


def answer(model, tokenizer, prompt: str, max_new_tokens: int = MAX_NEW_TOKENS) -> str:
    """The whole answer to a rendered prompt, generated in this thread."""
    import torch

    inputs = _inputs(model, tokenizer, prompt)
    config = generation_config(model, tokenizer, _new_tokens(model, inputs, max_new_tokens))
    with torch.no_grad():
        output = model.generate(**inputs, generation_config=config)
    new = output[0, inputs["input_ids"].shape[1] :]
    return tokenizer.decode(new, skip_special_tokens=True)


def _inputs(model, tokenizer, prompt: str) -> dict:
    """The prompt's tokens on the model's device (`adds_special_tokens`' rule); a prompt
    past the model's context is refused: it ran minutes (a 5 MB one grew to 24 GB) for an
    answer the model cannot give, deaf to Ctrl-C inside one long forward pass."""
    device = next(model.parameters()).device
    add = adds_special_tokens(tokenizer, prompt)
    encoded = tokenizer(prompt, return_tensors="pt", add_special_tokens=add, verbose=False)
    length = encoded["input_ids"].shape[1]
    context = _context(model)
    if context is not None and length >= context:
        raise InputError(
            f"the prompt is {length:,} tokens; the model reads at most {context:,} "
            "(its max_position_embeddings)"
        )
    return dict(encoded.to(device))


def _new_tokens(model, inputs: dict, asked: int) -> int:
    """At most what the model's context leaves after the prompt: transformers generated
    past it with a library warning in the middle of the answers."""
    context = _context(model)
    if context is None:
        return asked
    return max(1, min(asked, context - inputs["input_ids"].shape[1]))


def _context(model) -> int | None:
    context = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return context if type(context) is int else None


def adds_special_tokens(tokenizer, prompt: str) -> bool:
    """Whether a rendered prompt gets the tokenizer's BOS: not when the chat template
    already put it there (as the trainer tokenizes a prompt); a GGUF runtime is asked the
    same (gguf_answers.py)."""
    bos = tokenizer.bos_token
    return not (bos and prompt.startswith(bos))
