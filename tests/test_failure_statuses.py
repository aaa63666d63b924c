"""Candidates that crash, hang, raise, cheat the contract or break the sandbox's rules
each get their own status, and the evaluator keeps working after each."""
import pytest

from tests.conftest import CANDIDATES, FIXTURES, read
from tools.problems import load_problem
from tools.records import EvalStatus, Phase

CASES = [
    # fixture, status, phase, words the reason must contain
    ("segfault", EvalStatus.CRASHED, Phase.RUN, "SIGSEGV"),
    ("hang_forward", EvalStatus.TIMEOUT, Phase.RUN, "wall-clock"),
    ("hang_import", EvalStatus.TIMEOUT, Phase.LOAD, "wall-clock"),
    ("syntax_error", EvalStatus.COMPILE_ERROR, Phase.LOAD, "SyntaxError"),
    ("raise_import", EvalStatus.RUNTIME_ERROR, Phase.LOAD, "ImportError"),
    ("raise_forward", EvalStatus.RUNTIME_ERROR, Phase.RUN, "expected rows of 1024"),
    ("no_model_new", EvalStatus.COMPILE_ERROR, Phase.LOAD, "ModelNew"),
    ("wrong_shape", EvalStatus.INCORRECT, Phase.RUN, "shape"),
    ("mutates_input", EvalStatus.INCORRECT, Phase.RUN, "modified input 0"),
    ("returns_input_view", EvalStatus.INCORRECT, Phase.RUN, "shares storage"),
    ("flips_tf32", EvalStatus.REJECTED, Phase.LOAD, "allow_tf32"),
    ("memory_hog", EvalStatus.RUNTIME_ERROR, Phase.RUN, "MemoryError"),
    ("forges_reply", EvalStatus.CRASHED, Phase.LOAD, "malformed reply"),
]


@pytest.mark.parametrize("name,status,phase,words", CASES, ids=[case[0] for case in CASES])
def test_failure_gets_its_status_and_the_evaluator_survives(evaluator, softmax_problem, name, status, phase, words):
    result = evaluator.evaluate(softmax_problem, read(FIXTURES / "candidates" / f"{name}.py"))
    assert (result.status, result.phase) == (status, phase), result.reason
    assert words in result.reason
    assert result.runtime_ms is None and result.speedup_vs_eager is None
    # the same evaluator, right after: an honest candidate is still judged correct
    honest = evaluator.evaluate(softmax_problem, read(CANDIDATES / "04_softmax_rows.py"))
    assert honest.status is EvalStatus.CORRECT, honest.reason


def test_candidate_output_goes_to_the_log_not_the_terminal(evaluator, softmax_problem, capfd):
    source = read(CANDIDATES / "04_softmax_rows.py") + "\nprint('hello from the candidate')\n"
    result = evaluator.evaluate(softmax_problem, source)
    assert result.status is EvalStatus.CORRECT
    assert "hello from the candidate" in result.log
    assert "hello from the candidate" not in capfd.readouterr().out


def test_a_log_replaced_by_a_fifo_does_not_block_the_evaluator(evaluator, softmax_problem):
    result = evaluator.evaluate(softmax_problem, read(FIXTURES / "candidates" / "log_fifo.py"))
    assert result.status is EvalStatus.CORRECT, result.reason
    assert "not a file" in result.log


def test_a_reference_that_works_in_place_does_not_change_the_candidates_inputs(evaluator, tmp_path):
    problem_file = tmp_path / "double_in_place.py"
    problem_file.write_text(
        "import torch\nimport torch.nn as nn\n\n\nclass Model(nn.Module):\n    def forward(self, x):\n"
        "        return x.mul_(2)\n\n\ndef get_inputs():\n    return [torch.rand(4, 5)]\n\n\n"
        "def get_init_inputs():\n    return []\n")
    honest = "import torch.nn as nn\n\n\nclass ModelNew(nn.Module):\n    def forward(self, x):\n        return x * 2\n"
    result = evaluator.evaluate(load_problem(problem_file), honest)
    assert result.status is EvalStatus.CORRECT and result.lint_findings == [], (result.reason, result.lint_findings)
