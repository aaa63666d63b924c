"""Candidates built with torch.utils.cpp_extension.load_inline (how CUDA C++ arrives):
a real compiler builds them inside the sandbox; a build failure is `compile_error`.
Without a GPU only C++ (CPU) sources can run, so the CUDA path itself is a GPU test.

Each build is one compiler process that spends most of a minute on torch's headers, so the
two builds run at once, each on an evaluator and sandbox of its own (a module fixture), and
each test judges its own verdict."""
import dataclasses
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import FIXTURES, TEST_LIMITS, read
from tools.device import detect
from tools.evaluator import EvalConfig, Evaluator
from tools.records import EvalResult, EvalStatus, Phase
from tools.sandbox.process import ProcessSandbox

pytestmark = pytest.mark.slow
BUILD_LIMITS = dataclasses.replace(TEST_LIMITS, load_s=600)   # two cores compiling against torch's headers
HONEST = read(FIXTURES / "cpp" / "softmax_cpp.py")
BROKEN = HONEST.replace("    return y;\n", "    return y  // a missing semicolon: the build fails\n")


def build_and_judge(sandbox, problem, source: str) -> EvalResult:
    return Evaluator(sandbox, detect(force_cpu=True), EvalConfig(trials=5, limits=BUILD_LIMITS)).evaluate(problem, source)


@pytest.fixture(scope="module")
def verdicts(cpu_sandbox, softmax_problem) -> dict[str, EvalResult]:
    """The honest and the broken candidate's verdicts, both built at the same time."""
    with ProcessSandbox(None, TEST_LIMITS, warm=0) as second_sandbox, ThreadPoolExecutor(max_workers=2) as pool:
        honest = pool.submit(build_and_judge, cpu_sandbox, softmax_problem, HONEST)
        broken = pool.submit(build_and_judge, second_sandbox, softmax_problem, BROKEN)
        return {"honest": honest.result(), "broken": broken.result()}


def test_a_cpp_candidate_builds_and_is_judged(verdicts):
    result = verdicts["honest"]
    assert result.status is EvalStatus.CORRECT, result.reason + result.log


def test_a_cpp_build_failure_is_a_compile_error(verdicts):
    assert BROKEN != HONEST
    result = verdicts["broken"]
    assert (result.status, result.phase) == (EvalStatus.COMPILE_ERROR, Phase.LOAD), result.reason
    assert "Error building extension" in result.reason
