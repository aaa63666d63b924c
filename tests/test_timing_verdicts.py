"""The trusted side's checks on a `timed` reply, fed replies as a worker (or a candidate
forging one) could send them: no GPU needed, only the judgement is under test."""
import torch

from tools.records import EvalStatus, Flag, Phase
from tools.sandbox.replies import ReplyKind, parse_reply
from tools.timing import TimingConfig, judge_timing

CONFIG = TimingConfig(iters=10, checked_calls=2)
EXPECTED = torch.arange(6, dtype=torch.float32).view(2, 3)
META = {"container": "tensor", "items": [{"type": "torch.Tensor", "device": "cpu", "dtype": "torch.float32",
                                          "shape": [2, 3], "shares_input_storage": False, "written": True}]}


def reply(event=1.0, wall=1.05, flags=(), indices=(2, 7)):
    """A `timed` reply as the trusted side reads it: the wire dict, parsed once."""
    return parse_reply({"kind": "timed", "event_ms": [event] * 10, "wall_ms": [wall] * 10, "loop_wall_s": 0.02,
                        "checked_meta": [{"index": i, "meta": META} for i in indices], "flags_changed": list(flags)},
                       ReplyKind.TIMED, Phase.TIME)


def checked(output=EXPECTED):
    return [(2, "tensor", [EXPECTED], [output.clone()]), (7, "tensor", [EXPECTED], [EXPECTED.clone()])]


def test_an_honest_reply_gives_the_median_and_no_flag():
    timed = judge_timing(reply(), checked(), "cpu", CONFIG, host_s=0.5)
    assert timed.status is EvalStatus.CORRECT and timed.stats.median_ms == 1.0 and timed.flags == ()


def test_events_longer_than_the_wall_clock_are_tampering():
    timed = judge_timing(reply(event=80.0), checked(), "cpu", CONFIG, host_s=0.5)
    assert timed.status is EvalStatus.REJECTED and "tampered" in timed.reason


def test_host_clock_far_above_the_events_is_flagged():
    timed = judge_timing(reply(event=1.0, wall=3.0), checked(), "cpu", CONFIG, host_s=0.5)
    assert timed.status is EvalStatus.CORRECT and timed.flags == (Flag.TIMING_MISMATCH,)


def test_flipped_flags_other_calls_and_wrong_timed_outputs_are_caught():
    assert judge_timing(reply(flags=["torch.backends.cudnn.allow_tf32"]), checked(), "cpu", CONFIG, 0.5).status \
        is EvalStatus.REJECTED
    assert judge_timing(reply(indices=(2, 8)), checked(), "cpu", CONFIG, 0.5).status is EvalStatus.REJECTED
    wrong = judge_timing(reply(), checked(output=EXPECTED + 1), "cpu", CONFIG, 0.5)
    assert wrong.status is EvalStatus.INCORRECT and "timed call 3 of 10" in wrong.reason
