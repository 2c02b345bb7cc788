"""The wizard driven through Textual's Pilot, as a person at the keyboard would."""

from __future__ import annotations

import json

from conftest import (
    DEMO_PRESET,
    FEW_RECORDS,
    gpu_run_events,
    run_python,
    start_live_run,
    stop_live_run,
    write_run,
)
from textual.widgets import Input, RichLog, Select, Static, Switch

from finetune_tui.engine.settings.preset import load_preset
from finetune_tui.tui.app import ORDER, FinetuneApp
from finetune_tui.tui.screens.train import TrainScreen
from finetune_tui.tui.widgets.settings_form import SettingsForm, field_id

SIZE = (100, 40)


# the demo preset greedy-answers 220 held-out prompts before and after training; no test
# here looks at exact-match
NO_EXACT_MATCH = ("training.exact_match_samples=0",)


def demo_app(*overrides: str, tmp_path=None) -> FinetuneApp:
    extra = [f"output.dir={tmp_path / 'run'}"] if tmp_path else []
    return FinetuneApp(load_preset(DEMO_PRESET, [*overrides, *extra]))


def text_of(app, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


async def test_every_screen_is_reachable_by_keyboard():
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.current_mode == "hardware"
        assert "No NVIDIA GPU found" in text_of(app, "#hw-summary") or "GPU 0" in text_of(
            app, "#hw-summary"
        )
        seen = [app.current_mode]
        for _ in ORDER[1:]:
            # the Model screen's filter has the focus: letters type, ctrl+→ moves on
            await pilot.press("ctrl+right" if app.current_mode == "model" else "n")
            await pilot.pause()
            seen.append(app.current_mode)
        assert seen == ORDER
        await pilot.press("p")
        assert app.current_mode == "try"
        await pilot.press("1")
        assert app.current_mode == "hardware"


async def test_keys_arriving_with_q_never_crash_the_exit():
    """A terminal delivers `q2` in one read: the second key must not mount a screen mid-exit."""
    from textual import events

    for keys in (["q", "2"], ["q", "n"], ["q", "4", "p"]):
        app = demo_app()
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            for key in keys:
                app.post_message(events.Key(key, key))
            await pilot.pause(0.3)
        assert app.return_code == 0 and app._exception is None, keys


async def test_typing_on_the_model_screen_filters_instead_of_quitting():
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await pilot.pause()
        await pilot.press(*"qwen")
        await pilot.pause()
        assert app.is_running and app.current_mode == "model"
        assert app.screen.query_one("#model-path", Input).value.endswith("qwen")


async def test_first_screen_does_not_import_torch():
    code = (
        "import asyncio, sys\n"
        "from finetune_tui.tui.app import FinetuneApp\n"
        "from finetune_tui.engine.settings.schema import TrainSettings\n"
        "async def main():\n"
        "    app = FinetuneApp(TrainSettings())\n"
        "    async with app.run_test() as pilot:\n"
        "        await pilot.pause()\n"
        "        assert app.current_mode == 'hardware'\n"
        "asyncio.run(main())\n"
        "assert 'torch' not in sys.modules, 'torch imported before training'\n"
        "charts = [m for m in ('plotext', 'textual_plotext') if m in sys.modules]\n"
        "assert not charts, f'{charts} imported before the Train screen'\n"
    )
    run_python(code)


async def test_strategy_form_is_the_schema_and_changes_the_settings():
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await pilot.pause()
        form = app.screen.query_one(SettingsForm)
        assert isinstance(form.query_one(f"#{field_id('quantization.mode')}"), Select)
        assert isinstance(form.query_one(f"#{field_id('memory.packing')}"), Switch)
        rank = form.query_one(f"#{field_id('lora.r')}", Input)
        rank.value = "8"
        await pilot.pause()
        assert app.state.settings.lora.r == 8
        rank.value = "0"
        await pilot.pause()
        assert app.state.settings.lora.r == 8  # rejected by the schema
        assert "lora.r: must be > 0" in text_of(app, "#strategy-status")
        rank.focus()
        await pilot.pause()
        form.query_one(f"#{field_id('lora.alpha')}", Input).focus()  # leaving it
        await pilot.pause()
        assert rank.value == "8"  # the field shows what applies, not the refused text
        assert "lora.r: must be > 0" in text_of(app, "#strategy-status")
        app.screen.set_focus(None)  # keys are commands again
        form.query_one(f"#{field_id('memory.gradient_checkpointing')}", Select).value = "on"
        await pilot.pause()
        assert app.state.settings.memory.gradient_checkpointing == "on"
        await pilot.press("5")
        await pilot.pause()
        assert "lora.r: 8 (was 32)" in text_of(app, "#review-diff") or "lora.r: 8" in text_of(
            app, "#review-diff"
        )


async def test_text_fields_take_what_was_typed_and_list_fields_one_value(tmp_path):
    """The form read every field as YAML: an output folder named `null` became the default
    folder, a run named `2024` was refused as not text, report_to `tensorboard` as not a
    list. Text fields now take the text; list fields a single value as a list of one."""
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await pilot.pause()
        form = app.screen.query_one(SettingsForm)
        for dotted, typed in (
            ("output.dir", str(tmp_path / "null")),
            ("output.dir", "null"),
            ("output.run_name", "2024"),
            ("output.report_to", "tensorboard"),
            ("lora.target_modules", "q_proj"),
            ("lora.target_modules", "auto"),
            ("training.max_steps", "12"),
        ):
            form.query_one(f"#{field_id(dotted)}", Input).value = typed
            await pilot.pause()
        output = app.state.settings.output
        assert (output.dir, output.run_name, output.report_to) == ("null", "2024", ["tensorboard"])
        form.query_one(f"#{field_id('output.report_to')}", Input).value = ""  # trackers off
        await pilot.pause()
        assert app.state.settings.output.report_to == []
        assert app.state.settings.lora.target_modules == "auto"
        assert app.state.settings.training.max_steps == 12


def test_the_dataset_screen_counts_tokens_with_the_models_own_tokenizer(tmp_path):
    """The demo's byte-level vocabulary makes 3.4x the tokens the characters' estimate
    counts: the screen said 0 % of these records were past max_seq_length 64, and the run
    then refused all of them. With the model's tokenizer here, it counts as the run does."""
    from finetune_tui.engine.common.demo import ensure_demo_model
    from finetune_tui.engine.settings.preset import with_changes
    from finetune_tui.tui import planning
    from finetune_tui.tui.screens.dataset import describe_dataset

    ensure_demo_model()
    data = tmp_path / "long.jsonl"
    record = {"instruction": "Repeat the words back", "output": "word " * 30}
    data.write_text((json.dumps(record) + "\n") * 40)
    settings = load_preset(DEMO_PRESET, [f"dataset.path={data}", "training.max_seq_length=64"])
    info, _ = describe_dataset(settings)
    assert "tokens (this model's tokenizer) per example" in info
    assert "100% longer than max_seq_length 64" in info, info
    hub = with_changes(settings, {"model.name_or_path": "no-such-org/no-such-model"})
    assert "~tokens (estimated) per example" in describe_dataset(hub)[0]
    # the Strategy and Review screens plan at the count the screen made (they planned at
    # the estimate: batching and time for a third of the tokens the run then had)
    estimated = planning.dataset_stats(hub).mean
    assert planning.dataset_stats(settings).mean > 3 * estimated
    longer = with_changes(settings, {"training.max_seq_length": 512})  # a count is whole
    assert planning.dataset_stats(longer).mean == planning.dataset_stats(settings).mean
    other = with_changes(settings, {"dataset.path": str(data) + "x"})
    assert planning.dataset_stats(other) is None  # another file: nothing counted, none read


async def test_dataset_screen_reports_problems_with_lines(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c"}\n')
    app = demo_app(f"dataset.path={bad}", "dataset.format=auto")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await app.workers.wait_for_complete()
        await pilot.pause()
        info = text_of(app, "#dataset-info")
        assert "format alpaca" in info
        assert f"{bad}:2: missing field 'output'" in info


async def test_demo_trains_in_the_panel_to_the_end(tmp_path):
    app = demo_app(
        "training.max_steps=10", "training.logging_steps=1", *NO_EXACT_MATCH, tmp_path=tmp_path
    )  # all the demo's records: preparing them keeps the run going past the first look
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("6")
        while app.current_mode != "train" or not isinstance(app.screen, TrainScreen):
            await pilot.pause(0.05)  # a loaded machine switches screens later: "s" is its key
        screen = app.screen
        await pilot.press("s")
        await pilot.pause()
        # started: still running, or (a loaded machine lets the worker run ahead) done stepping
        started = screen.running or screen.steps_seen
        assert started, [line.text for line in screen.query_one("#log").lines]
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert not screen.running
        assert screen.steps_seen >= 5
        stats = text_of(app, "#stats")
        assert "step 10/10" in stats and "tokens/s" in stats and "loss" in stats
        assert len(screen.losses) >= 5 and screen.losses[-1] < screen.losses[0]
        chart = text_of(app, "#loss-label")
        assert f"{screen.losses[0]:.4f} → {screen.losses[-1]:.4f}" in chart
        assert_cpu_charts(screen)
        log = "\n".join(str(line) for line in app.screen.query_one(RichLog).lines)
        assert "finished" in log
        await pilot.press("8")
        await pilot.pause()
        run = tmp_path / "run"  # its own script stays as it trained; a new one goes beside
        assert app.screen.query_one("#export-path", Input).value == "finetune-export/run/train.py"
        assert str(run / "export" / "train.py") in text_of(app, "#export-result")
        record = (run / "settings.yaml").read_text()
        field = app.screen.query_one("#export-path", Input)
        for _ in range(2):  # a preset written as the run's settings.yaml broke its resume
            field.value = str(run / "settings.py")
            field.focus()
            await pilot.press("enter")
            await pilot.pause()
        assert "its record; never replaced by an export" in text_of(app, "#export-result")
        assert (run / "settings.yaml").read_text() == record
        target = tmp_path / "export" / "train.py"
        field.value = str(target)
        await pilot.click("#export")
        await pilot.pause()
        assert target.is_file(), text_of(app, "#export-result")
        assert target.with_suffix(".yaml").is_file()
        assert not isinstance(app.focused, Input)  # q and Escape are commands again
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").is_file()


async def test_s_and_x_work_from_any_screen_and_say_when_nothing_runs(tmp_path):
    """`s` start and `x` stop are the wizard's keys (README, Help): on any screen but Train
    they did nothing and said nothing."""
    app = demo_app("training.max_steps=3", FEW_RECORDS, *NO_EXACT_MATCH, tmp_path=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await pilot.pause()
        await pilot.press("x")
        await pilot.pause()
        notes = [str(n.message) for n in app._notifications]
        assert any("nothing is training" in note for note in notes), notes
        await pilot.press("s")
        await pilot.pause()
        assert app.current_mode == "train" and isinstance(app.screen, TrainScreen)
        await app.workers.wait_for_complete()
        await pilot.pause()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["step"] == 3


async def test_several_processes_are_sent_to_a_headless_run(tmp_path):
    app = demo_app("distributed.strategy=ddp", "distributed.processes=2", tmp_path=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("6")
        await pilot.press("s")
        await pilot.pause()
        assert not app.screen.running and not (tmp_path / "run").exists()
        notes = [str(n.message) for n in app._notifications]
        assert any("ddp runs (2 processes) headless" in note for note in notes), notes


async def train_until_a_step(pilot) -> TrainScreen:
    """Start the demo on the Train screen and wait for its first logged step."""
    await pilot.press("6")
    await pilot.press("s")
    screen = pilot.app.screen
    while screen.steps_seen < 1:
        await pilot.pause(0.2)
    return screen


async def test_stop_saves_and_quit_waits(tmp_path):
    app = demo_app("training.max_steps=2000", FEW_RECORDS, *NO_EXACT_MATCH, tmp_path=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await train_until_a_step(pilot)
        await pilot.press("x")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert not screen.running
        assert screen.losses and screen.steps
        await pilot.press("s")  # the next run (refused here: its folder exists) starts afresh
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert not screen.running and screen.losses == [] and screen.steps == []
        log = "\n".join(str(line) for line in screen.query_one(RichLog).lines)
        assert "exists" in log, log
    summary = (tmp_path / "run" / "summary.json").read_text()
    assert '"status": "stopped"' in summary
    # the wizard lives on: its run.pid had `runs` and --resume take it for the trainer
    assert not (tmp_path / "run" / "run.pid").exists()
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").is_file()


async def test_quit_mid_training_saves_a_checkpoint_first(tmp_path):
    app = demo_app("training.max_steps=2000", FEW_RECORDS, *NO_EXACT_MATCH, tmp_path=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await train_until_a_step(pilot)
        assert app.train_screen is screen  # the screen told the app it is there
        await pilot.press("q")
        await app.workers.wait_for_complete()
    summary = (tmp_path / "run" / "summary.json").read_text()
    assert '"status": "stopped"' in summary
    # the wizard lives on: its run.pid had `runs` and --resume take it for the trainer
    assert not (tmp_path / "run" / "run.pid").exists()


async def test_every_way_to_quit_mid_training_saves_a_checkpoint_first(tmp_path):
    """Textual's own ctrl+q and the command palette's Quit take the same path as `q`."""
    for way in ("ctrl+q", "palette"):
        run = tmp_path / way
        app = demo_app("training.max_steps=2000", FEW_RECORDS, *NO_EXACT_MATCH, tmp_path=run)
        async with app.run_test(size=SIZE) as pilot:
            await train_until_a_step(pilot)
            if way == "ctrl+q":
                await pilot.press("ctrl+q")
            else:
                await pilot.press("ctrl+p")
                await pilot.pause()
                await pilot.press(*"quit", "enter")
            await app.workers.wait_for_complete()
        summary = (run / "run" / "summary.json").read_text()
        assert '"status": "stopped"' in summary, way
        assert (run / "run" / "adapter" / "adapter_config.json").is_file(), way


async def test_keys_to_move_on_are_shown_while_a_field_is_typed_in():
    """Letters type into a focused field, so the footer offers the keys that still work."""
    from textual.widgets import Footer

    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await pilot.pause()
        assert isinstance(app.focused, Input)
        shown = {b.description for _, b, on, _ in app.screen.active_bindings.values() if b.show}
        assert {"Next", "Back", "Quit"} <= shown, shown
        assert len(app.screen.query(Footer)) == 1
        await pilot.press("ctrl+left")  # a screen without fields: the letters, shown once
        await pilot.pause()
        assert app.current_mode == "hardware"
        keys = [b.key for _, b, on, _ in app.screen.active_bindings.values() if b.show and on]
        assert "n" in keys and "ctrl+right" not in keys, keys


async def test_a_card_too_small_for_anything_does_not_fit_rather_than_being_a_cpu():
    """`--vram 0.5` leaves no usable memory: the bar read "CPU only" beside reasons saying
    nothing fits."""
    app = FinetuneApp(load_preset(DEMO_PRESET, []), simulated_vram=0.5)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("4")
        await pilot.pause()
        bar = text_of(app, "#vram-bar")
        assert "0.0 GiB usable" in bar and "DOES NOT FIT" in bar and "CPU only" not in bar


async def test_the_dataset_screen_is_described_again_after_max_seq_length_changes():
    """max_seq_length set on the Strategy screen left the Dataset screen's "longer than
    max_seq_length 64" standing until Check was pressed."""
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "longer than max_seq_length 64" in text_of(app, "#dataset-info")
        assert app.update_setting("training.max_seq_length", 16, pin=True) is None
        await pilot.press("4")
        await pilot.pause()
        await pilot.press("3")
        await app.workers.wait_for_complete()
        await pilot.pause()
        info = text_of(app, "#dataset-info")
        assert "100% longer than max_seq_length 16" in info, info


async def test_vram_bar_follows_every_change_on_a_simulated_card():
    app = FinetuneApp(
        load_preset(DEMO_PRESET, ["model.name_or_path=meta-llama/Llama-3.1-8B"]),
        simulated_vram=24,
    )
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("4")
        await pilot.pause()
        before = text_of(app, "#vram-bar")
        assert "24" in before or "usable" in before
        form = app.screen.query_one(SettingsForm)
        other = "none" if app.state.settings.quantization.mode == "nf4" else "nf4"
        form.query_one(f"#{field_id('quantization.mode')}", Select).value = other
        await pilot.pause()
        after = text_of(app, "#vram-bar")
        assert after != before and "usable" in after
        assert "quantization.mode" in app.state.pinned
        await pilot.click("#reset")
        await pilot.pause()
        assert "quantization.mode" in text_of(app, "#strategy-status")


async def test_first_open_applies_a_plan_that_fits_and_keeps_what_the_user_pinned():
    """`finetune-tui --tui --gpu "RTX 4090" --set model.name_or_path=meta-llama/Llama-3.1-8B`:
    the schema defaults (16-bit, no checkpointing) do not fit; the wizard opens on a plan
    that does, and a value given on the command line stays."""
    from finetune_tui.engine.settings.schema import TrainSettings
    from finetune_tui.tui.planning import predict

    settings = load_preset(
        DEMO_PRESET, ["model.name_or_path=meta-llama/Llama-3.1-8B", "lora.r=8"]
    ).model_copy(update={"training": TrainSettings().training})
    app = FinetuneApp(settings, pinned={"lora.r"}, simulated_gpu="RTX 4090")
    assert not predict(_hw("RTX 4090"), settings).fits
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        chosen = app.state.settings
        assert predict(app.hardware, chosen).fits
        assert chosen.lora.r == 8 and "lora.r" in app.state.pinned
        assert "quantization.mode" in app.state.reasons
        await pilot.press("4")
        await pilot.pause()
        status = text_of(app, "#strategy-status")
        assert "lora.r: set by you" in status and "memory.backend:" in status
        await pilot.press("5")
        await pilot.pause()
        review = text_of(app, "#review-diff")
        assert "lora.r: 8 (default 16; set by you)" in review and "; recommended)" in review
        # the model is the user's choice, never the advisor's (it read "recommended")
        assert "model.name_or_path: 'meta-llama/Llama-3.1-8B' (default 'demo'; set by you)" in (
            review
        )


async def test_a_pinned_value_the_new_model_refuses_is_said_on_the_strategy_screen():
    """Unsloth and q_proj,v_proj pinned, then GPT-NeoX chosen: the Strategy screen said
    "set by you" beside a bar that fits, while plan and the run refuse both."""
    settings = load_preset(
        DEMO_PRESET,
        ["memory.backend=unsloth", "lora.target_modules=[q_proj,v_proj]"],
    )
    pinned = {"memory.backend", "lora.target_modules"}
    app = FinetuneApp(settings, pinned=pinned, simulated_gpu="RTX 4090")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.update_setting("model.name_or_path", "EleutherAI/pythia-1b", pin=True) is None
        await pilot.press("4")
        await pilot.pause()
        status = text_of(app, "#strategy-status")
        assert "memory.backend: set by you; refused here: " in status, status
        assert "lora.target_modules: set by you; refused here: q_proj, v_proj: no linear" in status


def _hw(name: str):
    from finetune_tui.engine.inspect.hardware import simulated_hardware

    return simulated_hardware(gpu=name)


async def test_question_mark_opens_a_help_screen_that_lists_keys_and_screens():
    from finetune_tui.tui.screens.help import HelpScreen

    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = str(app.screen.query_one(Static).render())
        assert "Keys" in text and "4 Strategy" in text and "ctrl+" in text
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen) and app.is_running


async def test_attach_is_read_only_and_a_finished_run_ends_at_its_last_step(tmp_path):
    import json

    from textual.widgets import Button, ProgressBar

    from finetune_tui.engine.runs.events import Finished, Started, Step
    from finetune_tui.tui.app import AttachApp

    events = [
        Started("r", 12, 10, 0, "demo", "CPU", 5, 50),
        Step(10, 12, 1.0, 0.9, 1e-3, None, 100.0, 3.0, 5.0, 1.0),
        Finished("finished", 12, 12, 0.8, 6.0, "r/adapter", {"first_loss": 2.0}),
    ]
    (tmp_path / "settings.yaml").write_text("model: {}\n")
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(e.to_json()) + "\n" for e in events))
    app = AttachApp(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause(1.2)  # the panel drains its queue once a second
        screen = app.screen
        assert not screen.query_one("#start", Button).display
        bar = screen.query_one(ProgressBar)
        assert bar.progress == bar.total == 12
        assert "finished at step 12/12" in str(screen.query_one("#stats", Static).render())


async def test_stop_on_an_attached_run_asks_its_process_to_save(tmp_path):
    import signal

    from finetune_tui.tui.app import AttachApp

    run = start_live_run(tmp_path)  # holds the folder's lock; run.pid names it
    try:
        app = AttachApp(tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("x")
            await pilot.press("y")  # the question: stop someone else's run?
            await pilot.pause()
            assert run.wait(timeout=30) == -signal.SIGTERM
            await app.workers.wait_for_complete()  # the follower ends with the run
            log = "\n".join(str(line) for line in app.screen.query_one(RichLog).lines)
            assert f"asked pid {run.pid} to checkpoint and stop" in log
    finally:
        stop_live_run(run)


async def test_enter_simulates_a_card_and_the_model_screen_says_what_this_machine_rules_out():
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.screen.query_one("#sim-gpu", Input).focus()
        await pilot.press(*"RTX 4090", "enter")
        await pilot.pause()
        assert app.hardware.simulated and "4090" in app.hardware.primary.name
        card, settings = app.hardware, app.state.settings
        field = app.screen.query_one("#sim-gpu", Input)
        field.value = "RTX 9999"  # a typo keeps the card before it (it fell back to the CPU)
        await pilot.press("enter")
        await pilot.pause()
        assert app.hardware is card and app.state.settings == settings
        assert app.state.simulated_gpu == "RTX 4090"
        from finetune_tui.engine.inspect.hardware import Hardware

        app.hardware = Hardware(gpus=[])  # a machine with no GPU, wherever the test runs
        await pilot.press("f2")
        await pilot.pause()
        assert "unsloth: no (needs an NVIDIA GPU" in text_of(app, "#model-info")


async def test_an_option_this_machine_cannot_run_is_refused_with_plans_reason():
    """On a machine without a GPU, choosing Unsloth says why and keeps what can run."""
    from finetune_tui.engine.inspect.hardware import Hardware

    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.hardware = Hardware(gpus=[])  # a machine with no GPU, wherever the test runs
        await pilot.press("4")
        await pilot.pause()
        form = app.screen.query_one(SettingsForm)
        form.query_one(f"#{field_id('memory.backend')}", Select).value = "unsloth"
        await pilot.pause()
        assert app.state.settings.memory.backend == "hf"
        assert "needs an NVIDIA GPU" in text_of(app, "#strategy-status")


def test_remembered_paths_and_output_stay_text(tmp_path, monkeypatch):
    """A folder named `yes` or `1e3` is a path, not a YAML boolean or number."""
    import argparse
    import json

    from finetune_tui.tui.app import initial_settings

    config = tmp_path / "config"
    config.mkdir()
    monkeypatch.setenv("FINETUNE_TUI_CONFIG_DIR", str(config))
    (config / "last.json").write_text(json.dumps({"dataset.path": "yes"}))
    args = argparse.Namespace(overrides=["lora.r=8"], output="1e3", preset=None)
    settings = initial_settings(args)
    assert settings.dataset.path == "yes" and settings.output.dir == "1e3"
    assert settings.lora.r == 8


def drawn_ticks(chart) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The tick labels plotext drew: under the x axis's corner, and left of each y tick."""
    lines = chart.render().plain.splitlines()
    x_line = lines[next(i for i, line in enumerate(lines) if "└" in line) + 1]
    y_labels = [line.split("┤")[0].strip() for line in lines if "┤" in line]
    return tuple(x_line.split()), tuple(reversed(y_labels))


def assert_cpu_charts(screen: TrainScreen) -> None:
    """After a CPU run: loss and tokens/s over the logged steps, measured only, said so;
    no VRAM chart. The charts hold the run's last steps (redrawn when it ended)."""
    loss, speed = (screen.query_one(f"#{name}-chart").data for name in ("loss", "speed"))
    assert loss.named("measured").ys == tuple(screen.losses)
    assert loss.y.low < min(screen.losses) and loss.y.high > max(screen.losses)
    measured = speed.named("measured")
    assert measured.xs == tuple(screen.steps) and measured.xs[-1] == 10
    assert measured.ys == tuple(screen.speeds)
    assert speed.named("predicted") is None and speed.x.label == "step"
    assert speed.x.tick_labels[-1] == "10"
    assert speed.y.low < min(screen.speeds) and max(screen.speeds) < speed.y.high
    assert "measured only: no prediction on a CPU" in text_of(screen.app, "#speed-label")
    drawn = drawn_ticks(screen.query_one("#speed-chart"))
    assert drawn == (speed.x.tick_labels, speed.y.tick_labels)
    assert not screen.query_one("#vram-chart").display


async def test_train_panel_charts_the_predicted_beside_the_measured(tmp_path):
    """A GPU run's metrics: tokens/s and reserved VRAM over the steps, each with the planner's
    figure as a yellow level line across them, on axes that hold both; MFU from the card's
    bf16 peak."""
    from finetune_tui.tui.app import AttachApp
    from finetune_tui.tui.charts import MEASURED, PREDICTED

    write_run(tmp_path, gpu_run_events())
    app = AttachApp(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause(1.2)
        screen = app.screen
        vram_label, speed_label = text_of(app, "#vram-label"), text_of(app, "#speed-label")
        assert "peak measured 7.53 / predicted 7.23 (yellow line)" in vram_label
        assert "1,360 now, 1,360 best, MFU 27 %; predicted 1,500 (yellow line), MFU 30 %" in (
            speed_label
        )
        speed = screen.query_one("#speed-chart").data
        assert speed.title == "tokens/s · MFU 27 %"
        assert speed.named("predicted").xs == (1, 30) and speed.named("predicted").ys == (1500,) * 2
        assert speed.named("measured").ys == (1360.0,) * 30
        assert speed.y.low < 1360 < 1500 < speed.y.high and speed.x.tick_labels == ("1", "15", "30")
        vram = screen.query_one("#vram-chart")
        assert vram.display and vram.data.named("predicted").ys == (7.23, 7.23)
        lowest = min(vram.data.named("measured").ys)
        assert vram.data.y.low < lowest and vram.data.y.high > 7.53 and vram.data.y.label == "GiB"
        drawn = vram.render()
        colours = {span.style.color.number for span in drawn.spans if span.style.color}
        assert {MEASURED, PREDICTED} <= colours  # measured and predicted both drawn
        assert drawn_ticks(vram) == (vram.data.x.tick_labels, vram.data.y.tick_labels)


async def test_the_vram_line_follows_the_plan_of_the_longest_batch_the_run_checked(tmp_path):
    """A run whose data never fills max_seq_length: its memory check at step 1 reads the plan
    at the longest batch so far (6.60 GiB against the full length's 7.23); the yellow line
    moves there and the label gives both, as the final line does."""
    from finetune_tui.engine.runs.events import MemoryCheck
    from finetune_tui.tui.app import AttachApp

    events = gpu_run_events()
    check = MemoryCheck(1, 6.5, 6.6, 78.0, 6.6, 0.065)
    write_run(tmp_path, [events[0], events[1], check, *events[2:]])
    app = AttachApp(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause(1.2)
        label = text_of(app, "#vram-label")
        assert (
            "predicted 6.60 at the longest batch so far (yellow line; 7.23 at the full length)"
            in label
        )
        vram = app.screen.query_one("#vram-chart")
        assert vram.data.named("predicted").ys == (6.6, 6.6)


async def test_the_strategy_time_runs_at_the_pace_this_machines_runs_measured():
    """A machine whose runs measured 0.7x the plan on this card: the wizard's time says so
    (plan/measured_speed.py), as `plan` does."""
    from test_measured import write_store
    from test_measured_speed import ran

    settings = load_preset(DEMO_PRESET, ["model.name_or_path=meta-llama/Llama-3.1-8B"])

    async def strategy_time() -> str:
        app = FinetuneApp(settings, simulated_gpu="RTX 4090")
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            await pilot.press("4")
            await pilot.pause()
            return text_of(app, "#strategy-time")

    before = await strategy_time()
    write_store(*(ran(1400.0, backend=b) for b in ("hf", "liger", "unsloth")))
    after = await strategy_time()
    assert "corrected" not in before
    # one run of the backend the wizard picked counts (each backend has its own pace)
    assert "corrected by your runs on this card (1 llama run, measured -30 % against plan)" in after


async def test_strategy_and_review_say_how_long_the_run_takes_on_the_card():
    """The time `plan` gives, for the settings on the form, follows every change."""
    app = FinetuneApp(
        load_preset(DEMO_PRESET, ["model.name_or_path=meta-llama/Llama-3.1-8B"]),
        simulated_gpu="RTX 4090",
    )
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("4")
        await pilot.pause()
        before = text_of(app, "#strategy-time")
        assert before.startswith("time: about ") and "tokens/s" in before
        assert "scaled from H100 measurements" in before
        form = app.screen.query_one(SettingsForm)
        form.query_one(f"#{field_id('training.epochs')}", Input).value = "12"
        await pilot.pause()
        after = text_of(app, "#strategy-time")
        assert after != before and after.startswith("time: about ")
        await pilot.press("5")
        await pilot.pause()
        time, disk = text_of(app, "#review-time").splitlines()
        assert time == after  # and the disk its saves take, as `plan` says it
        assert disk.startswith("disk: up to ") and "and the adapter" in disk
