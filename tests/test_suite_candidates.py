"""Our suite in the Triton interpreter: every problem's honest candidate is `correct`,
every deliberately wrong candidate is `incorrect`, and none of the problems is degenerate."""
import pytest

from tests.conftest import CANDIDATES, FIXTURES, PROBLEMS, read
from tools.problems import load_problem
from tools.records import EvalStatus, Mode

HONEST = sorted(p.stem for p in CANDIDATES.glob("*.py"))
WRONG = sorted(p.stem for p in (FIXTURES / "wrong").glob("*.py"))


def test_every_problem_has_an_honest_candidate():
    problems = sorted(p.stem for p in PROBLEMS.glob("*.py"))
    assert len(problems) >= 24 and problems == HONEST
    assert len(WRONG) >= 6


@pytest.mark.parametrize("name", HONEST)
def test_honest_candidate_is_correct(evaluator, name):
    problem = load_problem(PROBLEMS / f"{name}.py", size="small")
    result = evaluator.evaluate(problem, read(CANDIDATES / f"{name}.py"))
    assert result.status is EvalStatus.CORRECT, result.reason
    assert result.trials_passed == result.trials_run == 5
    assert result.mode is Mode.CPU_INTERPRETER and result.runtime_ms is None and result.timing is None
    assert result.lint_findings == [] and result.flags == []


@pytest.mark.parametrize("name", WRONG)
def test_wrong_candidate_is_incorrect(evaluator, name):
    problem = load_problem(PROBLEMS / f"{name}.py", size="small")
    result = evaluator.evaluate(problem, read(FIXTURES / "wrong" / f"{name}.py"))
    assert result.status is EvalStatus.INCORRECT, result.reason
    assert result.trials_passed < result.trials_run and "trial" in result.reason
