"""Preference records: TRL's paired (`prompt` / `chosen` / `rejected`) and unpaired (KTO's
`prompt` / `completion` / `label`) formats, as strings or as chat message lists.

Each check returns the record's first problem (naming the field) or None; formats.py adds
the `file:line`. TRL's trainers read these fields as they are: a conversational record
without `prompt` has its prompt taken from the turns chosen and rejected share.
"""

from __future__ import annotations

from ..recipe.examples import kto_label

CHAT_ROLES = ("system", "user", "assistant")


def check_paired(data: dict) -> str | None:
    """`chosen` and `rejected` (strings, or message lists) and the `prompt` they answer."""
    chosen, rejected = data.get("chosen"), data.get("rejected")
    for name in ("chosen", "rejected"):
        if data.get(name) is None:
            return f"missing field '{name}'"
        if problem := _answer_type(data, name):
            return problem
    if isinstance(chosen, str) != isinstance(rejected, str):
        return "fields 'chosen' and 'rejected' must both be strings or both message lists"
    if chosen == rejected:
        return "fields 'chosen' and 'rejected' are the same: nothing to prefer"
    if isinstance(chosen, str):
        return _string_answers(data, ("chosen", "rejected"))
    if data.get("prompt") is None:
        return _implicit_prompt(chosen, rejected)
    return _explicit_prompt(data, ("chosen", "rejected"))


def check_unpaired(data: dict) -> str | None:
    """A `completion` of the `prompt` and its `label`: true (desirable) or false."""
    if "label" not in data:
        return "missing field 'label'"
    if kto_label(data["label"]) is None:
        return f"field 'label' must be true or false (or 1 / 0), not {data['label']!r:.40}"
    if data.get("completion") is None:
        return "missing field 'completion'"
    if problem := _answer_type(data, "completion"):
        return problem
    if isinstance(data["completion"], str):
        return _string_answers(data, ("completion",))
    return _explicit_prompt(data, ("completion",))


def _answer_type(data: dict, name: str) -> str | None:
    """An answer is a string or a list of messages (a number was reported as the prompt's
    fault)."""
    if isinstance(data[name], str | list):
        return None
    return f"field '{name}' must be a string or a list of messages, not {type(data[name]).__name__}"


def answer_form(data: dict) -> str:
    """How a valid record's answers are written: "strings" or "chat messages"."""
    answer = data.get("chosen", data.get("completion"))
    return "strings" if isinstance(answer, str) else "chat messages"


def _string_answers(data: dict, answers: tuple[str, ...]) -> str | None:
    for name in ("prompt", *answers):
        value = data.get(name)
        if value is None:
            return f"missing field '{name}'"
        if not isinstance(value, str):
            return f"field '{name}' must be a string, as '{answers[0]}' is"
        if name != "prompt" and not value.strip():
            return f"field '{name}' is empty"
    return None


def _explicit_prompt(data: dict, answers: tuple[str, ...]) -> str | None:
    """A prompt's message list ending with the user, each answer the assistant's turn."""
    problem = _turns(data.get("prompt"), "prompt")
    if problem:
        return problem
    if data["prompt"][-1]["role"] != "user":
        return "prompt: the last turn must be the user's"
    for name in answers:
        problem = _turns(data.get(name), name)
        if problem:
            return problem
        if any(turn["role"] != "assistant" for turn in data[name]):
            return f"{name}: holds the assistant's answer only (the question is in 'prompt')"
        if not "".join(turn["content"] for turn in data[name]).strip():
            return f"{name}: the assistant's answer is empty"
    return None


def _implicit_prompt(chosen: list, rejected: list) -> str | None:
    """Without `prompt`, two whole conversations that differ only in the last answer."""
    for name, turns in (("chosen", chosen), ("rejected", rejected)):
        problem = _turns(turns, name)
        if problem:
            return problem
        if turns[-1]["role"] != "assistant" or len(turns) < 2:
            return f"{name}: without 'prompt', a conversation ending with the assistant's answer"
        if not turns[-1]["content"].strip():
            return f"{name}[{len(turns) - 1}]: the assistant's answer is empty"
    if chosen[:-1] != rejected[:-1]:
        return "chosen and rejected: without 'prompt', they must share every turn but the last"
    if not any(turn["role"] == "user" for turn in chosen[:-1]):
        return "chosen: needs a user turn before the assistant's answer"
    return None


def _turns(turns: object, name: str) -> str | None:
    if not isinstance(turns, list) or not turns:
        return f"field '{name}' must be a non-empty list of messages (or a string)"
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            return f"{name}[{i}] must be an object"
        if turn.get("role") not in CHAT_ROLES:
            return f"{name}[{i}].role: unknown role {turn.get('role')!r}"
        if not isinstance(turn.get("content"), str):
            return f"{name}[{i}]: missing field 'content'"
    return None
