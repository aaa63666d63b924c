"""Grading on lane processes (policy_training/grading.py `LaneGrader`, `lanes` > 1): a generate
call's completions graded together on the grader service's pool, without its HTTP; the verdicts
in the items' order and the same as the one-runtime grader's, each recorded with the stage's
origin and analysis; a sample whose lane died under it twice gets no verdict; refused where it
cannot record. Two real lane processes in the Triton interpreter and a real SQLite store."""
from concurrent.futures import Future

import pytest

from policy_training.grader.lanes import LaneFailure
from policy_training.grading import GraderSettings, LaneGrader, LocalGrader, grade_each, open_grader
from policy_training.training import TrainingError
from tests.conftest import CANDIDATES, FIXTURES, PROBLEMS
from tools.device import detect
from tools.history import HistoryStore
from tools.problems import load_problem

ANALYSIS = "## Performance analysis\nOne pass over each row."


def completions() -> list[str]:
    honest = (CANDIDATES / "04_softmax_rows.py").read_text()
    wrong = (FIXTURES / "wrong" / "04_softmax_rows.py").read_text()
    return [f"{ANALYSIS}\n\n```python\n{honest}```", "no kernel, only prose", f"{ANALYSIS}\n\n```python\n{wrong}```"]


def test_lanes_grade_together_in_order_as_one_runtime_does_and_record_the_stage(tmp_path):
    problem = load_problem(PROBLEMS / "04_softmax_rows.py", size="small")
    items = [(problem, text, 10) for text in completions()]
    verdicts = {}
    for lanes in (1, 2):
        url = f"sqlite:///{tmp_path / f'lanes{lanes}.db'}"
        with open_grader(GraderSettings(cpu=True, db=url, lanes=lanes), stage="rft", model="tiny") as grader:
            assert isinstance(grader, LaneGrader if lanes == 2 else LocalGrader)
            graded = list(grade_each(grader, items))
            verdicts[lanes] = [(g.status, g.flags, g.reward is not None, g.analysis) for g in graded]
            assert grader.written == 3 and sum(grader.statuses.values()) == 3
        records = HistoryStore(url).records()
        assert len(records) == 3 and {r.policy for r in records} == {"rft"} and {r.model for r in records} == {"tiny"}
        assert sorted((r.analysis or "") for r in records) == sorted([ANALYSIS, ANALYSIS, ""])
    assert verdicts[1] == verdicts[2]
    assert [v[0].value for v in verdicts[2]] == ["correct", "compile_error", "incorrect"]


def test_lanes_that_could_not_record_are_refused(tmp_path):
    from policy_training.evaluate import EvaluateConfig
    from policy_training.rft import RFTConfig

    assert "grading_lanes" in EvaluateConfig(model="m", out=tmp_path, problems=(PROBLEMS,), grading_lanes=2,
                                             record=False).check()
    assert "grading_lanes above 1 needs the in-process grader" in RFTConfig(
        model="m", out=tmp_path, problems=(PROBLEMS,), grading_lanes=2, grader_url="http://127.0.0.1:1").check()
    settings = GraderSettings(cpu=True, db=f"sqlite:///{tmp_path / 'x.db'}", lanes=2, record=False)
    with pytest.raises(TrainingError, match="record=false needs lanes = 1"):
        with open_grader(settings, stage="evaluate", model="tiny"):
            pass


def test_a_sample_whose_lane_died_twice_gets_no_verdict_and_the_rest_theirs(tmp_path):
    class DyingPool:                    # the pool's answer for such a job: its future fails with LaneFailure
        def submit(self, job, deadline_s):
            future = Future()
            future.set_exception(LaneFailure("lane-cpu died during its evaluation (exit code -9)"))
            return future

    grader = LaneGrader(DyingPool(), "rft", "tiny", HistoryStore(f"sqlite:///{tmp_path / 'x.db'}"), detect(force_cpu=True))
    problem = load_problem(PROBLEMS / "04_softmax_rows.py", size="small")
    (graded,) = grade_each(grader, [(problem, completions()[0], 10)])
    assert graded.status is None and graded.reward is None and not graded.usable and grader.written == 0
