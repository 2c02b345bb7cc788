"""Exact-match evaluation: the share of held-out chat records whose greedy answer equals the
expected one, measured before and after training (the demo's proof that it learned)."""

from __future__ import annotations


def exact_match(
    model,
    tokenizer,
    records: list[dict],
    max_new_tokens: int | None = None,
    batch_size: int = 64,
    stop=None,
) -> float:
    """Share of chat records whose greedy answer equals their last (assistant) message.

    The prompt is the chat template over every message but the last, with the generation
    prompt; the answer is decoded up to EOS and compared with the expected one, both
    stripped of surrounding whitespace. By default generation stops a few tokens past the
    longest expected answer: anything longer could not match anyway.
    """
    if not records:
        return 0.0
    import torch
    from transformers import GenerationConfig

    prompts = [
        tokenizer.apply_chat_template(
            record["messages"][:-1], tokenize=False, add_generation_prompt=True
        )
        for record in records
    ]
    expected = [record["messages"][-1]["content"].strip() for record in records]
    if max_new_tokens is None:
        longest = max(len(tokenizer(text, add_special_tokens=False).input_ids) for text in expected)
        max_new_tokens = longest + 4
    eos_id = tokenizer.eos_token_id
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id
    generation = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        use_cache=True,
    )
    device = next(model.parameters()).device
    side, tokenizer.padding_side = tokenizer.padding_side, "left"  # generation appends on the right
    hits = 0
    try:
        for start in range(0, len(prompts), batch_size):
            if stop is not None and stop.is_set():
                from .callbacks import EvaluationStopped

                raise EvaluationStopped
            batch = tokenizer(
                prompts[start : start + batch_size],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,  # the template already has BOS
            ).to(device)
            with torch.no_grad():
                output = model.generate(**batch, generation_config=generation)
            answers = output[:, batch["input_ids"].shape[1] :].tolist()
            for ids, want in zip(answers, expected[start : start + batch_size], strict=True):
                if eos_id in ids:
                    ids = ids[: ids.index(eos_id)]
                hits += tokenizer.decode(ids, skip_special_tokens=True).strip() == want
    finally:
        tokenizer.padding_side = side
    return hits / len(records)


def held_out_records(eval_dataset, limit: int) -> list[dict]:
    """Held-out conversational examples as chat records (prompt + expected answer)."""
    if eval_dataset is None or limit == 0 or "completion" not in eval_dataset.column_names:
        return []
    rows = eval_dataset.select(range(min(limit, len(eval_dataset))))
    return [
        {"messages": list(row["prompt"]) + list(row["completion"])}
        for row in rows
        if isinstance(row["prompt"], list)
    ]


def measure(model, tokenizer, records: list[dict], stop=None) -> float | None:
    """exact_match in evaluation mode, the model's mode restored; None without records.
    A `stop` event set while it generates raises EvaluationStopped between batches."""
    if not records:
        return None
    was_training = model.training
    model.eval()
    try:
        return float(exact_match(model, tokenizer, records, stop=stop))
    finally:
        model.train(was_training)
