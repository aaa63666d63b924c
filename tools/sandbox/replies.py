"""A worker's replies as the trusted side reads them: parsed once into frozen records.

The wire stays the protocol's dicts (`tools/sandbox/protocol.py`: the worker side is
stdlib and torch only); `parse_reply` turns one into a `Ready`, `Loaded`, `Ran`,
`TimedReply`, `Profiled` or `Failure`, and the evaluator, timing and baselines read
attributes afterwards. A reply crossed from the candidate's process, so what is not
what the protocol says becomes a `Failure`, never an exception here: `crashed` for a
malformed reply or an answer to another question, `rejected` for a forged failure
record (a status a failure cannot have, an unknown phase). Every string of a reply (a
failure's message and traceback, thread and kernel names, isolation notes) is cleaned first
(`tools/safe_text.py`: no terminal escapes, no control characters, no secrets of ours).

    reply = ask(worker, load_request(source, "ModelNew", []), limits.load_s)
    if isinstance(reply, Failure):
        print(reply.status, reply.message)

Trusted side only: the worker never imports this module.
"""
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from tools.records import EvalStatus, Phase
from tools.safe_text import clean, neutralise, redact, secrets
from tools.sandbox.protocol import expect, reply_problem

WORKER_FAILURES = {EvalStatus.COMPILE_ERROR, EvalStatus.RUNTIME_ERROR, EvalStatus.CRASHED, EvalStatus.TIMEOUT}


class ReplyKind(StrEnum):
    READY = "ready"
    LOADED = "loaded"
    RAN = "ran"
    TIMED = "timed"
    PROFILED = "profiled"
    FAILURE = "failure"


ANSWERS = {"load": ReplyKind.LOADED, "run": ReplyKind.RAN, "time": ReplyKind.TIMED, "profile": ReplyKind.PROFILED}


@dataclass(frozen=True)
class Launch:
    name: str                 # the kernel (a Triton function, an extension's entry point, a graph replay)
    own: bool                 # defined by the candidate's module
    count: int                # launches during the request


@dataclass(frozen=True)
class Audit:
    """What the worker saw the candidate do to its process during one request."""

    tampered: tuple[str, ...]         # timers, torch or worker functions replaced
    threads: tuple[str, ...]          # Python threads still running after the call
    native_threads: int
    children: tuple[int, ...]         # child processes left running
    flags_changed: tuple[str, ...]    # global precision flags
    launches: tuple[Launch, ...]
    l2_persisting_bytes: int          # the persisting-L2 limit (GPU; -1 unknown)


@dataclass(frozen=True)
class OutputItem:
    type: str                 # the exact class, "torch.Tensor" for a plain tensor
    device: str
    dtype: str
    shape: tuple[int, ...]
    shares_input_storage: bool
    written: bool             # the worker copied it into its arena slot


@dataclass(frozen=True)
class OutputMeta:
    """The worker's facts about what one forward returned (the values are in the arena)."""

    container: str            # "tensor", "tuple" or "list"
    items: tuple[OutputItem, ...]


@dataclass(frozen=True)
class CheckedCall:
    index: int                # the timed call whose whole outputs came back
    meta: OutputMeta


@dataclass(frozen=True)
class KernelTime:
    name: str
    count: int
    device_us: float


@dataclass(frozen=True)
class Ready:
    kind: ClassVar[ReplyKind] = ReplyKind.READY
    pid: int
    device: str
    network_isolated: bool
    isolation_note: str       # why the network is not cut off ('' when it is)
    fs_isolated: bool = False  # writes confined to the scratch folder; an older worker does not say: not
    fs_note: str = "the worker did not report filesystem confinement"
    uid: int = -1              # the user the candidate runs as
    privilege_note: str = "the worker did not report its user"   # '' when it has a user of its own


@dataclass(frozen=True)
class Loaded:
    kind: ClassVar[ReplyKind] = ReplyKind.LOADED
    seconds: float
    flags_changed: tuple[str, ...]    # precision flags the import changed
    audit: Audit | None = None        # None: the worker itself was tampered with


@dataclass(frozen=True)
class Ran:
    kind: ClassVar[ReplyKind] = ReplyKind.RAN
    seconds: float
    output_meta: OutputMeta
    audit: Audit | None = None


@dataclass(frozen=True)
class TimedReply:
    kind: ClassVar[ReplyKind] = ReplyKind.TIMED
    event_ms: tuple[float, ...]       # per timed call, CUDA events
    wall_ms: tuple[float, ...]        # per timed call, host clock around a synchronize
    loop_wall_s: float
    checked_meta: tuple[CheckedCall, ...]
    flags_changed: tuple[str, ...]
    audit: Audit | None = None
    call_meta: tuple[OutputMeta, ...] | None = None   # every timed call's outputs (None: not sent)


@dataclass(frozen=True)
class Profiled:
    kind: ClassVar[ReplyKind] = ReplyKind.PROFILED
    calls: int
    kernels: tuple[KernelTime, ...]


@dataclass(frozen=True)
class Failure:
    kind: ClassVar[ReplyKind] = ReplyKind.FAILURE
    status: EvalStatus
    phase: Phase | None       # None for a forged record
    message: str
    traceback: str = ""


Reply = Ready | Loaded | Ran | TimedReply | Profiled | Failure


def ask(worker, request: dict, timeout: float) -> Reply:
    """Send one request to a worker (`tools/sandbox/contracts.py`) and parse its answer."""
    return parse_reply(worker.call(request, timeout), ANSWERS[request["kind"]], Phase(request["kind"]))


def parse_reply(message, expected: ReplyKind, phase: Phase) -> Reply:
    """The typed record of a wire reply that should be `expected` (or a failure)."""
    problem = reply_problem(message)
    if problem:
        return Failure(EvalStatus.CRASHED, phase, clean(f"the worker sent a malformed reply: {problem}"))
    message = expect(cleaned(message), expected, phase)
    return PARSERS[ReplyKind(message["kind"])](message)


def cleaned(value, found: dict[str, str] | None = None):
    """A wire value with each string in it cleaned (the candidate wrote them); the
    secrets are looked up once per reply (a timed reply holds hundreds of strings)."""
    found = secrets() if found is None else found
    if isinstance(value, str):
        return redact(neutralise(value), found)
    if isinstance(value, dict):
        return {key: cleaned(item, found) for key, item in value.items()}
    if isinstance(value, list):
        return [cleaned(item, found) for item in value]
    return value


def parse_ready(message: dict) -> Ready:
    return Ready(**{key: value for key, value in message.items() if key != "kind"})


def parse_failure(message: dict) -> Failure:
    """A status a failure cannot have, or an unknown phase, is a forgery and itself the verdict."""
    phases = {p.value: p for p in Phase}
    if message["status"] not in {s.value for s in WORKER_FAILURES} or message["phase"] not in phases:
        return Failure(EvalStatus.REJECTED, None, f"forged failure record from the worker "
                                                  f"(status {message['status']!r})", message["traceback"])
    return Failure(EvalStatus(message["status"]), phases[message["phase"]], message["message"], message["traceback"])


def parse_audit(audit: dict | None) -> Audit | None:
    if audit is None:
        return None
    return Audit(tuple(audit["tampered"]), tuple(audit["threads"]), audit["native_threads"], tuple(audit["children"]),
                 tuple(audit["flags_changed"]), tuple(Launch(**launch) for launch in audit["launches"]),
                 audit["l2_persisting_bytes"])


def parse_output_meta(meta: dict) -> OutputMeta:
    items = tuple(OutputItem(**{**item, "shape": tuple(item["shape"])}) for item in meta["items"])
    return OutputMeta(meta["container"], items)


def parse_loaded(message: dict) -> Loaded:
    return Loaded(message["seconds"], tuple(message["flags_changed"]), parse_audit(message.get("audit")))


def parse_ran(message: dict) -> Ran:
    return Ran(message["seconds"], parse_output_meta(message["output_meta"]), parse_audit(message.get("audit")))


def parse_timed(message: dict) -> TimedReply:
    checked = tuple(CheckedCall(entry["index"], parse_output_meta(entry["meta"])) for entry in message["checked_meta"])
    calls = message.get("call_meta")
    return TimedReply(tuple(message["event_ms"]), tuple(message["wall_ms"]), message["loop_wall_s"], checked,
                      tuple(message["flags_changed"]), parse_audit(message.get("audit")),
                      None if calls is None else tuple(parse_output_meta(meta) for meta in calls))


def parse_profiled(message: dict) -> Profiled:
    return Profiled(message["calls"], tuple(KernelTime(**kernel) for kernel in message["kernels"]))


PARSERS = {ReplyKind.READY: parse_ready, ReplyKind.LOADED: parse_loaded, ReplyKind.RAN: parse_ran,
           ReplyKind.TIMED: parse_timed, ReplyKind.PROFILED: parse_profiled, ReplyKind.FAILURE: parse_failure}
