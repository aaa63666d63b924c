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
    # nothing timed without a GPU: no speedups to rank, so the newest correct kernel, said to be untimed
    assert [(v.status, v.speedup_vs_eager) for v in report.best] == [(EvalStatus.CORRECT, None)] and report.best_untimed
    assert "best (none timed; the newest correct ones):\n  #1 " in report.text()
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


NCU_CSV = '''==PROF== Connected to process 4242
"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC","Section Name","Metric Name","Metric Unit","Metric Value"
"0","4242","python3","127.0.0.1","rmsnorm_kernel","1","7","(256, 1, 1)","(4096, 1, 1)","0","9.0","Command line profiler metrics","dram__throughput.avg.pct_of_peak_sustained_elapsed","%","91.52"
"0","4242","python3","127.0.0.1","rmsnorm_kernel","1","7","(256, 1, 1)","(4096, 1, 1)","0","9.0","Command line profiler metrics","gpu__time_duration.sum","msecond","0.45"
"0","4242","python3","127.0.0.1","rmsnorm_kernel","1","7","(256, 1, 1)","(4096, 1, 1)","0","9.0","Command line profiler metrics","launch__registers_per_thread","register/thread","32"
"1","4242","python3","127.0.0.1","add_kernel","1","7","(128, 1, 1)","(64, 1, 1)","0","9.0","Command line profiler metrics","gpu__time_duration.sum","nsecond","2,048"
==PROF== Disconnected from process 4242
'''


def test_nsight_compute_csv_is_folded_per_launch():
    from tools.ncu import NcuReport, parse_csv
    first, second = parse_csv(NCU_CSV)
    assert (first.name, first.dram_pct, first.duration_us, first.registers) == ("rmsnorm_kernel", 91.52, 450.0, 32.0)
    assert (second.name, second.duration_us, second.sm_pct) == ("add_kernel", 2.048, None)
    text = NcuReport(available=True, kernels=[first, second]).text()
    assert "rmsnorm_kernel: 450us, DRAM 91.5% of peak" in text
    assert parse_csv("==ERROR== no kernels were profiled") == []
