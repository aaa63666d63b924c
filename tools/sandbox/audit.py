"""What a candidate did to its own process, seen from inside the sandbox worker.

After every request the worker reports raw facts (the trusted side judges them):
- `tampered`: functions the timing and checking depend on (time.*, torch.cuda.Event and
  its methods, torch.cuda.synchronize, torch.Tensor methods, torch.nn.Module.__call__,
  builtins, the worker's own modules, Triton's launch entry points) that were replaced,
  added or removed since the snapshot taken before the candidate was imported;
- `threads`: Python threads still alive that were not there before the candidate;
- `native_threads`: the kernel's thread count of the process (torch's own pools included);
- `children`: processes still parented to the worker (it is a child subreaper, so even a
  double-forked, setsid-detached daemon is re-parented here and counted), and every other
  process of the worker's own user;
- `launches`: the kernels launched since the last request, by Triton function or
  load_inline extension function (a CUDA graph's replay counts the launches made while
  it was captured); `own` when the candidate's module defined it;
- `l2_persisting_bytes`: how far the candidate raised the persisting-L2 limit (above the
  driver's default; in the timed loop, above the 0 it was forced to; -1 without CUDA).

Imports only the standard library, torch and triton: it runs inside the sandbox.
"""
import builtins
import ctypes
import functools
import os
import sys
import time
import types

import torch

from tools.sandbox import precision, privilege, protocol, shm

CANDIDATE_MODULE = "kp_candidate"
PR_SET_CHILD_SUBREAPER = 36
CU_LIMIT_PERSISTING_L2_CACHE_SIZE = 0x06

_launches: dict[tuple[str, bool], int] = {}


# ----------------------------------------------------------------------------- provenance

def _kernel_name(jit_function) -> tuple[str, bool]:
    fn = getattr(jit_function, "fn", None)
    module = getattr(fn, "__module__", "") or ""
    name = f"{module}.{getattr(fn, '__qualname__', type(jit_function).__name__)}"
    return name, module == CANDIDATE_MODULE


def _counting_run(original):
    @functools.wraps(original)
    def run(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        key = _kernel_name(self)   # counted once the launch returned: a kernel that raised did not run
        _launches[key] = _launches.get(key, 0) + 1
        return result
    run.__kp_launch_hook__ = True
    return run


def _counting_extension_call(module_name: str, name: str, function):
    @functools.wraps(function)
    def call(*args, **kwargs):
        result = function(*args, **kwargs)
        key = (f"ext:{module_name}.{name}", True)
        _launches[key] = _launches.get(key, 0) + 1
        return result
    return call


def _wrap_extension(module):
    """The functions of a module built by load_inline/load, counted when called."""
    for name, value in list(vars(module).items()):
        if not name.startswith("_") and callable(value) and not isinstance(value, type):
            setattr(module, name, _counting_extension_call(module.__name__, name, value))
    return module


_capturing: dict[int, dict[tuple[str, bool], int]] = {}    # graph id -> the counts when its capture began
_captured: dict[int, dict[tuple[str, bool], int]] = {}     # graph id -> the launches recorded into it


def _counting_capture_begin(original):
    @functools.wraps(original)
    def capture_begin(self, *args, **kwargs):
        _capturing[id(self)] = dict(_launches)
        return original(self, *args, **kwargs)
    capture_begin.__kp_launch_hook__ = True
    return capture_begin


def _counting_capture_end(original):
    """The launches made during the capture were recorded, not run: they move from the
    counts to the graph, and each replay runs them."""
    @functools.wraps(original)
    def capture_end(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        before = _capturing.pop(id(self), {})
        recorded = {key: count - before.get(key, 0) for key, count in _launches.items() if count > before.get(key, 0)}
        for key, count in recorded.items():
            _launches[key] -= count
        _captured[id(self)] = recorded
        return result
    capture_end.__kp_launch_hook__ = True
    return capture_end


def _counting_replay(original):
    @functools.wraps(original)
    def replay(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        for key, count in _captured.get(id(self), {}).items():
            _launches[key] = _launches.get(key, 0) + count
        return result
    replay.__kp_launch_hook__ = True
    return replay


def install_launch_hooks() -> None:
    """Count Triton launches, compiled and interpreted, and the ones a CUDA graph replays
    (those made while it was captured); idempotent."""
    from triton.runtime import interpreter, jit

    for cls in (jit.JITFunction, interpreter.InterpretedFunction):
        if not getattr(cls.run, "__kp_launch_hook__", False):
            cls.run = _counting_run(cls.run)
    graph = torch.cuda.CUDAGraph
    for name, hook in (("capture_begin", _counting_capture_begin), ("capture_end", _counting_capture_end),
                       ("replay", _counting_replay)):
        if not getattr(getattr(graph, name), "__kp_launch_hook__", False):
            setattr(graph, name, hook(getattr(graph, name)))


def wrap_extensions(folder: str | None) -> None:
    """Count calls into the modules load_inline/load built under `folder` (run after the
    candidate's import built them; the candidate calls them through the module)."""
    if not folder:
        return
    root = os.path.realpath(folder)
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None) or ""
        if path and os.path.realpath(path).startswith(root + os.sep) and not getattr(module, "__kp_counted__", False):
            _wrap_extension(module)
            module.__kp_counted__ = True


def take_launches() -> list[dict]:
    taken = [{"name": name[:200], "own": own, "count": count} for (name, own), count in sorted(_launches.items())]
    _launches.clear()
    return taken


# ----------------------------------------------------------------------------- integrity

def _watched_owners(worker) -> dict[str, object]:
    from triton.runtime import interpreter, jit

    return {
        "time": time, "builtins": builtins, "torch": torch, "torch._C": torch._C, "torch.Tensor": torch.Tensor,
        "torch.nn.Module": torch.nn.Module, "torch.nn.functional": torch.nn.functional,
        "torch.cuda": torch.cuda, "torch.cuda.Event": torch.cuda.Event, "torch.cuda.Stream": torch.cuda.Stream,
        "torch.cuda.streams": torch.cuda.streams, "torch.cuda.CUDAGraph": torch.cuda.CUDAGraph,
        "triton.JITFunction": jit.JITFunction,
        "triton.InterpretedFunction": interpreter.InterpretedFunction,
        "tools.sandbox.worker": worker, "tools.sandbox.protocol": protocol, "tools.sandbox.shm": shm,
        "tools.sandbox.precision": precision,
        "tools.sandbox.audit": sys.modules[__name__],
    }


def _callables(owner) -> dict[str, object]:
    # vars(), not getattr: reading an attribute may import a lazy submodule
    return {name: value for name, value in vars(owner).items()
            if callable(value) and not isinstance(value, types.ModuleType)}


class Integrity:
    """A snapshot of the watched functions (the worker's own module among them, handed in by
    the worker, which imports this module); `changes()` names what differs now."""

    def __init__(self, worker):
        self.owners = _watched_owners(worker)
        self.snapshot = {label: _callables(owner) for label, owner in self.owners.items()}
        self.modules = {name: sys.modules.get(name) for name in ("time", "torch", "builtins", "tools.sandbox.worker")}

    def changes(self) -> list[str]:
        found = [f"sys.modules['{name}'] (replaced)" for name, module in self.modules.items()
                 if sys.modules.get(name) is not module]
        for label, owner in self.owners.items():
            before, now = self.snapshot[label], _callables(owner)
            found += [f"{label}.{name} (replaced)" for name, value in before.items()
                      if name in now and now[name] is not value]
            found += [f"{label}.{name} (removed)" for name in before if name not in now]
            found += [f"{label}.{name} (added)" for name in now if name not in before]
        return sorted(found)[:50]


# ----------------------------------------------------------------------------- processes

def become_subreaper() -> None:
    """Orphans of the candidate's children are re-parented to the worker, not to init."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def python_threads() -> set[int]:
    # every thread with a Python thread state, `_thread.start_new_thread` ones included
    return set(sys._current_frames())


def native_thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


def live_children() -> list[int]:
    """Processes the candidate left running, zombies left out: those whose parent is this
    one and, when the worker has a user of its own, every other process of that user
    (whatever its parent: a chain that detached itself from the subreaper too)."""
    me, uid, found = os.getpid(), os.getuid(), []
    own_user = privilege.is_worker_uid(uid)
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            if fields[0] == "Z":
                continue
            if int(fields[1]) == me or (own_user and int(privilege.proc_status(entry)["Uid"].split()[0]) == uid):
                found.append(int(entry))
        except (OSError, IndexError, KeyError, ValueError):
            continue
    return sorted(found)


# ----------------------------------------------------------------------------- persisting L2

@functools.lru_cache(maxsize=1)
def _libcuda():
    try:
        return ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None


def persisting_l2_bytes() -> int:
    """The current context's persisting-L2 limit; -1 without CUDA."""
    lib = _libcuda() if torch.cuda.is_initialized() else None
    if lib is None:
        return -1
    value = ctypes.c_size_t(0)
    if lib.cuCtxGetLimit(ctypes.byref(value), CU_LIMIT_PERSISTING_L2_CACHE_SIZE) != 0:
        return -1
    return int(value.value)


def clear_persisting_l2() -> None:
    """No L2 lines may persist across the flush between timed calls."""
    lib = _libcuda() if torch.cuda.is_initialized() else None
    if lib is not None:
        lib.cuCtxSetLimit(CU_LIMIT_PERSISTING_L2_CACHE_SIZE, ctypes.c_size_t(0))
        lib.cuCtxResetPersistingL2Cache()


# ----------------------------------------------------------------------------- the report

class Auditor:
    """Baselines taken before the candidate loads; `report()` after each request."""

    def __init__(self, worker):
        install_launch_hooks()
        self.integrity = Integrity(worker)
        self.threads = python_threads()
        self.l2_default = persisting_l2_bytes()   # the driver's own default is not zero (H100: 9.4 MiB)
        take_launches()

    def l2_raised(self) -> int:
        """The persisting-L2 limit above the driver's default (0 when not raised; -1 without CUDA)."""
        now = persisting_l2_bytes()
        return now if now < 0 else max(0, now - self.l2_default)

    def report(self, flags_changed: list, l2_bytes: int | None = None) -> dict:
        """`l2_bytes`: the timed loop's own reading (it forced the limit to 0 first)."""
        import threading

        extra = python_threads() - self.threads
        names = {thread.ident: thread.name for thread in threading.enumerate()}
        return {
            "tampered": self.integrity.changes(),
            "threads": sorted(names.get(ident, f"thread {ident}") for ident in extra),
            "native_threads": native_thread_count(),
            "children": live_children(),
            "flags_changed": list(flags_changed),
            "launches": take_launches(),
            "l2_persisting_bytes": self.l2_raised() if l2_bytes is None else l2_bytes,
        }
