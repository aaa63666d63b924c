"""The policy's tools end to end on CPU (Triton interpreter, real candidates, a real
SQLite store): each tool's result, its text for an LLM, the function-calling schemas,
and malformed calls coming back as results."""
import json

import pytest

from tests.conftest import CANDIDATES, FIXTURES, PROBLEMS, read
from tools.history import HistoryStore, Origin
from tools.problems import load_problem
from tools.records import EvalStatus
from tools.toolbox import TOOLS, Toolbox, ToolError


@pytest.fixture
def toolbox(evaluator, tmp_path):
    store = HistoryStore(f"sqlite:///{tmp_path / 'history.db'}")
    problem = load_problem(PROBLEMS / "04_softmax_rows.py", size="small")
    return Toolbox(problem, evaluator, store, session="test-session", origin=Origin("replay", analysis="online softmax"))


def test_schemas_name_every_tool_and_take_code(toolbox):
    schemas = Toolbox.schemas()
    assert [s["function"]["name"] for s in schemas] == list(TOOLS)
    code_tools = [s for s in schemas if s["function"]["name"] != "speedup_history"]
    assert all(s["function"]["parameters"]["required"] == ["code"] for s in code_tools)
    json.dumps(schemas)   # serialisable as the API wants it


def test_compile_and_check_record_every_evaluation(toolbox):
    compiled = toolbox.call("compile", {"code": read(FIXTURES / "candidates" / "syntax_error.py")})
    assert compiled.result.status is EvalStatus.COMPILE_ERROR and "SyntaxError" in compiled.text()
    checked = toolbox.call("check_correctness", {"code": read(CANDIDATES / "04_softmax_rows.py")})
    assert checked.result.status is EvalStatus.CORRECT and checked.result.trials_run == 5
    assert checked.text().startswith("check_correctness: correct (no GPU")
    assert toolbox.store.count() == 2 and checked.evaluation_id != compiled.evaluation_id


def test_speedup_history_lists_what_was_tried(toolbox):
    toolbox.call("check_correctness", {"code": read(CANDIDATES / "04_softmax_rows.py")})
    toolbox.call("check_correctness", {"code": read(FIXTURES / "wrong" / "04_softmax_rows.py")})
    report = toolbox.call("speedup_history", {"k": 2})
    assert [v.status for v in report.recent] == [EvalStatus.INCORRECT, EvalStatus.CORRECT]
    assert report.best == []   # nothing timed without a GPU: no speedups to rank
    assert "recent:" in report.text() and "online softmax" in report.text()


def test_submit_accepts_only_a_correct_candidate(toolbox):
    wrong = toolbox.call("submit", {"code": read(FIXTURES / "wrong" / "04_softmax_rows.py")})
    assert not wrong.accepted and toolbox.store.submission("test-session") is None
    right = toolbox.call("submit", {"code": read(CANDIDATES / "04_softmax_rows.py")})
    assert right.accepted and toolbox.store.submission("test-session") == right.evaluation_id


def test_profile_says_plainly_that_it_needs_a_gpu(toolbox):
    report = toolbox.call("profile", {"code": read(CANDIDATES / "04_softmax_rows.py")})
    assert not report.profile.available and report.text() == "profile: no GPU: profiling needs a CUDA device"


@pytest.mark.parametrize("name,arguments,words", [
    ("compile", {}, "code: Field required"),
    ("compile", {"code": 3}, "code: Input should be a valid string"),
    ("compile", {"code": "x", "extra": 1}, "extra: Extra inputs are not permitted"),
    ("speedup_history", {"k": 0}, "k: Input should be greater than or equal to 1"),
    ("rm_rf", {}, "no such tool"),
])
def test_malformed_calls_are_results_for_the_model(toolbox, name, arguments, words):
    report = toolbox.call(name, arguments)
    assert isinstance(report, ToolError) and words in report.text()
