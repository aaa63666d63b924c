"""The reward's finer contracts (policy_training/reward.py; issue 18: the gaps its mutation run
showed): the documented default failure values, each bound of RewardConfig at its edge, the
breakdown of every kind of reward (gate, length, notes) as the grader sends it, the running
statistics' first moments, and the raw clip while the problem's earlier terms are too few or
all equal. Pure functions, no evaluation: a second.

    pytest -q tests/test_reward_contract.py     # with tests/test_reward.py, the fast selection
                                                # of benchmarks/mutation.sh's `reward` module
"""
import math

import pytest

from policy_training.reward import ProblemStats, RewardConfig, RewardKind, SpeedTerm, default_failures, score
from tests.test_history import make_result
from tests.test_reward import gpu_result
from tools.records import EvalStatus, Flag

BOUNDS = "RewardConfig: clip > 0, cap > 1, warmup >= 1 and length_budget >= 1 are required"


def test_the_default_failure_values_are_the_documented_ones():
    """README's reward table: incorrect -0.2, runtime error / timeout / crash -0.4, compile error -0.5, rejected -1.0."""
    assert default_failures() == {EvalStatus.INCORRECT: -0.2, EvalStatus.RUNTIME_ERROR: -0.4,
                                  EvalStatus.TIMEOUT: -0.4, EvalStatus.CRASHED: -0.4,
                                  EvalStatus.COMPILE_ERROR: -0.5, EvalStatus.REJECTED: -1.0}
    assert RewardConfig().failure == default_failures()


@pytest.mark.parametrize("refused", [dict(clip=0), dict(clip=-1.0), dict(cap=1.0), dict(warmup=0),
                                     dict(length_budget=0)])
def test_each_bound_refuses_the_value_at_its_edge(refused):
    with pytest.raises(ValueError) as raised:
        RewardConfig(**refused)
    assert str(raised.value) == BOUNDS


def test_each_bound_accepts_the_value_just_inside_it():
    config = RewardConfig(clip=0.5, cap=1.5, warmup=1, length_budget=1)
    assert (config.clip, config.cap, config.warmup, config.length_budget) == (0.5, 1.5, 1, 1)


def test_names_from_a_config_file_become_their_enums():
    config = RewardConfig(versus="compile", speed_term="capped")
    assert config.speed_term is SpeedTerm.CAPPED and config.versus.value == "compile"
    with pytest.raises(ValueError):
        RewardConfig(speed_term="square")


# ---- the breakdown of each kind --------------------------------------------------------------

def test_a_failure_carries_its_gate_its_length_and_the_first_200_characters_of_its_reason():
    config = RewardConfig(length_penalty=0.5, length_budget=1000)
    reward = score(make_result(EvalStatus.TIMEOUT, reason="x" * 199 + "yz"), config, ProblemStats(), tokens=2000)
    assert (reward.kind, reward.gate, reward.length) == (RewardKind.FAILED, -0.4, 0.5)
    assert reward.value == pytest.approx(-0.9) and reward.notes == ("x" * 199 + "y",)


def test_an_untimed_result_carries_its_gate_and_pays_its_length():
    config = RewardConfig(length_penalty=0.5, length_budget=1000)
    reward = score(make_result(), config, ProblemStats(), tokens=2000)
    assert (reward.kind, reward.gate, reward.length, reward.value) == (RewardKind.UNTIMED, 1.0, 0.5, 0.5)
    assert reward.notes == ("no speed term: nothing is timed without a GPU",)
    versus_compile = score(gpu_result(2.0), RewardConfig(versus="compile"), ProblemStats())
    assert versus_compile.notes == ("no speed term: no compile baseline was measured",)


def test_a_timed_result_carries_its_gate():
    reward = score(gpu_result(2.0), RewardConfig(correct=0.75, standardise=False), ProblemStats())
    assert (reward.kind, reward.gate, reward.speedup) == (RewardKind.SPEED, 0.75, 2.0)
    assert reward.value == pytest.approx(0.75 + math.log(2.0)) and reward.notes == ("raw speed term (smoothing off)",)


def test_the_notes_name_every_flag_that_excluded_or_disqualified_a_result():
    excluded = score(gpu_result(flags=[Flag.SHARED_USER, Flag.NETWORK_NOT_ISOLATED]), RewardConfig(), ProblemStats())
    assert excluded.notes == ("our side's fault: shared_user, network_not_isolated",)
    flagged = score(gpu_result(flags=[Flag.NO_CUSTOM_KERNEL, Flag.PRECISION_POLICY]), RewardConfig(), ProblemStats())
    assert flagged.kind is RewardKind.DISQUALIFIED
    assert flagged.notes == ("flagged: no_custom_kernel, precision_policy",)


def test_no_length_penalty_without_a_token_count():
    config = RewardConfig(length_penalty=0.5, length_budget=10)
    assert score(make_result(), config, ProblemStats(), tokens=None).length == 0.0
    assert score(make_result(), RewardConfig(length_budget=10), ProblemStats(), tokens=1000).length == 0.0


def test_the_breakdown_as_the_grader_sends_it():
    reward = score(make_result(EvalStatus.REJECTED, reason="static check"), RewardConfig(), ProblemStats())
    assert reward.as_dict() == {"value": -1.0, "kind": "failed", "gate": -1.0, "speedup": None, "raw_term": None,
                                "speed": 0.0, "length": 0.0, "hack": True, "notes": ["static check"]}
    timed = score(gpu_result(2.0), RewardConfig(standardise=False), ProblemStats()).as_dict()
    assert (timed["kind"], timed["speedup"], timed["raw_term"], timed["speed"]) == \
        ("speed", 2.0, pytest.approx(math.log(2.0)), pytest.approx(math.log(2.0)))


# ---- the running statistics and the smoothing ----------------------------------------------------

def test_the_moments_of_a_new_problem_and_of_three_terms():
    stats = ProblemStats()
    assert stats.moments("new") == (0, 0.0, 0.0)
    for term in (1.0, 3.0, 5.0):
        stats.observe("p", term)
    n, mean, sigma = stats.moments("p")
    assert (n, mean) == (3, 3.0) and sigma == pytest.approx(math.sqrt(8 / 3))


def test_too_few_earlier_terms_clip_the_raw_term_even_when_they_differ():
    stats, config = ProblemStats(), RewardConfig(warmup=3)
    for speedup in (1.0, math.e):                       # two terms, σ 0.5: fewer than warmup
        score(gpu_result(speedup), config, stats)
    reward = score(gpu_result(math.exp(1.2)), config, stats)
    assert reward.speed == pytest.approx(1.2) and reward.notes[0].startswith("raw speed term clipped at ±1.5 (2 earlier")


def test_equal_earlier_terms_clip_the_raw_term_instead_of_dividing_by_zero():
    stats, config = ProblemStats(), RewardConfig()
    for _ in range(3):
        score(gpu_result(2.0), config, stats)           # three equal terms: σ 0
    reward = score(gpu_result(math.exp(0.25)), config, stats)
    assert reward.speed == pytest.approx(0.25) and "3 earlier term(s), σ 0)" in reward.notes[0]
