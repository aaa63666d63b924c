"""The built-in policy's module structure (agent/builtin): its modules import each other
at module top with no cycle, no function imports a project module late to dodge one, and
every module stays under 450 lines. Reads the source with `ast`; imports nothing.

    pytest -q tests/test_builtin_imports.py
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "agent" / "builtin"
MAX_LINES = 450


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(node: ast.stmt) -> list[str]:
    """The package's modules an import statement names (`from pkg import mod` names mod, not pkg)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in MODULES]
    if not isinstance(node, ast.ImportFrom) or node.level or node.module is None:
        return []
    subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES]
    whole = [node.module] if node.module in MODULES and len(subs) < len(node.names) else []
    return whole + subs


def top_level_edges() -> dict[str, set[str]]:
    return {name: {m for node in ast.parse(path.read_text()).body for m in imported(node) if m != name}
            for name, path in MODULES.items()}


def cycle_from(start: str, edges: dict[str, set[str]]) -> list[str] | None:
    stack, seen = [(start, [start])], set()
    while stack:
        name, trail = stack.pop()
        for nxt in edges[name]:
            if nxt == start:
                return trail + [start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, trail + [nxt]))
    return None


def test_no_import_cycle_between_the_builtin_modules():
    edges = top_level_edges()
    cycles = [cycle_from(name, edges) for name in MODULES]
    assert not [c for c in cycles if c], [" -> ".join(c) for c in cycles if c]


def test_no_function_imports_a_project_module():
    late = [f"{path.relative_to(ROOT)}:{node.lineno}" for path in MODULES.values()
            for fn in ast.walk(ast.parse(path.read_text())) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
            for node in ast.walk(fn) if isinstance(node, (ast.Import, ast.ImportFrom))
            and (getattr(node, "module", None) or node.names[0].name).split(".")[0] in ("agent", "tools")]
    assert not late


def test_every_module_is_under_450_lines():
    long = {str(p.relative_to(ROOT)): n for p in MODULES.values() if (n := len(p.read_text().splitlines())) >= MAX_LINES}
    assert not long
