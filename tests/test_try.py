"""After training: the run's model beside its base (engine/deliver/, compare, chat, the Try
screen). One demo run is trained per session until it answers held-out prompts; every test
here copies it or reads it."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import (
    DEMO_PRESET,
    cli_command,
    cli_env,
    run_python,
    start_cli,
    start_live_run,
    stop_live_run,
)

from finetune_tui.engine.deliver.run_model import load_run_model


@pytest.fixture(scope="session")
def learned(learned_demo) -> Path:
    """The demo preset's whole run (248 steps, ~99 % exact-match): the model must answer
    held-out "Uppercase: abc" prompts right (60 steps reached 2.5 %)."""
    result, run = learned_demo
    assert result.returncode == 0, result.stderr[-2000:]
    return run


@pytest.fixture(scope="session")
def loaded(learned):
    """The run's model, loaded once for the tests that only read it."""
    return load_run_model(learned)


def test_tuned_answers_held_out_prompts_the_base_cannot(loaded):
    from finetune_tui.engine.deliver.held_out import held_out_prompts

    prompts = held_out_prompts(loaded.settings, loaded.tokenizer)
    assert len(prompts) == 5 and all(p.text.startswith("Uppercase: ") for p in prompts)
    assert all(p.expected == p.text.removeprefix("Uppercase: ").upper() for p in prompts)
    tuned = [loaded.answer(p.rendered) for p in prompts]
    base = [loaded.answer(p.rendered, base=True) for p in prompts]
    right = sum(t == p.expected for t, p in zip(tuned, prompts, strict=True))
    assert right >= 4, list(zip(tuned, [p.expected for p in prompts], strict=True))
    assert not any(b == p.expected for b, p in zip(base, prompts, strict=True))
    assert loaded.answer(loaded.render("Uppercase: abc")) == "ABC"
    # under LoRA the base is the same model with its adapter off, and the adapter is back on
    assert loaded.base is None
    assert loaded.answer(prompts[0].rendered) == tuned[0]


def test_streamed_answer_is_the_whole_answer(loaded):
    from finetune_tui.engine.deliver import generate

    prompt = loaded.render("Uppercase: qwerty")
    pieces = list(loaded.stream(prompt))
    assert "".join(pieces) == generate.answer(loaded.model, loaded.tokenizer, prompt)
    # the demo's template closes a turn with EOS itself: no other end-of-turn token
    assert generate.end_of_turn_id(loaded.tokenizer) is None
    assert generate.stop_ids(loaded.model, loaded.tokenizer) == [loaded.tokenizer.eos_token_id]
    assert len(generate.answer(loaded.model, loaded.tokenizer, prompt, 2)) <= 2  # bytes


def test_compare_writes_one_json_line_per_held_out_prompt(cli, learned, tmp_path):
    out = tmp_path / "answers.jsonl"
    result = cli("compare", str(learned), "-o", str(out), "--max-new-tokens", "12")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 5
    assert all(set(line) == {"prompt", "base", "tuned", "expected"} for line in lines)
    assert all(line["base"] != line["tuned"] for line in lines)
    assert sum(line["tuned"] == line["expected"] for line in lines) >= 4
    before = out.read_text()
    again = cli("compare", str(learned), "-o", str(out))  # never over an existing file
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1
    assert "exists" in again.stderr and out.read_text() == before
    # its own output reads back as prompts; typed prompts carry no expected answer
    result = cli("compare", str(learned), "--prompts", str(out), "--max-new-tokens", "12")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["prompt"] for r in rows] == [line["prompt"] for line in lines]
    assert [r["tuned"] for r in rows] == [line["tuned"] for line in lines]
    assert all("expected" not in r for r in rows)


def test_an_interrupted_compare_leaves_no_partial_file(learned, tmp_path):
    """Ctrl-C during compare -o left the lines written so far as a file that read back as
    whole (and blocked the same -o again)."""
    prompts = tmp_path / "many.txt"
    prompts.write_text("".join(f"Uppercase: w{i}\n" for i in range(200)))
    out = tmp_path / "part.jsonl"
    args = ["compare", str(learned), "--prompts", str(prompts), "-o", str(out)]
    proc = start_cli(tmp_path, *args, "--max-new-tokens", "8")
    try:
        for _ in range(600):  # until some answers are written (to the hidden file)
            if any(p.stat().st_size for p in tmp_path.glob(".compare-*.partial")):
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert not out.exists() and not list(tmp_path.glob(".compare-*"))


def test_json_lines_escape_what_a_terminal_acts_on_and_stay_json():
    from finetune_tui.commands_try import json_line

    text = "x \x9b31mRED \u202eevil \u2028 é 日本"
    line = json_line({"tuned": text})
    assert line.isascii() is False and line.isprintable()
    assert "\\u009b" in line and "\\u202e" in line and "é 日本" in line
    assert json.loads(line) == {"tuned": text}


def test_an_answer_stops_at_the_models_context(loaded):
    """A prompt near the context with many new tokens generated past it, transformers'
    warning in the middle of the answers."""
    from finetune_tui.engine.deliver.generate import _inputs, _new_tokens

    context = loaded.model.config.max_position_embeddings
    inputs = _inputs(loaded.model, loaded.tokenizer, "y" * (context - 40))
    room = context - inputs["input_ids"].shape[1]
    assert 0 < room < 128 and _new_tokens(loaded.model, inputs, 128) == room
    assert _new_tokens(loaded.model, inputs, 4) == 4


def test_chat_reads_prompts_from_a_pipe(learned, tmp_path):
    """No terminal (a pipe, as over ssh with a here-doc): both answers, then EOF ends it."""
    result = subprocess.run(
        cli_command("chat", str(learned), "--max-new-tokens", "10"),
        # a line that is not UTF-8 was an internal error (TypeError in the tokenizer); one
        # past the model's context ran minutes, deaf to Ctrl-C
        input=b"Uppercase: abc\n\ncaf\xe9\n" + b"a" * 600 + b"\nUppercase: hello\n/quit\nnever\n",
        capture_output=True,
        env=cli_env(tmp_path),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines[0] == "tuned: ABC" and lines[4] == "tuned: HELLO", lines
    assert lines[1].startswith("base: ") and lines[1] != "base: ABC"
    assert lines[2] == "that line is not UTF-8 text; type it again"
    assert lines[3].startswith("tuned: the prompt is ") and "reads at most 512" in lines[3]
    assert len(lines) == 6  # /quit ended it: the last prompt is never answered
    assert result.stderr == b""


def test_ctrl_c_at_a_terminal_stops_the_answer_and_chat_goes_on(learned, tmp_path):
    """At a terminal, Ctrl-C during an answer ends that answer at its next token and gives
    the prompt back (it waited out the whole answer, then ended chat); at the prompt,
    /quit ends it as before."""
    import os
    import pty
    import select
    import signal
    import time

    leader, follower = pty.openpty()
    chat = subprocess.Popen(
        cli_command("chat", str(learned), "--max-new-tokens", "400"),
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=cli_env(tmp_path),
    )
    os.close(follower)
    seen = b""

    def read_until(text: bytes, seconds: float = 240) -> None:
        nonlocal seen
        deadline = time.monotonic() + seconds
        while text not in seen:
            assert time.monotonic() < deadline, seen.decode(errors="replace")
            if select.select([leader], [], [], 1)[0]:
                seen += os.read(leader, 4096)

    try:
        read_until(b"> ")
        os.write(leader, b"Uppercase: qwerty\n")
        read_until(b"base: ")  # the base never learned to stop: 400 tokens unless stopped
        time.sleep(0.5)
        chat.send_signal(signal.SIGINT)
        read_until(b" (stopped)", 30)
        read_until(b"> ", 30)
        os.write(leader, b"/quit\n")
        assert chat.wait(timeout=60) == 0
    finally:
        chat.kill()
        os.close(leader)
    assert b"tuned: QWERTY" in seen and b"Traceback" not in seen


def test_compare_and_chat_refuse_what_is_not_a_finished_run(cli, learned, tmp_path):
    """Not a run, no adapter yet, still training, an existing output: one line, exit 2,
    before any model loads."""
    no_adapter = tmp_path / "no-adapter"
    shutil.copytree(learned, no_adapter)
    shutil.rmtree(no_adapter / "adapter")
    running = tmp_path / "running"
    shutil.copytree(learned, running)
    live = start_live_run(running)
    (tmp_path / "taken.jsonl").write_text("mine\n")
    cases = [
        (["compare", str(tmp_path)], "not a run folder"),
        (["chat", str(tmp_path / "nowhere")], "not a run folder"),
        (["compare", str(no_adapter)], "no adapter/adapter_config.json yet"),
        (["chat", str(no_adapter)], "no adapter/adapter_config.json yet"),
        (["compare", str(running)], "still training"),
        (["compare", str(learned), "-o", str(tmp_path / "taken.jsonl")], "exists"),
        (["compare", str(learned), "--max-new-tokens", "0"], "--max-new-tokens 0"),
    ]
    try:
        for args, message in cases:
            result = cli(*args)
            assert result.returncode == 2, (args, result.stderr)
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and message in lines[0], (args, result.stderr)
    finally:
        stop_live_run(live)
    assert (tmp_path / "taken.jsonl").read_text() == "mine\n"


@pytest.mark.parametrize("command", ["compare", "chat"])
def test_help_and_refusals_import_no_torch(command):
    code = (
        "import sys\n"
        "from finetune_tui.main import main\n"
        f"try:\n    main(['{command}', '--help'])\nexcept SystemExit:\n    pass\n"
        f"assert main(['{command}', '/']) == 2\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'textual' not in sys.modules\n"
    )
    assert "RUN_DIR" in run_python(code).stdout


def test_memory_check_says_in_one_line_when_the_weights_do_not_fit():
    from finetune_tui.engine.deliver.run_model import memory_problem
    from finetune_tui.engine.settings.preset import load_preset

    settings = load_preset(DEMO_PRESET)
    assert memory_problem(settings, 1, 2**30, "RTX 4090") is None
    line = memory_problem(settings, 2, 1000, "RTX 4090")
    assert "the base and the tuned model need" in line and "RTX 4090 has 0.0 GiB free" in line
    assert "\n" not in line


def _text(app, selector: str) -> str:
    from textual.widgets import Static

    return str(app.screen.query_one(selector, Static).render())


async def open_try_screen(app, pilot) -> None:
    """Screen 7, its run loaded and its first held-out prompt filled in."""
    from finetune_tui.tui.app import ORDER

    await pilot.press(str(ORDER.index("try") + 1))
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()


async def test_try_screen_shows_tuned_and_base_side_by_side(learned):
    from textual.widgets import Input

    from finetune_tui.engine.settings.preset import load_preset
    from finetune_tui.tui.app import FinetuneApp

    app = FinetuneApp(load_preset(DEMO_PRESET), last_run_dir=learned)
    async with app.run_test(size=(100, 32)) as pilot:
        await open_try_screen(app, pilot)
        field = app.screen.query_one("#try-prompt", Input)
        first = field.value
        assert first.startswith("Uppercase: "), _text(app, "#try-status")
        expected = first.removeprefix("Uppercase: ").upper()
        assert _text(app, "#try-expected") == f"expected: {expected}"
        assert "held-out" in _text(app, "#try-status")
        assert _text(app, "#try-next") == (
            f"keep it: finetune-tui merge {learned} -o {learned}-merged, then finetune-tui "
            f"ship {learned}-merged --to gguf | ollama | vllm"
        )
        await pilot.press("a")
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        tuned, base = _text(app, "#tuned"), _text(app, "#base")
        assert tuned == expected and base and base != tuned
        await pilot.press("h")  # the next held-out prompt
        assert field.value != first and field.value.startswith("Uppercase: ")


async def test_try_screen_says_a_stopped_run_stopped_and_where(learned, tmp_path):
    """A stopped run's adapter is the one it had when it stopped: the Try screen said
    nothing of it (it read as a finished run's)."""
    import json

    from finetune_tui.engine.settings.preset import load_preset
    from finetune_tui.tui.app import FinetuneApp

    run = tmp_path / "stopped"
    shutil.copytree(learned, run)
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps(summary | {"status": "stopped"}))
    app = FinetuneApp(load_preset(DEMO_PRESET), last_run_dir=run)
    async with app.run_test(size=(140, 32)) as pilot:
        await open_try_screen(app, pilot)
        status = _text(app, "#try-status")
        assert ", stopped at step 248/248 on cpu" in status, status
        assert "stopped" not in _text(app, "#try-expected")


async def test_try_screen_before_a_run_says_to_train_first():
    from finetune_tui.engine.settings.preset import load_preset
    from finetune_tui.tui.app import FinetuneApp
    from finetune_tui.tui.screens.try_model import NO_RUN

    app = FinetuneApp(load_preset(DEMO_PRESET))
    async with app.run_test(size=(100, 32)) as pilot:
        await pilot.press("7")
        await pilot.press("a")  # nothing to ask
        await pilot.pause()
        assert app.current_mode == "try"
        assert _text(app, "#try-status") == NO_RUN and _text(app, "#tuned") == ""
        assert _text(app, "#try-next") == ""  # nothing to keep yet


def test_the_commands_that_keep_the_model_are_typed_as_a_shell_reads_them():
    from finetune_tui.engine.deliver.ship import keep_commands
    from finetune_tui.engine.settings.schema import TrainSettings

    run = Path("/data/my runs/r1")
    full = TrainSettings.model_validate({"training": {"method": "full"}})
    assert keep_commands(run, full) == (
        "serve it: finetune-tui ship '/data/my runs/r1' --to gguf | ollama | vllm"
    )
    assert keep_commands(run, TrainSettings()).startswith(
        "keep it: finetune-tui merge '/data/my runs/r1' -o '/data/my runs/r1-merged', then "
    )


def test_an_abandoned_stream_stops_generating_at_its_next_token(loaded):
    """Ctrl-C in chat (or the Try screen closed) leaves the streamed answer: its generation
    ends at the next token instead of running on to max_new_tokens while the caller waits."""
    forwards = []
    embeddings = loaded.model.get_input_embeddings()  # one call a generated token
    hook = embeddings.register_forward_hook(lambda *_: forwards.append(1))
    prompt = loaded.render("Uppercase: qwerty")
    try:
        whole = list(loaded.stream(prompt, True, 200))  # the base: it never learned to stop
        generated = len(forwards)
        forwards.clear()
        pieces = loaded.stream(prompt, True, 200)
        next(pieces)
        pieces.close()  # what a KeyboardInterrupt in the reading loop does to the generator
    finally:
        hook.remove()
    assert len(whole) > 1 and generated > 50, (len(whole), generated)
    assert len(forwards) <= 5, (len(forwards), generated)


async def _answered(app, pilot, *keys: str) -> None:
    """`keys` pressed, then every answer they started finished (or stopped)."""
    await pilot.press(*keys)
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()


async def _answered_together(app, pilot, *keys: str) -> None:
    """`keys` arriving at once (a paste, a fast hand, a slow model), then every answer
    finished: Pilot's `press` waits up to a second between keys, long enough for the demo
    model's whole answer, so the later keys would never meet an answer still streaming."""
    _send(app, *keys)
    await _answered(app, pilot)


def _send(app, *keys: str) -> None:
    """Key events sent without Pilot's wait for the app to go idle."""
    from textual import events

    for key in keys:
        app._driver.send_message(events.Key(key, "\r" if key == "enter" else key))


def _held_out_expected(app) -> str:
    from textual.widgets import Input

    return app.screen.query_one("#try-prompt", Input).value.removeprefix("Uppercase: ").upper()


async def test_enter_asks_on_arrival_at_the_try_screen(learned):
    """The screen says "Enter or a asks both": Enter did nothing until a Tab reached the
    field. Letters stay keys (`h`), not typing."""
    from textual.widgets import Input

    from finetune_tui.engine.settings.preset import load_preset
    from finetune_tui.tui.app import FinetuneApp

    app = FinetuneApp(load_preset(DEMO_PRESET), last_run_dir=learned)
    async with app.run_test(size=(100, 32)) as pilot:
        await open_try_screen(app, pilot)
        assert "Enter or a asks both" in _text(app, "#try-status")
        expected = _held_out_expected(app)
        await _answered(app, pilot, "enter")
        assert _text(app, "#tuned") == expected and _text(app, "#base") not in ("", "…")
        await pilot.press("h")  # a key still, not a letter typed into the field
        assert app.focused is None
        field = app.screen.query_one("#try-prompt", Input)
        assert field.value == app.screen.prompts[1].text


async def test_the_next_held_out_prompt_clears_the_last_ones_answers(learned):
    """`h` left the last prompt's answers under the new prompt, and an answer still
    streaming went on landing there."""
    import asyncio

    from finetune_tui.engine.settings.preset import load_preset
    from finetune_tui.tui.app import FinetuneApp

    app = FinetuneApp(load_preset(DEMO_PRESET), last_run_dir=learned)
    async with app.run_test(size=(100, 32)) as pilot:
        await open_try_screen(app, pilot)
        await _answered(app, pilot, "a")
        assert _text(app, "#tuned") == _held_out_expected(app)
        await _answered(app, pilot, "h")  # a finished answer
        assert _text(app, "#tuned") == "" and _text(app, "#base") == ""
        await _answered_together(app, pilot, "a", "h")  # one dropped before its first token
        assert _text(app, "#tuned") == "" and _text(app, "#base") == ""
        _send(app, "a")
        for _ in range(6000):  # the base has begun: it never learned to stop, 128 tokens
            if _text(app, "#base") not in ("", "…"):
                break
            await asyncio.sleep(0.01)
        await _answered_together(app, pilot, "h")  # one still streaming
        assert _text(app, "#tuned") == "" and _text(app, "#base") == ""
        expected = _held_out_expected(app)
        assert _text(app, "#try-expected") == f"expected: {expected}"
        await _answered(app, pilot, "a")  # the new prompt is answered, nothing of the old
        assert _text(app, "#tuned") == expected, _text(app, "#tuned")
        assert _text(app, "#base") not in ("", "…", expected)


async def test_a_refused_prompt_shows_in_both_panes_and_the_next_is_answered(learned):
    """A prompt past the model's context was refused in the status line only: both panes
    said "…" for ever."""
    from textual.widgets import Button, Input

    from finetune_tui.engine.settings.preset import load_preset
    from finetune_tui.tui.app import FinetuneApp

    app = FinetuneApp(load_preset(DEMO_PRESET), last_run_dir=learned)
    async with app.run_test(size=(100, 32)) as pilot:
        await open_try_screen(app, pilot)
        app.screen.query_one("#try-prompt", Input).value = "Uppercase: " + "abc " * 300
        await _answered(app, pilot, "a")
        for pane in ("#tuned", "#base"):
            text = _text(app, pane)
            assert text.startswith("the prompt is ") and "reads at most 512" in text, text
        assert "Enter or a asks both" in _text(app, "#try-status")  # the run's line stays
        assert not app.screen.query_one("#ask", Button).disabled
        await _answered(app, pilot, "h")
        assert _text(app, "#tuned") == ""
        expected = _held_out_expected(app)
        await _answered(app, pilot, "enter")
        assert _text(app, "#tuned") == expected


async def test_asking_again_while_answering_starts_no_second_generation(learned, monkeypatch):
    """`a`, Enter or Ask pressed again while the answers stream: one generation a pane,
    the panes hold one answer each."""
    from finetune_tui.engine.settings.preset import load_preset
    from finetune_tui.tui.app import FinetuneApp

    app = FinetuneApp(load_preset(DEMO_PRESET), last_run_dir=learned)
    async with app.run_test(size=(100, 32)) as pilot:
        await open_try_screen(app, pilot)
        run, streams = app.screen.run, []
        real = run.stream

        def counted(prompt, base=False, max_new_tokens=0):
            streams.append(base)
            return real(prompt, base, max_new_tokens)

        monkeypatch.setattr(run, "stream", counted)
        expected = _held_out_expected(app)
        await _answered_together(app, pilot, "a", "a", "enter", "a")
        assert streams == [False, True]
        assert _text(app, "#tuned") == expected and _text(app, "#base") not in ("", "…")
        await _answered(app, pilot, "a")  # once answered, it asks again
        assert streams == [False, True, False, True]
        assert _text(app, "#tuned") == expected
