"""The tree's architecture, read from its imports (AST, every import, function-level too):
floors point down only (tools/ at the bottom, the agent core above it, the CLI, benchmarks
and training on top), no import cycle anywhere, nothing imports the tests, and no module
grows past 450 lines.

    pytest -q tests/test_layout.py
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("agent", "tools", "benchmarks", "policy_training", "tests")
MAX_LINES = 450


def module_files() -> dict[str, Path]:
    files = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if not (path.parent / "__init__.py").exists():
                continue        # data, not modules: problems, candidates, cheat fixtures
            parts = path.relative_to(ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


MODULES = module_files()


def imported(module: str, path: Path, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The project modules one import statement names (a `from X import sub` of a submodule names X.sub)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name in MODULES]
    base = node.module or ""
    if node.level:
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}".strip(".")
    named = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES]
    return named or ([base] if base in MODULES else [])


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        graph[module] = {target for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                         for target in imported(module, path, node) if target != module}
    return graph


GRAPH = import_graph()


def floor(module: str) -> str:
    if module.startswith("agent.cli"):
        return "cli"
    return module.split(".")[0]


# Which floors each floor may import (the CLI may import the training stack, lazily).
ALLOWED = {
    "tools": {"tools"},
    "agent": {"tools", "agent"},
    "cli": {"tools", "agent", "cli", "policy_training"},
    "benchmarks": {"tools", "agent", "benchmarks"},
    "policy_training": {"tools", "agent", "policy_training"},
    "tests": set(PACKAGES) | {"cli"},
}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}                 # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_the_walk_sees_the_project():
    assert {"tools.evaluator", "agent.runtime", "agent.session", "agent.cli", "benchmarks.cheat_suite",
            "tools.small_sizes"} <= set(MODULES)
    assert "tools.evaluator" in GRAPH["agent.runtime"] and "agent.runtime" in GRAPH["agent.session"]


def test_floors_point_down_only():
    wrong = [f"{module} imports {target}" for module, targets in sorted(GRAPH.items()) for target in sorted(targets)
             if floor(target) not in ALLOWED[floor(module)]]
    assert not wrong, "imports against the floors (see ../shared/DESIGN.md, Layout):\n" + "\n".join(wrong)


def test_nothing_imports_the_tests_but_the_tests():
    wrong = [f"{m} imports {t}" for m, ts in GRAPH.items() for t in ts if t.startswith("tests") and floor(m) != "tests"]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_module_over_the_limit():
    sizes = {path.relative_to(ROOT): len(path.read_text().splitlines()) for path in MODULES.values()}
    over = [f"{path}: {lines} lines" for path, lines in sorted(sizes.items()) if lines > MAX_LINES]
    assert not over, f"modules over {MAX_LINES} lines (split them):\n" + "\n".join(over)
