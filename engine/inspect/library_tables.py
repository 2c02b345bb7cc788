"""Facts that installed libraries publish as literal tables in their source, read by parsing
that source, not importing it (the imports pull in torch, and `plan` stays torch-free):
which families liger-kernel patches (and which get its fused MoE experts), which LoRA
target names PEFT moves onto the fused experts of a mixture of experts, which families'
transformers classes support no sdpa, which class AutoModelForCausalLM builds for a type.
None or empty where a library is missing or its table is no longer a literal (tests pin
the shapes against the installed versions)."""

from __future__ import annotations

import ast
import functools
import importlib.util
import operator
from pathlib import Path

LIGER_TABLE = "MODEL_TYPE_TO_APPLY_LIGER_FN"  # liger_kernel.transformers.monkey_patch
LIGER_EXPERTS = "LigerExperts"  # liger_kernel.transformers.swiglu: the fused MoE experts
# transformers 5's MoE checkpoint conversions (model type → the pattern it follows), and
# PEFT's names of the v4 linears each pattern fused (peft.utils.transformers_weight_conversion)
CONVERSION_PATTERNS = "_MODEL_TO_CONVERSION_PATTERN"
MOVED_TARGETS = "_MOE_TARGET_MODULE_MAPPING"
CAUSAL_LM_NAMES = "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES"  # transformers.models.auto.modeling_auto
LEGACY_LAYERS = "_LEGACY_LAYER_TYPE_REMAP"  # transformers.configuration_utils
MODULE_NAMES = "SPECIAL_MODEL_TYPE_TO_MODULE_NAME"  # transformers.models.auto.auto_mappings
QUANT_CONFIGS = "AUTO_QUANTIZATION_CONFIG_MAPPING"  # transformers.quantizers.auto


class Named(str):
    """A table entry that names something (liger-kernel's table maps a model type to its
    patch function): the name, as text."""


class Unread(dict):
    """A name bound to something not literal (`OTHER.copy()`): only the `NAME[key] = value`
    lines after it are known."""


def _parsed(package: str, *parts: str) -> ast.Module | None:
    """The syntax tree of a file inside an installed package, or None (not installed, no
    such file, not Python)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    source = Path(next(iter(spec.submodule_search_locations)), *parts)
    try:
        return ast.parse(source.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None


def _module_tables(package: str, *parts: str) -> dict[str, object] | None:
    """Module-level literal assignments of a file inside an installed package (`_tables`)."""
    return _tables(_parsed(package, *parts))


def _tables(tree: ast.Module | None) -> dict[str, object] | None:
    """A module's literal assignments, name → value; `NAME[key] = value` lines update an
    earlier literal dict."""
    if tree is None:
        return None
    tables: dict[str, object] = {}
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        value = getattr(node, "value", None)  # a `for NAME in ...` binds no value
        if isinstance(target, ast.Name):
            tables[target.id] = _value(value) if value else None
        elif isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):
            table = tables.get(target.value.id)
            if isinstance(table, dict) and isinstance(target.slice, ast.Constant):
                table[target.slice.value] = _entry(value)
    return tables


def _value(node: ast.expr) -> object:
    """A literal's value; a dict's keys even where its values are not literal (functions:
    their names); an `OrderedDict([(key, value), ...])` of literals as a dict."""
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "OrderedDict":
        pairs = _value(node.args[0]) if len(node.args) == 1 else None
        return dict(pairs) if isinstance(pairs, list) else Unread()
    if isinstance(node, ast.Dict):
        return {
            k.value: _entry(v)
            for k, v in zip(node.keys, node.values, strict=True)
            if isinstance(k, ast.Constant)
        }
    try:
        return ast.literal_eval(node)
    except ValueError:
        pass
    try:  # arithmetic on numbers: Gemma4VisionConfig's `position_embedding_size = 10 * 1024`
        return _folded(node)
    except (ValueError, TypeError, ZeroDivisionError):
        return Unread()


ARITHMETIC = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Pow: operator.pow,
}


def _folded(node: ast.expr) -> int | float:
    """The value of arithmetic on number literals (literal_eval refuses `10 * 1024`)."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in ARITHMETIC:
        return ARITHMETIC[type(node.op)](_folded(node.left), _folded(node.right))
    raise ValueError(ast.dump(node))


def _entry(node: ast.expr | None) -> object:
    """A table entry's value: a name (a function's) as Named, else the literal."""
    if isinstance(node, ast.Name):
        return Named(node.id)
    return _value(node) if node is not None else None


def _liger_patch() -> ast.Module | None:
    """liger-kernel's monkey_patch.py: its model table and its patch functions."""
    return _parsed("liger_kernel", "transformers", "monkey_patch.py")


def _liger_table(tree: ast.Module | None) -> dict | None:
    """liger-kernel's model type → patch function table; None where it cannot be read."""
    table = (_tables(tree) or {}).get(LIGER_TABLE)
    return table if type(table) is dict else None


@functools.lru_cache(maxsize=1)
def liger_model_types() -> frozenset[str] | None:
    """The model types the installed liger-kernel patches: the keys of its own table.
    None when liger-kernel is not installed or the table could not be read."""
    table = _liger_table(_liger_patch())
    if table is None:
        return None
    return frozenset(key for key in table if isinstance(key, str))


@functools.lru_cache(maxsize=1)
def liger_fused_expert_types() -> frozenset[str]:
    """The model types whose liger-kernel patch swaps the routed experts for its fused
    `LigerExperts` (their function in the table names that class). Empty when liger-kernel
    is missing or its table is no longer literal."""
    tree = _liger_patch()
    table = _liger_table(tree)
    if table is None:
        return frozenset()
    fused = {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any(isinstance(n, ast.Name) and n.id == LIGER_EXPERTS for n in ast.walk(node))
    }
    return frozenset(
        key
        for key, function in table.items()
        if isinstance(key, str) and isinstance(function, Named) and function in fused
    )


@functools.lru_cache(maxsize=1)
def _peft_conversions() -> tuple[dict, dict]:
    """(model type → conversion pattern, pattern → the names PEFT moves), both files parsed
    once: transformers' table with PEFT's additions, and PEFT's names. Empty where either
    is missing or no longer a literal."""
    peft = _module_tables("peft", "utils", "transformers_weight_conversion.py") or {}
    patterns = (_module_tables("transformers", "conversion_mapping.py") or {}).get(
        CONVERSION_PATTERNS
    )
    moved = peft.get(MOVED_TARGETS)
    if type(patterns) is not dict or type(moved) is not dict:
        return {}, {}
    return {**patterns, **(peft.get(CONVERSION_PATTERNS) or {})}, moved


@functools.lru_cache(maxsize=64)
def peft_moved_names(model_type: str) -> frozenset[str]:
    """LoRA target names the installed PEFT moves onto a mixture of experts' fused experts
    for this model type (its conversion of transformers 4 adapters): naming them adapts
    every routed expert, not the dense or shared-expert layer of that name. The recipe
    asks PEFT itself (recipe/model.peft_moved_names); tests hold the two together."""
    patterns, moved = _peft_conversions()
    return frozenset(moved.get(patterns.get(model_type), {}))


@functools.lru_cache(maxsize=64)
def sdpa_unsupported(model_type: str) -> bool:
    """Whether the installed transformers declares `_supports_sdpa = False` on a class of
    this family's modeling file (gpt-oss: its attention sinks), so "auto" loads it with
    eager attention (recipe/model.attention_implementation asks the class itself)."""
    if not model_type.isidentifier():
        return False
    tree = _parsed("transformers", "models", model_type, f"modeling_{model_type}.py")
    if tree is None:
        return False
    return any(
        isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "_supports_sdpa" for t in node.targets)
        and isinstance(node.value, ast.Constant)
        and node.value.value is False
        for cls in tree.body
        if isinstance(cls, ast.ClassDef)
        for node in cls.body
    )


@functools.lru_cache(maxsize=64)
def scales_input_embeddings(model_type: str) -> bool:
    """Whether this family's modeling file multiplies `inputs_embeds` (Granite's
    embedding_multiplier): a second copy of the embeddings, whatever the factor's value."""
    if not model_type.isidentifier():
        return False
    tree = _parsed("transformers", "models", model_type, f"modeling_{model_type}.py")
    return tree is not None and any(
        isinstance(node, ast.BinOp)
        and isinstance(node.op, ast.Mult)
        and any(
            isinstance(side, ast.Name) and side.id == "inputs_embeds"
            for side in (node.left, node.right)
        )
        for node in ast.walk(tree)
    )


@functools.lru_cache(maxsize=64)
def causal_lm_class(model_type: str) -> str | None:
    """The class the installed transformers' AutoModelForCausalLM builds for a config of
    this model_type (Qwen3.5's multimodal config: the text-only Qwen3_5ForCausalLM, its
    vision tower never loaded), or None where it builds none or its table is unreadable."""
    tables = _module_tables("transformers", "models", "auto", "modeling_auto.py") or {}
    names = tables.get(CAUSAL_LM_NAMES)
    return names.get(model_type) if isinstance(names, dict) else None


@functools.lru_cache(maxsize=1)
def legacy_layer_types() -> dict[str, str]:
    """Old layer-type names the installed transformers still reads in `layer_types`, and the
    names it reads them as (configuration_utils._LEGACY_LAYER_TYPE_REMAP: "mamba" is
    "linear_attention"); empty where transformers is missing or the table is not literal."""
    table = (_module_tables("transformers", "configuration_utils.py") or {}).get(LEGACY_LAYERS)
    return table if type(table) is dict else {}


def _module_of(model_type: str) -> str | None:
    """The transformers.models folder of a model type (gemma3_text's is gemma3)."""
    modules = (_module_tables("transformers", "models", "auto", "auto_mappings.py") or {}).get(
        MODULE_NAMES
    )
    module = (modules if isinstance(modules, dict) else {}).get(model_type, model_type)
    return module if isinstance(module, str) and module.isidentifier() else None


FUSABLE = ("qkv_proj", "gate_up_proj")  # one nn.Linear where others have q/k/v, gate/up


@functools.lru_cache(maxsize=64)
def fused_linears(model_type: str) -> frozenset[str]:
    """Which of FUSABLE this family's modeling file builds as one nn.Linear (Phi-3 both,
    GLM-4 gate_up_proj): the names LoRA adapts and the plan counts. Experts' fused
    `gate_up_proj` parameters (Mixtral, gpt-oss) are not linears and do not count."""
    module = _module_of(model_type)
    tree = module and _parsed("transformers", "models", module, f"modeling_{module}.py")
    if not tree:
        return frozenset()
    return frozenset(
        target.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and _calls_linear(node.value)
        for target in node.targets
        if isinstance(target, ast.Attribute) and target.attr in FUSABLE
    )


def _calls_linear(node: ast.expr) -> bool:
    """`nn.Linear(...)` or `Linear(...)`."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Attribute) and func.attr == "Linear") or (
        isinstance(func, ast.Name) and func.id == "Linear"
    )


@functools.lru_cache(maxsize=64)
def config_defaults(model_type: str) -> dict[str, object]:
    """The literal defaults of the installed transformers' config class for a model type
    (Qwen3_5TextConfig's `linear_num_value_heads: int = 32`): what a config.json that omits
    a field gets when transformers builds the model. Empty where transformers is missing,
    the class cannot be found, or it declares no literal defaults."""
    declared = {
        node.target.id: _value(node.value)
        for node in _config_fields(model_type)
        if node.value is not None
    }
    return {k: v for k, v in declared.items() if not isinstance(v, Unread)}


@functools.lru_cache(maxsize=64)
def config_field_types(model_type: str) -> dict[str, tuple[str, ...]]:
    """The types the installed transformers' config class declares for its fields, each as
    its alternatives' plain names (`num_kv_heads: int | None` → ("int", "None"),
    `image_size: int | list[int]` → ("int", "list")); a field whose annotation names
    anything else (RopeParameters, Optional[...]) is left out: nothing is known of it.
    transformers 5 checks a config against these when it builds one (strict dataclasses)."""
    types = {}
    for node in _config_fields(model_type):
        names = _type_names(node.annotation)
        if names:
            types[node.target.id] = names
    return types


@functools.lru_cache(maxsize=64)
def config_field_names(model_type: str) -> frozenset[str]:
    """Every field the installed transformers' config class for a model type declares
    (empty where it cannot be found): what that family's model can read."""
    return frozenset(node.target.id for node in _config_fields(model_type))


def _type_names(node: ast.expr) -> tuple[str, ...] | None:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        left, right = _type_names(node.left), _type_names(node.right)
        return left + right if left and right else None
    if isinstance(node, ast.Subscript):
        node = node.value
    if isinstance(node, ast.Constant) and node.value is None:
        return ("None",)
    plain = ("int", "float", "bool", "str", "list", "tuple", "dict")
    return (node.id,) if isinstance(node, ast.Name) and node.id in plain else None


def _config_fields(model_type: str) -> list[ast.AnnAssign]:
    """The annotated fields (`name: type = default`) of the config class of a model type."""
    module = _module_of(model_type)
    if module is None:
        return []
    tree = _parsed("transformers", "models", module, f"configuration_{module}.py")
    for cls in tree.body if tree else []:
        if isinstance(cls, ast.ClassDef) and _declares_type(cls, model_type):
            return [
                node
                for node in cls.body
                if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
            ]
    return []


def with_defaults(model_type: str, config: dict) -> dict:
    """A config.json's fields over its config class's declared defaults: what transformers
    builds from it (a field left out takes the default; a null stays null)."""
    return config_defaults(model_type) | config


def _declares_type(cls: ast.ClassDef, model_type: str) -> bool:
    """Whether a class body says `model_type = "<model_type>"`."""
    return any(
        isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "model_type" for t in node.targets)
        and isinstance(node.value, ast.Constant)
        and node.value.value == model_type
        for node in cls.body
    )


@functools.lru_cache(maxsize=1)
def dequantizing_formats() -> frozenset[str]:
    """The stored formats (config.json's quant_method) whose transformers loading config
    takes `dequantize` (MXFP4, FP8): the ones it loads as 16-bit weights when asked. Read
    from its method → config class table and the classes' __init__ arguments; empty where
    transformers is missing or the table is not literal."""
    table = (_module_tables("transformers", "quantizers", "auto.py") or {}).get(QUANT_CONFIGS)
    tree = _parsed("transformers", "utils", "quantization_config.py")
    if type(table) is not dict or tree is None:
        return frozenset()
    taking = {
        node.name
        for node in tree.body
        if isinstance(node, ast.ClassDef) and "dequantize" in _init_arguments(node)
    }
    return frozenset(method for method, cls in table.items() if cls in taking)


def _init_arguments(cls: ast.ClassDef) -> set[str]:
    for node in cls.body:
        if isinstance(node, ast.FunctionDef) and node.name == "__init__":
            arguments = node.args.args + node.args.kwonlyargs
            return {argument.arg for argument in arguments}
    return set()
