"""The trust rules (tools/trust.py): a flagged result is never the best, never counted, never
claimed. Through the agent loop with a replay policy (the real sandbox, the Triton interpreter,
the real store and checkpoints), and on the pure functions the loop and `kernelpilot bench` use."""
import json
from pathlib import Path

import pytest

from agent.bench.markdown import level_line
from agent.bench.metrics import metrics
from agent.bench.rows import BenchRow
from agent.cli import main
from agent.policy import Attempt
from agent.report import markdown_report, summarize
from tests.conftest import PROBLEMS
from tools.device import detect
from tools.history import HistoryStore
from tools.records import EvalStatus, Flag
from tools.trust import DISQUALIFIES, Use, Versus, allowed, excluded_from_reward, trusted_speedup

CHEATS = Path(__file__).parent / "cheats"
FLAGGED = CHEATS / "cheat_reference_op.py"     # torch.softmax itself: correct, flagged no_custom_kernel
HONEST = CHEATS / "honest_softmax.py"          # its twin: a Triton kernel of its own
ANALYSIS = "## Performance analysis\nSoftmax over rows is memory-bound: one read and one write of x.\n"


def optimize(capsys, tmp_path: Path, *turns: list[tuple[str, Path]]) -> tuple[dict, str]:
    """A replay session on softmax: each turn is a list of (tool, candidate file) calls."""
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"turns": [
        {"text": ANALYSIS, "tool_calls": [{"name": tool, "code_file": str(path)} for tool, path in calls]}
        for calls in turns]}))
    out = tmp_path / "out"
    assert main(["optimize", str(PROBLEMS / "04_softmax_rows.py"), "--cpu", "--json", "--policy",
                 f"replay:{script}", "--out", str(out)]) == 0
    return json.loads(capsys.readouterr().out), (out / "report.md").read_text()


def test_a_flagged_correct_kernel_is_not_the_best_and_its_honest_twin_is(capsys, tmp_path):
    summary, report = optimize(capsys, tmp_path, [("check_correctness", FLAGGED)],
                               [("check_correctness", HONEST)], [("submit", FLAGGED)])
    mine = sorted((r for r in HistoryStore().records() if r.session == summary["session_id"]), key=lambda r: r.id)
    assert [(r.status, "no_custom_kernel" in r.flags, r.call_id == "final_check") for r in mine] == \
        [(EvalStatus.CORRECT, True, False), (EvalStatus.CORRECT, False, False), (EvalStatus.CORRECT, True, False),
         (EvalStatus.CORRECT, False, True)]   # the evaluator's word; optimize's final check of the honest answer
    assert summary["status"] == "correct" and summary["submitted"] is False     # the flagged submit is refused
    assert Path(summary["best_code_path"]).read_text() == HONEST.read_text()
    assert "Correct but not eligible as the answer" in report
    assert "turn 1 (check_correctness): flagged no_custom_kernel" in report


def test_a_session_with_only_a_flagged_kernel_hands_nothing_back(capsys, tmp_path):
    summary, report = optimize(capsys, tmp_path, [("check_correctness", FLAGGED)])
    assert (summary["status"], summary["best_code_path"]) == ("none", None)
    assert not (tmp_path / "out" / "best.py").exists()
    assert "nothing is handed back" in report


def attempt(turn: int, speedup: float | None, *flags: Flag) -> Attempt:
    return Attempt(turn=turn, tool="benchmark", evaluation_id=turn, code=f"# kernel {turn}", status=EvalStatus.CORRECT,
                   runtime_ms=1.0, speedup_vs_eager=speedup, speedup_vs_compile=speedup,
                   flags=tuple(f.value for f in flags))


def test_a_report_never_claims_the_speed_of_a_timing_mismatch():
    """The issue's side stream: correct, 3.82x, flagged; as if it had reached the report."""
    cheat = attempt(1, 3.82, Flag.TIMING_MISMATCH, Flag.NO_CUSTOM_KERNEL, Flag.EXCESSIVE_SPEEDUP)
    state = {"attempts": [cheat.to_state()], "best": cheat.to_state(), "submitted": None, "turns": 1}
    result = summarize(state, "s-1", detect(force_cpu=True), None)
    assert (result.status, result.speedup_vs_eager, result.runtime_ms) == ("none", None, None)
    assert "3.82" not in markdown_report(state, result)


@pytest.mark.parametrize("flag", [Flag.TIMING_MISMATCH, Flag.NO_CUSTOM_KERNEL, Flag.PRECISION_POLICY])
def test_candidate_flags_rule_out_every_use(flag):
    for use in Use:
        assert not allowed(attempt(1, 2.0, flag), use)
    assert allowed(attempt(1, 2.0), Use.REWARD)


@pytest.mark.parametrize("flag", [Flag.EXCESSIVE_SPEEDUP, Flag.DEGENERATE_PROBLEM, Flag.NETWORK_NOT_ISOLATED,
                                  Flag.FILESYSTEM_NOT_ISOLATED, Flag.SHARED_USER])
def test_flags_that_only_withhold_the_reward(flag):
    flagged = attempt(1, 2.0, flag)
    assert allowed(flagged, Use.BEST) and allowed(flagged, Use.METRICS) and not allowed(flagged, Use.REWARD)
    our_side = (Flag.NETWORK_NOT_ISOLATED, Flag.FILESYSTEM_NOT_ISOLATED, Flag.SHARED_USER)
    assert excluded_from_reward(flagged) == (flag in our_side)


def test_every_flag_is_decided_and_a_mismatch_has_no_speed():
    assert set(DISQUALIFIES) == set(Flag)
    mismatch = attempt(1, 3.82, Flag.TIMING_MISMATCH)
    assert trusted_speedup(mismatch, Versus.EAGER) is None and trusted_speedup(mismatch, Versus.COMPILE) is None
    assert trusted_speedup(attempt(1, 3.82, Flag.NO_CUSTOM_KERNEL)) == 3.82     # a real time, just not ours
    assert trusted_speedup(Attempt(**{**attempt(1, 2.0).__dict__, "status": EvalStatus.INCORRECT})) is None


def test_bench_metrics_count_no_flagged_answer():
    flagged = BenchRow(key="a", level=1, name="a", status="correct", runtime_ms=1.0, speedup_vs_eager=4.0,
                       flags=("timing_mismatch",))        # a row written before the rules, or by hand
    rows = [flagged, BenchRow(key="b", level=1, name="b", status="correct", runtime_ms=1.0, speedup_vs_eager=2.0)]
    assert [r.counted for r in rows] == [False, True]
    found = metrics(rows, total=2, level=1)
    assert (found.correct, found.fast_p["eager"][1.0], found.geomean_counted["eager"]) == (1, 0.5, 2.0)
    assert "a counted correct kernel on 1/2" in level_line(found, timed=True)
    assert "geomean of the counted 2.00x vs eager" in level_line(found, timed=True)
