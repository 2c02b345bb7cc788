"""The training recipe's LoRA side, written once: which layers "auto" adapts (the language
model's attention and MLP projections, on every backend), PEFT's config, and the adapted
modules read back from a model.

Like model.py, copied verbatim into the exported script (engine/export/script.py): plain
values in and out, imports inside the functions, comments that read right in a script.
"""


def language_linears(model):
    """The full names of the linear layers "auto" LoRA adapts: those inside the language
    model's decoder layers (its attention and MLP projections). Never the output head, a
    vision or audio tower or projector (they sit outside the language model), nor an MoE
    router or gate: a linear beside the experts it routes to, or a model's own nn.Linear
    subclass whose forward is not declared to return a tensor (Phi-3.5-MoE's router
    returns a tuple, which PEFT's LoRA cannot wrap; Falcon's own linear returns a tensor
    and counts) or does not compute a linear's shape (DeepSeek-V4's grouped projection).
    bitsandbytes' 4/8-bit layers and GPT-2's Conv1D count as linear."""
    import torch

    def plain_linear(module):
        if type(module).__name__ == "Conv1D":
            return True
        if not isinstance(module, torch.nn.Linear):
            return False
        forward = type(module).forward
        if forward is torch.nn.Linear.forward or not type(module).__module__.startswith(
            "transformers"
        ):
            return True  # nn.Linear itself, or a quantised one (bitsandbytes...)
        returns = getattr(forward, "__annotations__", {}).get("return")
        tensor = returns is torch.Tensor or returns in ("torch.Tensor", "Tensor")
        return tensor and computes_linear(module)

    def computes_linear(module):
        """A subclass's forward maps (n, in_features) to (n, out_features), as LoRA's
        wrapper adds: not DeepSeek-V4's block-diagonal grouped projection (its LoRA
        output had the wrong width at step 1). Partitioned weights (ZeRO-3) are not
        probed."""
        weight = module.weight
        if getattr(weight, "ds_shape", None) is not None:
            return True
        probe = torch.zeros(2, module.in_features, dtype=weight.dtype, device=weight.device)
        try:
            with torch.no_grad():
                out = module(probe)
        except (RuntimeError, ValueError):
            return False
        return isinstance(out, torch.Tensor) and tuple(out.shape) == (2, module.out_features)

    def fused_shapes(module):
        """The shapes of a module's own fused-expert weights: 3-D (ds_shape: the whole
        shape of a ZeRO-3 partition), but not a convolution's (gated-DeltaNet's causal
        conv is 3-D too)."""
        if isinstance(module, torch.nn.modules.conv._ConvNd):
            return []
        shapes = [getattr(p, "ds_shape", p.shape) for p in module.parameters(recurse=False)]
        return [shape for shape in shapes if len(shape) >= 3]

    def holds_experts(module):
        return any(
            (name == "experts" and not isinstance(child, torch.nn.modules.conv._ConvNd))
            or fused_shapes(child)
            for name, child in module.named_children()
        )

    def routes(linear, parent, layer):
        """A router inside a module of its own (Gemma-4's `router.proj`): the one linear
        of its module, one score an expert (the first dimension of the layer's fused
        expert weights). A shared expert's MLP as wide as the expert count (Qwen3-Next:
        512 and 512) holds three linears."""
        if sum(isinstance(m, torch.nn.Linear) for m in parent.children()) != 1:
            return False
        experts = {shape[0] for module in layer.modules() for shape in fused_shapes(module)}
        return linear.out_features in experts

    try:  # transformers' get_decoder: the language model of a multimodal one
        decoder = model.get_decoder()
    except (AttributeError, NotImplementedError, ValueError):
        decoder = model
    prefix = next((name for name, module in model.named_modules() if module is decoder), None)
    if prefix is None:
        decoder, prefix = model, ""
    layer_lists = [
        name for name, module in decoder.named_modules() if isinstance(module, torch.nn.ModuleList)
    ]
    layer_lists = [  # the outermost lists: the decoder layers, not experts inside them
        name
        for name in layer_lists
        if not any(name.startswith(other + ".") for other in layer_lists)
    ]
    modules = dict(decoder.named_modules())
    output = model.get_output_embeddings()
    names = []
    for name, module in decoder.named_modules():
        layer = next(
            (
                f"{x}.{name[len(x) + 1 :].split('.')[0]}"
                for x in layer_lists
                if x and name.startswith(f"{x}.")
            ),
            None,
        )
        if layer is None or not plain_linear(module) or module is output:
            continue
        parent = name.rsplit(".", 1)[0]
        if parent == layer:  # on the layer itself: Gemma-4's per-layer-embedding gate
            continue
        if holds_experts(modules[parent]) or routes(module, modules[parent], modules[layer]):
            continue
        names.append(f"{prefix}.{name}" if prefix else name)
    short = {name.rsplit(".", 1)[-1] for name in names}
    left_out = peft_moved_names(model, short) | peft_refused_names(model, short)
    return sorted(name for name in names if name.rsplit(".", 1)[-1] not in left_out)


def peft_refused_names(model, short_names):
    """The short names the installed PEFT refuses to adapt on this model: LoRA on a Mamba
    mixer's `out_proj` (Falcon-H1: "incompatible with Mamba-based models", raised when
    the adapter is made, after the run folder). Asked of PEFT's own check, name by name."""
    try:
        from peft.tuners.tuners_utils import _check_lora_target_modules_mamba as check
    except ImportError:
        return set()
    config = lora_config(sorted(short_names), 8, 8, 0.0, False)
    refused = set()
    for name in short_names:
        try:
            check(config, model, name)
        except ValueError:
            refused.add(name)
    return refused


def peft_moved_names(model, short_names):
    """The short names PEFT moves onto the fused experts of a mixture of experts that
    transformers 5 rebuilt (its conversion of adapters trained on transformers 4): there
    DeepSeek-V2's, Qwen3-MoE's or OLMoE's `gate_proj` / `up_proj` / `down_proj` adapt every
    routed expert instead of the dense and shared-expert MLP layers of that name. Asked of
    PEFT itself; none where the installed PEFT has no such conversion."""
    try:
        from peft.utils.transformers_weight_conversion import (
            convert_peft_config_for_transformers,
            get_model_conversion_mapping,
        )
    except ImportError:
        return set()
    config = lora_config(sorted(short_names), 8, 8, 0.0, False)
    try:
        convert_peft_config_for_transformers(config, model, get_model_conversion_mapping(model))
    except ValueError:  # a fused pair named in part: PEFT refuses it when adapting, too
        return set(short_names)
    return set(short_names) - set(config.target_modules or ())


def auto_lora_targets(model):
    """What "auto" LoRA targets mean on every backend: the layers `language_linears`
    names, given as their short names ("q_proj", ...) where those name exactly these
    layers, else as a regular expression over their full names (a vision tower reuses
    q_proj, fc1..., and PEFT matches a short name anywhere in the model)."""
    import re

    chosen = language_linears(model)
    every = [name for name, _ in model.named_modules()]
    short = sorted({name.rsplit(".", 1)[-1] for name in chosen})

    def matched_by_short(name):
        return any(name == key or name.endswith("." + key) for key in short)

    if {name for name in every if matched_by_short(name)} == set(chosen):
        return short
    # one alternative per layer list: "<list>.<index>.<path inside the layer>"
    paths = {}
    for name in chosen:
        layers, _, inside = re.match(r"(.*?)\.(\d+)\.(.*)", name).groups()
        paths.setdefault(layers, set()).add(inside)
    pattern = "|".join(
        re.escape(layers) + r"\.\d+\.(?:" + "|".join(map(re.escape, sorted(inside))) + ")"
        for layers, inside in sorted(paths.items())
    )
    if {name for name in every if re.fullmatch(pattern, name)} != set(chosen):
        pattern = "|".join(map(re.escape, chosen))  # the names themselves: always exact
    return pattern


def lora_module_names(model):
    """The full names of the modules that carry a LoRA adapter (read back from the
    model, whichever loader applied it), without PEFT's wrapper prefix."""
    names = []
    for name, module in model.named_modules():
        if getattr(module, "lora_A", None):
            names.append(name.removeprefix("base_model.model."))
    return sorted(names)


def lora_keywords(targets, r, alpha, dropout, use_rslora):
    """The LoRA settings under PEFT's names, which Unsloth's get_peft_model takes as well:
    the two paths adapt the same way."""
    return {
        "r": r,
        "lora_alpha": alpha,
        "lora_dropout": dropout,
        "target_modules": targets,
        "use_rslora": use_rslora,
        "bias": "none",
    }


def lora_config(targets, r, alpha, dropout, use_rslora):
    """PEFT LoRA on the modules named in `targets`."""
    from peft import LoraConfig

    return LoraConfig(
        **lora_keywords(targets, r, alpha, dropout, use_rslora), task_type="CAUSAL_LM"
    )


LORA_FUNCTIONS = (
    language_linears,
    peft_refused_names,
    peft_moved_names,
    auto_lora_targets,
    lora_module_names,
    lora_keywords,
    lora_config,
)
