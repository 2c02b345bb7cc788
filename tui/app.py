"""The Textual app: eight screens over one `TrainSettings`, keyboard first.

Screens are Textual modes, so each keeps its state while the user moves between them
(n / p, or the digits 1–8). Nothing here imports torch: training starts it in a worker.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

from textual.app import App
from textual.binding import Binding
from textual.widgets import Input

from finetune_tui.engine.common.errors import FinetuneError
from finetune_tui.engine.settings.overrides import (
    apply_overrides,
    override_keys,
    validate_settings,
)
from finetune_tui.engine.settings.preset import load_preset, preset_fields, with_changes
from finetune_tui.engine.settings.schema import TrainSettings

from .screens.dataset import DatasetScreen
from .screens.export import ExportScreen
from .screens.hardware import HardwareScreen
from .screens.model import ModelScreen
from .screens.review import ReviewScreen
from .screens.strategy import StrategyScreen
from .screens.train import NOTHING_TRAINING, TrainScreen
from .screens.try_model import TryScreen
from .state import DEMO_PRESET, INPUT_FIELDS, WizardState, recall, remember

ORDER = ["hardware", "model", "dataset", "strategy", "review", "train", "try", "export"]


EXIT_GRACE_S = 10.0  # after a signal's save: the UI's own exit, else the process leaves


class FinetuneApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "finetune-tui"
    AUTO_FOCUS = None  # letters navigate until the user tabs into a field
    MODES = {
        "hardware": HardwareScreen,
        "model": ModelScreen,
        "dataset": DatasetScreen,
        "strategy": StrategyScreen,
        "review": ReviewScreen,
        "train": TrainScreen,
        "try": TryScreen,
        "export": ExportScreen,
    }
    BINDINGS = [
        Binding("n", "step(1)", "Next"),
        Binding("p", "step(-1)", "Back"),
        # while a field takes the letters, the footer offers these instead (check_action)
        Binding("ctrl+right", "typed_step(1)", "Next", key_display="^→", priority=True),
        Binding("ctrl+left", "typed_step(-1)", "Back", key_display="^←", priority=True),
        Binding("ctrl+q", "typed_quit", "Quit"),
        Binding("ctrl+q", "quit", "Quit", show=False),  # a key named here replaces Textual's
        Binding("ctrl+right", "step(1)", "Next", show=False, priority=True),
        Binding("ctrl+left", "step(-1)", "Back", show=False, priority=True),
        Binding("question_mark", "help", "Help"),
        Binding("s", "start_training", "Start", show=False),  # the Train screen's own `s`
        Binding("x", "stop_training", "Stop", show=False),  # and `x`, from any screen
        Binding("q", "quit", "Quit"),
        *[Binding(str(i + 1), f"goto('{name}')", name, show=False) for i, name in enumerate(ORDER)],
        *[
            Binding(f"f{i + 1}", f"goto('{name}')", name, show=False, priority=True)
            for i, name in enumerate(ORDER)
        ],
    ]

    def __init__(
        self,
        settings: TrainSettings,
        capture_fds: bool = False,
        pinned: set[str] | None = None,
        catch_signals: bool = False,
        driver_class=None,
        **state,
    ) -> None:
        super().__init__(driver_class=driver_class)
        self.catch_signals = catch_signals  # run_app's: a test's process keeps its own
        self.state = WizardState(settings=settings, pinned=set(pinned or ()), **state)
        self.hardware = None
        self.capture_fds = capture_fds
        self.train_screen: TrainScreen | None = None  # set when the Train screen opens
        self.quitting = False  # keys that arrive with `q` must not mount a screen mid-exit

    def on_mount(self) -> None:
        self.switch_mode("hardware")
        if self.catch_signals:
            self._catch_signals()

    def _catch_signals(self) -> None:
        """SIGTERM (a scheduler ending the job, `kill`) and SIGHUP (the terminal closed, an
        SSH connection dropped) leave as `q` does: a running training saves first."""
        import asyncio
        import signal

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, self._signalled, loop, signum)

    def _signalled(self, loop, signum: int) -> None:
        """Save, then leave, from a thread of its own. A later SIGTERM or SIGHUP does not cut
        the save short (as in headless runs); SIGKILL does."""
        if self.quitting:
            return
        self.quitting = True
        code = 128 + signum
        threading.Thread(target=self._leave_after_saving, args=(loop, code), daemon=True).start()

    def _leave_after_saving(self, loop, code: int) -> None:
        """The terminal may be gone (SIGHUP): Textual's own shutdown writes to it and can
        block for ever. So the save waits on nothing of the UI's, and the process leaves
        EXIT_GRACE_S after asking the UI to, whether or not the UI managed to."""
        train = self.train_screen
        if train is not None and train.running:
            loop.call_soon_threadsafe(self.notify, "saving a checkpoint before quitting…")
            train.stop_and_wait()
        loop.call_soon_threadsafe(self.exit, code)
        time.sleep(EXIT_GRACE_S)
        os._exit(code)

    def settle_training(self) -> None:
        """After the app has exited, however it did: a training thread still running is
        asked to stop and is waited for, so its checkpoint and adapter are written."""
        if self.train_screen is not None:
            self.train_screen.stop_and_wait()

    def on_train_screen_opened(self, message: TrainScreen.Opened) -> None:
        self.train_screen = message.train_screen

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The `typed_` keys are shown (and taken) only while a field has the letters."""
        if action.startswith("typed_"):
            return isinstance(self.focused, Input)
        return True

    def action_typed_step(self, delta: int) -> None:
        self.action_step(delta)

    async def action_typed_quit(self) -> None:
        await self.action_quit()

    def action_step(self, delta: int) -> None:
        index = ORDER.index(self.current_mode) if self.current_mode in ORDER else 0
        self.action_goto(ORDER[max(0, min(len(ORDER) - 1, index + delta))])

    def action_goto(self, name: str) -> None:
        if not self.quitting:
            self.switch_mode(name)

    def action_start_training(self) -> None:
        """`s` on any screen: the Train screen opens and starts the run (it said nothing)."""
        if self.quitting:
            return
        self.switch_mode("train")
        self.call_after_refresh(self._start_on_train_screen)

    def _start_on_train_screen(self) -> None:
        if isinstance(self.screen, TrainScreen):
            self.screen.action_start()

    def action_stop_training(self) -> None:
        """`x` on any screen: the run stops (saving), or the wizard says none runs."""
        if self.train_screen is not None:
            self.train_screen.action_stop()
        else:
            self.notify(NOTHING_TRAINING)

    def action_help(self) -> None:
        from .screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def update_setting(self, field: str, value: object, pin: bool = False) -> str | None:
        """Apply one change through the schema; return the error message, if any.

        `pin`: the user chose this value; recommendations leave it alone from now on.
        A new model or dataset re-applies the recommendation to every unpinned field.
        """
        try:
            self.state.settings = with_changes(self.state.settings, {field: value}, "form")
        except FinetuneError as exc:
            return str(exc).removeprefix("form: ")
        if pin:
            self.state.pinned.add(field)
        if field in INPUT_FIELDS:
            self.recommend_for_inputs()
        remember(self.state.settings)
        return None

    def recommend_for_inputs(self) -> None:
        """Hardware, model or dataset changed: the plan that fits them, pins kept."""
        from .planning import recommend

        try:
            result = recommend(self.hardware, self.state.settings, self.state.pinned)
        except Exception:  # an unplannable model keeps the current settings
            result = None
        if result is None:
            self.state.reasons = {}
            return
        self.state.settings, self.state.reasons = result
        self.state.recommended = self.state.settings

    def use_demo(self) -> None:
        self.state.settings = load_preset(DEMO_PRESET)
        self.state.pinned = preset_fields(DEMO_PRESET)
        self.recommend_for_inputs()
        remember(self.state.settings)

    async def action_quit(self, code: int = 0) -> None:
        """Quitting mid-training saves a checkpoint and waits for the worker first. Every
        way out comes here: `q`, Textual's ctrl+q, the command palette's Quit, a signal."""
        if self.quitting:
            return
        self.quitting = True
        train = self.train_screen
        if train is not None and train.running:
            self.notify("saving a checkpoint before quitting…")
            train.stop_event.set()
            await self.workers.wait_for_complete()
        self.exit(code)


class AttachApp(App):
    """`finetune-tui attach`: the Train panel fed by a run's metrics.jsonl, read-only."""

    CSS_PATH = "app.tcss"
    TITLE = "finetune-tui attach"
    BINDINGS = [Binding("q", "quit", "Quit (the run goes on)")]

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.hardware = None
        self.capture_fds = False

    def on_mount(self) -> None:
        self.push_screen(TrainScreen(attach_to=self.run_dir))


def initial_settings(args: argparse.Namespace | None) -> TrainSettings:
    """The preset given, else the last model/dataset remembered, else the defaults.

    Paths (remembered ones, --output) are taken as text, never parsed as YAML: a folder
    named `yes` or `1e3` stays a folder name.
    """
    overrides = list(getattr(args, "overrides", []) or [])
    output = getattr(args, "output", None)
    values = {"output.dir": output} if output else {}
    preset = getattr(args, "preset", None)
    if preset:
        return load_preset(preset, overrides, values)
    try:
        remembered = with_changes(TrainSettings(), recall(), source="remembered settings")
        data = apply_overrides(remembered.model_dump(), overrides)
        return with_changes(validate_settings(data, source="--set"), values)
    except FinetuneError:
        return TrainSettings()


def pinned_fields(args: argparse.Namespace | None) -> set[str]:
    """What the user chose on the command line: the preset's fields and every --set."""
    pinned = override_keys(getattr(args, "overrides", []) or [])
    preset = getattr(args, "preset", None)
    return pinned | (preset_fields(preset) if preset else set())


def run_app(args: argparse.Namespace) -> int:
    app = FinetuneApp(
        initial_settings(args),
        capture_fds=True,
        pinned=pinned_fields(args),
        simulated_gpu=getattr(args, "gpu", None),
        simulated_vram=getattr(args, "vram", None),
        catch_signals=True,
        driver_class=terminal_driver(),
    )
    detach_ui_from_fd2()
    try:
        code = app.run()
    finally:
        app.settle_training()
    return code or app.return_code or 0  # a crash (an error screen) is 1, never 0


def terminal_driver():
    """Textual's Linux driver, sized from the terminal it draws on (detach_ui_from_fd2's
    duplicate) rather than from fd 1, which a run points at its log: resized mid-training,
    the wizard drew at 80 x 25. None elsewhere: Textual's own choice."""
    if sys.platform == "win32":
        return None
    from textual.drivers.linux_driver import LinuxDriver

    class TerminalDriver(LinuxDriver):
        def _get_terminal_size(self) -> tuple[int, int]:
            try:
                width, height = os.get_terminal_size(self._file.fileno())
            except (AttributeError, OSError, ValueError):
                return super()._get_terminal_size()
            return width or 80, height or 25

    return TerminalDriver


def detach_ui_from_fd2() -> None:
    """Call before `App.run()`: the UI keeps drawing while training points fd 2 at its log.

    Textual's driver writes to `sys.__stderr__`; give it its own duplicate of the terminal
    (the run's side: engine/train/fdcapture.py).
    """
    ui = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    sys.__stderr__ = ui


def run_attach(run_dir: Path) -> int:
    return AttachApp(run_dir).run() or 0
