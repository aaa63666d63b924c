"""Shared fixtures: one process sandbox and evaluator per test session (CPU interpreter)."""
import os
from pathlib import Path

import pytest

from tools.device import detect
from tools.evaluator import EvalConfig, Evaluator
from tools.problems import load_problem
from tools.sandbox.contracts import Limits
from tools.sandbox.process import ProcessSandbox

ROOT = Path(__file__).resolve().parent.parent
PROBLEMS = ROOT / "benchmarks" / "problems"
CANDIDATES = ROOT / "benchmarks" / "candidates"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
# Short limits so hangs cost seconds; the first call still has room for a slow interpreter start.
TEST_LIMITS = Limits(load_s=8, first_call_s=10, call_s=10, timing_s=30, host_memory_bytes=4 * 1024**3)


@pytest.fixture(scope="session", autouse=True)
def kernelpilot_home(tmp_path_factory):
    """Caches and the history store of the tests (and of the CLIs they start) live in a
    temporary folder, never in the user's ~/.kernelpilot."""
    home = tmp_path_factory.mktemp("kernelpilot-home")
    previous = os.environ.get("KERNELPILOT_HOME")
    os.environ["KERNELPILOT_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("KERNELPILOT_HOME")
    else:
        os.environ["KERNELPILOT_HOME"] = previous


@pytest.fixture(scope="session")
def cpu_sandbox(kernelpilot_home):
    with ProcessSandbox(None, TEST_LIMITS, warm=1) as sandbox:
        yield sandbox


@pytest.fixture(scope="session")
def evaluator(cpu_sandbox):
    return Evaluator(cpu_sandbox, detect(force_cpu=True), EvalConfig(trials=5, limits=TEST_LIMITS))


@pytest.fixture(scope="session")
def softmax_problem():
    return load_problem(PROBLEMS / "04_softmax_rows.py", size="small")


def read(path: Path) -> str:
    return path.read_text()
