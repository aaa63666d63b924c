"""`kernelpilot bench` on a KernelBench-format checkout, doing what benchmarks/builtin_suite.py
did: a real run in the Triton interpreter at the small size (a problem without SMALL_SIZES
shrunk by tools/small_sizes.py, one with them using them), `--untimed` reaching the
evaluator and said in the run's files, and report.md's tables, which count every problem of
the selection as KernelBench's fast_p does (a problem not run is a failure).

    pytest -q tests/test_bench_kernelbench.py
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.bench.markdown import write_markdown
from agent.bench.metrics import NOT_TIMED, metrics, per_level, run_timed
from agent.bench.rows import BenchRow, RunLog
from agent.bench.runner import timing_on
from agent.runtime import Runtime
from tests.conftest import FIXTURES, PROBLEMS, ROOT

CAUSAL_ATTENTION = PROBLEMS.joinpath("22_sdpa_attention.py").read_text().replace(
    "F.scaled_dot_product_attention(q, k, v)", "F.scaled_dot_product_attention(q, k, v, is_causal=True)")


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A KernelBench-shaped checkout: level1 holds one of our problems (SMALL_SIZES), level2 the
    KernelBench-style fixture (none) and causal attention (no built-in plan), level3 a broken file
    that `--levels 1,2` must leave out."""
    levels = {1: {"1_softmax_rows.py": (PROBLEMS / "04_softmax_rows.py").read_text()},
              2: {"1_conv_bias_relu.py": (FIXTURES / "problems" / "kb_conv_bias_relu.py").read_text(),
                  "2_causal_sdpa.py": CAUSAL_ATTENTION},
              3: {"1_broken.py": "import torch\nclass Model(:\n"}}
    for level, files in levels.items():
        folder = tmp_path / "KernelBench" / "KernelBench" / f"level{level}"
        folder.mkdir(parents=True)
        for name, text in files.items():
            (folder / name).write_text(text)
    return tmp_path / "KernelBench"


@pytest.mark.slow
def test_a_checkout_checked_in_the_interpreter_at_the_small_size(checkout, tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT), KERNELPILOT_HOME=str(tmp_path / "home"))
    done = subprocess.run([sys.executable, "-m", "agent.cli", "bench", str(checkout), "--levels", "1,2", "--cpu",
                           "--size", "small", "--untimed", "--trials", "1", "--max-turns", "2", "--out", str(out),
                           "--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {r.key: r for r in RunLog(out).finished().values()}
    assert sorted(rows) == ["L1/1_softmax_rows", "L2/1_conv_bias_relu", "L2/2_causal_sdpa"]
    assert rows["L1/1_softmax_rows"].status == rows["L2/1_conv_bias_relu"].status == "correct"
    assert rows["L2/2_causal_sdpa"].status == "no_kernel"
    assert "no op of this forward has a Triton plan" in rows["L2/2_causal_sdpa"].reason   # the policy's own words
    # The shapes the built-in policy's analysis saw: SMALL_SIZES for ours, the shrink for KernelBench's.
    assert "7x300 float32" in (out / rows["L1/1_softmax_rows"].outputs / "report.md").read_text()
    assert "2x16x12x12 float32" in (out / rows["L2/1_conv_bias_relu"].outputs / "report.md").read_text()
    summary = json.loads(done.stdout)
    assert json.loads((out / "run.json").read_text())["untimed"] is True and summary["timed"] is False
    assert all(row.timed is False for row in rows.values())
    assert [(m["level"], m["problems"], m["correct"]) for m in summary["metrics"]] == [(1, 1, 1), (2, 2, 1),
                                                                                      (None, 3, 2)]
    assert summary["metrics"][1]["fast_p"]["eager"]["1.0"] == NOT_TIMED
    tables = (out / "report.md").read_text()
    assert "## Level 1" in tables and "## Level 2" in tables and "## Level 3" not in tables
    assert "2/2 run; a counted correct kernel on 1/2 (50%); nothing timed" in tables


def test_untimed_reaches_the_evaluator_and_the_run_file(tmp_path):
    from agent.cli.bench import bench_options, write_run_file
    from agent.cli.main import build_parser as parser

    plain = bench_options(parser().parse_args(["bench", str(PROBLEMS), "--out", str(tmp_path / "a")]))
    assert (plain.runtime.eval.timed, plain.runtime.eval.baselines) == (True, True)
    untimed = bench_options(parser().parse_args(["bench", str(PROBLEMS), "--untimed", "--cpu",     # accepted with --cpu
                                                 "--out", str(tmp_path / "b")]))
    assert (untimed.runtime.eval.timed, untimed.runtime.eval.baselines) == (False, False)
    for options in (plain, untimed):
        write_run_file(options, [])
    assert [json.loads((tmp_path / d / "run.json").read_text())["untimed"] for d in "ab"] == [False, True]
    with Runtime.open(untimed.runtime) as runtime:
        assert (runtime.evaluator.config.timed, runtime.evaluator.config.baselines) == (False, False)
        assert timing_on(runtime) is False


def row(name: str, status: str = "correct", eager: float | None = None, compiled: float | None = None,
        flags: tuple[str, ...] = (), reason: str = "", timed: bool | None = True) -> BenchRow:
    return BenchRow(key=f"L2/{name}", level=2, name=name, status=status, speedup_vs_eager=eager,
                    speedup_vs_compile=compiled, flags=flags, reason=reason, timed=timed)


def tables(tmp_path: Path, rows: list[BenchRow], names: list[str], timed: bool) -> str:
    selection = [{"key": f"L2/{n}", "level": 2, "path": f"/kb/level2/{n}.py"} for n in names]
    return write_markdown(tmp_path, rows, per_level(rows, {2: len(names)}), selection, timed).read_text()


def test_the_tables_count_every_problem_of_the_selection(tmp_path):
    rows = [row("a", eager=2.0, compiled=1.5), row("b", eager=0.5, compiled=0.25),
            row("c", eager=4.0, compiled=2.0, flags=("no_custom_kernel",)), row("d", "incorrect", reason="trial 1")]
    text = tables(tmp_path, rows, ["a", "b", "c", "d", "e"], timed=True)          # e: not run
    assert ("4/5 run; a counted correct kernel on 2/5 (40%); fast_1 vs eager 20%, vs torch.compile 20%; "
            "geomean of the counted 1.00x vs eager, 0.61x vs torch.compile") in text
    assert "| a | correct | 2.00x | 1.50x |" in text and "| c | correct | - | - |" in text   # flagged: no speed
    assert "no_custom_kernel" in text and "| d | incorrect | - | - | 0 | 0 | trial 1 |" in text
    assert "| e | not run |" in text


def test_an_untimed_run_has_check_tables_and_says_not_timed(tmp_path):
    failed = row("b", "failed", reason="MemoryError: trusted side: CUDA out of memory | again", timed=False)
    rows = [row("a", timed=False), failed]
    text = tables(tmp_path, rows, ["a", "b", "c"], timed=False)
    assert "| problem | status | turns | evaluations | note |" in text and "vs eager |" not in text
    assert "| 2 | 2/3 | 1 (33%) | not timed |" in text
    assert "MemoryError: trusted side: CUDA out of memory \\| again" in text         # a pipe cannot break the table
    assert "| c | not run |" in text and "2/3 run; a counted correct kernel on 1/3 (33%); nothing timed" in text
    saved = metrics(rows, 3, 2).as_dict(timed=False)
    assert saved["fast_p"]["eager"]["1.0"] == saved["geomean_counted"]["eager"] == NOT_TIMED
    assert saved["correct"] == 1 and metrics(rows, 3, 2).as_dict()["fast_p"]["eager"]["1.0"] == 0.0


def test_whether_a_run_was_timed():
    gpu, interpreter = row("a", eager=2.0), row("a", timed=False)
    assert run_timed(False, [gpu, interpreter]) and not run_timed(True, [gpu])      # --untimed wins
    assert not run_timed(False, [interpreter])
    before = BenchRow.from_dict({"key": "a", "level": 1, "name": "a", "status": "correct", "speedup_vs_eager": 1.5})
    assert before.timed is None and run_timed(False, [before])                       # a row from before `timed`
    assert not run_timed(False, [row("a", timed=None)])
