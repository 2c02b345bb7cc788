"""The training recipe's data side, written once: records -> TRL examples -> train/eval.

As with engine/recipe/model.py (the model side), the runner calls these functions and the
exported script carries their source verbatim (a test compares them byte for byte), so
the script trains on the examples the run trained on. The product reads files through
engine/data/ (bounded reads, validation and line-numbered errors: reading.py, formats.py);
`read_records` is the script's plain reader of the same files (a test checks that both
read the same records). Same rules as the model side: plain values in and out, imports
inside the functions.
"""

ALPACA_PROMPT = (
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}


def json_records(value):
    """The records of a parsed .json dataset: a list of them, or an object with exactly one
    key holding a list ({"data": [...]}); None for anything else, where a guess could train
    on the wrong list."""
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list)]
        value = lists[0] if len(lists) == 1 else None
    return value if isinstance(value, list) else None


def read_records(path):
    """The records of a .jsonl, .json, .csv or .parquet file, or of a folder written by
    Dataset.save_to_disk (its 'train' split)."""
    import json
    from pathlib import Path

    path = Path(path)
    if path.is_dir():
        return saved_records(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    with open(path, encoding="utf-8-sig", newline="") as file:
        if suffix == ".csv":  # empty cells are missing fields
            import csv

            rows = csv.DictReader(file)
            return [
                {k: v for k, v in row.items() if k is not None and v not in (None, "")}
                for row in rows
            ]
        if suffix == ".json":
            records = json_records(json.load(file))
            if records is None:
                raise ValueError(f"{path}: expected a list of records (or one key holding it)")
            return records
        records = []
        for number, line in enumerate(file, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError as error:
                    raise ValueError(f"{path}:{number}: not a JSON record ({error})") from None
        return records


def saved_records(folder):
    """The records of a folder Dataset.save_to_disk wrote (a DatasetDict's 'train' split);
    any other folder one line naming it, as the product says it, not datasets' traceback."""
    from datasets import DatasetDict, load_from_disk

    try:
        loaded = load_from_disk(str(folder))
    except (FileNotFoundError, ValueError):
        raise ValueError(f"{folder}: folder is not a dataset saved with save_to_disk") from None
    if isinstance(loaded, DatasetDict):
        if "train" not in loaded:
            raise ValueError(f"{folder}: saved DatasetDict has no 'train' split")
        loaded = loaded["train"]
    return loaded.to_list()


def examples_of(records, data_format, eos_token, where):
    """Every record as an example (to_example), a record that lacks a field its format needs
    or holds the wrong kind of value stopping the script in one line that names it, rather
    than a KeyError's traceback (the product validates its records before this; a script's
    DATA can be any file)."""
    examples = []
    for number, record in enumerate(records, 1):
        try:
            if not isinstance(record, dict):
                raise TypeError(f"expected an object of fields, not {type(record).__name__}")
            example = to_example(record, data_format, eos_token)
        except KeyError as error:
            problem = f"no field {error}"
        except (TypeError, AttributeError) as error:
            problem = str(error)
        else:
            problem = "label: expected true or false" if example.get("label", 1) is None else None
        if problem:
            raise ValueError(f"{where}: record {number}: {problem} ({data_format} records)")
        examples.append(example)
    return examples


def to_example(record, data_format, eos_token):
    """One record as TRL's SFTTrainer trains on it: Alpaca's prompt template with the
    answer and EOS as the completion; chat turns as prompt (all but the last) and
    completion (the answer); plain text as it is. Preference records keep TRL's own
    columns (prompt / chosen / rejected, or prompt / completion / label)."""
    if data_format in ("preference", "unpaired_preference"):
        return preference_example(record, data_format)
    if data_format == "text":
        return {"text": record["text"]}
    if data_format == "alpaca":
        template = ALPACA_PROMPT if record.get("input") else ALPACA_PROMPT_NO_INPUT
        prompt = template.format(instruction=record["instruction"], input=record.get("input", ""))
        return {"prompt": prompt, "completion": record["output"] + eos_token}
    if data_format == "sharegpt":
        turns = [
            {"role": SHAREGPT_ROLES[t["from"]], "content": t["value"]}
            for t in record["conversations"]
        ]
    else:
        turns = [{"role": t["role"], "content": t["content"]} for t in record["messages"]]
    return {"prompt": turns[:-1], "completion": turns[-1:]}


def preference_example(record, data_format):
    """A preference record in TRL's columns, chat turns reduced to role and content; a
    conversation pair without a prompt has it taken out by TRL's extract_prompt (the turns
    chosen and rejected share), so every example has the same columns."""

    def plain(value):
        if isinstance(value, list):
            return [{"role": t["role"], "content": t["content"]} for t in value]
        return value

    if data_format == "unpaired_preference":
        example = {name: plain(record[name]) for name in ("prompt", "completion")}
        return {**example, "label": kto_label(record["label"])}
    example = {name: plain(record[name]) for name in ("chosen", "rejected")}
    if record.get("prompt") is None:
        from trl.data_utils import extract_prompt

        return extract_prompt(example)
    return {"prompt": plain(record["prompt"]), **example}


def kto_label(value):
    """A KTO label as TRL reads it (True: desirable), from JSON's true / false or 0 / 1, or
    a CSV cell's text of them ("true", "False", "1"); None for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        return {"true": True, "false": False, "1": True, "0": False}.get(value.strip().lower())
    return None


def split_sizes(count, eval_fraction, max_samples):
    """(trained, held out) records of a split: ceil(count x fraction) held out, datasets'
    own rounding, when that is at least one whole sample; then at most max_samples trained.
    The plan counts a run's steps by the same rule."""
    import math

    held_out = 0
    if eval_fraction > 0 and count * eval_fraction >= 1:
        held_out = math.ceil(count * eval_fraction)
    trained = count - held_out
    if max_samples:
        trained = min(trained, max_samples)
    return trained, held_out


def split_examples(examples, eval_fraction, max_samples, seed):
    """A seeded train/eval split (split_sizes), then the first records of the training part;
    without a split, the records seeded-shuffled all the same: KTO trains them in this order
    (its sampler is sequential), and a file sorted by label trained all its good answers
    first."""
    from datasets import Dataset

    dataset = Dataset.from_list(examples)
    trained, held_out = split_sizes(len(dataset), eval_fraction, max_samples)
    train, evaluation = dataset.shuffle(seed=seed), None
    if held_out:
        split = dataset.train_test_split(test_size=held_out, seed=seed)
        train, evaluation = split["train"], split["test"]
    if trained < len(train):
        train = train.select(range(trained))
    return train, evaluation


# What the exported script copies, in order: the constants, then the functions.
DATA_CONSTANTS = ("ALPACA_PROMPT", "ALPACA_PROMPT_NO_INPUT", "SHAREGPT_ROLES")
DATA_FUNCTIONS = (
    json_records,
    read_records,
    saved_records,
    to_example,
    examples_of,
    preference_example,
    kto_label,
    split_sizes,
    split_examples,
)
