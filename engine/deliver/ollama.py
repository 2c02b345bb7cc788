"""An Ollama Modelfile whose TEMPLATE, stops and SYSTEM come from the model's own chat template.

The Jinja template is never translated by hand: it is rendered by the tokenizer on
conversations whose contents are unique sentinels, and the rendered text around the
sentinels becomes Ollama's Go template (`.System`, `.Prompt`, `.Response`). Ollama renders
the last turn only up to `{{ .Response }}`, so what follows it is the end-of-turn text the
template writes after an answer, which also becomes a stop.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..common.errors import ModelError

SYSTEM = "\u2063SYSTEM-7f3a1c\u2063"  # invisible separators: no template writes these itself
USER = "\u2063USER-52be90\u2063"
ANSWER = "\u2063ANSWER-c4d815\u2063"


@dataclass
class OllamaTemplate:
    template: str  # Go template for Ollama's TEMPLATE
    stops: list[str]
    system: str | None  # the template's default system prompt, if it writes one


def ollama_template(tokenizer) -> OllamaTemplate:
    """Ollama's TEMPLATE, stops and default SYSTEM, read off the rendered chat template."""
    prompt = _render(tokenizer, [("user", USER)], generation=True)
    before_user, after_user = _split(prompt, USER, "a user turn")
    full = _render(tokenizer, [("user", USER), ("assistant", ANSWER)], generation=False)
    if not full.startswith(before_user + USER):
        raise ModelError("chat template: an answered turn does not begin like the prompt")
    _, end_of_turn = _split(full, ANSWER, "an assistant turn")
    with_system = _render_or_none(tokenizer, [("system", SYSTEM), ("user", USER)])
    system_head, default = before_user, None
    if with_system is not None:
        head, system_tail = _split(with_system, SYSTEM, "a system turn")
        between, tail = _split(system_tail, USER, "a user turn after the system turn")
        if tail != after_user:
            raise ModelError("chat template: the generation prompt differs with a system turn")
        system_head = (
            f"{{{{ if .System }}}}{_go(head)}{{{{ .System }}}}{_go(between)}"
            f"{{{{ else }}}}{_go(before_user)}{{{{ end }}}}"
        )
        # a template that writes its own system prompt when none is given: that is SYSTEM
        if before_user.startswith(head) and before_user.endswith(between):
            default = before_user[len(head) : len(before_user) - len(between)] or None
            if default is not None:
                system_head = f"{_go(head)}{{{{ .System }}}}{_go(between)}"
    else:
        system_head = _go(before_user)
    template = (
        f"{system_head}{{{{ .Prompt }}}}{_go(after_user)}{{{{ .Response }}}}{_go(end_of_turn)}"
    )
    return OllamaTemplate(template, _stops(tokenizer, end_of_turn), default)


def _render(tokenizer, turns: list[tuple[str, str]], generation: bool) -> str:
    messages = [{"role": role, "content": content} for role, content in turns]
    try:
        text = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation
        )
    except ValueError as exc:  # no chat template at all
        raise ModelError(f"chat template: {str(exc).splitlines()[0]}") from None
    return _without_bos(tokenizer, text)


def _without_bos(tokenizer, text: str) -> str:
    """The rendering less the BOS a tokenizer adds by itself. Ollama tokenizes the filled
    TEMPLATE by the model's own rule, BOS included where the tokenizer adds one (Llama 3,
    Gemma): a TEMPLATE that writes it too would begin every prompt with two."""
    from .generate import adds_bos

    bos = tokenizer.bos_token
    return text[len(bos) :] if bos and text.startswith(bos) and adds_bos(tokenizer) else text


def _render_or_none(tokenizer, turns: list[tuple[str, str]]) -> str | None:
    """The rendering, or None where the template refuses a system turn (it raises)."""
    from jinja2 import TemplateError

    try:
        return _render(tokenizer, turns, generation=True)
    except TemplateError:
        return None


def _split(text: str, sentinel: str, what: str) -> tuple[str, str]:
    if text.count(sentinel) != 1:
        raise ModelError(
            f"chat template: does not write the content of {what} verbatim once; "
            "write the Modelfile's TEMPLATE by hand"
        )
    before, after = text.split(sentinel)
    return before, after


def _go(text: str) -> str:
    """Literal text inside a Go template: `{{` would open an action."""
    return text.replace("{{", '{{ "{{" }}')


def _stops(tokenizer, end_of_turn: str) -> list[str]:
    """The end-of-turn text (its first line: `<|im_end|>` of `<|im_end|>\\n`) and the EOS."""
    stops = []
    first = end_of_turn.strip().splitlines()[0] if end_of_turn.strip() else ""
    for stop in (first, tokenizer.eos_token):
        if stop and stop not in stops:
            stops.append(stop)
    return stops


def modelfile_text(source: str, parts: OllamaTemplate) -> str:
    """The Modelfile: FROM, TEMPLATE, each stop, and SYSTEM when the template has one."""
    for text in (parts.template, parts.system or ""):
        if '"""' in text:
            raise ModelError('chat template: writes """, which a Modelfile cannot quote')
    lines = [f"FROM {_quoted(source)}", f'TEMPLATE """{parts.template}"""']
    lines += [f"PARAMETER stop {_quoted(stop, always=True)}" for stop in parts.stops]
    if parts.system:
        lines.append(f'SYSTEM """{parts.system}"""')
    return "\n".join(lines) + "\n"


def _quoted(value: str, always: bool = False) -> str:
    """A Modelfile argument, in double quotes where it holds spaces; a quote, backslash or
    line break is refused rather than escaped in a way Ollama may read differently."""
    if any(c in value for c in '"\\\n'):
        raise ModelError(f"{value!r}: a quote, backslash or line break cannot stand in a Modelfile")
    plain = value and not any(c.isspace() or c == "#" for c in value)
    return value if plain and not always else f'"{value}"'
