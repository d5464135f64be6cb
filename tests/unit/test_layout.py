"""The layout's promises: no import cycles inside grader/ (imports inside functions count too),
and the arrows run one way: classroom -> course -> grading -> engine -> docker."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "grader"

#: What each layer may import from the project (besides itself and the top-level helpers).
LAYERS = {
    "grader.classroom": {
        "grader.course",
        "grader.grading",
        "grader.parse",
        "grader.docker",
        "grader.engine",
    },
    "grader.course": {"grader.grading", "grader.parse", "grader.docker", "grader.engine"},
    "grader.grading": {"grader.parse", "grader.docker", "grader.engine"},
    "grader.engine": {"grader.docker"},
    "grader.parse": {"grader.docker"},
    "grader.docker": set(),
}
TOP = {"grader", "grader.proc", "grader.known_errors"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PKG.rglob("*.py")}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Project modules ``path`` imports, anywhere in the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in known}
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(path, set(mods)) - {name} for name, path in mods.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt.startswith(node + "."):
                continue  # a package importing its own submodules is its __init__'s job
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_detector_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles_in_grader() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def layer_of(name: str) -> str | None:
    return next((layer for layer in LAYERS if name == layer or name.startswith(layer + ".")), None)


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_arrows_run_one_way(layer: str) -> None:
    wrong = []
    for name, deps in graph().items():
        if layer_of(name) != layer:
            continue
        for dep in deps:
            other = layer_of(dep)
            if dep in TOP or other in (None, layer) or other in LAYERS[layer]:
                continue
            wrong.append(f"{name} imports {dep}")
    assert not wrong, "\n".join(sorted(wrong))
