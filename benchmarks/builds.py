"""Does the built-in policy's first candidate build? For each problem of a folder or a KernelBench
level: load it, plan it (capture, rewrite, partition), emit the source of the plan's first
configuration, import it from a file (Triton's @jit wants one) and construct `ModelNew` with the
problem's init inputs on the meta device (on the CPU when its __init__ reads values, as
`Tensor.item()` does). Nothing runs a forward: correctness needs `kernelpilot bench`. CPU only.

    python -m benchmarks.builds ~/KernelBench/level3
    python -m benchmarks.builds ~/KernelBench/level3 --only '2*'
"""
import argparse
import fnmatch
import importlib.util
import sys
import tempfile
import types
from collections import Counter
from dataclasses import replace
from pathlib import Path

import torch

from agent.builtin import search
from agent.builtin.plans.program import build_source
from agent.builtin.plans.common import Config
from agent.builtin.policy import make_plan
from tools.problems import Problem, ProblemError, load_problem


def first_source(problem: Problem, **changes) -> tuple[str, Config] | str:
    """The source of the built-in policy's first candidate (its plan's default configuration,
    with `changes` to its fields) and that configuration; or the planner's error."""
    plan = make_plan(problem)
    if plan.error:
        return plan.error
    stages = list(plan.stages)
    config = replace(search.default_config(stages, plan.graph), **changes)
    return build_source(problem, plan.graph, stages, config), config


def first_candidate(problem: Problem, folder: Path, **changes) -> tuple[types.ModuleType, Config] | str:
    """The built-in policy's first candidate (its plan's first configuration, with `changes` to
    its fields, e.g. cuda_graph=True), imported from a file in `folder` (Triton's @jit wants one),
    with that configuration; or the planner's error."""
    built = first_source(problem, **changes)
    if isinstance(built, str):
        return built
    source, config = built
    file = folder / f"candidate_{problem.path.stem}{''.join(f'_{k}' for k in sorted(changes))}.py"
    file.write_text(source)
    spec = importlib.util.spec_from_file_location(file.stem, file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, config


def check(path: Path, folder: Path) -> tuple[str, str]:
    """(outcome, detail): 'load', 'plan', 'build' failures or 'ok'."""
    try:
        problem = load_problem(path)
    except ProblemError as error:
        return "load", str(error)
    try:
        built = first_candidate(problem, folder)
        if isinstance(built, str):
            return "plan", built
        module, _ = built
        try:
            with torch.device("meta"):
                module.ModelNew(*problem.init_inputs())
        except Exception:   # as the capture does: any failure on meta is tried again on the CPU, whose error counts
            module.ModelNew(*problem.init_inputs())     # an __init__ that reads values
    except Exception as error:  # the candidate's own failure to build is what this counts
        return "build", f"{type(error).__name__}: {error}"
    return "ok", ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a folder of problem files (e.g. KernelBench/level3)")
    parser.add_argument("--only", default="*", help="a glob over file names")
    args = parser.parse_args()
    if not args.folder.is_dir():
        print(f"error: {args.folder} is not a folder", file=sys.stderr)
        return 2
    paths = sorted((p for p in args.folder.glob("*.py") if fnmatch.fnmatch(p.name, args.only)),
                   key=lambda p: (int(p.name.split("_")[0]) if p.name.split("_")[0].isdigit() else 0, p.name))
    counts: Counter[str] = Counter()
    with tempfile.TemporaryDirectory() as scratch:
        for path in paths:
            outcome, detail = check(path, Path(scratch))
            counts[outcome] += 1
            print(f"{path.name}: {outcome}" + (f": {detail[:160]}" if detail else ""), flush=True)
    print(f"\n{counts['ok']} of {len(paths)} build; no plan {counts['plan']}, fail to build {counts['build']}, "
          f"fail to load {counts['load']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
