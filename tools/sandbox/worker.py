"""The sandbox worker: runs inside a fresh child process, imports one candidate, runs it
on the inputs the trusted side sends, and times it (then, for the check at a second size
set, may be asked to load the same candidate again with that size's init inputs).

It never sees a reference output and never judges: it returns outputs, inputs after the
call, timings and raw facts, and the trusted evaluator decides. Imports only the
standard library, torch, triton and numpy, so it runs unchanged in a bare CUDA image,
a Docker container, or a GPU box with no project dependencies.

Started by `tools/sandbox/process.py` (forked from a server that already imported
torch); `serve(conn, settings)` isolates the process (`tools/sandbox/confine.py`),
initialises the device, snapshots what the candidate could tamper with
(`tools/sandbox/audit.py`), says `ready`, then answers requests (`load`, `run`, `time`,
`profile`) until the pipe closes; `loaded`, `ran` and `timed` replies carry the audit.
"""
import ctypes
import gc
import importlib.util
import os
import resource
import signal
import sys
import tempfile
import time
import traceback

import torch

from tools.sandbox import audit, confine, privilege, seccomp
from tools.sandbox.precision import precision_flags, strict_precision_flags
from tools.sandbox.protocol import (REQUEST_KEYS, REQUEST_OPTIONAL, ProtocolError, failure, flatten_output, pack,
                                    unpack)
from tools.sandbox.shm import open_arena

# Taken before any candidate code runs, so a candidate that patches the public names
# cannot change the clock the worker reads.
_perf_counter = time.perf_counter
_Event = torch.cuda.Event
_current_stream = torch.cuda.current_stream
# The C base class's methods and the C synchronize: a candidate cannot patch them (the
# Python wrappers look names up at call time, so patching those would reach us).
_EventBase = getattr(torch._C, "_CudaEventBase", None)
if not hasattr(_EventBase, "record"):   # a CPU build of torch, where nothing is timed
    _EventBase = torch.cuda.Event
_record, _elapsed = _EventBase.record, _EventBase.elapsed_time
_synchronize = getattr(torch._C, "_cuda_synchronize", torch.cuda.synchronize)

PR_SET_PDEATHSIG = 1
CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
L2_FLUSH_BYTES = 256 * 1024 * 1024
LOG_NAME = "worker.log"
TRACEBACK_CHARS = 4000


def serve(conn, settings: dict) -> None:
    """Entry point of the child process; `settings` comes from the trusted parent."""
    isolation_note = isolate(settings)
    device = init_device(settings)
    uid, privilege_note = drop_privileges(settings)   # after the CUDA context exists, as Landlock
    fs_note = confine_filesystem(settings)   # after the CUDA context exists: its creation needs more of the OS
    isolation_note = "; ".join(note for note in (isolation_note, seccomp.restrict_sockets()) if note)
    strict_precision_flags()
    session = {"device": device, "model": None, "flags": precision_flags(), "flush": None,
               "auditor": audit.Auditor(sys.modules[__name__])}
    conn.send_bytes(pack({
        "kind": "ready", "pid": os.getpid(), "device": str(device),
        "network_isolated": isolation_note == "", "isolation_note": isolation_note,
        "fs_isolated": fs_note == "", "fs_note": fs_note, "uid": uid, "privilege_note": privilege_note,
    }))
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            request = unpack(data, REQUEST_KEYS, REQUEST_OPTIONAL)
        except ProtocolError as error:
            conn.send_bytes(pack(failure("crashed", "start", f"the trusted side sent a bad request: {error}")))
            return
        reply = handle(session, request)
        flush_output()   # what the candidate printed is in the log before the parent reads it
        conn.send_bytes(pack(reply))


# ----------------------------------------------------------------------------- isolation

def isolate(settings: dict) -> str:
    """Own process group, throw-away cwd, scrubbed env, rlimits, no network.
    Returns '' when the network is cut off, else why it is not."""
    os.setsid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)   # die with the fork server, hence with the trusted side
    os.chdir(settings["workdir"])
    log = os.open(LOG_NAME, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.environ.clear()
    os.environ.update(settings["env"])
    tempfile.tempdir = None     # an import in the fork server looked up /tmp: the worker's own is its TMPDIR
    sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != settings["workdir"]]
    set_limits(settings)
    audit.become_subreaper()
    return cut_network()


def drop_privileges(settings: dict) -> tuple[int, str]:
    """Become the worker's own user, in a private view of the mounts, when the trusted
    side asks and can (it is root): (uid, '') then, else (uid, why the worker kept the
    trusted side's user)."""
    if not settings.get("drop_privileges"):
        return os.getuid(), "the sandbox did not ask for a user of the worker's own"
    if not privilege.can_drop():
        return os.getuid(), f"the trusted side is not root: the worker shares its user (uid {os.getuid()})"
    privilege.private_view(confine.read_roots(write_roots(settings)))
    return privilege.drop(settings["workdir"], [os.path.join(settings["workdir"], LOG_NAME)]), ""


def write_roots(settings: dict) -> list[str]:
    """The working directory (which holds the compile caches), the arenas, the device files."""
    caches = [settings["cache_dir"]] if settings.get("cache_dir") else []
    return [settings["workdir"], "/dev/shm", "/dev", *caches]


def confine_filesystem(settings: dict) -> str:
    """Landlock: writes only to `write_roots`; reads only of the system, Python and
    those. '' when applied."""
    write = write_roots(settings)
    for cache in write[3:]:
        os.makedirs(cache, exist_ok=True)
    return confine.confine(write, confine.read_roots(write))


def set_limits(settings: dict) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    fsize = settings["max_file_bytes"]
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    if settings["host_memory_bytes"] and not settings["cuda"]:
        # An address-space cap breaks CUDA's large virtual reservations, so on a GPU the
        # parent enforces host memory by watching the resident set instead.
        cap = settings["host_memory_bytes"]
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def cut_network() -> str:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) == 0:
        return ""
    first = os.strerror(ctypes.get_errno())
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0:
        return ""
    second = os.strerror(ctypes.get_errno())
    return f"network namespace unavailable (unshare: {first}; as user namespace: {second})"


def init_device(settings: dict) -> torch.device:
    if not settings["cuda"]:
        return torch.device("cpu")
    torch.cuda.init()
    device = torch.device("cuda", settings["cuda_index"])
    torch.cuda.set_device(device)
    if settings["gpu_memory_fraction"]:
        torch.cuda.set_per_process_memory_fraction(settings["gpu_memory_fraction"], device)
    torch.zeros(1, device=device)   # creates the context now, before the confinement
    return device


def flags_changed(session: dict) -> list:
    now = precision_flags()
    return sorted(name for name, value in session["flags"].items() if now[name] != value)


# ----------------------------------------------------------------------------- requests

def handle(session: dict, request: dict) -> dict:
    handler = {"load": load, "run": run, "time": time_calls, "profile": profile_calls}[request["kind"]]
    try:
        reply = handler(session, request)
        if reply["kind"] in ("loaded", "ran", "timed"):
            reply["audit"] = session["auditor"].report(flags_changed(session), reply.pop("l2_persisting_bytes", None))
        return reply
    except BaseException as error:  # the candidate's failure is data; SystemExit too
        phase = "load" if request["kind"] == "load" else request["kind"]
        return failure(classify(error), phase, f"{type(error).__name__}: {error}"[:TRACEBACK_CHARS],
                       traceback.format_exc()[-TRACEBACK_CHARS:])


def load(session: dict, request: dict) -> dict:
    """Import the candidate and build its model from the request's init inputs. A second
    `load` (the check at a second size set, in the same process) imports it again as a fresh
    module; the first model and the memory it cached go first."""
    start = _perf_counter()
    if session["model"] is not None:
        session["model"] = None
        sys.modules.pop("kp_candidate", None)
        gc.collect()
        if session["device"].type == "cuda":
            torch.cuda.empty_cache()
    path = os.path.abspath("candidate.py")
    with open(path, "w") as handle_:
        handle_.write(request["source"])
    spec = importlib.util.spec_from_file_location("kp_candidate", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["kp_candidate"] = module
    spec.loader.exec_module(module)
    audit.wrap_extensions(os.environ.get("TORCH_EXTENSIONS_DIR"))
    cls = getattr(module, request["class_name"], None)
    if not isinstance(cls, type) or not issubclass(cls, torch.nn.Module):
        return failure("compile_error", "load",
                       f"the candidate defines no nn.Module subclass named {request['class_name']}", "")
    torch.manual_seed(42)  # the reference is built right after the same seed
    model = cls(*request["init_inputs"]).to(session["device"])
    session["model"] = torch.compile(model) if request["torch_compile"] else model
    return {"kind": "loaded", "seconds": _perf_counter() - start, "flags_changed": flags_changed(session)}


def run(session: dict, request: dict) -> dict:
    """One forward on views of the arena's inputs (the trusted side sees what the call
    did to them); the outputs are copied into the arena's slots."""
    model = require_model(session)
    arena = open_arena(request["arena"])
    inputs = [arena.view(ref) for ref in request["inputs"]]
    start = _perf_counter()
    with torch.no_grad():
        output = model(*inputs)
    sync(session)
    seconds = _perf_counter() - start
    meta = write_output(output, inputs, [arena.view(ref) for ref in request["output_slots"]])
    sync(session)
    return {"kind": "ran", "output_meta": meta, "seconds": seconds}


def time_calls(session: dict, request: dict) -> dict:
    """Warm-up, then `iters` calls, each on a private copy of its input set (the
    candidate never sees another set), L2 flushed before each, timed by CUDA events and
    by the host clock around a device-wide synchronize; the persisting-L2 limit is held
    at 0. With `sample_positions`, every call leaves its outputs' values at those secret
    positions in the arena, so every timed call is checked, not a known few."""
    model = require_model(session)
    if session["device"].type != "cuda":
        return failure("runtime_error", "time", "timing needs a CUDA device")
    arena = open_arena(request["arena"])
    sets = [[arena.view(ref) for ref in refs] for refs in request["input_sets"]]
    iters = request["iters"]
    schedule = request.get("schedule") or [i % len(sets) for i in range(iters)]
    slots = {index: [arena.view(ref) for ref in refs]
             for index, refs in zip(request["check_indices"], request["check_slots"])}
    sampler = Sampler(arena, request) if "sample_positions" in request else None
    flush = l2_flush(session)
    audit.clear_persisting_l2()
    with torch.no_grad():
        warm = sets[request["warmup_set"]] if "warmup_set" in request else None
        for i in range(request["warmup"]):
            model(*(warm or sets[schedule[i % len(schedule)]]))
        _synchronize()
        starts = [_Event(enable_timing=True) for _ in range(iters)]
        ends = [_Event(enable_timing=True) for _ in range(iters)]
        wall_ms, checked_meta, call_meta, l2_bytes = [], [], [], 0
        loop_start = _perf_counter()
        for i in range(iters):
            inputs = [x.clone() for x in sets[schedule[i]]]
            flush.zero_()
            _synchronize()
            t0 = _perf_counter()
            _record(starts[i], _current_stream())
            output = model(*inputs)
            _record(ends[i], _current_stream())
            _synchronize()  # device-wide: work on any stream is inside the wall time
            wall_ms.append((_perf_counter() - t0) * 1e3)
            if sampler is not None:
                call_meta.append(sampler.take(i, output, inputs))
            if i in slots:
                checked_meta.append({"index": i, "meta": write_output(output, inputs, slots[i])})
            l2_bytes = max(l2_bytes, audit.persisting_l2_bytes())
            del output, inputs
        loop_wall_s = _perf_counter() - loop_start
        _synchronize()
    reply = {
        "kind": "timed", "event_ms": [_elapsed(s, e) for s, e in zip(starts, ends)],
        "wall_ms": wall_ms, "loop_wall_s": loop_wall_s, "checked_meta": checked_meta,
        "flags_changed": flags_changed(session), "l2_persisting_bytes": l2_bytes,
    }
    if sampler is not None:
        reply["call_meta"] = call_meta
    return reply


def l2_flush(session: dict) -> torch.Tensor:
    if session["flush"] is None:
        session["flush"] = torch.empty(L2_FLUSH_BYTES, dtype=torch.uint8, device=session["device"])
    return session["flush"]


class Sampler:
    """Copies each call's outputs at the trusted side's secret flat positions into the
    call's sample slots; the trusted side compares them with the reference's."""

    def __init__(self, arena, request: dict):
        self.positions = [arena.view(ref) for ref in request["sample_positions"]]
        self.needed = [int(p.max()) + 1 if p.numel() else 0 for p in self.positions]
        self.slots = [[arena.view(ref) for ref in refs] for refs in request["sample_slots"]]

    def take(self, call: int, output, inputs: list) -> dict:
        meta = describe_output(output, inputs)
        _, values = flatten_output(output)
        for item, value, positions, needed, slot in zip(meta["items"], values, self.positions, self.needed,
                                                         self.slots[call]):
            if item["type"] == "torch.Tensor" and value.dtype == slot.dtype and value.device == positions.device \
                    and value.numel() >= needed:
                slot.copy_(value.detach().reshape(-1).index_select(0, positions))
                item["written"] = True
        return meta


def profile_calls(session: dict, request: dict) -> dict:
    """The kernels `calls` forwards launch on the GPU, by name: launches and device time
    (torch.profiler over CUPTI), after one warm-up call."""
    from torch.profiler import ProfilerActivity, profile

    model = require_model(session)
    if session["device"].type != "cuda":
        return failure("runtime_error", "profile", "profiling needs a CUDA device")
    arena = open_arena(request["arena"])
    inputs = [arena.view(ref) for ref in request["inputs"]]
    with torch.no_grad():
        model(*inputs)
        _synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(request["calls"]):
                model(*inputs)
            _synchronize()
    kernels = []
    for event in prof.key_averages():
        device_us = float(getattr(event, "device_time_total", 0.0) or getattr(event, "cuda_time_total", 0.0))
        if device_us > 0:
            kernels.append({"name": str(event.key)[:200], "count": int(event.count), "device_us": device_us})
    return {"kind": "profiled", "calls": request["calls"], "kernels": kernels}


# ----------------------------------------------------------------------------- helpers

def flush_output() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):  # the candidate closed or replaced it
            pass


def sync(session: dict) -> None:
    if session["device"].type == "cuda":
        _synchronize()


def require_model(session: dict):
    if session["model"] is None:
        raise RuntimeError("no candidate loaded")
    return session["model"]


def write_output(output, inputs: list, slots: list) -> dict:
    """Copy each output tensor into its slot when type, dtype and shape fit, and return
    the facts the trusted side checks (`describe_output`), `written` set where copied."""
    meta = describe_output(output, inputs)
    _, values = flatten_output(output)
    for index, (value, item) in enumerate(zip(values, meta["items"])):
        slot = slots[index] if index < len(slots) else None
        if item["type"] == "torch.Tensor" and slot is not None and value.dtype == slot.dtype \
                and value.shape == slot.shape:
            slot.copy_(value.detach())
            item["written"] = True
    return meta


def describe_output(output, inputs: list) -> dict:
    """The container, and for each item its exact type, device, dtype, shape and storage
    sharing with an input; `written` False until a copy lands in the arena."""
    container, values = flatten_output(output)
    input_storages = {x.untyped_storage().data_ptr() for x in inputs if x.numel() > 0}
    meta = {"container": container, "items": []}
    for value in values:
        exact = type(value) is torch.Tensor
        meta["items"].append({
            "type": f"{type(value).__module__}.{type(value).__qualname__}",
            "device": str(value.device) if exact else "",
            "dtype": str(value.dtype) if exact else "",
            "shape": list(value.shape) if exact else [],
            "shares_input_storage": exact and value.numel() > 0
            and value.untyped_storage().data_ptr() in input_storages,
            "written": False,
        })
    return meta


def classify(error: BaseException) -> str:
    if isinstance(error, SyntaxError):
        return "compile_error"
    if "Error building extension" in str(error):  # torch.utils.cpp_extension
        return "compile_error"
    try:
        from triton.compiler.errors import CompilationError
    except ImportError:
        return "runtime_error"
    return "compile_error" if isinstance(error, CompilationError) else "runtime_error"

