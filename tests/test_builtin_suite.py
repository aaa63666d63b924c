"""The built-in policy's batch runner (benchmarks/builtin_suite.py) on CPU: the interpreter
check over suite problems, the tables' counting (a missing row or a kernel that never
ran counts as a failure, as KernelBench's fast_p does) and the flags that exclude each
other.

    pytest -q tests/test_builtin_suite.py
"""
import io
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks.suite_rows import RowStatus, SuiteRow, check_report, failure_row, report, summary, write_row
from benchmarks.suite import PROBLEMS
from tools.problems import find_problem_files

ROOT = Path(__file__).resolve().parent.parent


def run_suite(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks.builtin_suite", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


CAUSAL_ATTENTION = PROBLEMS.joinpath("22_sdpa_attention.py").read_text().replace(
    "F.scaled_dot_product_attention(q, k, v)", "F.scaled_dot_product_attention(q, k, v, is_causal=True)")


def test_the_interpreter_check_logs_one_row_per_problem(tmp_path):
    problems = tmp_path / "problems"
    problems.mkdir()
    for name in ("01_scale_bias_relu_chain", "04_softmax_rows"):
        (problems / f"{name}.py").write_text((PROBLEMS / f"{name}.py").read_text())
    (problems / "30_causal_sdpa.py").write_text(CAUSAL_ATTENTION)     # attention with a flag: no plan
    done = run_suite("--out", str(tmp_path), "--problems", str(problems), "--cpu", "--size", "small", "--trials", "1")
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {r["name"]: r for r in map(json.loads, (tmp_path / "cpu.jsonl").read_text().splitlines())}
    assert rows["01_scale_bias_relu_chain"]["status"] == rows["04_softmax_rows"]["status"] == "correct"
    assert rows["30_causal_sdpa"]["status"] == "unsupported"
    assert "no op of this forward has a Triton plan" in rows["30_causal_sdpa"]["reason"]
    assert "3 problem(s): 2 correct, 1 unsupported" in done.stdout


def test_cpu_and_check_exclude_each_other(tmp_path):
    done = run_suite("--out", str(tmp_path), "--cpu", "--check")
    assert done.returncode == 2 and "exclude each other" in done.stderr


def row(name: str, eager: float | None, compiled: float | None, flags=()) -> SuiteRow:
    return SuiteRow(level=2, name=name, status="correct" if eager else "incorrect", best_ms=1.0 if eager else None,
                    best_vs_eager=eager, best_vs_compile=compiled, best_flags=tuple(flags))


def test_summary_counts_every_problem_of_the_selection():
    rows = [row("a", 2.0, 1.5), row("b", 0.5, 0.25), row("c", 4.0, 2.0, ["no_custom_kernel"]), row("d", None, None),
            None]                          # d: no correct kernel; the fifth was not run
    text = summary(rows)
    assert text.startswith("4/5 run; correct kernel on 2/5 (40%)")
    assert "fast_1 vs eager 1/5, vs torch.compile 1/5" in text
    assert "geomean of the best correct kernels 1.00x vs eager, 0.61x vs torch.compile" in text


def test_the_check_table_counts_missing_problems_as_failures(tmp_path):
    files = [f for f in find_problem_files(PROBLEMS)][:3]
    rows = [SuiteRow(level=files[0].level, name=files[0].path.stem, status="correct"),
            SuiteRow(level=files[1].level, name=files[1].path.stem, status="incorrect", reason="trial 1")]
    text = check_report(rows, files)
    assert "2/3 checked; a correct kernel on 1/3 (33%)" in text
    assert f"| {files[2].path.stem} | not run |" in text


def test_a_problem_the_run_could_not_finish_is_a_failed_row_with_its_reason():
    files = [f for f in find_problem_files(PROBLEMS)][:2]
    log = io.StringIO()
    write_row(log, failure_row(files[0], "full", MemoryError("trusted side: CUDA out of memory")))
    rows = [SuiteRow.from_dict(json.loads(line)) for line in log.getvalue().splitlines()]
    assert rows[0].name == files[0].path.stem and rows[0].best_ms is None
    timed = replace(rows[0], name=files[1].path.stem, level=files[1].level, evaluations=1, best_ms=1.0,
                    best_vs_eager=2.0, best_vs_compile=1.0, error=None)
    text = report(rows + [timed], files)
    assert "no correct kernel: MemoryError: trusted side: CUDA out of memory" in text
    assert "2/2 run; correct kernel on 1/2 (50%)" in text


def test_rows_written_before_the_typed_rows_still_read():
    timed = {"level": 2, "name": "a", "supported": True, "evaluations": 1, "statuses": ["correct"], "best_ms": 1.5,
             "best_vs_eager": 1.2, "best_vs_compile": 0.9, "best_flags": ["precision_policy"], "best_kernel": "ab",
             "submitted_vs_eager": None, "submitted_vs_compile": None, "kept_in_torch": ["softmax"],
             "unsupported": None, "seconds": 3.0}
    unsupported = dict(timed, name="b", supported=False, unsupported="no plan for mean", best_ms=None, statuses=[])
    checked = {"level": 1, "name": "c", "size": "full", "status": "incorrect", "flags": ["no_custom_kernel"],
               "reason": "trial 2"}
    broken = {"level": 1, "name": "d", "size": "small", "status": "not loadable: KeyError: 'N'"}
    a, b, c, d = (SuiteRow.from_dict(row) for row in (timed, unsupported, checked, broken))
    assert (d.status, d.error) == (RowStatus.FAILED, "not loadable: KeyError: 'N'")
    assert (a.status, a.best_flags, a.kept_in_torch, a.reason) == ("correct", ("precision_policy",), ("softmax",), "")
    assert (b.status, b.reason) == ("unsupported", "no plan for mean")
    assert (c.status, c.best_flags, c.reason) == ("incorrect", ("no_custom_kernel",), "trial 2")


def test_a_row_status_outside_the_enum_is_refused():
    with pytest.raises(ValueError):
        SuiteRow(level=None, name="x", status="fast")
