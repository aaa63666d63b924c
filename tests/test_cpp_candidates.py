"""Candidates built with torch.utils.cpp_extension.load_inline (how CUDA C++ arrives):
a real compiler builds them inside the sandbox; a build failure is `compile_error`.
Without a GPU only C++ (CPU) sources can run, so the CUDA path itself is a GPU test."""
import dataclasses

import pytest

from tests.conftest import FIXTURES, TEST_LIMITS, read
from tools.device import detect
from tools.evaluator import EvalConfig, Evaluator
from tools.records import EvalStatus, Phase

pytestmark = pytest.mark.slow
BUILD_LIMITS = dataclasses.replace(TEST_LIMITS, load_s=600)   # two cores compiling against torch's headers


@pytest.fixture(scope="module")
def building_evaluator(cpu_sandbox):
    return Evaluator(cpu_sandbox, detect(force_cpu=True), EvalConfig(trials=5, limits=BUILD_LIMITS))


def test_a_cpp_candidate_builds_and_is_judged(building_evaluator, softmax_problem):
    result = building_evaluator.evaluate(softmax_problem, read(FIXTURES / "cpp" / "softmax_cpp.py"))
    assert result.status is EvalStatus.CORRECT, result.reason + result.log


def test_a_cpp_build_failure_is_a_compile_error(building_evaluator, softmax_problem):
    honest = read(FIXTURES / "cpp" / "softmax_cpp.py")
    broken = honest.replace("    return y;\n", "    return y  // a missing semicolon: the build fails\n")
    assert broken != honest
    result = building_evaluator.evaluate(softmax_problem, broken)
    assert (result.status, result.phase) == (EvalStatus.COMPILE_ERROR, Phase.LOAD), result.reason
    assert "Error building extension" in result.reason
