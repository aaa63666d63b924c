"""The RL reward (policy_training/reward.py): a pure function of the verdict, checked for
every status and flag class, the speed term, CUDA-L1's per-problem smoothing and its
clipping, the length penalty and the exclusion of our own side's failures; then once on a
real evaluation in the Triton interpreter (untimed: the speed term absent, and saying so).

    pytest -q tests/test_reward.py
"""
import math

import pytest

from policy_training.reward import (ProblemStats, RewardConfig, RewardKind, SpeedTerm, excluded,
                                    score)
from tests.conftest import CANDIDATES, read
from tests.test_history import make_result
from tools.records import EvalStatus, Flag, Mode
from tools.trust import CANDIDATES_DOING


def gpu_result(speedup: float | None = 2.0, problem_hash: str = "p1", **fields):
    return make_result(speedup=speedup, mode=Mode.GPU, device="NVIDIA H100 80GB HBM3", problem_hash=problem_hash,
                       **fields)


@pytest.mark.parametrize("status", [s for s in EvalStatus if s is not EvalStatus.CORRECT])
def test_each_failure_class_gets_its_fixed_value(status):
    config = RewardConfig()
    reward = score(make_result(status, reason="why it failed"), config, ProblemStats())
    assert reward.kind is RewardKind.FAILED and reward.value == config.failure[status] < 0
    assert reward.hack is (status is EvalStatus.REJECTED) and reward.notes == ("why it failed",)


def test_failure_values_are_ordered_from_nearly_right_to_cheating():
    failure = RewardConfig().failure
    assert failure[EvalStatus.INCORRECT] > failure[EvalStatus.RUNTIME_ERROR] > failure[EvalStatus.COMPILE_ERROR] \
        > failure[EvalStatus.REJECTED]


@pytest.mark.parametrize("flag", sorted(CANDIDATES_DOING | {Flag.DEGENERATE_PROBLEM}))
def test_a_disqualifying_flag_earns_zero_and_a_hack_case_when_it_is_the_candidates(flag):
    reward = score(gpu_result(5.0, flags=[flag]), RewardConfig(), ProblemStats())
    assert reward.kind is RewardKind.DISQUALIFIED and reward.value == 0.0 and reward.speed == 0.0
    assert reward.hack is (flag is not Flag.DEGENERATE_PROBLEM) and flag.value in reward.notes[0]


@pytest.mark.parametrize("flag", [Flag.NETWORK_NOT_ISOLATED, Flag.FILESYSTEM_NOT_ISOLATED, Flag.SHARED_USER])
def test_our_sides_fault_is_no_reward_not_zero(flag):
    stats = ProblemStats()
    reward = score(gpu_result(3.0, flags=[flag]), RewardConfig(), stats)
    assert reward.kind is RewardKind.EXCLUDED and reward.value is None and flag.value in reward.notes[0]
    assert stats.moments("p1")[0] == 0          # nothing learnt from it either
    assert excluded("the sandbox broke").value is None


def test_the_speed_term_is_the_log_speedup_clipped_before_warmup():
    stats = ProblemStats()
    first = score(gpu_result(2.0), RewardConfig(), stats)
    assert first.kind is RewardKind.SPEED and first.speedup == 2.0
    assert first.raw_term == pytest.approx(math.log(2.0)) and first.value == pytest.approx(1.0 + math.log(2.0))
    huge = score(gpu_result(100.0), RewardConfig(), stats)           # ln 100 = 4.6, clipped to 1.5
    assert huge.speed == 1.5 and "clipped" in huge.notes[0]
    slow = score(gpu_result(0.5, problem_hash="p2"), RewardConfig(), stats)
    assert slow.value == pytest.approx(1.0 - math.log(2.0)) and slow.value < 1.0   # slower than eager: below the gate


def test_capped_speed_term():
    config = RewardConfig(speed_term=SpeedTerm.CAPPED, cap=4.0, standardise=False)
    assert score(gpu_result(2.5), config, ProblemStats()).speed == pytest.approx(1.5)
    assert score(gpu_result(40.0), config, ProblemStats()).speed == pytest.approx(3.0)


def test_standardised_against_the_problems_history_and_clipped_at_1_5_sigma():
    stats, config = ProblemStats(), RewardConfig()
    for speedup in (1.0, math.e):                       # terms 0 and 1: mean 0.5, σ 0.5
        score(gpu_result(speedup), config, stats)
    assert stats.moments("p1") == (2, pytest.approx(0.5), pytest.approx(0.5))
    middling = score(gpu_result(math.exp(0.75)), config, stats)      # (0.75 - 0.5) / 0.5 = 0.5σ
    assert middling.speed == pytest.approx(0.5) and "standardised over 2" in middling.notes[0]
    n, mean, sigma = stats.moments("p1")
    best = score(gpu_result(math.exp(10.0)), config, stats)
    assert best.speed == 1.5 and (10.0 - mean) / sigma > 1.5          # clipped at +1.5σ
    worst = score(gpu_result(math.exp(-10.0)), config, stats)
    assert worst.speed == -1.5
    other = score(gpu_result(math.e, problem_hash="p9"), config, stats)   # another problem: its own history
    assert "0 earlier" in other.notes[0]


def test_the_statistics_round_trip_and_never_include_the_scored_result():
    stats = ProblemStats()
    score(gpu_result(2.0), RewardConfig(), stats)
    score(gpu_result(4.0), RewardConfig(), stats)
    again = ProblemStats.from_dict(stats.to_dict())
    assert again.moments("p1") == stats.moments("p1")
    a = score(gpu_result(3.0), RewardConfig(), stats)
    b = score(gpu_result(3.0), RewardConfig(), again)
    assert a == b


def test_length_penalty_beyond_the_budget():
    config = RewardConfig(length_penalty=0.5, length_budget=1000, standardise=False)
    within = score(gpu_result(1.0), config, ProblemStats(), tokens=900)
    beyond = score(gpu_result(1.0), config, ProblemStats(), tokens=3000)
    assert within.length == 0.0 and within.value == pytest.approx(1.0)
    assert beyond.length == pytest.approx(1.0) and beyond.value == pytest.approx(0.0)
    failed = score(make_result(EvalStatus.INCORRECT), config, ProblemStats(), tokens=3000)
    assert failed.value == pytest.approx(-0.2 - 1.0)


def test_untimed_correct_result_gets_the_gate_and_says_why():
    cpu = score(make_result(), RewardConfig(), ProblemStats())
    assert cpu.kind is RewardKind.UNTIMED and cpu.value == 1.0 and "without a GPU" in cpu.notes[0]
    no_compile = score(gpu_result(2.0), RewardConfig(versus="compile"), ProblemStats())
    assert no_compile.kind is RewardKind.UNTIMED and "compile baseline" in no_compile.notes[0]


def test_a_config_that_forgets_a_status_is_refused():
    with pytest.raises(ValueError, match="no value"):
        RewardConfig(failure={EvalStatus.INCORRECT: -0.1})
    with pytest.raises(ValueError):
        RewardConfig(clip=0)


def test_a_real_interpreter_evaluation(evaluator, softmax_problem):
    honest = evaluator.evaluate(softmax_problem, read(CANDIDATES / "04_softmax_rows.py"))
    reward = score(honest, RewardConfig(), ProblemStats())
    assert honest.status is EvalStatus.CORRECT and reward.kind is RewardKind.UNTIMED
    wrong = evaluator.evaluate(softmax_problem, read(CANDIDATES / "04_softmax_rows.py").replace(
        "inv_s = 1.0 / s", "inv_s = 1.0 / (s + 1.0)"))
    assert score(wrong, RewardConfig(), ProblemStats()).kind is RewardKind.FAILED
