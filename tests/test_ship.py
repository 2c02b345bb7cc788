"""`finetune-tui ship --to ollama|vllm`: the Modelfile's template is the model's own chat
template (filled as Ollama fills it, it renders what apply_chat_template renders), the vLLM
script serves what the folder holds, and every refusal comes before anything is written."""

from __future__ import annotations

import os
import re
import shlex
import shutil
from pathlib import Path

import pytest
from conftest import copy_finished_run, start_live_run, stop_live_run

from finetune_tui.engine.common.demo import ensure_demo_model

CHATML_DEFAULT_SYSTEM = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{ '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- set rest = messages[1:] %}"
    "{%- else %}{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- set rest = messages %}{%- endif %}"
    "{%- for m in rest %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)
NO_SYSTEM = (  # a template that refuses a system turn, as some Mistral ones do
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
    "{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + ' [/INST]' }}"
    "{% else %}{{ m['content'] + eos_token }}{% endif %}{% endfor %}"
)


def model_folder(where: Path, template: str | None = None) -> Path:
    """A merged-like model folder: the demo model, with another chat template if given."""
    folder = where / "merged"
    shutil.copytree(ensure_demo_model(), folder)
    if template is not None:
        (folder / "chat_template.jinja").write_text(template)
    return folder


def ollama_fill(template: str, system: str, prompt: str, response: str | None) -> str:
    """Ollama's filling of the three variables; `response` None is the prompt of a turn to
    answer, which Ollama renders only up to `{{ .Response }}`."""
    if response is None:
        template = template[: template.index("{{ .Response }}")]
    branch = r"\{\{ if \.System \}\}(.*?)(?:\{\{ else \}\}(.*?))?\{\{ end \}\}"
    template = re.sub(branch, lambda m: m[1] if system else m[2] or "", template, flags=re.S)
    for name, value in (("System", system), ("Prompt", prompt), ("Response", response or "")):
        template = template.replace(f"{{{{ .{name} }}}}", value)
    return template.replace('{{ "{{" }}', "{{")


def modelfile(path: Path) -> dict:
    text = path.read_text()
    template = re.search(r'^TEMPLATE """(.*?)"""$', text, re.S | re.M)[1]
    system = re.search(r'^SYSTEM """(.*?)"""$', text, re.S | re.M)
    stops = re.findall(r'^PARAMETER stop "(.*)"$', text, re.M)
    source = re.search(r"^FROM (.*)$", text, re.M)[1]
    return {"template": template, "system": system and system[1], "stops": stops, "from": source}


def rendered(folder: Path, system: str | None, answer: str | None) -> str:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": "What is 2 + 2?"})
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=answer is None
    )


@pytest.mark.parametrize(
    ("template", "system", "stops"),
    [
        (None, None, ["<|eos|>"]),
        (CHATML_DEFAULT_SYSTEM, "You are a helpful assistant.", ["<|im_end|>", "<|eos|>"]),
        (NO_SYSTEM, None, ["<|eos|>"]),
    ],
    ids=["demo", "chatml-default-system", "no-system-role"],
)
def test_modelfile_template_renders_what_the_chat_template_renders(
    cli, tmp_path, template, system, stops
):
    folder = model_folder(tmp_path, template)
    result = cli("ship", str(folder), "--to", "ollama")
    assert result.returncode == 0, result.stderr
    assert f"ollama create merged -f {folder / 'Modelfile'}" in result.stdout
    parts = modelfile(folder / "Modelfile")
    assert parts["from"] == str(folder.resolve())  # no GGUF: Ollama imports the safetensors
    assert parts["system"] == system and parts["stops"] == stops
    given = [None] if template == NO_SYSTEM else [None, "Answer in one word."]
    for own in given:
        ollama_system = own or parts["system"] or ""
        for answer in (None, "Four."):
            filled = ollama_fill(parts["template"], ollama_system, "What is 2 + 2?", answer)
            assert filled == rendered(folder, own, answer), (own, answer)


def test_modelfile_from_a_gguf_and_a_template_that_rewrites_content(cli, tmp_path):
    folder = model_folder(tmp_path)
    gguf = tmp_path / "m-q8_0.gguf"
    gguf.write_bytes(b"GGUF")
    out = str(tmp_path / "M")
    result = cli("ship", str(folder), "--to", "ollama", "--gguf", str(gguf), "-o", out)
    assert result.returncode == 0, result.stderr
    assert modelfile(tmp_path / "M")["from"] == str(gguf)
    (folder / "chat_template.jinja").write_text(
        "{% for m in messages %}{{ m['content'] | upper }}{% endfor %}"
    )
    result = cli("ship", str(folder), "--to", "ollama")
    assert result.returncode == 2 and "verbatim" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (folder / "Modelfile").exists()


def test_vllm_script_for_a_model_folder_and_a_full_run(cli, tmp_path):
    folder = model_folder(tmp_path)
    result = cli("ship", str(folder), "--to", "vllm")
    assert result.returncode == 0, result.stderr
    script = folder / "serve-vllm.sh"
    assert os.access(script, os.X_OK)
    command = shlex.split(script.read_text().splitlines()[-1])
    assert command[:4] == ["exec", "vllm", "serve", str(folder.resolve())]
    assert command[command.index("--served-model-name") + 1] == "merged"
    assert command[command.index("--chat-template") + 1] == str(folder / "chat_template.jinja")
    assert "--max-model-len" not in command  # no run: its length is not known
    run = tmp_path / "full-run"  # a full fine-tune's run folder: adapter/ is a whole model
    run.mkdir()
    (run / ".finetune-tui-run").write_text("finetune-tui run directory\n")
    (run / "settings.yaml").write_text("training:\n  method: full\n  max_seq_length: 384\n")
    shutil.copytree(ensure_demo_model(), run / "adapter")
    result = cli("ship", str(run), "--to", "vllm")
    assert result.returncode == 0, result.stderr
    # in the run folder: nothing is written into adapter/, what the run trained
    command = shlex.split((run / "serve-vllm.sh").read_text().splitlines()[-1])
    assert command[3] == str((run / "adapter").resolve())
    assert command[command.index("--max-model-len") + 1] == "384"
    assert command[command.index("--served-model-name") + 1] == "full-run"


def hf_snapshot(where: Path, repo: str) -> Path:
    """The demo model as the Hub's cache keeps it: WHERE/hub/REPO/snapshots/HASH/, each file
    a relative link into REPO/blobs/."""
    cache = where / "hub" / repo
    snapshot = cache / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    (cache / "blobs").mkdir()
    for item in ensure_demo_model().iterdir():
        blob = cache / "blobs" / f"blob-{item.name}"
        shutil.copyfile(item, blob)
        (snapshot / item.name).symlink_to(Path("..", "..", "blobs", blob.name))
    return snapshot


def test_a_hugging_face_cache_snapshot_ships_and_a_link_to_a_device_does_not(cli, tmp_path):
    """The Hub's cache keeps a model's files as links into blobs/: they are read through
    (were refused as links); a weight file that is a link to something other than a
    regular file is still one line."""
    snapshot = hf_snapshot(tmp_path, "models--me--demo")
    for target in ("vllm", "ollama"):
        result = cli("ship", str(snapshot), "--to", target, "-o", str(tmp_path / target))
        assert result.returncode == 0, result.stderr
    weights = next(snapshot.glob("*.safetensors"))
    weights.unlink()
    weights.symlink_to("/dev/zero")
    result = cli("ship", str(snapshot), "--to", "vllm", "-o", str(tmp_path / "again"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "not a regular file" in result.stderr and not (tmp_path / "again").exists()


def test_lora_run_serves_base_with_the_adapter_and_refuses_gguf(cli, tmp_path, finished_template):
    run = copy_finished_run(finished_template, tmp_path / "lora run")
    result = cli("ship", str(run), "--to", "vllm", "-o", str(tmp_path / "serve.sh"))
    assert result.returncode == 0, result.stderr
    assert "finetune-tui merge" in result.stdout
    command = shlex.split((tmp_path / "serve.sh").read_text().splitlines()[-1])
    assert command[3] == str(ensure_demo_model())  # the adapter's base
    assert "--enable-lora" in command
    assert command[command.index("--lora-modules") + 1] == f"lora-run={run / 'adapter'}"
    assert command[command.index("--max-lora-rank") + 1] == "32"  # presets/demo.yaml
    assert command[command.index("--max-model-len") + 1] == "64"
    for target in ("gguf", "ollama"):
        result = cli("ship", str(run), "--to", target)
        assert result.returncode == 2 and "merge it first" in result.stderr


def test_refusals_write_nothing(cli, tmp_path):
    folder = model_folder(tmp_path)
    before = sorted(p.name for p in folder.iterdir())
    (tmp_path / "empty").mkdir()
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("keep")
    (tmp_path / "link.sh").symlink_to(elsewhere)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "kept.sh").write_text("keep")
    cases = [
        (("ship", str(tmp_path / "empty"), "--to", "vllm"), "config.json"),
        (("ship", str(tmp_path / "missing"), "--to", "ollama"), "not found"),
        (("ship", str(folder), "--to", "vllm", "-o", str(tmp_path / "kept.sh")), "exists"),
        (("ship", str(folder), "--to", "vllm", "-o", str(tmp_path / "link.sh")), "link"),
        (("ship", str(folder), "--to", "ollama", "-o", str(tmp_path / "dangling")), "link"),
        (("ship", str(folder), "--to", "gguf", "-o", str(tmp_path / "empty")), "exists"),
        (("ship", str(folder), "--to", "vllm", "--gguf", "x.gguf"), "--gguf"),
    ]
    for args, words in cases:
        result = cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1, args
    assert sorted(p.name for p in folder.iterdir()) == before
    assert elsewhere.read_text() == "keep" and (tmp_path / "kept.sh").read_text() == "keep"
    assert not (tmp_path / "nowhere").exists() and list((tmp_path / "empty").iterdir()) == []
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a torn copy is not a model folder
    result = cli("ship", str(folder), "--to", "ollama")
    assert result.returncode == 2 and "safetensors" in result.stderr


def script_command(script: Path) -> list[str]:
    """The `exec vllm serve ...` line of a written serve script, as the shell splits it."""
    return shlex.split(script.read_text().splitlines()[-1])


@pytest.mark.parametrize(
    ("rank", "allowed"),
    [(1, 1), (4, 8), (8, 8), (12, 16), (24, 32), (33, 64), (48, 64), (300, 320), (512, 512)],
)
def test_max_lora_rank_is_the_next_value_vllm_accepts(rank, allowed):
    """vLLM starts only with a --max-lora-rank from its own list; the run's rank was passed
    as it was (r=12: the server refused to start)."""
    from finetune_tui.engine.deliver.ship import VLLM_LORA_RANKS, vllm_lora_rank

    assert vllm_lora_rank(rank) == allowed and allowed in VLLM_LORA_RANKS


def test_a_lora_run_of_a_rank_vllm_lacks_gets_the_next_one_or_one_line(
    cli, tmp_path, finished_template
):
    """ship reads the rank off adapter_config.json: r=12 serves with --max-lora-rank 16;
    a rank above vLLM's largest is refused, naming it, and nothing is written."""
    import json

    run = copy_finished_run(finished_template, tmp_path / "run")
    config_path = run / "adapter" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    for rank, words in ((12, None), (1000, "LoRA rank 1000: above vLLM's largest")):
        config_path.write_text(json.dumps(config | {"r": rank}))
        script = tmp_path / f"serve-{rank}.sh"
        result = cli("ship", str(run), "--to", "vllm", "-o", str(script))
        if words is None:
            assert result.returncode == 0, result.stderr
            command = script_command(script)
            assert command[command.index("--max-lora-rank") + 1] == "16"
        else:
            assert result.returncode == 2 and words in result.stderr
            assert len(result.stderr.strip().splitlines()) == 1 and not script.exists()


@pytest.mark.parametrize(
    ("folder", "name"),
    [
        ("-rf", "rf"),
        ("$(touch pwned)", "touch-pwned"),
        ("ü日本", "u"),
        ("日本", "model"),
        ("a..b", "a.b"),
        ("My Model_v2.", "my-model_v2"),
        ("x" * 250, "x" * 64),
    ],
)
def test_a_folder_name_becomes_a_name_ollama_and_vllm_take(cli, tmp_path, folder, name):
    """The served name was the folder's with Unicode letters kept and nothing else checked:
    `ollama create -rf`, `--served-model-name --touch-pwned-` (read as flags), names Ollama
    refuses. Both targets now get the same ASCII name, never beginning with '-'."""
    model = tmp_path / folder
    shutil.copytree(ensure_demo_model(), model)
    result = cli("ship", str(model), "--to", "ollama", "-o", str(tmp_path / "Modelfile"))
    assert result.returncode == 0, result.stderr
    assert f"ollama create {name} -f {tmp_path / 'Modelfile'}" in result.stdout
    result = cli("ship", str(model), "--to", "vllm", "-o", str(tmp_path / "serve.sh"))
    assert result.returncode == 0, result.stderr
    command = script_command(tmp_path / "serve.sh")
    assert command[command.index("--served-model-name") + 1] == name


def test_name_is_given_with_name_and_checked_by_the_same_rule(cli, tmp_path):
    folder = model_folder(tmp_path)
    for bad in ("-rf", "My-Model", "a..b", "ü", "x" * 65, ""):
        result = cli("ship", str(folder), "--to", "vllm", f"--name={bad}")
        assert result.returncode == 2 and "--name" in result.stderr, bad
        assert len(result.stderr.strip().splitlines()) == 1, bad
    assert not (folder / "serve-vllm.sh").exists()
    result = cli("ship", str(folder), "--to", "vllm", "--name", "tuned-7b_v1.2")
    assert result.returncode == 0, result.stderr
    command = script_command(folder / "serve-vllm.sh")
    assert command[command.index("--served-model-name") + 1] == "tuned-7b_v1.2"
    result = cli("ship", str(folder), "--to", "ollama", "--name", "tuned-7b_v1.2")
    assert f"ollama create tuned-7b_v1.2 -f {folder / 'Modelfile'}" in result.stdout


def test_ship_refuses_a_run_still_training_before_its_first_adapter(
    cli, tmp_path, finished_template
):
    """A run training towards its first save has no adapter/ yet: ship said 'run folder
    without adapter/ (did the run finish?)' where merge, compare and chat say it trains."""
    run = copy_finished_run(finished_template, tmp_path / "run")
    shutil.rmtree(run / "adapter")
    live = start_live_run(run)
    try:
        results = [cli("ship", str(run), "--to", to) for to in ("vllm", "ollama", "gguf")]
    finally:
        stop_live_run(live)
    for result in results:
        assert result.returncode == 2
        assert "the run is still training; ship it once it has finished" in result.stderr
    assert not list(run.glob("serve-*")) and not (tmp_path / "run-gguf").exists()


def test_ship_refuses_a_lora_run_whose_base_folder_moved_as_merge_does(
    cli, tmp_path, finished_template
):
    """The serve script named a base folder that was gone (exit 0); merge and compare read
    the run's settings and refuse it: ship reads them the same way, in the same line."""
    import hashlib
    import json

    import yaml

    base = tmp_path / "base"
    shutil.copytree(ensure_demo_model(), base)
    run = copy_finished_run(finished_template, tmp_path / "run")
    settings = yaml.safe_load((run / "settings.yaml").read_text())
    settings["model"]["name_or_path"] = str(base)
    digest = hashlib.sha256((base / "config.json").read_bytes()).hexdigest()
    settings["inputs"] = {"model_config": digest}  # as a run on a local base records it
    (run / "settings.yaml").write_text(yaml.safe_dump(settings))
    config_path = run / "adapter" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps(config | {"base_model_name_or_path": str(base)}))
    script = tmp_path / "serve.sh"
    result = cli("ship", str(run), "--to", "vllm", "-o", str(script))
    assert result.returncode == 0, result.stderr
    assert script_command(script)[3] == str(base)
    script.unlink()
    base.rename(tmp_path / "moved")
    shipped = cli("ship", str(run), "--to", "vllm", "-o", str(script))
    merged = cli("merge", str(run), "-o", str(tmp_path / "merged"))
    assert shipped.returncode == merged.returncode == 2
    assert shipped.stderr == merged.stderr and str(base / "config.json") in shipped.stderr
    assert len(shipped.stderr.strip().splitlines()) == 1 and not script.exists()


@pytest.mark.parametrize("content", [b"", b"GGU", b"not a gguf file", b"\x00GGUF"])
def test_a_gguf_file_that_is_not_one_is_refused(cli, tmp_path, content):
    """`--gguf junk.gguf` wrote FROM junk.gguf: the file must begin with GGUF's magic bytes."""
    folder = model_folder(tmp_path)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(content)
    result = cli("ship", str(folder), "--to", "ollama", "--gguf", str(junk))
    assert result.returncode == 2 and "not a GGUF file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (folder / "Modelfile").exists()


def test_a_hugging_face_cache_snapshot_is_named_after_its_repository_and_written_here(
    cli, tmp_path, monkeypatch
):
    """A snapshot was named after its commit hash, its outputs were written into the cache,
    and --chat-template named the blob (blobs/<sha>) rather than the snapshot's file."""
    snapshot = hf_snapshot(tmp_path, "models--Org--My.Model")
    cache_files = sorted(p.name for p in snapshot.parent.parent.rglob("*"))
    here = tmp_path / "work"
    here.mkdir()
    monkeypatch.chdir(here)
    result = cli("ship", str(snapshot), "--to", "vllm")
    assert result.returncode == 0, result.stderr
    assert str(here / "serve-vllm.sh") in result.stdout  # where it went, said
    command = script_command(here / "serve-vllm.sh")
    assert command[command.index("--served-model-name") + 1] == "org--my.model"
    assert command[command.index("--chat-template") + 1] == str(snapshot / "chat_template.jinja")
    result = cli("ship", str(snapshot), "--to", "ollama")
    assert result.returncode == 0, result.stderr
    assert f"ollama create org--my.model -f {here / 'Modelfile'}" in result.stdout
    assert sorted(p.name for p in snapshot.parent.parent.rglob("*")) == cache_files


@pytest.mark.parametrize(
    ("missing", "said"),
    [
        ("gguf", "GGUF needs the Python package gguf: pip install 'finetune-tui[gguf]'"),
        ("convert_hf_to_gguf", "set LLAMA_CPP_DIR to a llama.cpp source folder (git clone"),
    ],
)
def test_gguf_without_a_tool_says_what_to_install(cli, tmp_path, monkeypatch, missing, said):
    """Whatever this machine has installed: the packages are there but `missing`."""
    import importlib.util

    real = importlib.util.find_spec
    present = {"gguf", "sentencepiece", "convert_hf_to_gguf"} - {missing}
    monkeypatch.delenv("LLAMA_CPP_DIR", raising=False)
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda n, *a: None if n == missing else object() if n in present else real(n, *a),
    )
    folder = model_folder(tmp_path)
    result = cli("ship", str(folder), "--to", "gguf", "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    assert said in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_template_writing_the_bos_its_tokenizer_adds_gives_one_bos_not_two(cli, tmp_path):
    """A Llama-3-like model: the chat template writes {{ bos_token }} and the tokenizer adds
    BOS itself when encoding (its post-processor), as Ollama's runtime does with the filled
    TEMPLATE. What the model sees is the rendered chat with one BOS."""
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer

    folder = model_folder(tmp_path, NO_SYSTEM)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    bos = (tokenizer.bos_token, tokenizer.bos_token_id)
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{bos[0]} $A", pair=f"{bos[0]} $A {bos[0]} $B", special_tokens=[bos]
    )
    tokenizer.save_pretrained(str(folder))
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    assert tokenizer("x").input_ids[0] == bos[1]  # it adds BOS by itself
    assert cli("ship", str(folder), "--to", "ollama").returncode == 0
    template = modelfile(folder / "Modelfile")["template"]
    assert not template.startswith(bos[0])
    for answer in (None, "Four."):
        filled = ollama_fill(template, "", "What is 2 + 2?", answer)
        seen = tokenizer(filled).input_ids  # the runtime's tokenizing: BOS added once
        expected = tokenizer(rendered(folder, None, answer), add_special_tokens=False).input_ids
        assert seen == expected and seen.count(bos[1]) == 1


def test_the_converter_is_told_what_the_tokenizer_adds_before_a_text(tmp_path):
    """llama.cpp guesses BOS and a leading space for a SentencePiece-style vocabulary; the
    folder converted states both, measured from the tokenizer itself (no converter needed
    to check the statement: CI has none)."""
    import json

    from tokenizers import Tokenizer, decoders, models, normalizers
    from transformers import PreTrainedTokenizerFast

    from finetune_tui.engine.deliver.gguf import _prefixes_space, _stated_tokenizer
    from finetune_tui.engine.deliver.model_folder import load_tokenizer

    demo = tmp_path / "demo"
    shutil.copytree(ensure_demo_model(), demo)
    stated = _stated_tokenizer(demo, tmp_path / "demo-source")
    config = json.loads((stated / "tokenizer_config.json").read_text())
    assert stated != demo and config["add_bos_token"] is False
    assert config["add_prefix_space"] is False  # the demo's text starts at its first byte
    assert (stated / "model.safetensors").resolve() == (demo / "model.safetensors").resolve()
    assert "add_prefix_space" not in json.loads((demo / "tokenizer_config.json").read_text())

    # Llama 2's layout: a space mark put before every text
    vocab = {"<unk>": 0, "\u2581": 1, "a": 2, "\u2581a": 3}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[("\u2581", "a")], unk_token="<unk>"))
    backend.normalizer = normalizers.Sequence(
        [normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")]
    )
    backend.decoder = decoders.Replace("\u2581", " ")
    spm = tmp_path / "spm"
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>").save_pretrained(spm)
    assert _prefixes_space(load_tokenizer(spm)) is True


def test_a_gguf_file_fails_on_a_tokenizer_that_differs_or_a_16_bit_answer_that_does():
    """What a file's check means to the exit code and the line (gguf_answers.py), without
    llama.cpp: a quantized file answering otherwise is reported, not failed."""
    from finetune_tui.engine.deliver.gguf_answers import Reference, failed, verdict

    reference = Reference(["p"] * 4, [[1]] * 4, [[2]] * 4, 16, "held-out")
    parted = {"file": "m-q8_0.gguf", "prompts": 4, "identical": 3}
    parted["first_difference"] = {"prompt": 1, "position": 2, "model": "T", "gguf": "q"}
    assert failed(parted, "f16") and not failed(parted, "q8_0")
    assert verdict(parted, "q8_0", reference) == (
        "m-q8_0.gguf: in llama.cpp, the merged model's first 16 greedy tokens on 3 of 4 "
        "held-out prompts; prompt 2 parts at token 3 ('q' for 'T'); q8_0 rounds the weights, "
        "so near-ties may flip"
    )
    misread = {"file": "m-q4_k_m.gguf", "prompts": 4, "identical": 0}
    misread["tokenizer_differs"] = {"prompt": 0, "position": 0, "model": "U", "gguf": " "}
    assert failed(misread, "q4_k_m")
    assert "tokenizes prompt 1 otherwise" in verdict(misread, "q4_k_m", reference)


def test_a_gguf_file_larger_than_the_memory_here_is_not_run(tmp_path, monkeypatch):
    """llama.cpp maps a file larger than memory and pages it for ever: the check says so
    instead of starting."""
    from finetune_tui.engine.deliver import gguf_answers, merge_plan

    gguf = tmp_path / "m-f16.gguf"
    gguf.write_bytes(b"\0" * 3 * 2**20)
    monkeypatch.setattr(gguf_answers, "_offloads_to_gpu", lambda: False)
    monkeypatch.setattr(merge_plan, "available_host_bytes", lambda: 2**20)
    assert gguf_answers.room_problem(gguf) == ("0.0 GiB, more than the 0.0 GiB of memory free here")
    monkeypatch.setattr(merge_plan, "available_host_bytes", lambda: 4 * 2**20)
    assert gguf_answers.room_problem(gguf) is None


def test_a_gguf_file_llama_cpp_cannot_load_is_one_line_with_its_reason(capfd):
    """llama.cpp says why a file does not load only in its log (found: a tokenizer of 264
    tokens over 128,256 embedding rows): the reason is caught from the log, whether written
    by Python or by the C library, and the file fails with it, not with a traceback."""
    import os
    import sys
    from pathlib import Path

    from finetune_tui.engine.deliver.gguf_answers import Reference, _load, failed, verdict

    reason = "check_tensor_dims: tensor 'token_embd.weight' has wrong shape"

    class Refuses:
        def __init__(self, **_):
            print("llama_model_loader: loaded meta data", file=sys.stderr)
            os.write(2, f"llama_model_load: error loading model: {reason}\n".encode())
            raise ValueError("Failed to load model from file: m-f16.gguf")

    class Loads:
        def __init__(self, **kwargs):
            self.verbose = kwargs["verbose"]
            print("llama_model_loader: loaded meta data", file=sys.stderr)

    assert _load(Refuses, Path("m-f16.gguf"), 64) == (None, reason)
    loaded, none = _load(Loads, Path("m-f16.gguf"), 64)
    assert none is None and loaded.verbose is False
    assert capfd.readouterr().err == ""  # the log went nowhere the user sees
    result = {"file": "m-f16.gguf", "prompts": 4, "identical": 0, "not_loaded": reason}
    reference = Reference(["p"] * 4, [[1]] * 4, [[2]] * 4, 16, "held-out")
    assert failed(result, "q8_0")
    assert verdict(result, "f16", reference) == f"m-f16.gguf: llama.cpp cannot load it: {reason}"


class _FakeTokenizer:
    bos_token = None

    def decode(self, ids):
        return "".join("abcde"[i] for i in ids)


def _fake_llama(prefer: dict):
    """A llama.cpp stand-in over a 5-token vocabulary: every step prefers the merged model's
    token, except at the steps in `prefer` ({step: (token, nats over the merged token)})."""
    import numpy as np

    class Llama:
        def __init__(self, **kwargs):
            assert kwargs["logits_all"]  # weighing reads every step's logits
            self.verbose = kwargs["verbose"]

        def tokenize(self, text, add_bos, special):
            return [0, 1]

        def reset(self):
            self.scores = None

        def eval(self, tokens):
            self.scores = np.zeros((len(tokens), 5), dtype=np.float32)
            for row in range(1, len(tokens)):  # the step after row: the next answer token
                self.scores[row, tokens[row + 1] if row + 1 < len(tokens) else 4] = 2.0
            self.scores[1, 2] = 2.0  # step 0 prefers the answer's first token, 2
            for step, (token, nats) in prefer.items():
                self.scores[1 + step, token] = self.scores[1 + step].max() + nats

        def close(self):
            pass

    return Llama


@pytest.mark.parametrize(
    "nats, merged_gap, agrees",
    [(0.1, 0.05, True), (1.5, 0.05, False), (0.1, None, False)],
)
def test_a_16_bit_gguf_that_parts_at_a_near_tie_agrees_within_rounding(
    monkeypatch, tmp_path, nats, merged_gap, agrees
):
    """A 16-bit file is weighed as the merge's parity is: where it would choose otherwise,
    each side's preference for its own token within parity.LOGPROB_TOLERANCE is a near-tie
    (exit 0, named); more, or a token outside the merged model's likeliest, fails."""
    import sys
    import types

    from finetune_tui.engine.deliver import gguf_answers
    from finetune_tui.engine.deliver.gguf_answers import Reference, check_file, failed, verdict

    monkeypatch.setitem(
        sys.modules, "llama_cpp", types.SimpleNamespace(Llama=_fake_llama({1: (3, nats)}))
    )
    monkeypatch.setattr(
        gguf_answers,
        "_load",
        lambda cls, path, n_ctx, logits_all: (cls(logits_all=logits_all, verbose=False), None),
    )
    answer = [2, 4, 4]
    top = [[[2, -0.5], [0, -2.0]], [[4, -0.6], [0, -2.0]], [[4, -0.5], [0, -2.0]]]
    if merged_gap is not None:
        top[1].append([3, -0.6 - merged_gap])
    reference = Reference(["p"], [[0, 1]], [answer], 3, "held-out", [top])
    result = check_file(tmp_path / "m-f16.gguf", reference, _FakeTokenizer())
    assert result["identical"] == 0 and result["first_difference"]["position"] == 1
    assert result["first_difference"]["gguf_logprob_gap"] == pytest.approx(nats, abs=1e-3)
    assert result["agrees"] is agrees and failed(result, "f16") is not agrees
    line = verdict(result, "f16", reference)
    assert line.startswith(
        "m-f16.gguf: in llama.cpp, the merged model's first 3 greedy tokens on 0 of 1"
    )
    assert ("agrees within rounding (0.25 nats)" in line) is agrees
    if merged_gap is None:
        assert "not among the merged model's likeliest tokens" in line
    else:
        assert f"log-prob gap {nats:.3g} / {merged_gap:.3g}" in line
