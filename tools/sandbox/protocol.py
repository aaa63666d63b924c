"""Wire format between the trusted evaluator and the sandbox worker.

Every message is one small dict serialised with `torch.save` and read back with
`torch.load(weights_only=True)`, so a hostile candidate cannot run code in the trusted
process by writing to the pipe. Bulk tensors do not travel in messages: they sit in a
exchange arena (`tools/sandbox/shm.py`) and messages carry references to them.
The dict's `kind` names the message; the keys of each kind are fixed (`REQUEST_KEYS`,
`REPLY_KEYS`) and checked on arrival.

Imports only the standard library and torch: it runs inside the sandbox too.
"""
import io

import torch

REQUEST_KEYS = {
    "load": {"source", "class_name", "init_inputs", "torch_compile"},
    "run": {"arena", "inputs", "output_slots"},
    "time": {"arena", "input_sets", "warmup", "iters", "check_indices", "check_slots"},
}
REPLY_KEYS = {
    "ready": {"pid", "device", "network_isolated", "isolation_note"},
    "loaded": {"seconds", "flags_changed"},
    "ran": {"seconds", "output_meta"},
    "timed": {"event_ms", "wall_ms", "loop_wall_s", "checked_meta", "flags_changed"},
    "failure": {"status", "phase", "message", "traceback"},
}


class ProtocolError(RuntimeError):
    """A message that is not what the protocol says (from a confused or hostile peer)."""


def load_request(source: str, class_name: str, init_inputs: list, torch_compile: bool = False) -> dict:
    return {"kind": "load", "source": source, "class_name": class_name, "init_inputs": init_inputs,
            "torch_compile": torch_compile}


def expect(reply: dict, kind: str, phase: str) -> dict:
    """The reply if it is `kind` or a failure; any other well-formed message is itself a
    failure (a worker that answers the wrong question cannot be trusted further)."""
    if reply["kind"] in (kind, "failure"):
        return reply
    return {"kind": "failure", "status": "crashed", "phase": phase, "traceback": "",
            "message": f"the worker answered '{reply['kind']}' to a '{phase}' request"}


def pack(message: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(message, buffer)
    return buffer.getvalue()


def unpack(data: bytes, allowed: dict) -> dict:
    try:
        message = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as error:  # any decode failure is the peer's fault, reported as one error
        raise ProtocolError(f"undecodable message ({type(error).__name__}: {error})") from None
    if not isinstance(message, dict) or message.get("kind") not in allowed:
        raise ProtocolError(f"unexpected message kind: {message.get('kind') if isinstance(message, dict) else type(message).__name__}")
    expected = allowed[message["kind"]] | {"kind"}
    if set(message) != expected:
        raise ProtocolError(f"message '{message['kind']}' has keys {sorted(message)}, expected {sorted(expected)}")
    return message
