"""The timing-verdict contract (tools/timing.py `judge_timing`, `input_set_count`) at its
boundaries: malformed samples, events that outlast the request, the calls asked for, the loop
time, the mismatch threshold (wall median above 1.25x the event median + 0.1 ms), the exact
reasons. Replies are parsed from the wire form a worker (or a forger) sends; no GPU needed."""
import pytest
import torch

from tools.records import EvalStatus, Flag, Phase
from tools.sandbox.contracts import GiB
from tools.sandbox.replies import ReplyKind, parse_reply
from tools.timing import MISMATCH_RATIO, MISMATCH_SLACK_MS, TimingConfig, input_set_count, judge_timing

CONFIG = TimingConfig(iters=4, checked_calls=1)
EXPECTED = torch.arange(6, dtype=torch.float32).view(2, 3)
META = {"container": "tensor", "items": [{"type": "torch.Tensor", "device": "cpu", "dtype": "torch.float32",
                                          "shape": [2, 3], "shares_input_storage": False, "written": True}]}


def reply(event=(1.0, 1.0, 1.0, 1.0), wall=(1.0, 1.0, 1.0, 1.0), loop=0.01, flags=(), indices=(1,)):
    return parse_reply({"kind": "timed", "event_ms": list(event), "wall_ms": list(wall), "loop_wall_s": loop,
                        "checked_meta": [{"index": i, "meta": META} for i in indices], "flags_changed": list(flags)},
                       ReplyKind.TIMED, Phase.TIME)


def judge(timed_reply, output=EXPECTED, host_s=1.0):
    return judge_timing(timed_reply, [(1, "tensor", [EXPECTED], [output.clone()])], "cpu", CONFIG, host_s)


MALFORMED = "timing: the worker returned malformed timings"


@pytest.mark.parametrize("field, samples", [
    ("event", (1.0, 1.0, 1.0)), ("wall", (1.0,) * 5), ("event", (1.0, -0.001, 1.0, 1.0)),
    ("wall", (1.0, float("nan"), 1.0, 1.0)), ("event", (float("inf"), 1.0, 1.0, 1.0)),
])
def test_malformed_samples_are_rejected(field, samples):
    timed = judge(reply(**{field: samples}))
    assert (timed.status, timed.reason) == (EvalStatus.REJECTED, MALFORMED)


def test_zero_times_are_well_formed_and_the_stats_are_the_events():
    timed = judge(reply(event=(0.0, 1.0, 2.0, 3.0), wall=(0.0, 1.0, 2.0, 3.0)))
    assert (timed.status, timed.reason, timed.flags) == (EvalStatus.CORRECT, "", ())
    assert (timed.stats.median_ms, timed.stats.min_ms, timed.stats.max_ms, timed.stats.calls) == (1.5, 0.0, 3.0, 4)
    assert timed.stats.wall_median_ms == 1.5 and timed.stats.loop_seconds == 0.01


def test_flipped_precision_flags_are_named():
    timed = judge(reply(flags=("torch.backends.cudnn.allow_tf32", "torch.backends.cuda.matmul.allow_tf32")))
    assert timed.status is EvalStatus.REJECTED
    assert timed.reason == ("timing: the candidate changed global precision flags: "
                            "torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32")


def test_events_may_add_up_to_the_request_time_but_not_past_it():
    exact = reply(event=(250.0,) * 4, wall=(250.0,) * 4, loop=1.0)
    assert judge(exact, host_s=1.0).status is EvalStatus.CORRECT
    over = judge(reply(event=(250.0, 250.0, 250.0, 251.0), wall=(251.0,) * 4, loop=0.5), host_s=1.0)
    assert over.status is EvalStatus.REJECTED
    assert over.reason == ("timing: the events add up to 1.001 s but the whole timed request took 1.000 s "
                           "of wall-clock time (timers tampered with)")


@pytest.mark.parametrize("indices", [(2,), (), (1, 2)])
def test_only_the_calls_asked_for(indices):
    timed = judge(reply(indices=indices))
    assert (timed.status, timed.reason) == \
        (EvalStatus.REJECTED, "timing: the worker returned other calls than the ones asked for")


def test_a_wrong_checked_call_is_incorrect_and_named():
    timed = judge(reply(), output=EXPECTED + 1)
    assert timed.status is EvalStatus.INCORRECT
    assert timed.reason.startswith("timed call 2 of 4: output: 6/6 elements outside")


@pytest.mark.parametrize("loop, ok", [(0.0, True), (1.0, True), (-0.001, False), (1.001, False)])
def test_the_loop_time_lies_within_the_request(loop, ok):
    timed = judge(reply(loop=loop), host_s=1.0)
    assert timed.status is (EvalStatus.CORRECT if ok else EvalStatus.REJECTED)
    assert ok or timed.reason == "timing: the worker returned a malformed loop time"


def test_the_mismatch_flag_starts_just_above_its_threshold():
    event = 2.0
    at = MISMATCH_RATIO * event + MISMATCH_SLACK_MS          # 2.6 ms: still believed
    assert judge(reply(event=(event,) * 4, wall=(at,) * 4)).flags == ()
    above = judge(reply(event=(event,) * 4, wall=(at + 0.01,) * 4))
    assert above.status is EvalStatus.CORRECT and above.flags == (Flag.TIMING_MISMATCH,)
    assert (MISMATCH_RATIO, MISMATCH_SLACK_MS) == (1.25, 0.1)


def test_input_sets_per_chunk():
    config = TimingConfig(iters=100, max_input_sets=100, input_budget_bytes=2 * GiB)
    assert input_set_count(1024, config) == 100                   # one per call where the budget allows
    assert input_set_count(GiB, config) == 2                      # the budget binds
    assert input_set_count(GiB + 1, config) == 1
    assert input_set_count(3 * GiB, config) == 1                  # never fewer than one
    assert input_set_count(0, config) == 100
    assert input_set_count(1024, TimingConfig(iters=7)) == 7
    assert input_set_count(1024, TimingConfig(iters=100, max_input_sets=30)) == 30
    assert input_set_count(0, TimingConfig(iters=100, max_input_sets=1000, input_budget_bytes=50)) == 50
