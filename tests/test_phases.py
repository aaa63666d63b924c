"""Where an evaluation's time goes (tools/phases.py, EvalResult.phases), through the real
evaluator in the Triton interpreter: every phase is there, none is negative, they add up to no
more than the evaluation's wall time, a problem's context costs nothing the second time, and the
time a candidate spends (sleeping at import) lands in its own phase, measured on our side."""
import time
from dataclasses import replace

import pytest

from tests.conftest import CANDIDATES, FIXTURES, PROBLEMS
from tools.device import detect
from tools.evaluator import Evaluator
from tools.phases import Stopwatch
from tools.problems import load_problem
from tools.records import EvalResult, EvalStatus, PhaseSeconds

HONEST = (CANDIDATES / "04_softmax_rows.py").read_text()
UNTIMED = ("timing", "settle", "baselines", "lock_held", "audit", "second_reference", "second_run")


def phases_of(result: EvalResult) -> PhaseSeconds:
    phases = result.phases
    assert phases is not None, result
    assert all(value >= 0.0 for value in phases.model_dump().values()), phases
    assert phases.total() <= result.seconds, (phases, result.seconds)
    return phases


@pytest.mark.slow
def test_every_phase_is_measured_and_a_kept_context_costs_nothing(cpu_sandbox, evaluator):
    fresh = Evaluator(cpu_sandbox, detect(force_cpu=True), evaluator.config)   # no problem kept yet
    problem = load_problem(PROBLEMS / "04_softmax_rows.py", size="small")
    first, second = (fresh.evaluate(problem, HONEST) for _ in range(2))
    assert (first.status, second.status) == (EvalStatus.CORRECT, EvalStatus.CORRECT), first.reason
    cold, warm = phases_of(first), phases_of(second)
    assert cold.context > 0.0 and warm.context < min(0.05, cold.context), (cold.context, warm.context)
    for phases in (cold, warm):
        assert all(getattr(phases, name) > 0.0 for name in ("worker", "load", "first_trial", "trials", "reference",
                                                             "close")), phases
        assert all(getattr(phases, name) == 0.0 for name in UNTIMED), phases     # no GPU: nothing timed
        assert phases.lock_wait < 0.01, phases                                  # nor a device lock to wait for
    assert warm.total() > 0.5 * second.seconds, (warm, second.seconds)    # the phases are where the time went
    assert first.summary()["phases"]["load"] == cold.load                   # `kernelpilot eval --json` has them


def test_a_candidates_own_time_lands_in_its_phase(evaluator, softmax_problem):
    """A sleep at import is load time; the trials are not charged with it."""
    slow = HONEST.replace("import torch\n", "import time\nimport torch\ntime.sleep(1.5)\n", 1)
    assert slow != HONEST
    phases = phases_of(evaluator.evaluate(softmax_problem, slow))
    assert phases.load >= 1.5 and phases.first_trial + phases.trials < phases.load, phases


def test_a_failing_candidate_has_its_phases_too(evaluator, softmax_problem):
    result = evaluator.evaluate(softmax_problem, (FIXTURES / "wrong" / "04_softmax_rows.py").read_text())
    assert result.status is EvalStatus.INCORRECT, result.reason
    phases = phases_of(result)
    assert phases.load > 0.0 and phases.first_trial > 0.0 and phases.timing == 0.0


@pytest.mark.slow
def test_the_second_size_check_is_two_phases(evaluator, softmax_problem):
    source = (FIXTURES / "sizes" / "reads_shape.py").read_text()
    result = evaluator.evaluate(softmax_problem, source, replace(evaluator.config, second_size=True))
    assert result.second_size is not None and result.second_size.holds, result.second_size
    phases = phases_of(result)
    assert phases.second_reference > 0.0 and phases.second_run > phases.second_reference * 0.1, phases
    assert phases.second_run > 0.0


def test_a_phase_inside_another_counts_for_the_outer_one_only():
    clock = Stopwatch()
    with clock.phase("audit"):
        with clock.phase("load"):
            time.sleep(0.05)
    with clock.phase("load"):
        pass
    record = clock.record(lock_held=0.5)
    assert record.audit >= 0.05 and 0.0 < record.load < 0.05 and record.trials == 0.0 and record.lock_held == 0.5
    assert record.total() == pytest.approx(record.audit + record.load)
    with pytest.raises(KeyError, match="no evaluation phase 'loading'"):
        with clock.phase("loading"):
            pass


def test_a_result_written_before_phases_were_kept_still_loads(evaluator, softmax_problem):
    data = evaluator.evaluate(softmax_problem, HONEST).model_dump(mode="json")
    del data["phases"]
    assert EvalResult.model_validate(data).phases is None
