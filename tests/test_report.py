"""What an optimization leaves behind (agent/report.py): the report says each paragraph of the
analysis once and counts turns in English; the closing line and the report say how much of
the forward the answer's kernels compute and what stays in PyTorch. On the pure functions,
and end to end: `kernelpilot optimize` with the built-in policy in the Triton interpreter.

    pytest -q tests/test_report.py
"""
from pathlib import Path

import pytest

from agent.cli import main
from agent.policy import Attempt
from agent.report import closing_line, markdown_report, summarize
from tests.conftest import FIXTURES, read
from tools.device import detect
from tools.records import EvalStatus

ANALYSIS = "## Performance analysis\n\nRows of 300: memory-bound, one read and one write.\n\nThe plan: one row program."


def state(*texts: str, submitted: bool = True) -> dict:
    kernel = Attempt(turn=1, tool="submit", evaluation_id=7, code="# kernel", status=EvalStatus.CORRECT,
                     runtime_ms=None, speedup_vs_eager=None, speedup_vs_compile=None)
    return {"problem_path": "p.py", "messages": [{"role": "assistant", "content": t} for t in texts],
            "attempts": [kernel.to_state()], "best": kernel.to_state(), "submitted": 7 if submitted else None,
            "turns": len(texts), "stop": "policy_done", "policy": {"kind": "replay"}}


def report(saved: dict) -> str:
    return markdown_report(saved, summarize(saved, "s-1", detect(force_cpu=True), None))


def test_a_repeated_analysis_is_said_once():
    text = report(state(ANALYSIS, ANALYSIS + "\n\n### Next\nSubmit it.", ANALYSIS))
    assert text.count("Rows of 300: memory-bound") == 1 and text.count("The plan: one row program.") == 1
    assert "### Turn 2\n\n## Performance analysis\n\n_(2 paragraphs as in turn 1)_\n\n### Next\nSubmit it." in text
    assert "### Turn 3\n\n## Performance analysis\n\n_(2 paragraphs as in turn 1)_\n" in text


def test_turns_are_counted_in_english():
    assert "; 1 turn, stopped: policy_done." in report(state(ANALYSIS))
    assert "; 2 turns, stopped: policy_done." in report(state(ANALYSIS, ANALYSIS))


def test_the_report_and_the_closing_line_quote_the_policys_coverage():
    said = ANALYSIS + "\n\nCoverage: our Triton kernels (1) run 80% of it; in PyTorch: `bn` (self.bn: no plan)."
    saved = state(said)
    summary = summarize(saved, "s-1", detect(force_cpu=True), None)
    assert summary.coverage == "our Triton kernels (1) run 80% of it; in PyTorch: `bn` (self.bn: no plan)."
    assert "\nCoverage: our Triton kernels (1) run 80% of it; in PyTorch: `bn`" in markdown_report(saved, summary)
    assert closing_line(summary) == ("stopped: policy_done; best: correct, not timed; our Triton kernels (1) run 80% "
                                     "of it; in PyTorch: `bn` (self.bn: no plan); not checked at a second size")


def test_a_policy_that_never_said_and_a_kernel_not_submitted_are_reported_as_such():
    summary = summarize(state(ANALYSIS, submitted=False), "s-1", detect(force_cpu=True), None)
    assert closing_line(summary) == ("stopped: policy_done; best: correct, not timed, not submitted by the policy; "
                                     "the policy did not say how much of the forward its kernels compute; "
                                     "not checked at a second size")


KEPT_NORMALIZE = read(FIXTURES / "problems" / "kept_normalize.py")   # normalize over dim 1: kept in PyTorch


@pytest.mark.slow
def test_optimize_with_the_builtin_policy_says_what_stays_in_pytorch_once(capsys, tmp_path):
    """The rmsnorm report had the same analysis three times and said nothing of what ran where."""
    problem = tmp_path / "kept_normalize.py"
    problem.write_text(KEPT_NORMALIZE)
    out = tmp_path / "out"
    assert main(["optimize", str(problem), "--cpu", "--policy", "builtin", "--out", str(out)]) == 0
    closing = capsys.readouterr().out.strip().splitlines()[-1]
    assert closing.startswith("stopped: policy_done; best: correct, not timed; our Triton kernels (1) run about ")
    assert "in PyTorch: `normalize` (F.normalize: F.normalize over dim 1 of a rank-4 tensor" in closing
    text = (out / "report.md").read_text()
    assert "; 3 turns, stopped: policy_done." in text
    assert text.count("Op graph (") == 1 and text.count("Stages (one kernel each") == 1
    assert "\nCoverage: our Triton kernels (1) run about" in text.split("## Attempts")[0]
    assert Path(out / "best.py").is_file()
