"""Peak of live tensor bytes (CPU, real tensors) of one LoRA training step of a cut model,
and which tensors are alive at that peak, for a family beside a Llama twin of its widths.

Emulates the GPU path of the H200 rows: bf16 weights, TRL's fused chunked LM head
(add_fused_lm_head before PEFT, the row-chunked tile folds patched in so the CPU fallback
keeps no [N, 32768] fp32 temporaries the Triton kernel does not), PEFT LoRA r=16 on the 7
projections, non-reentrant gradient checkpointing + enable_input_require_grads, the forward
under bf16 autocast (accelerate wraps the model's forward in it), adapters fp32 (PEFT's
autocast_adapter_dtype: the 16-bit rows) or bf16 (TRL casts them for quantised models: the
NF4 rows).

    python benchmarks/step_peak_trace.py FAMILY {fp32,bf16} [--layers 2] [--tokens 512]
        [--gpu-ln] [--no-ckpt]

FAMILY: a key of FAMILIES (the catalog's config of each, cut to --layers), or llama-FAMILY: a
Llama of that family's widths. Prints one JSON line: the peak of live bytes (overall, and
from the layers' backward on), per token, and the largest groups of tensors alive at it. The rows of
docs/BENCHMARKS.md ("The whole step's peak, traced") ran with --gpu-ln at 512 and 1,024
tokens; the per-token figures there are the slope between the two.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
import weakref
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))  # backends.family_config

FAMILIES = {  # the catalog's config.json of each (benchmarks/backends.family_config)
    "llama-1b": "meta-llama/Llama-3.2-1B",
    "granite": "ibm-granite/granite-3.3-8b-instruct",
    "smollm3": "HuggingFaceTB/SmolLM3-3B",
    "pythia-1b": "EleutherAI/pythia-1b",
    "phi3-mini": "microsoft/Phi-3-mini-4k-instruct",
    "gpt-oss": "openai/gpt-oss-20b",
    "phimoe": "microsoft/Phi-3.5-MoE-instruct",
}
TWINS = {
    f"llama-{short}": own
    for short, own in (
        ("granite", "granite"),
        ("smollm3", "smollm3"),
        ("pythia", "pythia-1b"),
        ("phi3", "phi3-mini"),
    )
}
TWIN_KEYS = (  # what a Llama layer of another family's widths takes from its config
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
    "max_position_embeddings",
    "tie_word_embeddings",
)
TARGETS = {
    "pythia-1b": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "phi3-mini": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "gpt-oss": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "phimoe": ["q_proj", "k_proj", "v_proj", "o_proj"],
}
ATTN = {"gpt-oss": "eager"}


def config_of(name: str, layers: int) -> dict:
    """FAMILY's config cut to `layers`; 'llama-FAMILY': a Llama of its widths."""
    from backends import family_config

    config = family_config(FAMILIES[TWINS.get(name, name)], layers)
    config.pop("architectures", None)
    config.pop("layer_types", None)
    if name in TWINS:
        config = {k: config[k] for k in TWIN_KEYS if k in config} | {"model_type": "llama"}
        config["num_hidden_layers"] = layers
    return config


GIB = 2**30


class Live(TorchDispatchMode):
    """Every storage an op outputs, counted until the storage dies (weakref on the
    storage: views keep it alive)."""

    def __init__(self):
        super().__init__()
        self.live: dict[int, tuple] = {}
        self.total = 0
        self.peak = 0
        self.peak_snapshot: list = []
        self.where = "?"
        self.phase = "forward"
        self.ops = 0
        self.skip: set[int] = set()
        self.in_layers = False
        self.lpeak = 0
        self.lpeak_snapshot: list = []

    def _gone(self, key):
        info = self.live.pop(key, None)
        if info is not None:
            self.total -= info[0]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.ops += 1
        for t in torch.utils._pytree.tree_leaves(out):
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            s = t.untyped_storage()
            key = s._cdata
            if key in self.live or key in self.skip or s.nbytes() == 0:
                continue
            n = s.nbytes()
            self.live[key] = (
                n,
                str(func.overloadpacket.__name__),
                tuple(t.shape),
                str(t.dtype).replace("torch.", ""),
                self.where,
                self.phase,
            )
            self.total += n
            weakref.finalize(s, self._gone, key)
            if self.total > self.peak:
                self.peak = self.total
                self.peak_snapshot = list(self.live.values())
            if self.in_layers and self.total > self.lpeak:
                self.lpeak = self.total
                self.lpeak_snapshot = list(self.live.values())
        return out


def build(name, layers):
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = config_of(name, layers)
    config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(
        config, dtype=torch.bfloat16, attn_implementation=ATTN.get(name, "sdpa")
    )
    model.config.use_cache = False
    return model


def patch_trl_tiles(rows=16):
    """Row-chunk the CPU fallbacks of TRL's chunked log-prob kernel, so they keep small
    temporaries like the GPU's in-place Triton kernel (the results are unchanged)."""
    import trl.kernels.chunked_logprob as ck

    fwd, bwd = ck._forward_tile, ck._backward_tile

    def forward_tile(tile, stride, targets, *stats_and_rest, **kw):
        stats, rest = stats_and_rest[:7], stats_and_rest[7:]
        for a in range(0, tile.shape[0], rows):
            b = a + rows
            fwd(tile[a:b], stride, targets[a:b], *[s[a:b] for s in stats], *rest, **kw)

    def backward_tile(tile, stride, targets, log_z, entropy, g_lp, g_ent, *rest, **kw):
        for a in range(0, tile.shape[0], rows):
            b = a + rows
            bwd(
                tile[a:b],
                stride,
                targets[a:b],
                log_z[a:b],
                entropy[a:b],
                g_lp[a:b],
                g_ent[a:b],
                *rest,
                **kw,
            )

    def addmm_fp32(acc, a, b):
        # the GPU's addmm(out_dtype=fp32) keeps no fp32 copy of a or b
        for i in range(0, acc.shape[0], rows):
            acc[i : i + rows] += (a[i : i + rows] @ b).float()

    ck._forward_tile, ck._backward_tile = forward_tile, backward_tile
    ck._addmm_fp32 = addmm_fp32


LAYER = True


def _fp32(t):
    return None if t is None else t.float()


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("family")
    p.add_argument("adapters", choices=["fp32", "bf16"])
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--tokens", type=int, default=512)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--no-ckpt", action="store_true")
    p.add_argument("--gpu-ln", action="store_true", help="CUDA autocast: layer_norm in fp32")
    return p.parse_args()


def layer_norm_in_fp32() -> None:
    """CUDA autocast runs layer_norm in fp32; CPU autocast does not: do as the GPU does."""
    import torch.nn.functional as F

    orig_ln = F.layer_norm

    def layer_norm(x, shape, weight=None, bias=None, eps=1e-5):
        if torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                return orig_ln(x.float(), shape, _fp32(weight), _fp32(bias), eps)
        return orig_ln(x, shape, weight, bias, eps)

    F.layer_norm = layer_norm


def lora_model(a: argparse.Namespace):
    """The cut model as the GPU rows trained it: checkpointing, TRL's fused head, PEFT LoRA
    r=16; adapters fp32 (PEFT's default) or bf16 (as TRL casts them over 4-bit weights)."""
    from peft import LoraConfig, get_peft_model
    from trl.trainer.utils import add_fused_lm_head

    model = build(a.family, a.layers)
    model.train()
    if not a.no_ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    targets = TARGETS.get(
        a.family, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    lora = LoraConfig(
        r=16,
        lora_alpha=16,
        lora_dropout=0.0,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    if not a.no_ckpt:
        model.enable_input_require_grads()
    if a.adapters == "bf16":
        for _, prm in model.named_parameters():
            if prm.requires_grad:
                prm.data = prm.data.to(torch.bfloat16)
    return model


def name_modules(model, mode: Live) -> None:
    """Each storage is attributed to the innermost module running (forward and recompute)."""
    stack = []
    for mname, mod in model.named_modules():
        short = mname.replace("base_model.model.", "")

        def pre(m, i, short=short):
            stack.append(mode.where)
            if mode.phase == "backward" and ".layers." in short:
                mode.in_layers = True
            mode.where = short

        def post(m, i, o):
            mode.where = stack.pop() if stack else "?"

        mod.register_forward_pre_hook(pre)
        mod.register_forward_hook(post)


def alive_at_peak(mode: Live, tokens: int, top: int) -> list[dict]:
    """The largest groups of tensors alive at the peak, layers folded together."""
    groups = collections.defaultdict(lambda: [0, 0])
    for n, op, shape, dtype, where, phase in mode.lpeak_snapshot if LAYER else mode.peak_snapshot:
        key = (phase, re.sub(r"layers\.\d+", "layers.N", where), op, dtype, shape)
        groups[key][0] += n
        groups[key][1] += 1
    rows = sorted(groups.items(), key=lambda kv: -kv[1][0])[:top]
    return [
        {
            "phase": k[0],
            "where": k[1],
            "op": k[2],
            "dtype": k[3],
            "shape": list(k[4]),
            "count": v[1],
            "bytes": v[0],
            "per_token": round(v[0] / tokens, 1),
        }
        for k, v in rows
    ]


def main():
    a = arguments()
    torch.set_num_threads(2)
    patch_trl_tiles()
    if a.gpu_ln:
        layer_norm_in_fp32()
    model = lora_model(a)
    tied = model.get_input_embeddings().weight is model.get_output_embeddings().weight
    mode = Live()
    mode.skip = {
        t.untyped_storage()._cdata for t in list(model.parameters()) + list(model.buffers())
    }
    name_modules(model, mode)
    ids = torch.randint(0, 250, (a.batch, a.tokens))
    labels = ids.clone()  # made before the count starts
    with mode:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(input_ids=ids, labels=labels, fused_lm_head=True)
        loss = -out.log_probs.sum() / out.label_mask.sum()
        mode.phase, mode.where = "backward", "bwd"
        fwd_end, fwd_peak = mode.total, mode.peak
        loss.backward()
    toks = a.batch * a.tokens
    result = {
        "family": a.family,
        "adapters": a.adapters,
        "layers": a.layers,
        "tokens": toks,
        "tied": tied,
        "peak_bytes": mode.peak,
        "peak_per_token": mode.peak / toks,
        "fwd_peak_bytes": fwd_peak,
        "layer_peak_bytes": mode.lpeak,
        "layer_peak_per_token": mode.lpeak / toks,
        "snapshot": "layer" if LAYER else "overall",
        "fwd_end_bytes": fwd_end,
        "alive_at_peak": alive_at_peak(mode, toks, a.top),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
