"""The embedded demo: tiny model build and cache, tokenizer, dataset, exact-match."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from finetune_tui.engine.common import demo
from finetune_tui.engine.train.exact_match import exact_match

REPO = Path(__file__).resolve().parent.parent
GENERATOR = REPO / "benchmarks" / "make_demo_data.py"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """One private build for the module (the shared test cache is left to other tests)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(demo.CACHE_ENV, str(tmp_path_factory.mktemp("cache")))
        return demo.ensure_demo_model()


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def records() -> list[dict]:
    lines = demo.demo_dataset_path().read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_config_is_plain_data_without_torch():
    code = (
        "import sys, json; from finetune_tui.engine.common.demo import demo_model_config; "
        "json.dumps(demo_model_config()); "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    config = demo.demo_model_config()
    assert config["model_type"] == "llama"
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["vocab_size"] >= demo.BYTE_TOKENS + len(demo.SPECIAL_TOKENS)


def test_model_builds_and_loads(model_dir):
    from transformers import AutoModelForCausalLM

    config = demo.demo_model_config()
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.hidden_size == config["hidden_size"]
    assert model.config.num_hidden_layers == config["num_hidden_layers"]
    assert 300_000 < model.num_parameters() < 5_000_000
    assert (model_dir / "model.safetensors").is_file()


def test_second_call_uses_the_cache(model_dir, monkeypatch):
    monkeypatch.setenv(demo.CACHE_ENV, str(model_dir.parent))
    before = {p.name: p.stat().st_mtime_ns for p in model_dir.iterdir()}
    assert demo.ensure_demo_model() == model_dir  # nothing rebuilt: no file touched (below)
    assert {p.name: p.stat().st_mtime_ns for p in model_dir.iterdir()} == before
    assert [p.name for p in model_dir.parent.iterdir()] == [model_dir.name]  # no staging left


def test_build_is_deterministic(model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(demo.CACHE_ENV, str(tmp_path))
    again = demo.ensure_demo_model()
    assert again != model_dir
    assert sha256(again / "model.safetensors") == sha256(model_dir / "model.safetensors")
    assert sha256(again / "tokenizer.json") == sha256(model_dir / "tokenizer.json")


def test_tokenizer_round_trips_bytes(tokenizer):
    text = "Uppercase: héllo wörld\n\ttabs  and emoji 🙂"
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert ids == list(text.encode("utf-8"))  # one token per byte, id == byte value
    assert tokenizer.decode(ids) == text
    for token in (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token):
        assert token in demo.SPECIAL_TOKENS
        assert tokenizer.convert_tokens_to_ids(token) >= demo.BYTE_TOKENS
    assert len({tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}) == 3


def test_chat_template(tokenizer):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Uppercase: cat"},
        {"role": "assistant", "content": "CAT"},
    ]
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    assert full == (
        "<|bos|><|system|>Be brief.<|eos|><|user|>Uppercase: cat<|eos|><|assistant|>CAT<|eos|>"
    )
    prompt = tokenizer.apply_chat_template(
        messages[:-1], tokenize=False, add_generation_prompt=True
    )
    assert prompt.endswith("<|user|>Uppercase: cat<|eos|><|assistant|>")
    assert full.startswith(prompt)  # the answer-only loss relies on this prefix property
    ids = tokenizer.apply_chat_template(messages[1:2], add_generation_prompt=True)
    ids = ids["input_ids"] if not isinstance(ids, list) else ids
    assert ids[0] == tokenizer.bos_token_id
    with pytest.raises(Exception, match="roles"):
        tokenizer.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


def test_dataset_parses(records):
    path = demo.demo_dataset_path()
    assert path.stat().st_size < 1_000_000
    assert 1000 <= len(records) <= 5000
    prompts = set()
    for record in records:
        user, assistant = record["messages"]
        assert user["role"] == "user" and assistant["role"] == "assistant"
        word = user["content"].removeprefix("Uppercase: ")
        assert word.isalpha() and word.islower()
        assert assistant["content"] == word.upper()
        prompts.add(user["content"])
    assert len(prompts) == len(records)  # unique: any held-out split is unseen in training


def test_dataset_regenerates_identically(tmp_path):
    out = tmp_path / "demo.jsonl"
    subprocess.run(
        [sys.executable, str(GENERATOR), "--out", str(out)], check=True, capture_output=True
    )
    assert out.read_bytes() == demo.demo_dataset_path().read_bytes()


def test_exact_match_untrained_is_low(model_dir, tokenizer, records):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    assert exact_match(model, tokenizer, records[:32], batch_size=16) < 0.2
    assert exact_match(model, tokenizer, []) == 0.0


class _UppercaseOracle:
    """Stands in for a trained model: answers each left-padded prompt with its word upper-cased."""

    def __init__(self, tokenizer, wrong_every: int = 0):
        import torch

        self.tokenizer = tokenizer
        self.wrong_every = wrong_every
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def parameters(self):
        yield self.weight

    def generate(self, input_ids, attention_mask, generation_config):
        import torch

        rows = []
        for i, (ids, mask) in enumerate(
            zip(input_ids.tolist(), attention_mask.tolist(), strict=True)
        ):
            assert mask[-1] == 1  # left padding: every prompt ends at the last column
            prompt = self.tokenizer.decode(ids, skip_special_tokens=True)
            answer = prompt.removeprefix("Uppercase: ").upper()
            if self.wrong_every and i % self.wrong_every == 0:
                answer = answer.lower()
            answer_ids = self.tokenizer(" " + answer, add_special_tokens=False).input_ids
            tail = answer_ids + [generation_config.eos_token_id] + [7] * 3  # junk after EOS
            rows.append(ids + tail[: generation_config.max_new_tokens])
        width = max(map(len, rows))
        pad = generation_config.pad_token_id
        return torch.tensor([row + [pad] * (width - len(row)) for row in rows])


def test_exact_match_scores_right_answers(tokenizer, records):
    subset = records[:20]
    assert exact_match(_UppercaseOracle(tokenizer), tokenizer, subset, batch_size=8) == 1.0
    half_wrong = _UppercaseOracle(tokenizer, wrong_every=2)
    assert exact_match(half_wrong, tokenizer, subset, batch_size=10) == 0.5
    assert tokenizer.padding_side == "right"  # restored
