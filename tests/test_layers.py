"""Layers point down: no import circle between the parts of ludwig_llm (imports inside functions count too),
and no module grows past about 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

PACKAGE = Path(__file__).resolve().parents[1] / "ludwig_llm"
MAX_LINES = 400


def _part(module: str):
    """The part a dotted module belongs to: a subpackage or a top-level module of ludwig_llm."""
    bits = module.split(".")
    return bits[1] if len(bits) > 1 and bits[0] == "ludwig_llm" else None


def _imported_modules(tree: ast.AST) -> List[str]:
    names = []
    for node in ast.walk(tree):  # every import, at the top or inside a function
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            if node.module == "ludwig_llm":  # `from ludwig_llm import results` imports the part `results`
                names += [f"ludwig_llm.{alias.name}" for alias in node.names
                          if (PACKAGE / alias.name).is_dir() or (PACKAGE / f"{alias.name}.py").is_file()]
    return names


def part_graph() -> Dict[str, Set[str]]:
    edges: Dict[str, Set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        source = _part(module)
        if source is None:
            continue
        for name in _imported_modules(ast.parse(path.read_text(encoding="utf-8"))):
            target = _part(name)
            if target and target != source:
                edges.setdefault(source, set()).add(target)
    return edges


def find_circle(edges: Dict[str, Set[str]]):
    """One import circle as a list of parts, or None."""
    state: Dict[str, int] = {}  # 1 on the current path, 2 finished

    def visit(node: str, trail: List[str]):
        state[node] = 1
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return trail[trail.index(target):] + [target]
            if target not in state:
                found = visit(target, trail + [target])
                if found:
                    return found
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_the_circle_finder_finds_a_circle():
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": {"c"}}) is None


def test_no_import_circle_between_parts():
    edges = part_graph()
    assert {"schema", "data", "models", "api", "cli"} <= set(edges) | {t for ts in edges.values() for t in ts}
    circle = find_circle(edges)
    assert circle is None, "import circle between parts of ludwig_llm: " + " -> ".join(circle)


def test_lower_layers_never_import_upper_ones():
    edges = part_graph()
    order = ["schema", "data", "models", "metrics", "inference", "trainers", "backends", "api", "cli"]
    for lower_index, lower in enumerate(order):
        upper = set(order[lower_index + 1:])
        assert not (edges.get(lower, set()) & upper), f"{lower} imports {sorted(edges[lower] & upper)}"


def test_no_module_over_the_size_limit():
    too_long = {str(path.relative_to(PACKAGE.parent)): n for path in PACKAGE.rglob("*.py")
                if (n := path.read_text(encoding="utf-8").count("\n")) > MAX_LINES}
    assert not too_long, f"modules over {MAX_LINES} lines (one module, one job): {too_long}"
