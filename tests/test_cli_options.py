"""Top-level options given before a command (cli/main.py `_Commands`): the command takes
them as its own, or they are refused in one line; never dropped unsaid."""

from __future__ import annotations

import argparse
import json

import pytest

from finetune_tui.main import EVERY_COMMAND, MISPLACED, build_parser

PARSER = build_parser()
COMMANDS = next(a for a in PARSER._actions if isinstance(a, argparse._SubParsersAction))
TOP_LEVEL = [
    a
    for a in PARSER._actions
    if a.option_strings and a.default != argparse.SUPPRESS and a.dest not in EVERY_COMMAND
]  # --help and --version end the parse: they go with nothing


def typed(action: argparse.Action) -> list[str]:
    """The option as a user types it, with a value that parses."""
    flag = max(action.option_strings, key=len)
    if action.nargs == 0:
        return [flag]
    if action.choices:
        return [flag, str(next(iter(action.choices)))]
    return [flag, "a.b=1" if action.dest == "overrides" else "24"]


def command_line(name: str, command: argparse.ArgumentParser) -> list[str]:
    """The command with its required arguments."""
    words = [name]
    for action in command._actions:
        if not action.option_strings and action.nargs not in ("?", "*"):
            words.append("x")
        elif action.option_strings and action.required:
            words += typed(action)
    return words


def parsed(words: list[str]) -> dict:
    return vars(PARSER.parse_args(words))


@pytest.mark.parametrize("name", sorted(COMMANDS.choices))
def test_every_top_level_option_goes_to_the_command_or_is_refused(name):
    """One rule for every command and every top-level option: `OPT COMMAND` parses as
    `COMMAND OPT` where COMMAND takes OPT; elsewhere the refusal names OPT and COMMAND."""
    command = COMMANDS.choices[name]
    words = command_line(name, command)
    for action in TOP_LEVEL:
        option = typed(action)
        before = parsed(option + words)
        takes = any(s in command._option_string_actions for s in action.option_strings)
        if takes:
            assert MISPLACED not in before, (option, name)
            assert before == parsed(words + option), (option, name)
        else:
            assert f"{option[0]} does not go with '{name}'" in before[MISPLACED]


def test_a_shared_option_parses_alike_on_both_sides():
    """The value is handed over as the top level parsed it: both copies must agree."""
    for command in set(COMMANDS.choices.values()):
        for action in TOP_LEVEL:
            own = next(
                (command._option_string_actions[s] for s in action.option_strings
                 if s in command._option_string_actions),
                None,
            )  # fmt: skip
            if own is not None:
                assert (type(own), own.type, own.nargs) == (
                    type(action), action.type, action.nargs
                ), action.option_strings  # fmt: skip


def test_vram_and_set_before_plan_are_planned_with(cli):
    after = cli("plan", "--model", "demo", "--vram", "24", "--json")
    before = cli("--vram", "24", "plan", "--model", "demo", "--json")
    assert before.returncode == after.returncode == 0, before.stderr
    assert json.loads(before.stdout) == json.loads(after.stdout)
    assert json.loads(before.stdout)["budget_gib"] > 20
    text = cli("--vram", "24", "plan", "--model", "demo").stdout
    assert "CPU: no VRAM limit" not in text
    shorter = cli("--set", "training.max_seq_length=256", "plan", "--model", "demo", "--json")
    assert shorter.returncode == 0, shorter.stderr
    assert json.loads(shorter.stdout)["settings"]["training"]["max_seq_length"] == 256


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--gpu", "RTX 4090", "detect"],
            "--gpu does not go with 'detect': it goes without a command (a run or the "
            "wizard) or after 'plan'",
        ),
        (["--preset", "p.yaml", "runs"], "--preset does not go with 'runs'"),
        (["--tui", "runs"], "--tui does not go with 'runs': it goes without a command"),
        (
            ["--vram", "24", "plan", "--model", "demo", "--vram", "48"],
            "--vram is given both before and after 'plan': give it once, after 'plan'",
        ),
        (
            ["--set", "lora.r=8", "plan", "--model", "demo", "--set", "lora.r=16"],
            "--set is given both before and after 'plan'",
        ),
    ],
)
def test_a_misplaced_or_doubled_top_level_option_is_one_line(cli, args, message):
    result = cli(*args)
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("finetune-tui: error: ") and message in result.stderr


def test_debug_goes_with_every_command_and_help_says_the_rule(cli):
    assert cli("--debug", "plan", "--model", "demo", "--json").returncode == 0
    assert "'finetune-tui --vram 24 plan' is 'finetune-tui plan --vram 24'" in " ".join(
        cli("--help").stdout.split()
    )
