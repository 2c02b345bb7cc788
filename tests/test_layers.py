"""The layout is the architecture: engine/ is grouped by stage, and a stage imports only
the stages below it (docs/ARCHITECTURE.md draws the same order). No module imports itself
back through a circle, and the engine never imports a front end."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "engine"
# lowest first: a stage may import its own modules and any stage before it
STAGES = [
    "common",
    "recipe",
    "settings",
    "launch",
    "data",
    "inspect",
    "plan",
    "runs",
    "export",
    "train",
    "deliver",
]


def module_name(path: Path) -> str:
    top = {"engine": "finetune_tui.engine", "tui": "finetune_tui.tui", "cli": "finetune_tui"}
    rel = path.relative_to(ROOT)
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([top[parts[0]], *parts[1:]])


def imports_of(path: Path) -> set[str]:
    """Every finetune_tui module this file imports, lazy imports inside functions included."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{alias.name}" for alias in node.names]
            found.update(name for name in names if _is_module(name)) or None
            found.add(target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("finetune_tui") and _is_module(name)}


def _is_module(dotted: str) -> bool:
    return _path_of(dotted) is not None


def _path_of(dotted: str) -> Path | None:
    parts = dotted.split(".")
    if parts[:2] == ["finetune_tui", "engine"]:
        base, rest = ENGINE, parts[2:]
    elif parts[:2] == ["finetune_tui", "tui"]:
        base, rest = ROOT / "tui", parts[2:]
    elif parts[:1] == ["finetune_tui"]:
        base, rest = ROOT / "cli", parts[1:]
    else:
        return None
    candidate = base.joinpath(*rest)
    if candidate.with_suffix(".py").is_file():
        return candidate.with_suffix(".py")
    if (candidate / "__init__.py").is_file():
        return candidate / "__init__.py"
    return None


def engine_modules() -> list[Path]:
    return sorted(ENGINE.rglob("*.py"))


def stage_of(dotted: str) -> str | None:
    parts = dotted.split(".")
    return parts[2] if parts[:2] == ["finetune_tui", "engine"] and len(parts) > 3 else None


def test_every_engine_module_lives_in_a_stage():
    loose = [p.name for p in ENGINE.glob("*.py") if p.name != "__init__.py"]
    assert loose == []
    assert sorted(p.name for p in ENGINE.iterdir() if p.is_dir() and p.name != "__pycache__") == (
        sorted(STAGES)
    )


def test_a_stage_imports_only_the_stages_below_it():
    upward = []
    for path in engine_modules():
        here = stage_of(module_name(path) + ("" if path.name == "__init__.py" else ""))
        if here is None:
            continue
        for target in imports_of(path):
            there = stage_of(target)
            if there is not None and STAGES.index(there) > STAGES.index(here):
                upward.append(f"{path.relative_to(ROOT)} -> {target}")
    assert upward == []


def test_the_engine_never_imports_a_front_end():
    front = [
        f"{path.relative_to(ROOT)} -> {target}"
        for path in engine_modules()
        for target in imports_of(path)
        if not target.startswith("finetune_tui.engine")
    ]
    assert front == []


def test_no_import_circle_among_modules():
    files = engine_modules() + sorted((ROOT / "tui").rglob("*.py"))
    graph = {module_name(p): {t for t in imports_of(p)} for p in files}
    graph = {m: {t for t in ts if t in graph and t != m} for m, ts in graph.items()}
    # a package's __init__ is imported on the way to its modules: not an edge back
    state: dict[str, int] = {}
    circles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append(trail[trail.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert circles == []


def test_the_checks_see_an_upward_import(tmp_path):
    """The parser finds relative imports across stages (what every engine module uses)."""
    probe = ENGINE / "common" / "errors.py"
    assert "finetune_tui.engine.settings.schema" not in imports_of(probe)
    runner = ENGINE / "train" / "runner.py"
    assert {"finetune_tui.engine.runs.summary", "finetune_tui.engine.common.errors"} <= (
        imports_of(runner)
    )
