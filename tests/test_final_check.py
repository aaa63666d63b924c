"""`optimize`'s final check (agent/final_check.py): the answer is checked again at a second size
set before it is written out, and a kernel that only holds at the problem's sizes is never
handed back. Through the agent loop with a replay policy, the real sandbox in the Triton
interpreter, the real store and checkpoints (tests/fixtures/sizes/ are the kernels)."""
import json
from pathlib import Path

import pytest

from agent.cli import main
from tests.conftest import PROBLEMS
from tools.history import HistoryStore

SIZES = Path(__file__).parent / "fixtures" / "sizes"
BAKED, HONEST = SIZES / "baked_shape.py", SIZES / "reads_shape.py"
ANALYSIS = "## Performance analysis\nSoftmax over rows is memory-bound: one read and one write of x.\n"


def optimize(capsys, tmp_path: Path, *turns: list[tuple[str, Path]]) -> tuple[dict, str, str]:
    """A replay session on softmax at its small size: each turn is a list of (tool, candidate file) calls."""
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"turns": [
        {"text": ANALYSIS, "tool_calls": [{"name": tool, "code_file": str(path)} for tool, path in calls]}
        for calls in turns]}))
    out = tmp_path / "out"
    assert main(["optimize", str(PROBLEMS / "04_softmax_rows.py"), "--cpu", "--size", "small", "--json",
                 "--policy", f"replay:{script}", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out), (out / "report.md").read_text(), captured.err


@pytest.mark.slow
def test_a_kernel_that_only_holds_at_one_size_is_not_handed_back(capsys, tmp_path):
    summary, report, stream = optimize(capsys, tmp_path, [("check_correctness", BAKED)])
    assert (summary["status"], summary["best_code_path"]) == ("none", None)
    assert not (tmp_path / "out" / "best.py").exists()
    assert "| final_check | correct |" in report and "size_specialised" in report
    assert "final check" in stream and "does not hold at a second size" in stream
    mine = sorted((r for r in HistoryStore().records() if r.session == summary["session_id"]), key=lambda r: r.id)
    assert [("size_specialised" in r.flags) for r in mine] == [False, True]     # the check, then the final check


@pytest.mark.slow
def test_the_final_check_goes_on_to_the_next_candidate_that_holds(capsys, tmp_path):
    # untimed, the first correct kernel is the best: the baked one; its final check sends the answer on
    summary, report, _ = optimize(capsys, tmp_path, [("check_correctness", BAKED)], [("check_correctness", HONEST)])
    assert summary["status"] == "correct" and Path(summary["best_code_path"]).read_text() == HONEST.read_text()
    assert summary["second_size"].startswith("holds at a second size (")
    assert "Sizes: holds at a second size (" in report
    assert report.count("| final_check |") == 2


@pytest.mark.slow
def test_a_submit_is_checked_at_a_second_size_itself(capsys, tmp_path):
    summary, report, _ = optimize(capsys, tmp_path, [("submit", BAKED)], [("submit", HONEST)])
    assert summary["submitted"] is True and Path(summary["best_code_path"]).read_text() == HONEST.read_text()
    assert "| final_check |" not in report                  # the accepted submit ran the check already
    assert "turn 1 (submit): flagged size_specialised" in report
