"""A worker's replies are parsed once into typed records on the trusted side; what crossed
from the candidate's process and is not what the protocol says becomes a candidate
failure (a status), never an exception in the trusted process."""
import pytest

from tools.records import EvalStatus, Phase
from tools.sandbox.replies import (Audit, Failure, Launch, Loaded, Ran, ReplyKind, TimedReply, parse_reply)

AUDIT = {"tampered": [], "threads": [], "native_threads": 3, "children": [], "flags_changed": [],
         "launches": [{"name": "softmax_kernel", "own": True, "count": 2}], "l2_persisting_bytes": -1}
META = {"container": "tensor", "items": [{"type": "torch.Tensor", "device": "cpu", "dtype": "torch.float32",
                                          "shape": [2, 3], "shares_input_storage": False, "written": True}]}
TIMED = {"kind": "timed", "event_ms": [1.0, 1.1], "wall_ms": [1.2, 1.3], "loop_wall_s": 0.01,
         "checked_meta": [{"index": 1, "meta": META}], "flags_changed": [], "audit": AUDIT, "call_meta": [META, META]}


def test_honest_replies_become_typed_records():
    ran = parse_reply({"kind": "ran", "seconds": 0.1, "output_meta": META, "audit": AUDIT}, ReplyKind.RAN, Phase.RUN)
    assert isinstance(ran, Ran) and ran.kind is ReplyKind.RAN
    assert ran.output_meta.items[0].shape == (2, 3) and ran.audit.launches == (Launch("softmax_kernel", True, 2),)
    timed = parse_reply(TIMED, ReplyKind.TIMED, Phase.TIME)
    assert isinstance(timed, TimedReply) and timed.event_ms == (1.0, 1.1) and timed.checked_meta[0].index == 1
    assert len(timed.call_meta) == 2 and isinstance(timed.audit, Audit)
    loaded = parse_reply({"kind": "loaded", "seconds": 0.5, "flags_changed": []}, ReplyKind.LOADED, Phase.LOAD)
    assert isinstance(loaded, Loaded) and loaded.audit is None     # judged a tampered worker, not a crash here
    failure = parse_reply({"kind": "failure", "status": "timeout", "phase": "run", "message": "no answer",
                           "traceback": ""}, ReplyKind.RAN, Phase.RUN)
    assert failure == Failure(EvalStatus.TIMEOUT, Phase.RUN, "no answer")


@pytest.mark.parametrize("forged,words", [
    ({"kind": "ran", "seconds": 0.1}, "has keys"),                                           # a field missing
    ({**TIMED, "event_ms": "fast"}, "not of the protocol's type"),                           # a field of another type
    ({**TIMED, "audit": {**AUDIT, "launches": [{"name": "k", "own": 1, "count": 2}]}}, "'audit'"),   # deep inside
    ({**TIMED, "verdict": "correct"}, "has keys"),                                           # a field of its own
    ({"kind": "correct"}, "unexpected message kind"),                                        # a kind of its own
    ({"kind": ["timed"]}, "unexpected message kind"),                                        # an unhashable kind
    (["timed"], "unexpected message kind: list"),                                            # not a dict at all
    ({"kind": "timed", 1: 2}, "has keys"),                                                   # keys that do not sort
])
def test_a_forged_reply_is_a_crash_of_the_candidate_not_a_key_error(forged, words):
    reply = parse_reply(forged, ReplyKind.TIMED, Phase.TIME)
    assert isinstance(reply, Failure) and (reply.status, reply.phase) == (EvalStatus.CRASHED, Phase.TIME)
    assert "malformed reply" in reply.message and words in reply.message


def test_forged_failures_and_answers_to_another_question_are_findings():
    forged = {"kind": "failure", "status": "correct", "phase": "run", "message": "all good", "traceback": ""}
    assert parse_reply(forged, ReplyKind.RAN, Phase.RUN).status is EvalStatus.REJECTED
    elsewhere = parse_reply({**forged, "status": "timeout", "phase": "elsewhere"}, ReplyKind.RAN, Phase.RUN)
    assert (elsewhere.status, elsewhere.phase) == (EvalStatus.REJECTED, None)
    wrong = parse_reply(TIMED, ReplyKind.RAN, Phase.RUN)
    assert isinstance(wrong, Failure) and wrong.status is EvalStatus.CRASHED
    assert wrong.message == "the worker answered 'timed' to a 'run' request"


def test_a_failure_while_profiling_keeps_its_status():
    # Before the typed replies, `profile` was no phase of the protocol's, so the worker's own
    # "profiling needs a CUDA device" or a timeout there came back as a forged record (rejected).
    honest = {"kind": "failure", "status": "timeout", "phase": "profile", "message": "no answer in 30 s",
              "traceback": ""}
    assert parse_reply(honest, ReplyKind.PROFILED, Phase.PROFILE) == Failure(EvalStatus.TIMEOUT, Phase.PROFILE,
                                                                             "no answer in 30 s")


def test_every_string_a_worker_sends_is_cleaned_of_escapes_and_our_secrets(monkeypatch):
    monkeypatch.setenv("KERNELPILOT_TEST_API_KEY", "sk-test-replies-0123456789")
    hostile = "\x1b[2J\x1b[H\x1b[1;32mcorrect\x1b[0m leaked sk-test-replies-0123456789"
    failure = parse_reply({"kind": "failure", "status": "runtime_error", "phase": "run", "message": hostile,
                           "traceback": f"Traceback (most recent call last):\n  {hostile}\r\n"}, ReplyKind.RAN, Phase.RUN)
    assert failure.message == "correct leaked [redacted KERNELPILOT_TEST_API_KEY]"
    assert failure.traceback == "Traceback (most recent call last):\n  correct leaked [redacted KERNELPILOT_TEST_API_KEY]\n"
    audit = {**AUDIT, "threads": [hostile], "launches": [{"name": "k\x1b]0;title\x07", "own": True, "count": 1}]}
    ran = parse_reply({"kind": "ran", "seconds": 0.1, "output_meta": META, "audit": audit}, ReplyKind.RAN, Phase.RUN)
    assert ran.audit.threads == ("correct leaked [redacted KERNELPILOT_TEST_API_KEY]",)
    assert ran.audit.launches[0].name == "k"
    assert ran.output_meta == parse_reply({"kind": "ran", "seconds": 0.1, "output_meta": META}, ReplyKind.RAN,
                                          Phase.RUN).output_meta      # protocol values untouched
