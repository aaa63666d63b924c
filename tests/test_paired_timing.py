"""Paired timing (issue 17 item 9): a candidate whose call takes under 1 ms is set against eager
timed again right after it, in the same hold of the device lock, and the ratio comes with its
95% interval. Here: the interval's arithmetic, which calls are paired, what a result reports,
and that an old record without the new fields still loads. The loops themselves need a GPU
(tests/test_gpu.py times them, and checks that the candidate's process is gone first)."""
import random

import pytest

from tools.baselines import BaselineStore
from tools.evaluator import PAIRED_BELOW_MS, EvalConfig, Outcome
from tools.records import Baselines, EvalStatus, PairedTiming, TimingStats, median_interval


def stats(samples: list[float]) -> TimingStats:
    return TimingStats.from_samples(samples, samples, 0.1)


def jittered(median: float, rel: float, n: int = 100, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [median * (1 + rng.uniform(-rel, rel)) for _ in range(n)]


def test_timing_stats_keep_the_medians_interval():
    timed = stats(jittered(0.05, 0.1))
    assert (timed.median_low_ms, timed.median_high_ms) == median_interval(jittered(0.05, 0.1))
    assert timed.median_low_ms < timed.median_ms < timed.median_high_ms


def test_a_record_written_before_the_interval_was_kept_still_loads():
    old = ('{"eager": {"median_ms": 1.0, "mean_ms": 1.0, "std_ms": 0.0, "p25_ms": 1.0, "p75_ms": 1.0, '
           '"min_ms": 1.0, "max_ms": 1.0, "calls": 100, "wall_median_ms": 1.1, "loop_seconds": 0.2}, '
           '"compiled": null, "notes": []}')
    eager = Baselines.model_validate_json(old).eager
    assert eager.median_low_ms is None
    paired = PairedTiming.of(eager, stats([0.5] * 20))
    assert (paired.low, paired.speedup, paired.high) == (2.0, 2.0, 2.0)   # a point: its median is all it has


def test_the_ratio_interval_holds_the_speedup_and_says_when_it_is_noise():
    faster = PairedTiming.of(stats(jittered(0.06, 0.05, seed=1)), stats(jittered(0.04, 0.05, seed=2)))
    assert faster.low < faster.speedup < faster.high
    assert faster.speedup == pytest.approx(1.5, rel=0.05)
    assert not faster.within_noise
    same = PairedTiming.of(stats(jittered(0.05, 0.2, seed=3)), stats(jittered(0.05, 0.2, seed=4)))
    assert same.within_noise and same.low < 1.0 < same.high
    slower = PairedTiming.of(stats(jittered(0.04, 0.01, seed=5)), stats(jittered(0.06, 0.01, seed=6)))
    assert slower.high < 1.0 and not slower.within_noise


class RecordingStore(BaselineStore):
    """The real store; its uncached eager loop (which needs a GPU) answers what the test says."""

    def __init__(self, store: BaselineStore, answer):
        self.__dict__.update(store.__dict__)
        self.answer, self.asked = answer, []

    def time_now(self, reference, config, torch_compile=False):
        self.asked.append(config)
        return self.answer


@pytest.mark.parametrize("runtime_ms, baselines, paired", [
    (0.05, True, True),                     # a short call: eager again, at once
    (PAIRED_BELOW_MS * 2, True, False),     # a long one: the cached eager time is good enough
    (0.05, False, False),                   # no baselines asked for: nothing to pair
])
def test_only_a_short_timed_call_is_paired(evaluator, softmax_problem, runtime_ms, baselines, paired):
    eager = stats(jittered(0.07, 0.02))
    store = RecordingStore(evaluator.baselines, eager)
    evaluator.baselines = store
    outcome = Outcome(EvalStatus.CORRECT, timing=stats(jittered(runtime_ms, 0.02)))
    config = EvalConfig(baselines=baselines)
    after = evaluator._pair(evaluator.context(softmax_problem), outcome, config)
    assert (after.paired is not None) is paired
    assert len(store.asked) == int(paired)
    if paired:
        assert store.asked == [config.timing]            # timed as the candidate was
        assert after.paired.speedup == pytest.approx(eager.median_ms / outcome.timing.median_ms)


def test_a_failed_eager_loop_is_said_not_hidden(evaluator, softmax_problem):
    evaluator.baselines = RecordingStore(evaluator.baselines, "failed to load: out of memory")
    outcome = Outcome(EvalStatus.CORRECT, timing=stats([0.05] * 20))
    after = evaluator._pair(evaluator.context(softmax_problem), outcome, EvalConfig())
    assert after.paired is None
    assert any("paired eager timing failed to load: out of memory" in note and "cached eager baseline" in note
               for note in after.notes)


def test_a_paired_result_reports_the_paired_eager_and_keeps_the_cached_one(evaluator, softmax_problem):
    cached = stats([0.08] * 20)
    evaluator.baselines = RecordingStore(evaluator.baselines, stats([0.06] * 20))
    evaluator.baselines.get = lambda reference: Baselines(eager=cached, compiled=stats([0.09] * 20), notes=[])
    context = evaluator.context(softmax_problem)
    outcome = evaluator._pair(context, Outcome(EvalStatus.CORRECT, timing=stats([0.04] * 20)), EvalConfig())
    result = evaluator._result(softmax_problem, "source", context, outcome, None, "", 1.0, EvalConfig())
    assert result.eager_ms == 0.06 and result.speedup_vs_eager == pytest.approx(1.5)
    assert result.paired.cached_eager_ms == 0.08
    assert result.compile_ms == 0.09 and result.speedup_vs_compile == pytest.approx(2.25)   # never paired
    assert result.summary()["paired"]["speedup"] == pytest.approx(1.5)
