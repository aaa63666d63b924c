"""The best-attempt contract (agent/graph.py `better`, through tools/trust.py): the best is
the fastest attempt the trust rules allow; a timed attempt beats an untimed one; between two
untimed attempts, or two equally fast ones, the first stays (a later one must be *strictly*
faster). Pinned on `better` and end to end: a replayed run on the CPU interpreter (where
nothing is timed) keeps its first correct kernel as the answer."""
import json

import pytest

from agent.cli import main
from agent.graph import better
from agent.policy import Attempt
from tests.conftest import CANDIDATES, PROBLEMS
from tools.records import EvalStatus, Flag

ANALYSIS = "## Performance analysis\nSoftmax over rows is memory-bound: one read and one write of x.\n"


def attempt(turn: int, speedup: float | None, status: str = "correct", flags: tuple[str, ...] = ()) -> Attempt:
    return Attempt(turn=turn, tool="benchmark", evaluation_id=turn, code=f"# attempt {turn}", status=EvalStatus(status),
                   runtime_ms=None if speedup is None else 1.0 / speedup, speedup_vs_eager=speedup,
                   speedup_vs_compile=None, flags=flags)


def test_a_later_untimed_attempt_does_not_replace_an_untimed_best():
    first, later = attempt(1, None), attempt(2, None)
    assert better(first, later) is first


def test_a_tie_keeps_the_first():
    first, later = attempt(1, 1.5), attempt(2, 1.5)
    assert better(first, later) is first


def test_strictly_faster_replaces_and_slower_does_not():
    slow, fast = attempt(1, 1.5), attempt(2, 1.5000001)
    assert better(slow, fast) is fast and better(fast, slow) is fast


def test_a_timed_attempt_beats_an_untimed_one_in_either_order():
    untimed, timed = attempt(1, None), attempt(2, 0.5)      # even a slowdown: its time is known
    assert better(untimed, timed) is timed and better(timed, untimed) is timed


def test_the_first_allowed_attempt_becomes_the_best_whatever_its_speed():
    assert better(None, attempt(1, None)).turn == 1
    assert better(None, attempt(1, 0.1)).turn == 1


@pytest.mark.parametrize("status", [s for s in EvalStatus if s is not EvalStatus.CORRECT])
def test_only_a_correct_attempt_can_be_best(status):
    best = attempt(1, 1.0)
    assert better(best, attempt(2, 50.0, status=status.value)) is best
    assert better(None, attempt(2, 50.0, status=status.value)) is None


@pytest.mark.parametrize("flag", [Flag.TIMING_MISMATCH, Flag.NO_CUSTOM_KERNEL, Flag.PRECISION_POLICY])
def test_a_disqualifying_flag_keeps_a_fast_attempt_from_the_best(flag):
    best = attempt(1, 1.0)
    assert better(best, attempt(2, 50.0, flags=(flag.value,))) is best
    assert better(None, attempt(2, 50.0, flags=(flag.value,))) is None


def test_a_flag_that_only_withholds_the_reward_still_competes():
    best, flagged = attempt(1, 1.0), attempt(2, 3.0, flags=(Flag.EXCESSIVE_SPEEDUP.value,))
    assert better(best, flagged) is flagged


def test_a_cpu_run_answers_with_its_first_correct_kernel(capsys, tmp_path):
    """On the interpreter nothing is timed: two correct kernels, the first is the answer."""
    first = (CANDIDATES / "04_softmax_rows.py").read_text()
    second = (tmp_path / "second.py")
    second.write_text(first + "\n# the same kernel, sent again later\n")
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"turns": [
        {"text": ANALYSIS, "tool_calls": [{"name": "check_correctness", "arguments": {"code": first}}]},
        {"text": ANALYSIS, "tool_calls": [{"name": "check_correctness", "code_file": str(second)}]},
        {"text": ANALYSIS + "Done."}]}))
    assert main(["optimize", str(PROBLEMS / "04_softmax_rows.py"), "--cpu", "--json", "--policy", f"replay:{script}",
                 "--out", str(tmp_path / "out")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["status"], summary["attempts"], summary["speedup_vs_eager"]) == ("correct", 2, None)
    assert (tmp_path / "out" / "best.py").read_text() == first
