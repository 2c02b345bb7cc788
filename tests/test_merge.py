"""`finetune-tui merge`: a trained demo run's adapter merged into its base, loaded alone as a
user loads it, answering as the adapter did; every refusal one line with nothing written."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest
from conftest import (
    DEMO_PRESET,
    FEW,
    copy_finished_run,
    read_until,
    run_exported,
    set_args,
    start_cli,
    start_live_run,
    stop_live_run,
)

from finetune_tui.engine.common.errors import ModelError


# A short demo run that holds 10% of the records out (the parity check prompts with them).
@pytest.fixture(scope="session")
def merge_template(learned_demo) -> Path:
    """The session's learned demo run (it holds held-out records); tests copy it."""
    result, run = learned_demo
    assert result.returncode == 0, result.stderr[-2000:]
    return run


@pytest.fixture
def no_loading(monkeypatch):
    """A refusal loads no weights: the base loader fails the test if it is reached."""
    from finetune_tui.engine.deliver import merge

    def refuse(*args, **kwargs):
        raise AssertionError("the base model was loaded before the refusal")

    monkeypatch.setattr(merge, "adapter_on_base", refuse)


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    tensors = {}
    for file in sorted(folder.glob("*.safetensors")):
        tensors |= load_file(file)
    return tensors


def test_a_merged_run_loads_alone_and_answers_as_its_adapter(cli, merge_template, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from finetune_tui.engine.common.demo import ensure_demo_model

    run = copy_finished_run(merge_template, tmp_path / "run")
    out = tmp_path / "run-merged"  # no -o: beside the run, as the run's last line says
    result = cli("merge", str(run), "--max-shard-size", "2MB")
    assert result.returncode == 0, result.stderr
    verdict = result.stdout.strip().splitlines()[-1]
    assert "parity: identical first 16 greedy tokens on 4 held-out prompts" in verdict
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no leftover

    model = AutoModelForCausalLM.from_pretrained(out)  # as a user loads it: no peft, no us
    assert model.dtype.is_floating_point and not hasattr(model, "peft_config")
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template
    assert tokenizer.eos_token_id in GenerationConfig.from_pretrained(out).eos_token_id
    assert len(list(out.glob("*.safetensors"))) > 1  # sharded at --max-shard-size
    report = json.loads((out / "merge_report.json").read_text())
    assert report["parity"]["identical"] and report["parity"]["prompt_source"] == "held-out"
    assert report["files"]["stop_tokens_complete"]
    # what the merge used, beside its plan (the plan holds the checkpoint's files on a CPU)
    measured, plan = report["measured"], report["plan"]
    assert measured["seconds"] > 0 and measured["host_peak_gib"] >= measured["host_added_gib"]
    assert plan["read_bytes"] == round(
        sum(f.stat().st_size for f in ensure_demo_model().glob("*.safetensors")) / 2**30, 3
    )
    said = f"measured: host memory +{measured['host_added_gib']:.2f} GiB (planned "
    assert said in result.stdout
    # what `ship --to gguf` will run its files on: the merge's own prompts and answers
    from finetune_tui.engine.deliver import gguf_answers

    reference = gguf_answers.read_reference(out, tokenizer)
    assert reference.prompts == report["parity"]["prompt_texts"] and len(reference.prompts) == 4
    assert [tokenizer.decode(a) for a in reference.answers] == [
        c["merged"] for c in report["parity"]["continuations"]
    ]
    # ...and how near the merged model came to other tokens, to weigh a file's near-ties
    from finetune_tui.engine.deliver.parity import KEPT_LOGPROBS

    for answer, top in zip(reference.answers, reference.merged_top, strict=True):
        assert len(top) == len(answer) and all(len(step) == KEPT_LOGPROBS for step in top)
        assert [step[0][0] for step in top] == answer  # greedy: its token is the likeliest
        assert all(step[0][1] >= step[-1][1] for step in top)
    older = json.loads(json.dumps(report))
    for continuation in older["parity"]["continuations"]:
        del continuation["merged_top"]
    (out / "merge_report.json").write_text(json.dumps(older))
    assert gguf_answers.read_reference(out, tokenizer).merged_top is None  # token for token
    report["parity"]["tokens"] = "16"
    (out / "merge_report.json").write_text(json.dumps(report))
    with pytest.raises(ModelError, match=r"merge_report.json: parity.prompt_texts"):
        gguf_answers.read_reference(out, tokenizer)

    base, merged = _weights(ensure_demo_model()), _weights(out)
    changed = [name for name in base if "q_proj" in name and not base[name].equal(merged[name])]
    assert changed, "the adapter's update is not in the merged weights"


def test_merge_refuses_an_existing_folder_or_a_link_before_loading(
    cli, merge_template, tmp_path, no_loading
):
    run = copy_finished_run(merge_template, tmp_path / "run")
    existing = tmp_path / "existing"
    existing.mkdir()
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere")
    for target, words in ((existing, "exists"), (link, "symbolic link")):
        result = cli("merge", str(run), "-o", str(target))
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1 and words in result.stderr
    assert list(existing.iterdir()) == [] and not (tmp_path / "nowhere").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "existing", "link", "run"]


def test_nothing_is_written_inside_what_a_run_trained(cli, merge_template, tmp_path, no_loading):
    """A merge into RUN/adapter/sub put a whole model where vLLM loads the adapter from;
    compare -o RUN/checkpoints/x.jsonl wrote among the checkpoints."""
    run = copy_finished_run(merge_template, tmp_path / "run")
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    for args in (
        ("merge", str(run), "-o", str(run / "adapter" / "sub")),
        ("compare", str(run), "-o", str(run / "checkpoints" / "x.jsonl")),
    ):
        result = cli(*args)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
        assert "what the run trained; give a path outside it" in result.stderr
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before


def test_merging_a_full_fine_tuning_run_into_a_folder_is_refused(
    cli, merge_template, tmp_path, no_loading
):
    """`merge FULL_RUN -o OUT` said "nothing to merge", exit 0, and wrote no OUT: a
    scripted `merge RUN -o OUT && ship OUT` went on to a confusing error."""
    run = copy_finished_run(merge_template, tmp_path / "run")
    settings = run / "settings.yaml"
    settings.write_text(settings.read_text().replace("method: lora", "method: full"))
    result = cli("merge", str(run), "-o", str(tmp_path / "fm"))
    assert result.returncode == 2 and not (tmp_path / "fm").exists()
    assert f"nothing is written to {tmp_path / 'fm'}; the model is {run / 'adapter'}" in (
        result.stderr
    )


def test_merge_refuses_a_run_without_an_adapter(cli, merge_template, tmp_path, no_loading):
    run = copy_finished_run(merge_template, tmp_path / "run")
    shutil.rmtree(run / "adapter")
    result = cli("merge", str(run), "-o", str(tmp_path / "merged"))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "no adapter to merge" in result.stderr
    assert not (tmp_path / "merged").exists()


def test_merge_refuses_what_memory_cannot_hold_with_the_numbers(
    cli, merge_template, tmp_path, monkeypatch, no_loading
):
    from finetune_tui.engine.deliver import merge_plan

    monkeypatch.setattr(merge_plan, "available_host_bytes", lambda: 1_000_000)  # ~1 MB free
    run = copy_finished_run(merge_template, tmp_path / "run")
    result = cli("merge", str(run), "-o", str(tmp_path / "merged"))
    assert result.returncode == 2
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "GiB of host memory" in line, line
    assert "0.00 GiB available" in line and "nothing was loaded" in line
    assert not (tmp_path / "merged").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_merge_refuses_a_disk_too_small_naming_the_folder_that_exists(
    cli, merge_template, tmp_path, monkeypatch, no_loading
):
    """-o may name folders still to be made: the free space is that of the nearest one that
    exists, and nothing is made when it is too small."""
    from finetune_tui.engine.deliver import merge_plan

    monkeypatch.setattr(merge_plan, "free_bytes", lambda folder: 1000.0)
    run = copy_finished_run(merge_template, tmp_path / "run")
    result = cli("merge", str(run), "-o", str(tmp_path / "a" / "b" / "merged"))
    assert result.returncode == 2
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "of disk" in line, line
    assert f"{tmp_path} has 0.00 GiB free; choose another -o" in line
    assert not (tmp_path / "a").exists()


def test_a_qlora_run_merges_into_an_unquantised_base(merge_template, tmp_path, monkeypatch):
    """On a CPU the run cannot have trained in NF4; its settings say it did, and the merge
    must still ask the loader for the base without quantisation, in 16/32 bits."""
    from finetune_tui.engine.deliver import merge
    from finetune_tui.engine.recipe import merging

    run = copy_finished_run(merge_template, tmp_path / "run")
    settings = run / "settings.yaml"
    text = settings.read_text()
    assert "mode: none" in text
    settings.write_text(text.replace("mode: none", "mode: nf4", 1))
    asked = []
    real = merging.load_model

    def recording(path, dtype, attention, quantization, *rest):
        asked.append((dtype, quantization))
        return real(path, dtype, attention, quantization, *rest)

    monkeypatch.setattr(merging, "load_model", recording)
    result = merge.merge_run(run, tmp_path / "merged", prompts=2, tokens=8, say=lambda line: None)
    assert asked == [("fp32", "none")]  # CPU: fp32; never the run's nf4
    assert result.report["run_quantization"] == "nf4" and result.report["merged_dtype"] == "fp32"
    assert result.ok


def test_the_exported_script_merges_after_training_when_asked(tmp_path):
    """`python train.py --set MERGE=True`: OUTPUT/merged loads without PEFT and answers the
    demo's held-out prompts as the adapter on its base does, token for token."""

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from finetune_tui.engine.common.demo import ensure_demo_model
    from finetune_tui.engine.deliver import parity
    from finetune_tui.engine.export.script import render_script
    from finetune_tui.engine.settings.preset import load_preset

    script = tmp_path / "train.py"
    script.write_text(render_script(load_preset(DEMO_PRESET), {}))
    sets = ("MERGE=True", "max_steps=3", "OUTPUT=out", "EVAL_FRACTION=0", f"MAX_SAMPLES={FEW}")
    result = run_exported(tmp_path, script, *set_args(*sets))
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "out"
    assert "merged model saved to" in result.stdout

    merged = AutoModelForCausalLM.from_pretrained(out / "merged")
    tokenizer = AutoTokenizer.from_pretrained(out / "merged")
    assert tokenizer.chat_template
    assert GenerationConfig.from_pretrained(out / "merged").eos_token_id == [tokenizer.eos_token_id]
    adapter = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(ensure_demo_model()), out / "adapter"
    )
    words = ("qzvfa", "mobel", "trank")
    prompts = [{"prompt": [{"role": "user", "content": f"Uppercase: {w}"}]} for w in words]
    texts = parity.prompt_texts(tokenizer, prompts)
    want = parity.greedy_continuations(adapter, tokenizer, texts, 12)
    got = parity.greedy_continuations(merged, tokenizer, texts, 12)
    assert parity.compare(want, got, tokenizer)["identical"]
    base, weights = _weights(ensure_demo_model()), _weights(out / "merged")
    assert any(not base[name].equal(weights[name]) for name in base if "proj" in name)


def test_stop_tokens_are_eos_and_the_templates_end_of_turn():
    """A ChatML-style template closes answers with <|im_end|>, not EOS: a merged model whose
    generation config named EOS alone would talk past its answer."""
    from transformers import AutoTokenizer

    from finetune_tui.engine.common.demo import ensure_demo_model
    from finetune_tui.engine.deliver.generate import end_of_turn_id
    from finetune_tui.engine.recipe.merging import stop_token_ids

    tokenizer = AutoTokenizer.from_pretrained(ensure_demo_model())
    assert stop_token_ids(tokenizer) == [tokenizer.eos_token_id]  # the demo ends turns with EOS
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_end|>"]})
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert stop_token_ids(tokenizer) == [tokenizer.eos_token_id, im_end]
    assert end_of_turn_id(tokenizer) == im_end  # the Try screen stops where the merge does
    tokenizer.chat_template = "{{ raise_exception('only system turns') }}"
    assert stop_token_ids(tokenizer) == [tokenizer.eos_token_id]


def test_a_gpu_merge_plans_the_host_memory_of_the_checkpoint_it_maps(tmp_path, monkeypatch):
    """On a GPU the weights go to the card as they are read, but the host still maps the
    checkpoint's files (an 8 B model from one 15 GiB file added 15.07 GiB on an H200) or
    holds one merged shard on its way to disk, whichever is larger."""
    import torch

    from finetune_tui.engine.common.demo import ensure_demo_model
    from finetune_tui.engine.deliver import merge_plan
    from finetune_tui.engine.settings.preset import settings_from_overrides

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(merge_plan, "available_gpu_bytes", lambda: 2**40)
    monkeypatch.setattr(merge_plan, "merge_dtype", lambda gpu: "bf16" if gpu else "fp32")
    model = str(ensure_demo_model())
    settings = settings_from_overrides([f"model.name_or_path={model}"])
    adapter = tmp_path / "adapter.safetensors"
    adapter.write_bytes(b"\0" * 4096)
    files = merge_plan.weight_file_bytes(model)
    assert files > 0
    small = merge_plan.plan_merge(settings, model, [adapter], max_shard=1024)
    assert small.device == "cuda"
    assert small.read_bytes == files and small.host_needed == files + 4096
    large = merge_plan.plan_merge(settings, model, [adapter], max_shard=2**40)
    assert large.read_bytes == max(files, large.base_bytes)


def _continuation(steps):
    """Greedy tokens over a 4-token vocabulary: each step (token, runner-up, nats ahead)."""
    import torch

    from finetune_tui.engine.deliver.parity import Continuation

    logprobs = []
    for token, runner_up, ahead in steps:
        logits = torch.full((4,), -9.0)
        logits[token], logits[runner_up] = 0.0, -ahead
        logprobs.append(torch.log_softmax(logits, dim=-1))
    return Continuation([token for token, _, _ in steps], logprobs)


class _Letters:
    def decode(self, ids):
        return "".join("abcd"[i] for i in ids)


ADAPTER = [(0, 3, 2.0), (1, 2, 0.09), (2, 3, 2.0)]


@pytest.mark.parametrize(
    "merged, agrees",
    [
        (ADAPTER, True),
        ([(0, 3, 2.0), (2, 1, 0.09), (1, 3, 2.0)], True),  # a near-tie flipped: rounding
        ([(0, 3, 2.0), (2, 1, 1.5), (1, 3, 2.0)], False),  # the merged model is sure of it
    ],
    ids=["identical", "near-tie", "changed-model"],
)
def test_parity_tells_a_rounding_flip_from_a_changed_model(merged, agrees):
    """A bf16 merge rounds W + BA once: a token both models barely preferred can flip (an
    8 B model on an H200: 0.094 nats), agreement within the stated tolerance; a token
    either model preferred by more is a merge that changed the model, and merge exits 1."""
    from finetune_tui.engine.deliver import parity

    report = parity.compare([_continuation(ADAPTER)], [_continuation(merged)], _Letters())
    assert report["identical"] == (merged == ADAPTER)
    assert report["agrees"] is agrees
    line = parity.verdict(report, 3)
    if report["identical"]:
        assert line.startswith("parity: identical first 3 greedy tokens on 1 held-out")
    elif agrees:
        assert line.startswith("parity: agrees within rounding (0.25 nats)"), line
        assert "on 0 of 1 prompts; a near-tie on prompt 1 at token 2" in line
    else:
        assert line.startswith("parity: DIFFERS on prompt 1 at token 2: adapter 'b' vs merged 'c'")


def test_merge_refuses_a_run_that_is_still_training(cli, merge_template, tmp_path, no_loading):
    """It merged the adapter of the run's last stop while the run trained on (compare and
    chat refused): the adapter is written over when the run ends."""
    run = copy_finished_run(merge_template, tmp_path / "run")
    live = start_live_run(run)
    try:
        result = cli("merge", str(run), "-o", str(tmp_path / "merged"))
    finally:
        stop_live_run(live)
    assert result.returncode == 2 and "the run is still training; merge it once" in result.stderr
    assert not (tmp_path / "merged").exists()


def test_ship_refuses_a_run_that_is_still_training(cli, merge_template, tmp_path):
    """ship --to vllm wrote a serve script for the adapter the running run replaces."""
    run = copy_finished_run(merge_template, tmp_path / "run")
    live = start_live_run(run)
    try:
        result = cli("ship", str(run), "--to", "vllm")
    finally:
        stop_live_run(live)
    assert result.returncode == 2 and "the run is still training; ship it once" in result.stderr
    assert not list(run.glob("serve-*"))


def test_merge_of_dot_writes_beside_the_run_and_compare_never_writes_through_a_link(
    cli, merge_template, tmp_path, monkeypatch
):
    """`merge .` from inside a run named its output '.-merged', inside the run; compare -o
    wrote through a link planted in the run folder (merge and ship refused it)."""
    from finetune_tui.engine.deliver.model_folder import merged_folder

    run = copy_finished_run(merge_template, tmp_path / "run")
    monkeypatch.chdir(run)
    assert merged_folder(Path(".")) == tmp_path / "run-merged"
    monkeypatch.chdir(run / "adapter")
    assert merged_folder(Path("..")) == tmp_path / "run-merged"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (run / "lnk").symlink_to(elsewhere)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Uppercase: abc\n")
    result = cli("compare", str(run), "--prompts", str(prompts), "-o", str(run / "lnk" / "x.jsonl"))
    assert result.returncode == 2 and "is a symbolic link inside the run folder" in result.stderr
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_merge_ended_by_sigterm_or_sighup_leaves_no_half_written_folder(
    merge_template, tmp_path, signum
):
    """Killed where it stood, a merge left `.merged.merging-PID` holding a model's weights,
    which no later merge removed; Ctrl-C cleaned up. Now every stop does."""
    run = copy_finished_run(merge_template, tmp_path / "run")
    proc = start_cli(tmp_path, "merge", str(run), "-o", str(tmp_path / "merged"))
    try:
        read_until(proc, lambda line: line.startswith("merging in"))
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, err[-1500:]
    assert f"finetune-tui: interrupted ({signal.Signals(signum).name})" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "run"]


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        ("adapter_model.safetensors", "adapter_model.safetensors: truncated safetensors file"),
        ("adapter_config.json", "adapter_config.json"),
        ("tokenizer.json", "tokenizer.json"),
    ],
)
def test_an_adapter_cut_short_is_one_line_for_merge_and_compare(
    cli, merge_template, tmp_path, no_loading, damage, said
):
    """A kill or a full disk during the final save: merge and compare printed "internal
    error: SafetensorError" or a JSONDecodeError."""
    run = copy_finished_run(merge_template, tmp_path / "run")
    file = run / "adapter" / damage
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    for args in (["merge", str(run), "-o", str(tmp_path / "merged")], ["compare", str(run)]):
        result = cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and said in lines[0] and "internal error" not in lines[0]
    assert not (tmp_path / "merged").exists()


def test_merge_refuses_a_base_stored_4bit_by_bitsandbytes(
    cli, merge_template, tmp_path, no_loading
):
    """A run trained on a *-bnb-4bit copy: its base has no 16-bit weights; merging would
    round the adapter's update into 4-bit ones (the quality drop merge exists to avoid)."""
    import json

    import yaml

    from finetune_tui.engine.common.demo import ensure_demo_model

    base = tmp_path / "demo-bnb-4bit"
    shutil.copytree(ensure_demo_model(), base)
    config = json.loads((base / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (base / "config.json").write_text(json.dumps(config))
    run = copy_finished_run(merge_template, tmp_path / "run")
    settings = yaml.safe_load((run / "settings.yaml").read_text())
    settings["model"]["name_or_path"] = str(base)
    (run / "settings.yaml").write_text(yaml.safe_dump(settings))
    result = cli("merge", str(run), "-o", str(tmp_path / "merged"))
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "stored fp4 by bitsandbytes" in line, line
    assert not (tmp_path / "merged").exists()


@pytest.mark.parametrize("damage", ["nan", "renamed", "narrower"])
def test_an_adapter_that_would_not_apply_is_refused_by_merge_and_compare(
    cli, merge_template, tmp_path, damage
):
    """A diverged run's NaN adapter merged into NaN weights, and keys renamed (or a config
    naming fewer layers) left the base as it was: both said "parity: identical", as the
    check compared the same broken adapter twice. An adapter of other widths than the base
    (another model's) was torch's size-mismatch text inside "internal error"."""
    from safetensors.torch import load_file, save_file

    run = copy_finished_run(merge_template, tmp_path / "run")
    weights = run / "adapter" / "adapter_model.safetensors"
    tensors = load_file(weights)
    if damage == "nan":
        tensors = {key: value * float("nan") for key, value in tensors.items()}
        message = "holds NaN or infinite values (the run diverged)"
    elif damage == "renamed":
        tensors = {key.replace("layers.", "blocks."): value for key, value in tensors.items()}
        message = "the adapter's weights are not the ones its config's layers take"
    else:  # trained on a base of other widths: torch's size mismatch inside "internal error"
        tensors = {
            key: value[:, :-8].contiguous() if "lora_A" in key else value
            for key, value in tensors.items()
        }
        message = "in the adapter but [32, 128] in the base model"
    save_file(tensors, weights)
    output = tmp_path / "new" / "deeper" / "merged"  # folders made for it go when it fails
    merged = cli("merge", str(run), "-o", str(output))
    assert merged.returncode == 2 and message in merged.stderr, merged.stderr[-1500:]
    assert not (tmp_path / "new").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Uppercase: abc\n")
    compared = cli("compare", str(run), "--prompts", str(prompts))
    assert compared.returncode == 2 and message in compared.stderr, compared.stderr[-1500:]


def test_a_shard_size_in_gib_and_too_many_tokens_are_read_or_refused_before_loading(
    cli, merge_template, tmp_path, no_loading
):
    """--max-shard-size 5GiB passed the check and failed in save_pretrained after the merge
    ("Unit 'IB' not supported"); --tokens 5000 failed at generation: both internal errors."""
    from finetune_tui.engine.deliver.merge_plan import shard_bytes

    assert shard_bytes("5GiB") == 5 * 2**30 and shard_bytes("5GB") == 5 * 10**9
    run = copy_finished_run(merge_template, tmp_path / "run")
    result = cli("merge", str(run), "-o", str(tmp_path / "merged"), "--tokens", "5000")
    assert result.returncode == 2 and "--tokens 5000: must be 1..4096" in result.stderr
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    result = cli("merge", str(run), "-o", str(tmp_path / "gone" / "sub" / "merged"))
    assert result.returncode == 2 and "cannot make this folder" in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("r", "message"),
    [
        (8, "r is 8, but adapter_model.safetensors holds rank"),
        ("abc", "r is 'abc', not a positive rank"),
    ],
)
def test_an_edited_adapter_rank_is_one_line_before_loading(
    cli, merge_template, tmp_path, no_loading, r, message
):
    """An edited r was the library's size-mismatch RuntimeError, an internal error."""
    import json

    run = copy_finished_run(merge_template, tmp_path / "run")
    config_file = run / "adapter" / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config["r"] = r
    config_file.write_text(json.dumps(config))
    result = cli("merge", str(run), "-o", str(tmp_path / "merged"))
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / "merged").exists()
