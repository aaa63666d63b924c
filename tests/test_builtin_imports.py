"""The built-in policy's modules import the project's modules at module top: no function
imports an `agent` or `tools` module late (the way an import cycle is dodged; cycles and
module sizes are checked project-wide by tests/test_layout.py). Reads the source with `ast`.

    pytest -q tests/test_builtin_imports.py
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "agent" / "builtin"


def test_no_function_imports_a_project_module():
    late = [f"{path.relative_to(ROOT)}:{node.lineno}" for path in sorted(PACKAGE.rglob("*.py"))
            for fn in ast.walk(ast.parse(path.read_text())) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
            for node in ast.walk(fn) if isinstance(node, (ast.Import, ast.ImportFrom))
            and (getattr(node, "module", None) or node.names[0].name).split(".")[0] in ("agent", "tools")]
    assert not late
