"""The channel between the trusted side and a worker: what crosses from the candidate's
process is decoded without pickle's code execution and checked before it is believed."""
import pickle

import pytest
import torch

from tools.evaluator import failed as failed_outcome
from tools.records import EvalStatus, Phase
from tools.sandbox.protocol import REPLY_KEYS, ProtocolError, expect, pack, unpack, unpack_reply
from tools.sandbox.replies import ReplyKind, parse_reply
from tools.sandbox.shm import Arena, ArenaError


class Exploit:
    def __reduce__(self):
        return (print, ("pickle executed code",))


def test_round_trip_keeps_tensors_and_fixed_keys():
    message = {"kind": "loaded", "seconds": 0.5, "flags_changed": []}
    assert unpack(pack(message), REPLY_KEYS) == message
    with pytest.raises(ProtocolError, match="has keys"):
        unpack(pack({"kind": "loaded", "seconds": 0.5}), REPLY_KEYS)
    with pytest.raises(ProtocolError, match="unexpected message kind"):
        unpack(pack({"kind": "correct"}), REPLY_KEYS)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_pickle_with_code_is_refused_not_run(capsys):
    with pytest.raises(ProtocolError, match="undecodable"):
        unpack(pickle.dumps({"kind": "loaded", "seconds": Exploit(), "flags_changed": []}), REPLY_KEYS)
    assert "pickle executed code" not in capsys.readouterr().out


def test_forged_failure_records_and_wrong_answers_are_findings():
    def failed(reply):   # the evaluator's reading of a wire reply: parsed once, then judged
        return failed_outcome(parse_reply(reply, ReplyKind.RAN, Phase.RUN))

    forged = {"kind": "failure", "status": "correct", "phase": "run", "message": "", "traceback": ""}
    assert failed(forged).status is EvalStatus.REJECTED
    assert failed({**forged, "status": "timeout", "phase": "elsewhere"}).status is EvalStatus.REJECTED
    wrong = expect({"kind": "loaded", "seconds": 0.0, "flags_changed": []}, "ran", "run")
    assert (wrong["kind"], wrong["status"]) == ("failure", "crashed")


def test_arena_views_stay_inside_the_buffer():
    arena = Arena.host(1024)
    try:
        ref = arena.put(torch.arange(6, dtype=torch.float32).view(2, 3))
        assert torch.equal(arena.view(ref), torch.arange(6, dtype=torch.float32).view(2, 3))
        with pytest.raises(ArenaError, match="outside the arena"):
            arena.view({**ref, "offset": 1008})
        with pytest.raises(ArenaError, match="unknown dtype"):
            arena.view({**ref, "dtype": "object"})
        with pytest.raises(ArenaError, match="cannot hold"):
            arena.alloc((1024,), torch.float32)
    finally:
        arena.close()


@pytest.mark.parametrize("reply", [
    {"kind": "loaded", "seconds": 0.1, "flags_changed": [1]},
    {"kind": "loaded", "seconds": 1, "flags_changed": []},
    {"kind": "ran", "seconds": 0.1, "output_meta": {"container": "tensor", "items": [{"type": "torch.Tensor"}]}},
    {"kind": "failure", "status": ["correct"], "phase": "run", "message": "", "traceback": ""},
])
def test_replies_of_the_wrong_types_are_refused(reply):
    with pytest.raises(ProtocolError, match="not of the protocol's type"):
        unpack_reply(pack(reply))


def test_cuda_arenas_grow_in_powers_of_two_then_whole_gib():
    from tools.sandbox.shm import GIB, arena_size
    assert [arena_size(n) for n in (1, 1000, GIB)] == [2, 1024, GIB]
    assert arena_size(GIB + 1) == 2 * GIB and arena_size(21 * GIB + 5) == 22 * GIB    # not 32 GiB
