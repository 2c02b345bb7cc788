"""Names from outside (a model folder, an output folder, a dataset path) are shown as they
are: Rich markup in them neither styles the screen nor breaks it, and control characters
are escaped as the headless lines escape them."""

from __future__ import annotations

import errno
import json

from conftest import DEMO_PRESET, run_python
from textual.widgets import Button, Input, Static

from finetune_tui.engine.settings.preset import load_preset
from finetune_tui.tui.app import FinetuneApp

HOSTILE = "[/b][red]x\x1b[31m"


async def test_markup_and_control_characters_in_names_are_shown_literally(tmp_path):
    output = tmp_path / f"out{HOSTILE}"
    model = tmp_path / f"model{HOSTILE}"
    # no such folder: the Model screen's error names it
    settings = load_preset(DEMO_PRESET, [f"output.dir={output}", f"model.name_or_path={model}"])
    app = FinetuneApp(settings)
    async with app.run_test(size=(120, 50)) as pilot:
        await pilot.pause()
        app.switch_mode("model")
        await pilot.pause()
        info = str(app.screen.query_one("#model-info", Static).render())
        app.switch_mode("review")
        await pilot.pause()
        review = str(app.screen.query_one("#review-yaml", Static).render())
        changed = str(app.screen.query_one("#review-diff", Static).render())
    assert app._exception is None
    shown = "[/b][red]x\\x1b[31m"  # the brackets as typed, ESC as \x1b
    assert "out[/b][red]x" in review and "model[/b][red]x" in review  # YAML writes ESC as \e
    assert f"out{shown}" in changed
    assert f"model{shown}" in info
    assert "\x1b" not in review + changed + info


SIZE = (140, 50)


def text_of(app, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


async def test_markup_in_records_and_paths_is_shown_as_typed(tmp_path):
    """`[/]` and `[red]` in a record or a path were Textual markup: the Dataset screen
    crashed ("auto closing tag has nothing to close"), again on every launch since the path
    is remembered; a control character in a record moved the cursor."""
    folder = tmp_path / "a[red]b[x]"
    folder.mkdir()
    data = folder / "d[bold].jsonl"
    record = {"instruction": "close [/] tag [/bold] \u202e", "output": "X [red] y"}
    data.write_text("\n".join(json.dumps(record) for _ in range(8)) + "\n")
    app = FinetuneApp(load_preset(DEMO_PRESET, []))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await app.workers.wait_for_complete()
        for path in (str(data), str(tmp_path / "ds" / "a[/]b.jsonl")):
            field = app.screen.query_one("#dataset-path", Input)
            field.value = path
            field.focus()
            await pilot.press("enter")
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert path in text_of(app, "#dataset-info")
            if path == str(data):
                sample = text_of(app, "#dataset-sample")
                assert "close [/] tag [/bold]" in sample and "X [red] y" in sample
                assert "\u202e" not in sample and "\\u202e" in sample
        await pilot.press("4")
        await app.workers.wait_for_complete()
        await pilot.pause()
    assert app.return_code in (None, 0)


async def test_a_start_failing_outside_our_errors_is_said_and_frees_the_screen(
    tmp_path, monkeypatch
):
    """A run that could not start for a reason of the system's (a name too long for it)
    left the Train screen at "checking…" for ever, Start dead and `q` waiting on it."""
    from finetune_tui.engine.train import start

    def refused(settings):
        raise OSError(errno.ENAMETOOLONG, "File name too long", "/runs/" + "d" * 300)

    monkeypatch.setattr(start, "start_run", refused)
    app = FinetuneApp(load_preset(DEMO_PRESET, [f"output.dir={tmp_path / 'run'}"]))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("6")
        await pilot.pause()
        await pilot.press("s")
        await app.workers.wait_for_complete()
        await pilot.pause()
        screen = app.screen
        assert not screen.running and not screen.query_one("#start", Button).disabled
        log = "\n".join(str(line) for line in screen.query_one("#log").lines)
        assert "OSError: [Errno 36] File name too long" in log, log
    assert not (tmp_path / "run").exists()


def test_a_path_no_file_system_can_name_is_one_settings_line(cli, tmp_path):
    """A 300-byte name was ENAMETOOLONG inside "internal error" for plan and the headless
    run (and a crash of the Dataset screen): now the field's own line, before anything."""
    long = str(tmp_path / ("d" * 300))
    for args in (
        ("plan", "--model", "demo", "--dataset", long),
        ("--preset", str(DEMO_PRESET), "--set", f"output.dir={long}"),
        ("plan", "--model", long),
    ):
        result = cli(*args)
        assert result.returncode == 2, result.stderr
        line = result.stderr.strip()
        assert len(line.splitlines()) == 1 and "has a name of 300 bytes" in line, line
    loop = tmp_path / "loop"
    loop.symlink_to(tmp_path / "loop")
    for output, said in (
        (long + "/train.py", "file name too long"),
        (str(loop / "train.py"), "too many levels of symbolic links"),
    ):
        result = cli("export", "--preset", str(DEMO_PRESET), "-o", output)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().endswith(said) and "internal" not in result.stderr


def test_the_wizard_is_sized_from_its_terminal_while_a_run_holds_fd_1():
    """During a run fd 1 points at the run's log (C libraries print there); Textual asked
    fd 1 for the terminal's size and drew at 80 x 25 after a resize. The driver asks the
    terminal it draws on."""
    run_python(
        """
import fcntl, os, pty, struct, sys, tempfile, termios
from finetune_tui.tui.app import terminal_driver
leader, follower = pty.openpty()
fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 47, 133, 0, 0))
log = tempfile.TemporaryFile()
os.dup2(log.fileno(), 1)  # as captured_fds does while a run trains
driver = terminal_driver().__new__(terminal_driver())
driver._file = os.fdopen(follower, "w")
assert driver._get_terminal_size() == (133, 47), driver._get_terminal_size()
"""
    )
