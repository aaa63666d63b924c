"""Load KernelBench-format problems from a file, a folder, or a KernelBench checkout.

A problem module defines `class Model(nn.Module)`, module-level size constants,
`get_inputs()` and `get_init_inputs()`; ours may add `SMALL_SIZES` (globals to override
for a small run) and `OP_CATEGORY`. At the small size, a problem without `SMALL_SIZES`
(KernelBench's) has its size constants lowered by `tools/small_sizes.py`. A problem is
identified by the hash of its source, whatever its size, so a renamed file keeps its
history. Every way a problem file can be unusable raises `ProblemError` with a one-line
message naming the file.

    problem = load_problem("benchmarks/problems/04_softmax_rows.py", size="small")
    files = find_problem_files("KernelBench/KernelBench")   # levels from folder names
"""
import hashlib
import re
import types
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from tools.small_sizes import shrink
from tools.problem_errors import ProblemError

REQUIRED = ("Model", "get_inputs", "get_init_inputs")
LEVEL_DIR = re.compile(r"^level(\d+)$")


@dataclass(frozen=True)
class ProblemFile:
    path: Path
    suite: str
    level: int | None


@dataclass(frozen=True)
class Problem:
    name: str
    path: Path
    source: str
    hash: str
    suite: str
    level: int | None
    category: str | None
    size: str                                   # "full" or "small"
    module: types.ModuleType = field(repr=False, compare=False)
    shrunk: tuple[tuple[str, object], ...] = ()  # small without SMALL_SIZES: the globals tools/small_sizes.py set

    def init_inputs(self) -> list:
        return list(self._call("get_init_inputs"))

    def draw_inputs(self) -> list[torch.Tensor]:
        """One draw of `get_inputs()` (uses torch's global RNG: seed it first)."""
        inputs = self._call("get_inputs")
        if not isinstance(inputs, (list, tuple)):
            raise ProblemError(f"{self.path}: get_inputs() must return a list of tensors, got {type(inputs).__name__}")
        for index, value in enumerate(inputs):
            if type(value) is not torch.Tensor:
                raise ProblemError(f"{self.path}: get_inputs() item {index} is {type(value).__name__}, not a tensor")
        return list(inputs)

    def build_model(self) -> torch.nn.Module:
        """`Model(*get_init_inputs())` right after `torch.manual_seed(42)`, as KernelBench does."""
        init_inputs = self.init_inputs()
        torch.manual_seed(42)
        try:
            return self.module.Model(*init_inputs)
        except Exception as error:
            raise ProblemError(f"{self.path}: Model(*get_init_inputs()) raised {type(error).__name__}: {error}") from None

    def _call(self, name: str):
        try:
            return getattr(self.module, name)()
        except Exception as error:
            raise ProblemError(f"{self.path}: {name}() raised {type(error).__name__}: {error}") from None


def source_hash(source: str) -> str:
    return hashlib.sha256(source.replace("\r\n", "\n").encode()).hexdigest()


def load_problem(path: str | Path, size: str = "full", suite: str | None = None,
                 level: int | None = None) -> Problem:
    path = Path(path)
    if not path.is_file():
        raise ProblemError(f"{path}: no such problem file")
    try:
        source = path.read_text()
    except UnicodeDecodeError:
        raise ProblemError(f"{path}: not a text file (a problem is Python source)") from None
    module = _exec_module(path, source)
    missing = [name for name in REQUIRED if not callable(getattr(module, name, None))]
    if missing:
        raise ProblemError(f"{path}: not a KernelBench-format problem, missing {', '.join(missing)}")
    if size not in ("full", "small"):
        raise ProblemError(f"unknown size '{size}' (full or small)")
    shrunk = _apply_small_sizes(path, module) if size == "small" else ()
    return Problem(name=path.stem, path=path, source=source, hash=source_hash(source),
                   suite=suite or path.parent.name, level=level,
                   category=getattr(module, "OP_CATEGORY", None), size=size, module=module, shrunk=shrunk)


def resized(problem: Problem, sizes: dict[str, int], label: str) -> Problem:
    """The same problem (same source and hash) with some module-level size constants set to
    other values, in a module of its own: `problem`'s module is left as it is."""
    module = _exec_module(problem.path, problem.source)
    if problem.size == "small":
        _apply_small_sizes(problem.path, module)
    unknown = [name for name in sizes if name not in module.__dict__]
    if unknown:
        raise ProblemError(f"{problem.path}: no module-level constant named {', '.join(unknown)} to resize")
    module.__dict__.update(sizes)
    return replace(problem, size=label, module=module)


def _exec_module(path: Path, source: str) -> types.ModuleType:
    try:
        code = compile(source, str(path), "exec")
    except SyntaxError as error:
        raise ProblemError(f"{path}:{error.lineno}: syntax error: {error.msg}") from None
    module = types.ModuleType(f"kp_problem_{source_hash(source)[:12]}")
    module.__file__ = str(path)
    try:
        exec(code, module.__dict__)
    except Exception as error:
        raise ProblemError(f"{path}: importing the problem raised {type(error).__name__}: {error}") from None
    return module


def _apply_small_sizes(path: Path, module: types.ModuleType) -> tuple[tuple[str, object], ...]:
    """Set the small size's globals: SMALL_SIZES, or else (KernelBench) the shrink heuristic's,
    which are returned (the problem's `shrunk`)."""
    sizes = getattr(module, "SMALL_SIZES", None)
    if sizes is None:
        return shrink(module)
    if not isinstance(sizes, dict):
        raise ProblemError(f"{path}: SMALL_SIZES must be a dict of global names to values")
    unknown = [name for name in sizes if name not in module.__dict__]
    if unknown:
        raise ProblemError(f"{path}: SMALL_SIZES names globals the problem does not define: {', '.join(unknown)}")
    module.__dict__.update(sizes)
    return ()


def find_problem_files(path: str | Path) -> list[ProblemFile]:
    """A file, a folder of problem files, or a KernelBench checkout (its root, its
    `KernelBench/` folder or one `levelN/` folder)."""
    path = Path(path)
    if path.is_file():
        return [ProblemFile(path, path.parent.name, _level_of(path.parent))]
    if not path.is_dir():
        raise ProblemError(f"{path}: no such file or folder")
    for root in (path / "KernelBench", path):
        levels = sorted((d for d in root.glob("level*") if LEVEL_DIR.match(d.name)), key=_level_of)
        if levels:
            return [ProblemFile(f, "kernelbench", _level_of(d)) for d in levels for f in _py_files(d)]
    suite = "kernelbench" if _level_of(path) is not None else path.name
    files = [ProblemFile(f, suite, _level_of(path)) for f in _py_files(path)]
    if not files:
        raise ProblemError(f"{path}: no problem files (*.py) in this folder")
    return files


def _py_files(folder: Path) -> list[Path]:
    return sorted((f for f in folder.glob("*.py") if not f.name.startswith("_")), key=_natural_key)


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _level_of(folder: Path) -> int | None:
    match = LEVEL_DIR.match(folder.name)
    return int(match.group(1)) if match else None
