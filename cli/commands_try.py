"""`finetune-tui compare RUN_DIR` and `finetune-tui chat RUN_DIR`: a run's model beside its base.

compare writes one JSON line per prompt ({prompt, base, tuned, expected}); chat is a
plain REPL that reads lines (a terminal, SSH or a pipe) and prints both answers. Both load
the model once (engine/deliver/run_model.py); neither writes into the run folder.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from finetune_tui.engine.common.errors import InputError, OutputExistsError
from finetune_tui.stop_signals import Terminated

PROMPTS_LIMIT = 16 * 2**20
QUIT = "/quit"


def register(sub: argparse._SubParsersAction) -> None:
    compare = sub.add_parser(
        "compare",
        help="answer prompts with a run's tuned model and its base; one JSON line per prompt",
    )
    compare.add_argument("run_dir", metavar="RUN_DIR", help="a finished or stopped run folder")
    compare.add_argument(
        "--prompts",
        metavar="FILE",
        help="one prompt per line (.jsonl: objects with a 'prompt'); default: held-out records",
    )
    compare.add_argument("-o", "--output", metavar="OUT.jsonl", help="write here (a new file)")
    _max_tokens(compare)
    compare.set_defaults(handler=compare_command)

    chat = sub.add_parser(
        "chat", help="type prompts, read the tuned and the base answer (ends on EOF or /quit)"
    )
    chat.add_argument("run_dir", metavar="RUN_DIR", help="a finished or stopped run folder")
    _max_tokens(chat)
    chat.set_defaults(handler=chat_command)


def _max_tokens(parser: argparse.ArgumentParser) -> None:
    from finetune_tui.engine.deliver.generate import MAX_NEW_TOKENS

    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=MAX_NEW_TOKENS,
        metavar="N",
        help=f"longest answer in tokens (default {MAX_NEW_TOKENS}; greedy decoding)",
    )


def _check_run(args: argparse.Namespace) -> None:
    """The flags, then the run folder: one line each, before the libraries load."""
    from finetune_tui.engine.deliver.generate import MAX_NEW_TOKENS_LIMIT
    from finetune_tui.engine.deliver.run_model import check_run_folder

    if not 1 <= args.max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
        raise InputError(
            f"--max-new-tokens {args.max_new_tokens}: must be 1..{MAX_NEW_TOKENS_LIMIT}"
        )
    check_run_folder(Path(args.run_dir))


def compare_command(args: argparse.Namespace) -> int:
    from finetune_tui.engine.deliver.held_out import Prompt, held_out_prompts
    from finetune_tui.engine.deliver.run_model import load_run_model
    from finetune_tui.engine.deliver.ship import check_new_file

    # a new file in an existing folder, reached through real folders inside a run folder
    out = check_new_file(Path(args.output).expanduser()) if args.output else None
    _check_run(args)
    texts = read_prompts(Path(args.prompts)) if args.prompts else None
    run = load_run_model(Path(args.run_dir))
    if texts is None:
        prompts = held_out_prompts(run.settings, run.tokenizer)
        if not prompts:
            raise InputError(
                f"{_shown(args.run_dir)}: the run held no records out; give --prompts FILE"
            )
    else:
        prompts = [Prompt(text, run.render(text)) for text in texts]
    with _output(out) as stream:
        for prompt in prompts:
            line = {
                "prompt": prompt.text,
                "base": run.answer(prompt.rendered, True, args.max_new_tokens),
                "tuned": run.answer(prompt.rendered, False, args.max_new_tokens),
            }
            if prompt.expected is not None:
                line["expected"] = prompt.expected
            stream.write(json_line(line) + "\n")
            stream.flush()
    return 0


def read_prompts(path: Path) -> list[str]:
    """A text file's non-empty lines, or a .jsonl file's 'prompt' strings (compare's own
    output reads back); an error names the file and line."""
    from finetune_tui.engine.common.safe_io import read_text

    text = read_text(path, PROMPTS_LIMIT, "prompts file")
    prompts = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if path.suffix.lower() != ".jsonl":
            prompts.append(line)
            continue
        try:
            value = json.loads(line)
        except ValueError:
            value = None
        if not isinstance(value, dict) or not isinstance(value.get("prompt"), str):
            raise InputError(f"{_shown(path)}:{number}: expected an object with a 'prompt' text")
        prompts.append(value["prompt"])
    if not prompts:
        raise InputError(f"{_shown(path)}: no prompts in it")
    return prompts


def json_line(value: dict) -> str:
    """One JSON line, readable (non-ASCII text as it is) but for the characters a terminal
    acts on that JSON leaves raw (C1 controls, bidirectional overrides, line separators):
    escaped as \\uXXXX, still the same JSON."""
    text = json.dumps(value, ensure_ascii=False)
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)


@contextlib.contextmanager
def _output(out: Path | None):
    """stdout, or a new file: written under a hidden name beside it and linked into place
    at the end (exclusively: a file made meanwhile is refused), so an interrupted compare
    leaves no partial file that reads as whole."""
    if out is None:
        yield sys.stdout
        return
    if out.exists() or out.is_symlink():
        raise OutputExistsError(f"{_shown(out)}: exists; compare never replaces a file")
    partial = out.with_name(f".compare-{os.getpid()}.partial")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        with os.fdopen(os.open(partial, flags, 0o644), "w", encoding="utf-8") as stream:
            yield stream
        os.link(partial, out, follow_symlinks=False)
    except FileExistsError:
        raise OutputExistsError(f"{_shown(out)}: exists; compare never replaces a file") from None
    finally:
        partial.unlink(missing_ok=True)


MAX_LINE = 1_000_000  # characters of one typed or piped prompt


def chat_command(args: argparse.Namespace) -> int:
    import io

    from finetune_tui.engine.common.safe_io import encoding_problem
    from finetune_tui.engine.deliver.run_model import load_run_model
    from finetune_tui.engine.runs.event_text import printable_lines

    _check_run(args)
    run = load_run_model(Path(args.run_dir))
    terminal = sys.stdin.isatty()
    # bytes that are not UTF-8 kept as lone surrogates, whatever the locale: named, not raised
    stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="surrogateescape")
    if terminal:
        print(f"type a prompt; Ctrl-C stops an answer; {QUIT} or Ctrl-D ends", flush=True)
    while True:
        if terminal:
            print("> ", end="", flush=True)
        line = stdin.readline(MAX_LINE)
        if len(line) == MAX_LINE and not line.endswith("\n"):  # /dev/zero, a binary file
            raise InputError(f"a line of stdin is over {MAX_LINE:,} characters; chat ends")
        if not line or line.strip() == QUIT:
            return 0
        if not line.strip():
            continue
        if encoding_problem(line):  # bytes that are not UTF-8, read as lone surrogates
            print("that line is not UTF-8 text; type it again", flush=True)
            continue
        prompt = run.render(line.rstrip("\n"))
        try:
            for name, base in (("tuned", False), ("base", True)):
                print(f"{name}: ", end="", flush=True)
                for piece in run.stream(prompt, base, args.max_new_tokens):
                    print(printable_lines(piece), end="", flush=True)
                print(flush=True)
        except InputError as exc:  # a prompt past the model's context: say so, go on
            print(_shown(str(exc)), flush=True)
        except KeyboardInterrupt as exc:  # Ctrl-C at a terminal stops the answer, not chat
            if not terminal or isinstance(exc, Terminated):
                raise
            print(" (stopped)", flush=True)


def _shown(text: object) -> str:
    from finetune_tui.engine.runs.event_text import printable

    return printable(text)
