"""Wire format between the trusted evaluator and the sandbox worker.

Every message is one small dict serialised with `torch.save` and read back with
`torch.load(weights_only=True)`, so a hostile candidate cannot run code in the trusted
process by writing to the pipe. Bulk tensors do not travel in messages: they sit in a
exchange arena (`tools/sandbox/shm.py`) and messages carry references to them.
The dict's `kind` names the message; the keys of each kind are fixed (`REQUEST_KEYS`,
`REPLY_KEYS`) and checked on arrival. Later additions are optional keys
(`REQUEST_OPTIONAL`, `REPLY_OPTIONAL`): a message without them is still well formed,
so an older peer keeps working; the trusted side decides what a missing one means.

Imports only the standard library and torch: it runs inside the sandbox too.
"""
import io
import threading
import time

import torch

REQUEST_KEYS = {
    "load": {"source", "class_name", "init_inputs", "torch_compile"},
    "run": {"arena", "inputs", "output_slots"},
    "time": {"arena", "input_sets", "warmup", "iters", "check_indices", "check_slots"},
    "profile": {"arena", "inputs", "calls"},
}
# `time`: which input set each call uses, the set the warm-up calls use (never timed),
# and the secret element positions whose values
# every call's outputs leave in the arena (so every timed call is checked).
REQUEST_OPTIONAL = {"time": {"schedule", "warmup_set", "sample_positions", "sample_slots"}}
# Replies cross from the candidate's process: every field's type is fixed. A spec is a
# type (matched exactly: True is not an int), [spec] for a list of it, or a dict of specs.
OUTPUT_META = {"container": str, "items": [{"type": str, "device": str, "dtype": str, "shape": [int],
                                              "shares_input_storage": bool, "written": bool}]}
REPLY_SCHEMA = {
    "ready": {"pid": int, "device": str, "network_isolated": bool, "isolation_note": str},
    "loaded": {"seconds": float, "flags_changed": [str]},
    "ran": {"seconds": float, "output_meta": OUTPUT_META},
    "timed": {"event_ms": [float], "wall_ms": [float], "loop_wall_s": float,
              "checked_meta": [{"index": int, "meta": OUTPUT_META}], "flags_changed": [str]},
    "profiled": {"calls": int, "kernels": [{"name": str, "count": int, "device_us": float}]},
    "failure": {"status": str, "phase": str, "message": str, "traceback": str},
}
# What the worker saw of the candidate's behaviour after a request: replaced timers and
# torch functions, threads and child processes left running, precision flags, kernel
# launches (own: defined by the candidate), the persisting-L2 limit (GPU; -1 unknown).
AUDIT = {"tampered": [str], "threads": [str], "native_threads": int, "children": [int], "flags_changed": [str],
         "launches": [{"name": str, "own": bool, "count": int}], "l2_persisting_bytes": int}
REPLY_OPTIONAL_SCHEMA = {
    "ready": {"fs_isolated": bool, "fs_note": str, "uid": int, "privilege_note": str},
    "loaded": {"audit": AUDIT},
    "ran": {"audit": AUDIT},
    "timed": {"audit": AUDIT, "call_meta": [OUTPUT_META]},
}
REPLY_KEYS = {kind: set(schema) for kind, schema in REPLY_SCHEMA.items()}
REPLY_OPTIONAL = {kind: set(schema) for kind, schema in REPLY_OPTIONAL_SCHEMA.items()}
MAX_REPLY_BYTES = 16 * 1024 * 1024


class ProtocolError(RuntimeError):
    """A message that is not what the protocol says (from a confused or hostile peer)."""


def load_request(source: str, class_name: str, init_inputs: list, torch_compile: bool = False) -> dict:
    return {"kind": "load", "source": source, "class_name": class_name, "init_inputs": init_inputs,
            "torch_compile": torch_compile}


def flatten_output(output) -> tuple[str, list]:
    """(container, items) of what a forward returned: "tensor" and [output], or the
    tuple's or list's type name and its items. Both sides describe outputs this way."""
    if isinstance(output, (tuple, list)):
        return type(output).__name__, list(output)
    return "tensor", [output]


def failure(status: str, phase: str, message: str, trace: str = "") -> dict:
    return {"kind": "failure", "status": status, "phase": phase, "message": message, "traceback": trace}


def expect(reply: dict, kind: str, phase: str) -> dict:
    """The reply if it is `kind` or a failure; any other well-formed message is itself a
    failure (a worker that answers the wrong question cannot be trusted further)."""
    if reply["kind"] in (kind, "failure"):
        return reply
    return failure("crashed", phase, f"the worker answered '{reply['kind']}' to a '{phase}' request")


def pack(message: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(message, buffer)
    return buffer.getvalue()


def unpack(data: bytes, allowed: dict, optional: dict | None = None) -> dict:
    try:
        message = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as error:  # any decode failure is the peer's fault, reported as one error
        raise ProtocolError(f"undecodable message ({type(error).__name__}: {error})") from None
    if not isinstance(message, dict) or message.get("kind") not in allowed:
        raise ProtocolError(f"unexpected message kind: {message.get('kind') if isinstance(message, dict) else type(message).__name__}")
    expected = allowed[message["kind"]] | {"kind"}
    extra = (optional or {}).get(message["kind"], set())
    if not expected <= set(message) <= expected | extra:
        raise ProtocolError(f"message '{message['kind']}' has keys {sorted(message)}, expected {sorted(expected)}"
                            + (f" and optionally {sorted(extra)}" if extra else ""))
    return message


def unpack_reply(data: bytes) -> dict:
    """A worker's reply, with every field of the type the protocol says."""
    message = unpack(data, REPLY_KEYS, REPLY_OPTIONAL)
    problem = reply_problem(message)
    if problem:
        raise ProtocolError(problem)
    return message


def reply_problem(message) -> str:
    """'' when `message` is a reply the protocol allows, every field of its type; else what is wrong."""
    kind = message.get("kind") if isinstance(message, dict) else None
    if not isinstance(kind, str) or kind not in REPLY_SCHEMA:
        return f"unexpected message kind: {kind if isinstance(message, dict) else type(message).__name__}"
    required, schema = set(REPLY_SCHEMA[kind]) | {"kind"}, {**REPLY_SCHEMA[kind], **REPLY_OPTIONAL_SCHEMA.get(kind, {})}
    if not required <= set(message) <= set(schema) | {"kind"}:
        return f"message '{kind}' has keys {sorted(map(str, message))}, expected {sorted(required)}"
    for key, spec in schema.items():
        if key in message and not conforms(message[key], spec):
            return f"field '{key}' of a '{kind}' reply is not of the protocol's type"
    return ""


def conforms(value, spec) -> bool:
    if isinstance(spec, dict):
        return (isinstance(value, dict) and set(value) == set(spec)
                and all(conforms(value[key], inner) for key, inner in spec.items()))
    if isinstance(spec, list):
        return isinstance(value, list) and all(conforms(item, spec[0]) for item in value)
    return type(value) is spec


def read_reply(conn, phase: str, deadline: float, kill, died) -> dict:
    """Host side: read one reply from a worker whose `conn` has data. A reply started but
    never finished must not hold the trusted side: at the deadline `kill()` ends the read
    with EOF, and a worker that went away is reported by `died(phase)`."""
    watchdog = threading.Timer(max(deadline - time.monotonic(), 0.01), kill)
    watchdog.start()
    try:
        data = conn.recv_bytes(MAX_REPLY_BYTES)
    except (EOFError, OSError):
        return died(phase)
    finally:
        watchdog.cancel()
    try:
        return unpack_reply(data)
    except ProtocolError as error:
        kill()
        return failure("crashed", phase, f"the worker sent a malformed reply: {error}")
