"""README and docstring claims only a GPU can show, untested until issue 18 (`pytest -m gpu`
on the device machine; skipped without CUDA, failed under KERNELPILOT_REQUIRE_GPU=1):

- the resident-memory watchdog stops a worker whose host memory passes the cap (on a CPU
  the address-space cap comes first);
- baselines are measured once and then read from the cache; a damaged entry is measured again;
- the timed loop flushes L2 before every call (a candidate's own probe sees its buffer
  come from device memory on every timed call);
- a kernel on a side stream the timed stream never waits for is a `timing_mismatch` on
  real hardware (CUDA events against the host clock), and its speed is not believed;
- an audit run after an excessive speedup that fails is the verdict;
- `optimize --target-speedup` and `--max-gpu-seconds` stop a run when reached;
- the built-in policy submits a kernel faster than eager, and best.py is the fastest kernel
  the run measured.

    KERNELPILOT_REQUIRE_GPU=1 pytest -q -m gpu tests/test_gpu_claims.py
"""
import dataclasses
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CANDIDATES, FIXTURES, PROBLEMS, ROOT, read
from tools.device import detect, pick_index
from tools.evaluator import EvalConfig, Evaluator
from tools.history import HistoryStore
from tools.problems import load_problem
from tools.records import EvalStatus, Flag
from tools.sandbox.contracts import GiB, Limits
from tools.sandbox.process import ProcessSandbox
from tools.trust import Use, Versus, allowed, trusted_speedup

pytestmark = pytest.mark.gpu      # skipped without CUDA, or failed: tests/conftest.py

GPU_FIXTURES = FIXTURES / "gpu"
DOUBLE_SMALL = GPU_FIXTURES / "double_small.py"
DEGENERATE = ROOT / "tests" / "cheats" / "problems" / "degenerate_scale.py"
CHAIN = PROBLEMS / "01_scale_bias_relu_chain.py"


@pytest.fixture(scope="module")
def gpu_sandbox():
    with ProcessSandbox(pick_index()) as sandbox:   # before detect(): the fork server starts before CUDA
        yield sandbox


@pytest.fixture
def gpu_evaluator(gpu_sandbox):
    """A fresh evaluator: its baseline cache lies in this test's own home."""
    return Evaluator(gpu_sandbox, detect(), EvalConfig())


def kernelpilot(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "KERNELPILOT_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=900, env=env)


def test_the_resident_memory_watchdog_stops_a_host_memory_hog():
    limits = dataclasses.replace(Limits(), host_memory_bytes=4 * GiB)
    with ProcessSandbox(pick_index(), limits, warm=0) as sandbox:
        evaluator = Evaluator(sandbox, detect(), EvalConfig(limits=limits, baselines=False))
        result = evaluator.evaluate(load_problem(PROBLEMS / "04_softmax_rows.py"),
                                    read(FIXTURES / "candidates" / "memory_hog.py"))
    assert result.status is EvalStatus.CRASHED, result.reason
    assert "host memory" in result.reason and "over the 4.0 GiB cap" in result.reason


def test_baselines_are_measured_once_then_read_from_the_cache(gpu_evaluator, kernelpilot_home):
    problem = load_problem(PROBLEMS / "04_softmax_rows.py")
    honest = read(CANDIDATES / "04_softmax_rows.py")
    first = gpu_evaluator.evaluate(problem, honest)
    entries = list((kernelpilot_home / "cache" / "baselines").glob("*.json"))
    assert first.eager_ms > 0 and first.compile_ms > 0 and len(entries) == 1
    again = gpu_evaluator.evaluate(problem, honest)
    assert (again.eager_ms, again.compile_ms) == (first.eager_ms, first.compile_ms)     # read, not measured
    entries[0].write_text("{ not json")
    measured = gpu_evaluator.evaluate(problem, honest)
    assert measured.eager_ms > 0 and measured.eager_ms != first.eager_ms                # measured again
    assert json.loads(entries[0].read_text())["eager"]["median_ms"] == measured.eager_ms


def test_the_timed_loop_flushes_l2_before_every_call(gpu_evaluator):
    result = gpu_evaluator.evaluate(load_problem(DOUBLE_SMALL), read(GPU_FIXTURES / "l2_probe.py"))
    assert result.status is EvalStatus.CORRECT, result.reason
    probes = [line.split() for line in result.log.splitlines() if line.startswith("L2PROBE ")][-50:]
    assert len(probes) == 50, result.log[-500:]          # the last 50 are timed calls (100 of them)
    ratios = [float(first) / float(second) for _, first, second in probes]
    # flushed: the first sum reads 16 MiB from device memory, the second from L2
    assert statistics.median(ratios) > 1.3, ratios


def test_a_hidden_side_stream_is_a_timing_mismatch_on_real_hardware(gpu_evaluator):
    result = gpu_evaluator.evaluate(load_problem(DOUBLE_SMALL), read(GPU_FIXTURES / "hidden_side_stream.py"))
    assert result.status is EvalStatus.CORRECT, result.reason
    assert Flag.TIMING_MISMATCH in result.flags, (result.flags, result.timing)
    assert result.timing.wall_median_ms > 1.25 * result.timing.median_ms + 0.1
    assert trusted_speedup(result, Versus.EAGER) is None and not allowed(result, Use.BEST)


def test_an_audit_run_that_fails_is_the_verdict(gpu_evaluator):
    result = gpu_evaluator.evaluate(load_problem(DEGENERATE), read(GPU_FIXTURES / "wrong_on_calls_6_to_10.py"))
    assert result.status is EvalStatus.INCORRECT, result.reason
    assert result.reason.startswith("audit run after an excessive speedup: trial 6 "), result.reason
    assert Flag.EXCESSIVE_SPEEDUP in result.flags


def replay_benchmarks(tmp_path: Path, turns: int) -> Path:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"turns": [
        {"text": "## Performance analysis\nThe chain is memory-bound: one fused pass.",
         "tool_calls": [{"name": "benchmark", "code_file": str(CANDIDATES / "01_scale_bias_relu_chain.py")}]}
    ] * turns}))
    return script


@pytest.mark.parametrize("flags, stop, field, at_least", [
    (("--target-speedup", "1.5"), "target_reached", "speedup_vs_eager", 1.5),
    (("--max-gpu-seconds", "1"), "gpu_budget", "gpu_seconds", 1.0),
], ids=["target-speedup", "max-gpu-seconds"])
def test_a_gpu_run_stops_when_its_target_or_gpu_budget_is_reached(tmp_path, kernelpilot_home, flags, stop, field,
                                                                  at_least):
    """The fused chain runs about 5x eager on an H100 (benchmarks/RESULTS.md), and one
    evaluation holds the GPU for seconds: either flag stops the run after its first turn."""
    done = kernelpilot("optimize", str(CHAIN), "--policy", f"replay:{replay_benchmarks(tmp_path, 3)}",
                       "--patience", "9", "--json", "--out", str(tmp_path / "out"), *flags, home=kernelpilot_home)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert (summary["stop_reason"], summary["turns"], summary["mode"]) == (stop, 1, "gpu"), summary
    assert summary[field] >= at_least, summary


def test_builtin_submits_a_kernel_faster_than_eager_and_best_py_is_the_fastest_measured(tmp_path, kernelpilot_home):
    db = f"sqlite:///{tmp_path / 'history.db'}"
    done = kernelpilot("optimize", str(CHAIN), "--policy", "builtin", "--json", "--db", db, "--out",
                       str(tmp_path / "out"), home=kernelpilot_home)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert (summary["status"], summary["submitted"], summary["mode"]) == ("correct", True, "gpu"), summary
    assert summary["speedup_vs_eager"] > 1.0
    store = HistoryStore(db)
    runs = [r for r in store.records(with_source=True) if r.session == summary["session_id"]]
    measured = [r for r in runs if allowed(r, Use.BEST) and trusted_speedup(r, Versus.EAGER) is not None]
    fastest = max(measured, key=lambda r: trusted_speedup(r, Versus.EAGER))
    assert (tmp_path / "out" / "best.py").read_text() == fastest.source
    submitted = store.records(ids=[store.submission(summary["session_id"])], with_source=True)[0]
    assert submitted.source == fastest.source and trusted_speedup(submitted, Versus.EAGER) > 1.0
