"""What one decoder layer of each catalog family keeps for the backward pass, read from
transformers' own code on the meta device (no weights, no compute, no GPU), beside a Llama
layer of the same widths and beside the planner's per-layer activation term.

    python benchmarks/layer_trace.py [--tokens 512] [--only MODEL,MODEL]

Prints one JSON line per family: bytes per token of one layer's saved tensors (16-bit, LoRA
off, attention scores left out: a GPU's fused attention keeps none), the same for a Llama
layer of the family's widths, their ratio, and the plan's per-layer term
(`memory.activation_bytes` for one layer, hf backend, 16-bit). A ratio above 1 is code
the Llama-shaped calibration has not seen (q/k norms over whole projections, extra norms
kept in fp32); families whose plan was low on the GPU with a ratio of 1 were low for a
reason outside the layer. A CPU benchmark: it explains, it does not measure memory.
"""

from __future__ import annotations

import argparse
import json
import sys

from finetune_tui.engine.inspect.catalog import CATALOG


def saved_bytes_per_token(config_dict: dict, tokens: int, device: str = "meta") -> float:
    """One layer's saved-for-backward tensors (distinct storages, parameters excluded)
    while the model runs forward on `device`, per token: the meta device (no weights, no
    compute), or the CPU for code the meta device cannot run (Qwen3.5's mask preparation
    reads a tensor's value). A hybrid's first layer is linear attention unless
    `full_attention_interval` is 1."""
    import torch
    from transformers import CONFIG_MAPPING, AutoModelForCausalLM

    fields = {k: v for k, v in config_dict.items() if k not in ("architectures", "layer_types")}
    config = CONFIG_MAPPING[fields.pop("model_type")](**(fields | {"num_hidden_layers": 1}))
    with torch.device(device):
        try:
            model = AutoModelForCausalLM.from_config(
                config, dtype=torch.bfloat16, attn_implementation="sdpa"
            )
        except ValueError:  # a class without sdpa (gpt-oss): eager, its scores left out too
            model = AutoModelForCausalLM.from_config(
                config, dtype=torch.bfloat16, attn_implementation="eager"
            )
    model.train()
    layer = _first_layer(model)
    params = {p.untyped_storage()._cdata for p in model.parameters()}
    inside, kept = [False], {}
    layer.register_forward_pre_hook(lambda *_: inside.__setitem__(0, True))
    layer.register_forward_hook(lambda *_: inside.__setitem__(0, False))

    def pack(tensor):
        storage = tensor.untyped_storage()
        scores = tensor.dim() >= 2 and tensor.shape[-1] == tensor.shape[-2] == tokens
        if inside[0] and storage._cdata not in params and not scores:
            kept[storage._cdata] = max(kept.get(storage._cdata, 0), storage.nbytes())
        return tensor

    ids = torch.zeros(1, tokens, dtype=torch.long, device=device)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model.get_decoder()(input_ids=ids, use_cache=False)  # as training runs
    return sum(kept.values()) / tokens


def saved_bytes_per_layer(config_dict: dict, tokens: int, device: str = "cpu") -> list[float]:
    """Every decoder layer's saved-for-backward tensors (distinct storages, parameters and
    attention scores excluded) while the whole decoder runs forward, per token, by the
    layer that saved each first; the last entry is what is kept outside the layers (Gemma-4's
    per-layer inputs, built once). For families whose layers differ (Gemma-4)."""
    import torch
    from transformers import CONFIG_MAPPING, AutoModelForCausalLM

    fields = {k: v for k, v in config_dict.items() if k != "architectures"}
    config = CONFIG_MAPPING[fields.pop("model_type")](**fields)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(
            config, dtype=torch.bfloat16, attn_implementation="sdpa"
        )
    model.train()
    layers = model.get_decoder().layers
    where = [-1]
    for index, layer in enumerate(layers):
        layer.register_forward_pre_hook(lambda *_, i=index: where.__setitem__(0, i))
        layer.register_forward_hook(lambda *_: where.__setitem__(0, -1))
    params = {p.untyped_storage()._cdata for p in model.parameters()}
    kept: dict[int, tuple[int, int]] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        scores = tensor.dim() >= 2 and tensor.shape[-1] == tensor.shape[-2] == tokens
        if storage._cdata not in params and not scores:
            index, size = kept.get(storage._cdata, (where[0], 0))
            kept[storage._cdata] = (index, max(size, storage.nbytes()))
        return tensor

    ids = torch.randint(0, 200, (1, tokens), device=device)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model.get_decoder()(input_ids=ids, use_cache=False)
    per_layer = [0.0] * (len(layers) + 1)
    for index, size in kept.values():
        per_layer[index] += size / tokens
    return per_layer


def _first_layer(model):
    """The language model's first decoder layer (`layers`, or `h` in GPT-NeoX-era code)."""
    decoder = model.get_decoder()
    if decoder is model:  # Llama-4: get_decoder() finds no decoder, its backbone is `model`
        decoder = model.model
    return (getattr(decoder, "layers", None) or decoder.h)[0]


def planned_bytes_per_token(name: str) -> float:
    """The plan's activation term for one layer and one token (hf, 16-bit, no checkpointing)."""
    from finetune_tui.engine.inspect.models import inspect_model
    from finetune_tui.engine.plan.memory import activation_bytes
    from finetune_tui.engine.settings.schema import TrainSettings

    model = inspect_model(name)
    settings = TrainSettings.model_validate(
        {
            "model": {"name_or_path": name},
            "quantization": {"mode": "none"},
            "memory": {"gradient_checkpointing": "off", "backend": "hf", "packing": False},
            "training": {"micro_batch_size": 1, "max_seq_length": 1024},
        }
    )
    return activation_bytes(model, settings) / model.num_layers / 1024


def row(name: str, tokens: int) -> dict:
    config = CATALOG[name]
    text = config.get("text_config")  # a multimodal config: its language model
    config = text if isinstance(text, dict) else config
    family = saved_bytes_per_token(config, tokens)
    llama = saved_bytes_per_token(
        config | {"model_type": "llama", "architectures": ["LlamaForCausalLM"]}, tokens
    )
    planned = planned_bytes_per_token(name)
    return {
        "model": name,
        "model_type": config["model_type"],
        "traced_bytes_per_token": round(family),
        "llama_same_widths": round(llama),
        "ratio_to_llama": round(family / llama, 3),
        "planned_bytes_per_token": round(planned),
        "traced_over_planned": round(family / planned, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--only", default="", help="comma-separated catalog names")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(CATALOG)
    for name in names:
        try:
            line = row(name, args.tokens)
        except Exception as exc:  # a family this transformers cannot build: one line
            line = {"model": name, "error": f"{type(exc).__name__}: {str(exc)[:160]}"}
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
