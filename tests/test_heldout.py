"""The held-out set (benchmarks/heldout/): every problem loads at the small size and its reference
runs on the CPU to finite, non-degenerate outputs; names are unique; and no problem shares an op
graph with our own suite (benchmarks/problems/, which the built-in policy was tuned on) or, when a
checkout is found ($KERNELBENCH, else .kb/ in the repo), with KernelBench's level 2.

Two problems count as the same op graph here when the multiset of their ops is the same, whatever
their sizes and order: looser than policy_training/decontaminate.py's digest (which also hashes
shapes), which is checked as well.

    PYTHONPATH=$PWD .venv/bin/python -m pytest -q tests/test_heldout.py
"""
import functools
import os
import re
import warnings
from collections import Counter
from pathlib import Path

import pytest
import torch

from policy_training.decontaminate import Signature, problem_signature
from tests.conftest import PROBLEMS, ROOT
from tools.inputs import Distribution, draw
from tools.lint import lint_problem
from tools.problems import find_problem_files, load_problem, source_hash
from tools.reference import Reference

HELDOUT = ROOT / "benchmarks" / "heldout"
FILES = [f.path for f in find_problem_files(HELDOUT)]
CATEGORIES = {"elementwise", "activation", "softmax", "norm", "reduction", "argreduction", "matmul",
              "matmul_epilogue", "conv_epilogue", "attention", "loss", "cumulative", "model"}


@functools.cache
def signature(path: Path) -> Signature:
    """The decontamination signature of the problem's captured graph at its full size (meta device)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return problem_signature(path)


def ops_key(path: Path) -> tuple[str, ...]:
    """The sorted ops of the problem's graph."""
    return tuple(sorted(signature(path).ops))


def kernelbench_level2() -> Path | None:
    for root in (os.environ.get("KERNELBENCH"), ROOT / ".kb"):
        if root and (Path(root) / "KernelBench" / "level2").is_dir():
            return Path(root) / "KernelBench" / "level2"
    return None


def test_the_set_has_at_least_twelve_numbered_problems_with_unique_names():
    names = [path.stem for path in FILES]
    assert len(names) >= 12
    assert [int(name.split("_")[0]) for name in names] == list(range(1, len(names) + 1))
    descriptions = [re.sub(r"^\d+_", "", name) for name in names]
    suite = {re.sub(r"^\d+_", "", path.stem) for path in PROBLEMS.glob("*.py")}
    assert len(set(descriptions)) == len(descriptions) and not set(descriptions) & suite


def test_every_file_has_the_hash_its_readme_row_pins():
    """The set is fixed: an edit to a problem must be made on purpose, with its README row."""
    rows = re.findall(r"^\| (\d+_\w+\.py) \|.*\| `([0-9a-f]{16})` \|$", (HELDOUT / "README.md").read_text(), re.M)
    assert dict(rows) == {path.name: source_hash(path.read_text())[:16] for path in FILES}


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.stem)
def test_loads_at_the_small_size_and_its_reference_is_finite_and_not_degenerate(path):
    problem = load_problem(path, size="small")
    assert problem.category in CATEGORIES and isinstance(problem.module.SMALL_SIZES, dict)
    reference = Reference(problem, torch.device("cpu"))
    for seed, distribution in ((1, Distribution.OWN), (2, Distribution.SIGNED), (3, Distribution.SCALED)):
        _, outputs = reference.run(draw(problem, seed, distribution))
        assert outputs and all(out.dtype == torch.float32 and torch.isfinite(out).all() for out in outputs)
    report = lint_problem(reference)
    assert not report.degenerate, report.findings
    assert "own" in report.distributions


@pytest.mark.slow
def test_no_heldout_problem_has_the_op_graph_of_a_suite_problem(tmp_path):
    suite = {ops_key(path): path.name for path in sorted(PROBLEMS.glob("*.py"))}
    # the comparison can fail: a suite problem at other sizes is the same graph to it
    resized = (PROBLEMS / "04_softmax_rows.py").read_text().replace("batch_size = 4096", "batch_size = 96")
    (tmp_path / "copy.py").write_text(resized)
    assert suite.get(ops_key(tmp_path / "copy.py")) == "04_softmax_rows.py"
    same = {path.name: suite[key] for path in FILES if (key := ops_key(path)) in suite}
    assert not same, f"held-out problems with a suite problem's ops: {same}"
    digests = {signature(path).digest for path in PROBLEMS.glob("*.py")}
    assert not [path.name for path in FILES if signature(path).digest in digests]


@pytest.mark.slow
def test_no_heldout_problem_has_the_op_graph_of_a_kernelbench_level2_problem():
    level2 = kernelbench_level2()
    if level2 is None:
        pytest.skip("no KernelBench checkout ($KERNELBENCH or .kb/)")
    heldout = Counter(ops_key(path) for path in FILES)
    same, traced = [], 0
    for path in sorted(level2.glob("*.py")):
        try:
            key = ops_key(path)
        except Exception:   # a KernelBench file our capture cannot trace is outside input: counted below
            continue
        traced += 1
        same += [path.name] * heldout[key]
    assert traced >= 90, f"only {traced} KernelBench level-2 problems traced"
    assert not same, f"KernelBench level-2 problems with a held-out problem's ops: {same}"
