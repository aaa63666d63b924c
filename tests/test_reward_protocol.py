"""The reward protocol (tools/evaluator.py `Protocol.REWARD`, issue 20 part 5) and the timing's
stopping rule: the first trial, which pays the candidate's JIT compile, runs before the device
lock is taken; every other trial runs inside it held shared (other lanes' trials beside it,
never a timing), the timed calls inside it held exclusive (tests/test_gpu.py, on a GPU); the
verdicts match the full protocol's. The stopping rule ends timing once the median's 95% interval is within ±2%.
Through the real evaluator in the Triton interpreter (the lock is given a real lock file)."""
import random

import pytest

import tools.evaluator as evaluator_module
from tests.conftest import CANDIDATES, FIXTURES, read
from tools.device_lock import DeviceLock
from tools.evaluator import EvalConfig, Protocol
from tools.records import Baselines, EvalStatus, TimingStats
from tools.timing import TimingConfig, median_interval, settled


class RecordingLock(DeviceLock):
    def __init__(self, path, events: list):
        super().__init__(path)
        self.events = events

    def acquire(self, exclusive: bool) -> None:
        self.events.append("lock" if exclusive else "shared")
        super().acquire(exclusive)


@pytest.fixture
def recorded(evaluator, tmp_path, monkeypatch):
    """The order of trials and lock acquisitions in one evaluation."""
    events: list[str] = []
    monkeypatch.setattr(evaluator, "device_lock", RecordingLock(tmp_path / "gpu.lock", events))
    real = evaluator_module.run_trial

    def trial(*args, **kwargs):
        events.append("trial")
        return real(*args, **kwargs)
    monkeypatch.setattr(evaluator_module, "run_trial", trial)
    return events


@pytest.mark.parametrize("protocol, order", [(Protocol.FULL, ["lock", "trial", "trial", "trial"]),
                                             (Protocol.REWARD, ["trial", "shared", "trial", "trial"])])
def test_the_first_trial_compiles_outside_the_lock_only_in_reward_mode(evaluator, softmax_problem, recorded,
                                                                        protocol, order):
    result = evaluator.evaluate(softmax_problem, read(CANDIDATES / "04_softmax_rows.py"),
                                EvalConfig(trials=3, limits=evaluator.config.limits, protocol=protocol))
    assert result.status is EvalStatus.CORRECT, result.reason
    assert recorded == order


@pytest.mark.parametrize("candidate", [CANDIDATES / "04_softmax_rows.py", FIXTURES / "wrong" / "04_softmax_rows.py"])
def test_the_verdict_is_the_full_protocols(evaluator, softmax_problem, candidate):
    verdicts = []
    for protocol in Protocol:
        result = evaluator.evaluate(softmax_problem, read(candidate),
                                    EvalConfig(trials=3, limits=evaluator.config.limits, protocol=protocol))
        verdicts.append((result.status, tuple(result.flags), result.trials_run))
    assert verdicts[0] == verdicts[1]


def test_a_failing_first_trial_never_takes_the_lock_in_reward_mode(evaluator, softmax_problem, recorded):
    result = evaluator.evaluate(softmax_problem, read(FIXTURES / "wrong" / "04_softmax_rows.py"),
                                EvalConfig(trials=3, limits=evaluator.config.limits, protocol=Protocol.REWARD))
    assert result.status is EvalStatus.INCORRECT and recorded == ["trial"]


def test_the_median_interval_holds_the_median_and_narrows_with_more_samples():
    rng = random.Random(7)
    few = [1.0 + rng.gauss(0, 0.05) for _ in range(20)]
    many = few + [1.0 + rng.gauss(0, 0.05) for _ in range(380)]
    for samples in (few, many):
        low, high = median_interval(samples)
        assert low <= sorted(samples)[len(samples) // 2] <= high
    assert median_interval(many)[1] - median_interval(many)[0] < median_interval(few)[1] - median_interval(few)[0]
    assert median_interval([2.0]) == (2.0, 2.0)


def test_timing_stops_once_the_median_is_known_and_never_before_min_iters():
    rule = TimingConfig(min_iters=20, stop_rel_ci=0.02)
    steady = [1.0] * 19
    assert not settled(steady, rule)                    # below min_iters, however steady
    assert settled(steady + [1.0], rule)
    noisy = [1.0, 2.0] * 10
    assert not settled(noisy, rule)                     # the interval spans ±50%
    assert not settled([1.0] * 100, TimingConfig())     # no rule: every call is timed
    assert TimingConfig(min_iters=20).full().min_iters is None


def test_timing_stats_keep_the_medians_interval_and_older_records_still_load():
    samples = [0.05 * (1 + 0.1 * ((i * 37) % 11 - 5) / 5) for i in range(100)]
    timed = TimingStats.from_samples(samples, samples, 0.1)
    assert (timed.median_low_ms, timed.median_high_ms) == median_interval(samples)
    assert timed.median_low_ms <= timed.median_ms <= timed.median_high_ms
    old = ('{"eager": {"median_ms": 1.0, "mean_ms": 1.0, "std_ms": 0.0, "p25_ms": 1.0, "p75_ms": 1.0, '
           '"min_ms": 1.0, "max_ms": 1.0, "calls": 100, "wall_median_ms": 1.1, "loop_seconds": 0.2}, '
           '"compiled": null, "notes": []}')
    assert Baselines.model_validate_json(old).eager.median_low_ms is None   # a cache entry written before

