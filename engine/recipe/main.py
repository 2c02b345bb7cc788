"""The exported script's main(), written once as plain Python.

engine/export/script.py copies these functions into the script verbatim (`inspect.getsource`; a
test compares them byte for byte) below the constant block it writes from the settings, so
here they read the script's constants as globals. Whatever differs between settings is one
of those constants or a plain branch on one. The runner trains through the same recipe
functions (engine/recipe/model.py, engine/recipe/examples.py) with its own events instead of main(),
and a test checks that the script reproduces the runner's losses.
"""

from .examples import examples_of, read_records, split_examples
from .lora_targets import auto_lora_targets, lora_config
from .merging import merge_adapter
from .model import (
    attention_implementation,
    compute_dtype,
    keep_kernel_tunings,
    load_model,
    load_tokenizer,
    load_unsloth_model,
)
from .trainer import planned_allocator, save_whole, trainer_arguments, trainer_classes

# What main() reads. The exported script defines each of these above its functions
# (engine/export/script.py writes them from the settings); here, where main() never runs, None.
MODEL = TRUST_REMOTE_CODE = ATTENTION = DATA = DATA_FORMAT = EVAL_FRACTION = OBJECTIVE = None
MAX_SAMPLES = METHOD = LORA_R = LORA_ALPHA = LORA_DROPOUT = LORA_TARGETS = None
USE_RSLORA = QUANTIZATION = DOUBLE_QUANT = COMPUTE_DTYPE = BACKEND = None
GRADIENT_CHECKPOINTING = USE_REENTRANT = SAVE_EVERY_EPOCH = OUTPUT = TRAINER = MERGE = None
RESUME = RULES = None


def command_line():
    """The NAME=VALUE assignments given on the command line: --set NAME=VALUE, and --model,
    --data, --output, --max-steps and --resume as short forms of the most often changed."""
    import argparse

    parser = argparse.ArgumentParser(
        description="Fine-tune as the constants at the top of this script say. "
        "--set NAME=VALUE changes one: NAME is a constant (upper case) or one of the TRL config's "
        "arguments in TRAINER (lower case); VALUE is a Python literal (16, 2e-4, True, None, "
        "[...]), else it is taken as a string (a path, a Hub ID). Ctrl-C or SIGTERM while "
        "training saves a checkpoint and stops after the step (exit 130 / 143; a second "
        "Ctrl-C exits at once); --resume continues from it."
    )
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--model", help="the same as --set MODEL=...")
    parser.add_argument("--data", help="the same as --set DATA=...")
    parser.add_argument("--output", help="the same as --set OUTPUT=...")
    parser.add_argument("--max-steps", type=int, help="the same as --set max_steps=...")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="the same as --set RESUME=True: continue from the newest complete checkpoint in "
        "OUTPUT/checkpoints (with none there, start from step 0)",
    )
    args = parser.parse_args()
    short = {"MODEL": args.model, "DATA": args.data, "OUTPUT": args.output}
    short["max_steps"] = args.max_steps
    short["RESUME"] = True if args.resume else None
    given = [f"{name}={value!r}" for name, value in short.items() if value is not None]
    return given + args.set


def override(assignments, constants, rules):
    """nanoGPT's configurator, one NAME=VALUE at a time: NAME is one of the script's
    constants (upper case) or one of the TRL config's arguments in TRAINER (lower case); VALUE is
    read as a Python literal, else kept as a string. A name that is neither stops the
    script in one line, before anything loads."""
    import ast

    for assignment in assignments:
        name, equals, text = assignment.partition("=")
        if not equals:
            raise SystemExit(f"--set {assignment}: expected NAME=VALUE")
        try:
            value = ast.literal_eval(text)
        except (SyntaxError, ValueError):
            value = text
        if name.isupper() and name in rules:  # not TRAINER, RULES or the prompt templates
            constants[name] = value
        elif name in constants["TRAINER"]:
            constants["TRAINER"][name] = value
        elif name in constants:
            raise SystemExit(f"--set {assignment}: not a setting (TRAINER's keys are set by name)")
        else:
            raise SystemExit(
                f"--set {name}: unknown name; use a constant at the top of this script "
                "or a key of its TRAINER"
            )
        problem = value_problem(value, rules.get(name))
        if problem:
            raise SystemExit(f"--set {assignment}: {problem}")


def value_problem(value, rule):
    """Why `value` breaks `rule`, or None: the JSON Schema the settings schema gives the
    constant's setting (RULES), the few keywords it uses, so that a wrong value is one line
    before anything loads rather than a library's traceback minutes later."""
    import math
    import operator

    if not rule:
        return None
    if "anyOf" in rule:
        problems = [value_problem(value, branch) for branch in rule["anyOf"]]
        return None if None in problems else " or ".join(problems)
    if "const" in rule and value != rule["const"]:
        return f"expected {rule['const']!r}"
    kinds = {"string": (str, "a string"), "boolean": (bool, "True or False"),
             "integer": (int, "an integer"), "number": ((int, float), "a number"),
             "array": (list, "a list"), "null": (type(None), "None")}  # fmt: skip
    kind = rule.get("type")
    numeric = kind in ("integer", "number")
    if kind and (not isinstance(value, kinds[kind][0]) or (numeric and isinstance(value, bool))):
        return f"expected {kinds[kind][1]}, not {value!r}"
    if "enum" in rule and value not in rule["enum"]:
        return "expected one of " + ", ".join(repr(choice) for choice in rule["enum"])
    if isinstance(value, float) and not math.isfinite(value):
        return f"expected a finite number, not {value!r}"
    bounds = (
        ("minimum", "at least", operator.ge),
        ("exclusiveMinimum", "above", operator.gt),
        ("maximum", "at most", operator.le),
        ("exclusiveMaximum", "below", operator.lt),
    )
    for keyword, words, holds in bounds:
        if numeric and keyword in rule and not holds(value, rule[keyword]):
            return f"expected {words} {rule[keyword]}, not {value!r}"
    least = rule.get("minLength", rule.get("minItems", 0))
    if kind in ("string", "array") and len(value) < least:
        return f"expected a non-empty {'list' if kind == 'array' else kind}"
    for item in value if kind == "array" else ():
        problem = value_problem(item, rule.get("items"))
        if problem:
            return f"an item: {problem}"
    return None


def checked(constants, rules):
    """Every constant against its rule, as this file holds it after --set: one line naming
    the first that would fail (an edit at the top of the script as well as a --set)."""
    for name, rule in rules.items():
        if not name.isupper() and name not in constants["TRAINER"]:
            continue  # a TRAINER key deleted by hand: TRL's default
        value = constants[name] if name.isupper() else constants["TRAINER"][name]
        problem = value_problem(value, rule)
        if problem:
            raise SystemExit(f"{name} = {value!r} (top of this script): {problem}")


def located(model, data):
    """MODEL and DATA as given, except "demo": finetune-tui's demo model (random weights it
    builds once and caches on the machine that trains) and dataset (shipped inside it),
    found through finetune-tui, which only the demo needs installed."""
    if "demo" not in (model, data):
        return model, data
    try:
        from finetune_tui.engine.common.demo import demo_dataset_path, ensure_demo_model
    except ImportError:
        raise SystemExit(
            '"demo" is finetune-tui\'s demo model and dataset: install finetune-tui, or '
            "--set MODEL=... --set DATA=... to your own"
        ) from None
    model = str(ensure_demo_model()) if model == "demo" else model
    data = str(demo_dataset_path(OBJECTIVE)) if data == "demo" else data
    return model, data


def resume_point(output):
    """The checkpoint RESUME continues from, or None: start at step 0. A finished run's
    adapter or model is never written over; an earlier run's checkpoints are continued
    (RESUME) or left alone."""
    import os

    for kept in ("adapter", "model"):  # a finished run's, this script's
        if (output / kept).is_dir() and any((output / kept).iterdir()):
            raise SystemExit(
                f"{output / kept}: holds what an earlier run trained; this script never "
                "writes over it: give another --output"
            )
    checkpoints = output / "checkpoints"
    earlier = checkpoints.is_dir() and any(checkpoints.iterdir())
    if earlier and not RESUME:
        raise SystemExit(
            f"{checkpoints}: holds an earlier run's checkpoints; this script never writes "
            "over them: --resume continues that run, or give another --output"
        )
    checkpoint = last_checkpoint(checkpoints) if RESUME and earlier else None
    if RESUME and os.environ.get("RANK", "0") == "0":  # under accelerate launch: one line
        print(
            f"resuming from {checkpoint}"
            if checkpoint
            else f"--resume: no complete checkpoint in {checkpoints}: starting from step 0"
        )
    return checkpoint


def last_checkpoint(folder):
    """The newest checkpoint-N in `folder` that the Trainer finished writing: its
    trainer_state.json, written last, whole. One cut off mid-save is passed over."""
    import json
    import re

    def complete(path):
        try:
            return isinstance(json.loads((path / "trainer_state.json").read_text()), dict)
        except (OSError, ValueError):
            return False

    found = [p for p in folder.iterdir() if re.fullmatch(r"checkpoint-\d+", p.name)]
    found.sort(key=lambda path: int(path.name.split("-")[1]), reverse=True)
    return next((path for path in found if complete(path)), None)


def loss_log(path, save_every_epoch):
    """A Trainer callback: every logged training loss to `path` as a JSON line (under
    accelerate launch the first process writes it) and, if `save_every_epoch`, a checkpoint
    at the end of every epoch on top of the every-save_steps ones. A run that starts or
    resumes drops the lines of steps it trains again (one cut off after its checkpoint)."""
    import json
    import math

    from transformers import TrainerCallback

    def step_of(line):
        try:
            return json.loads(line)["step"]
        except (ValueError, KeyError, TypeError):  # a line cut off mid-write
            return math.inf

    class LossLog(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero and path.is_file():
                lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
                kept = [line for line in lines if step_of(line) <= state.global_step]
                path.write_text("".join(kept), encoding="utf-8")

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs and state.is_world_process_zero:
                with open(path, "a", encoding="utf-8") as file:
                    record = {"step": state.global_step, "loss": logs["loss"]}
                    file.write(json.dumps(record) + "\n")

        def on_epoch_end(self, args, state, control, **kwargs):
            if save_every_epoch:
                control.should_save = state.global_step > 0
            return control

    return LossLog()


def signal_stop():
    """A Trainer callback: while training, the first SIGINT or SIGTERM asks for a checkpoint
    (the Trainer's own save, each process its part) and a stop at the end of the step, every
    process at the same step. A second Ctrl-C exits at once; a repeated SIGTERM lets the
    save finish (under accelerate launch a job system's SIGTERM reaches a process twice:
    its own and the launcher's copy)."""
    import os
    import signal

    from transformers import TrainerCallback

    class SignalStop(TrainerCallback):
        received = stopped = 0  # the signal's number: this process's, then any process's

        def on_train_begin(self, args, state, control, **kwargs):
            self.says = state.is_world_process_zero
            self.before = {
                s: signal.signal(s, self.handle) for s in (signal.SIGINT, signal.SIGTERM)
            }

        def handle(self, signum, frame):
            if self.received and signum == signal.SIGINT:
                self.say("second Ctrl-C: exiting now (the last complete checkpoint is kept)")
                os._exit(130)
            if not self.received:
                name = signal.Signals(signum).name
                self.say(f"{name}: saving a checkpoint after this step, then stopping")
                self.received = signum

        def say(self, line):  # os.write: a print could land inside the progress bar's
            if self.says:
                os.write(2, f"\n{line}\n".encode())

        def on_step_end(self, args, state, control, **kwargs):
            self.stopped = largest_over_processes(self.received, args.device)
            if self.stopped:
                control.should_save = control.should_training_stop = True
            return control

        def on_train_end(self, args, state, control, **kwargs):
            for signum, handler in self.before.items():
                signal.signal(signum, handler)

    return SignalStop()


def largest_over_processes(value, device):
    """`value` alone, or under accelerate launch the largest any process holds: processes
    get a signal at different moments, and one that stopped alone would leave the others
    waiting at their next collective."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return value
    tensor = torch.tensor([value], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def model_and_lora(path, dtype):
    """The model to train, and the LoRA config the trainer applies to it: none under Unsloth
    (its loader applies LoRA itself) nor under full fine-tuning (every weight trains)."""
    if BACKEND == "unsloth":
        model, _ = load_unsloth_model(
            path,
            TRAINER["max_length"],
            dtype,
            QUANTIZATION,
            LORA_TARGETS,
            LORA_R,
            LORA_ALPHA,
            LORA_DROPOUT,
            USE_RSLORA,
            GRADIENT_CHECKPOINTING,
            TRAINER["seed"],
        )
        return model, None
    attention = attention_implementation(ATTENTION, path)
    model = load_model(path, dtype, attention, QUANTIZATION, DOUBLE_QUANT, TRUST_REMOTE_CODE)
    if BACKEND == "liger":  # Liger's layer kernels; the loss stays TRL's own
        keep_kernel_tunings()
        from liger_kernel.transformers import monkey_patch

        monkey_patch._apply_liger_kernel_to_instance(model=model, fused_linear_cross_entropy=False)
    if METHOD == "full":
        return model, None
    targets = auto_lora_targets(model) if LORA_TARGETS == "auto" else LORA_TARGETS
    return model, lora_config(targets, LORA_R, LORA_ALPHA, LORA_DROPOUT, USE_RSLORA)


def main():
    """Settings → data → model → trainer → train → save (→ merge), as the constants say."""
    override(command_line(), globals(), RULES)
    checked(globals(), RULES)
    planned_allocator(OBJECTIVE)  # before anything touches CUDA
    if BACKEND == "unsloth":  # first of all: it patches transformers, trl and peft
        import unsloth  # noqa: F401
    import json
    from pathlib import Path

    model_path, data_path = located(MODEL, DATA)
    output = Path(OUTPUT)
    checkpoint = resume_point(output)
    try:  # the records before torch loads: a bad one stops the script at once
        records = read_records(data_path)
        examples_of(records, DATA_FORMAT, "", data_path)  # every record's fields, at once
        tokenizer = load_tokenizer(model_path, TRUST_REMOTE_CODE)
        examples = examples_of(records, DATA_FORMAT, tokenizer.eos_token, data_path)
    except ValueError as error:
        raise SystemExit(str(error).strip().splitlines()[0]) from None
    import torch
    import transformers

    output.mkdir(parents=True, exist_ok=True)  # once there is something to train
    train, evaluation = split_examples(examples, EVAL_FRACTION, MAX_SAMPLES, TRAINER["seed"])

    dtype = compute_dtype(COMPUTE_DTYPE)
    arguments = trainer_arguments(
        TRAINER,
        output / "checkpoints",
        evaluation is not None,
        dtype,
        torch.cuda.is_available(),
        GRADIENT_CHECKPOINTING,
        USE_REENTRANT,
        BACKEND,
    )
    config_class, trainer_class = trainer_classes(OBJECTIVE)
    try:  # before the model: ZeRO-3's zero.Init needs it
        config = config_class(**arguments)
    except (TypeError, ValueError) as error:  # TRL's and transformers' own checks of TRAINER
        raise SystemExit(f"TRAINER: {str(error).strip().splitlines()[0]}") from None
    transformers.set_seed(TRAINER["seed"])
    model, lora = model_and_lora(model_path, dtype)
    transformers.set_seed(TRAINER["seed"])  # new weights (LoRA's) start the same every run
    stop = signal_stop()
    trainer = trainer_class(
        model=model,
        args=config,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=[loss_log(output / "losses.jsonl", SAVE_EVERY_EPOCH), stop],
    )
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    if stop.stopped:  # 130 after Ctrl-C, 143 after SIGTERM, as a shell reports a signal's end
        if trainer.is_world_process_zero():
            where = output / "checkpoints" / f"checkpoint-{trainer.state.global_step}"
            print(
                f"stopped: checkpoint saved to {where}; to continue, run the same command "
                "with --resume"
            )
        raise SystemExit(128 + stop.stopped)
    saved = output / ("adapter" if METHOD == "lora" else "model")
    save_whole(trainer, saved)  # every process: sharded weights gather
    scores = trainer.evaluate() if evaluation is not None else None
    if trainer.is_world_process_zero():  # one copy of the tokenizer and of the report
        tokenizer.save_pretrained(str(saved))
        if scores is not None:
            print(json.dumps(scores))
        print(f"{saved.name} saved to {saved}")
    if MERGE and METHOD == "lora" and trainer.is_world_process_zero():
        del trainer, model  # the training copy: the merge loads the base afresh, unquantised
        merge_adapter(model_path, saved, output / "merged", TRUST_REMOTE_CODE)
        print(f"merged model saved to {output / 'merged'}")


def run_script():
    """main(), a file the system refuses (a DATA that is not there, an OUTPUT no file system
    can name, a full disk) said in one line naming the file rather than a traceback."""
    try:
        main()
    except OSError as error:
        if not error.filename:
            raise
        raise SystemExit(f"{error.filename}: {error.strerror or error}") from None


# What the exported script copies, in order, after the recipe's model and data functions.
MAIN_FUNCTIONS = (
    command_line,
    override,
    value_problem,
    checked,
    located,
    resume_point,
    last_checkpoint,
    loss_log,
    signal_stop,
    largest_over_processes,
    model_and_lora,
    main,
    run_script,
)
