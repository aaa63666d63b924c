"""The process sandbox: every candidate runs in a fresh child process.

Children are forked from a fork server that imported torch and triton once (so a child
starts in milliseconds) and never touched CUDA (so each child initialises its own CUDA
context). The fork server starts when the first `ProcessSandbox` is constructed; a GPU
sandbox refuses to start it in a process that already initialised CUDA (open the sandbox
before touching CUDA). A small pool keeps `warm` children started and initialised ahead of need;
each child serves exactly one candidate and is then killed with its whole process
group. What a child gets: its own session and process group, a throw-away working
directory, a scrubbed environment, no network (a network namespace where the OS
allows it; `network_isolated` says whether it did), core dumps off, a file-size cap,
an address-space cap on CPU, a GPU memory fraction, and a resident-memory watchdog
plus wall-clock limits enforced from here.

The fork server itself starts with the scrubbed environment, so no secret of the
trusted process is in a child's memory or /proc/self/environ. A child dies with the
fork server (PR_SET_PDEATHSIG), which dies at once with the trusted process
(`tools/sandbox/forkserver_guard.py`).

The worker is a child subreaper, so children the candidate detaches into a new session
stay its descendants; closing a worker kills every descendant, then the process group.
Under a root trusted side each worker is a user of its own (`tools/sandbox/privilege.py`):
closing it also kills every process of that user and removes its files in /dev/shm
(`tools/sandbox/leftovers.py`), and a host arena is handed to that user alone. The
worker confines itself with Landlock (`tools/sandbox/confine.py`) and a seccomp socket
filter (`tools/sandbox/seccomp.py`). Compile caches (Triton, Inductor, extensions) are
the evaluation's own, in its working directory.

Not covered here (see tools/THREAT_MODEL.md): a trusted side that is not root (the
worker then shares its user, and results are flagged `shared_user`).
"""
import atexit
import ctypes
import multiprocessing
import multiprocessing.connection
import multiprocessing.forkserver
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import torch

from tools.records import Phase
from tools.sandbox import forkserver_guard, leftovers
from tools.sandbox.contracts import GiB, Limits, SandboxError, SandboxKind, scrubbed_env
from tools.sandbox.logs import log_tail
from tools.sandbox.privilege import can_drop, worker_uid
from tools.sandbox.protocol import failure, pack, read_reply
from tools.sandbox.replies import Ready, ReplyKind, parse_reply

POLL_S = 0.2
WORKER_USER = "kernelpilot-worker"
_context = None
_context_interprets: bool | None = None
_live_workers: set = set()


def forkserver_context(interpret: bool):
    """One fork server per trusted process, with torch and triton imported.

    Triton decides at import whether its own `@jit` helpers (`tl.sum`, `tl.max`, ...)
    are interpreted, so in cpu-interpreter mode `TRITON_INTERPRET=1` must be in the
    environment the fork server starts with; one process serves one mode."""
    global _context, _context_interprets
    if _context is None:
        refuse_after_cuda(interpret)
        _context = multiprocessing.get_context("forkserver")
        # not torch.utils.cpp_extension: importing it asks CUDA for devices, and a fork
        # server that touched CUDA cannot hand CUDA to its children
        _context.set_forkserver_preload(["torch", "triton", "triton.language", "tools.sandbox.worker",
                                         "tools.sandbox.forkserver_guard"])
        _start_scrubbed(interpret)
        _context_interprets = interpret
    if interpret != _context_interprets:
        raise SandboxError("this process's fork server serves the other mode (GPU vs Triton interpreter): "
                           "use one device mode per process")
    return _context


def refuse_after_cuda(interpret: bool) -> None:
    """A GPU fork server must start before this process initialises CUDA: open the
    sandbox (the runtime) first, then detect the device. The interpreter's children
    never touch CUDA, so a CPU sandbox may start at any time."""
    if not interpret and torch.cuda.is_initialized():
        raise SandboxError("this process initialised CUDA before it opened its process sandbox: open the sandbox "
                           "(the runtime) before touching CUDA (before tools.device.detect(), before any tensor "
                           "on the GPU), so that its fork server starts from a process without a CUDA context")


def _start_scrubbed(interpret: bool) -> None:
    saved, behind = dict(os.environ), _set_behind_os_environ()
    try:
        for name in behind:     # the fork server inherits the C library's environment, not os.environ
            os.unsetenv(name)
        os.environ.clear()
        os.environ.update(scrubbed_env(), **({"TRITON_INTERPRET": "1"} if interpret else {}))
        on_main = threading.current_thread() is threading.main_thread()
        os.environ[forkserver_guard.GUARD_ENV] = f"{os.getpid()}" + ("" if on_main else ":thread")
        multiprocessing.forkserver.ensure_running()
    finally:
        os.environ.clear()
        os.environ.update(saved)
        for name, value in behind.items():
            os.putenv(name, value)


def _set_behind_os_environ() -> dict[bytes, bytes]:
    """Variables of the C library's environment that os.environ does not hold: set by a
    library behind Python's back (readline sets LINES and COLUMNS), so clearing os.environ
    leaves them in place."""
    entries = ctypes.POINTER(ctypes.c_char_p).in_dll(ctypes.CDLL(None), "environ")
    known, behind, index = {name.encode() for name in os.environ}, {}, 0
    while entries[index] is not None:
        name, _, value = entries[index].partition(b"=")
        if name not in known:
            behind[name] = value
        index += 1
    return behind


@atexit.register
def _kill_leftovers() -> None:
    for worker in list(_live_workers):
        worker.close()


class ProcessWorker:
    """One child process serving one candidate; talk to it with `call`."""

    def __init__(self, cuda_index: int | None, limits: Limits):
        self.limits = limits
        self.workdir = tempfile.mkdtemp(prefix=leftovers.workdir_prefix())
        self.ready: Ready | None = None
        self.uid: int | None = None
        self._sender: threading.Thread | None = None
        try:
            context = forkserver_context(interpret=cuda_index is None)
            self.conn, child_conn = context.Pipe()
            self.process = context.Process(target=_serve, args=(child_conn, self._settings(cuda_index)))
            self.process.start()
            self.uid = worker_uid(self.process.pid) if can_drop() else None
        except BaseException:
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise
        child_conn.close()
        _live_workers.add(self)

    def _settings(self, cuda_index: int | None) -> dict:
        # Compile caches are the evaluation's own: a shared one would let a candidate plant
        # a compiled kernel that a later candidate or a baseline loads.
        work = Path(self.workdir)
        env = scrubbed_env()
        # A user name that needs no passwd entry: the worker's uid has none, and getpass (which
        # torch.compile calls) reads these before asking the user database.
        env.update(HOME=self.workdir, TMPDIR=self.workdir, LANG="C.UTF-8", PYTHONDONTWRITEBYTECODE="1",
                   USER=WORKER_USER, LOGNAME=WORKER_USER,
                   TRITON_CACHE_DIR=str(work / "triton"), TORCHINDUCTOR_CACHE_DIR=str(work / "inductor"),
                   TORCH_EXTENSIONS_DIR=str(work / "torch_extensions"),
                   # no pool of compile subprocesses: every child process left running is the candidate's
                   TORCHINDUCTOR_COMPILE_THREADS="1")
        if cuda_index is None:
            env["TRITON_INTERPRET"] = "1"
        return {
            "workdir": self.workdir, "env": env, "cuda": cuda_index is not None,
            "cuda_index": cuda_index or 0, "gpu_memory_fraction": self.limits.gpu_memory_fraction,
            "host_memory_bytes": self.limits.host_memory_bytes, "max_file_bytes": self.limits.max_file_bytes,
            "cache_dir": "", "drop_privileges": True,
        }

    def wait_ready(self) -> Ready:
        """The child's `ready` message (isolation facts); raises SandboxError if it never comes."""
        if self.ready is None:
            reply = parse_reply(self._receive(self.limits.start_s, "start"), ReplyKind.READY, Phase.START)
            if not isinstance(reply, Ready):
                log = self.log_tail()
                self.close()
                raise SandboxError(f"sandbox worker failed to start: {reply.message}\n{log}")
            self.ready = reply
        return self.ready

    def alive(self) -> bool:
        return self.process.is_alive()

    def call(self, request: dict, timeout: float) -> dict:
        """Send one request; the reply, or a `failure` record for a crash or a timeout."""
        self.wait_ready()
        self._hand_over_arena(request)
        deadline = time.monotonic() + timeout
        self._sender = threading.Thread(target=self._send, args=(pack(request),), daemon=True)
        self._sender.start()
        self._sender.join(timeout)
        if self._sender.is_alive():  # the child stopped reading: it hangs in some thread
            self.kill()
            return failure("timeout", request["kind"], f"did not accept the '{request['kind']}' request within {timeout:.0f} s")
        return self._receive(max(deadline - time.monotonic(), 0.01), request["kind"])

    def _hand_over_arena(self, request: dict) -> None:
        """A host arena is the trusted side's file (mode 0600): this worker's user alone
        may open it, so no other worker can read or scribble on it."""
        arena = request.get("arena")
        if self.uid is not None and arena and arena.get("kind") == "file":
            os.chown(arena["path"], self.uid, self.uid)

    def _send(self, data: bytes) -> None:
        try:
            self.conn.send_bytes(data)
        except OSError:
            pass  # the child is gone; _receive reports how it ended

    def _receive(self, timeout: float, phase: str) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            ready = multiprocessing.connection.wait([self.conn, self.process.sentinel], POLL_S)
            if self.conn in ready or self.conn.poll(0):
                return self._read_reply(phase, deadline)
            if self.process.sentinel in ready:
                return self._died(phase)
            over = self._memory_over()
            if over:
                self.kill()
                return failure("crashed", phase, over)
            if time.monotonic() > deadline:
                self.kill()
                return failure("timeout", phase, f"no answer within {timeout:.0f} s (wall-clock limit)")

    def _read_reply(self, phase: str, deadline: float) -> dict:
        return read_reply(self.conn, phase, deadline, self.kill, self._died)

    def _died(self, phase: str) -> dict:
        self.process.join(5)
        code = self.process.exitcode
        if code is not None and code < 0:
            how = f"killed by signal {signal.Signals(-code).name}"
        else:
            how = f"exited with code {code}"
        return failure("crashed", phase, f"the worker process {how} during '{phase}'")

    def _memory_over(self) -> str:
        cap = self.limits.host_memory_bytes
        rss = _resident_bytes(self.process.pid)
        return f"host memory {rss / GiB:.1f} GiB over the {cap / GiB:.1f} GiB cap" if cap and rss > cap else ""

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the child's stdout and stderr, read safely."""
        return log_tail(Path(self.workdir) / "worker.log", chars)

    def kill(self) -> None:
        pid = self.process.pid
        kill_descendants(pid)
        if self.uid is not None:
            leftovers.kill_user(self.uid)   # the candidate's processes, wherever they hid
        for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
            try:
                kill()
            except (ProcessLookupError, PermissionError):
                pass
        self.process.join(10)

    def close(self) -> None:
        """Kill the process group and remove the working directory (every path, failures too)."""
        self.kill()
        if self._sender is not None:
            self._sender.join(10)   # the kill broke its pipe; the fd must not close under it
        self.conn.close()
        shutil.rmtree(self.workdir, ignore_errors=True)
        if self.uid is not None:
            leftovers.kill_user(self.uid)
            leftovers.remove_owned(self.uid)
        _live_workers.discard(self)


def _serve(conn, settings: dict) -> None:
    from tools.sandbox.worker import serve  # already imported by the fork server

    serve(conn, settings)


def descendants(pid: int) -> list[int]:
    """Every live process below `pid`, by parent links read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, queue = [], list(children.get(pid, []))
    while queue:
        child = queue.pop()
        found.append(child)
        queue.extend(children.get(child, []))
    return found


def kill_descendants(pid: int, rounds: int = 3) -> None:
    """SIGKILL the worker's descendants, detached ones included (the worker is their
    subreaper); a few rounds, since a forking child may add more while we look."""
    for _ in range(rounds):
        found = descendants(pid)
        if not found:
            return
        for child in found:
            try:
                os.kill(child, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _resident_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0


class ProcessSandbox:
    """Hands out fresh workers, keeping `warm` of them started ahead of need (0: start
    each on demand, for a single evaluation)."""

    backend = SandboxKind.PROCESS

    def __init__(self, cuda_index: int | None, limits: Limits = Limits(), warm: int = 1):
        self.cuda_index, self.limits, self.warm = cuda_index, limits, warm
        self._pool: list[ProcessWorker] = []
        forkserver_context(interpret=cuda_index is None)   # now, before the caller can initialise CUDA
        leftovers.sweep_stale()

    def worker(self) -> ProcessWorker:
        worker = self._pool.pop(0) if self._pool else ProcessWorker(self.cuda_index, self.limits)
        if not worker.alive():  # killed while it waited (the OOM killer, a previous candidate)
            worker.close()
            worker = ProcessWorker(self.cuda_index, self.limits)
        while len(self._pool) < self.warm:
            self._pool.append(ProcessWorker(self.cuda_index, self.limits))
        worker.wait_ready()
        return worker

    def settle(self) -> None:
        """Wait until the warm workers have finished starting (CUDA initialisation), so
        that none of them competes with a measurement."""
        for worker in self._pool:
            worker.wait_ready()

    def close(self) -> None:
        for worker in self._pool:
            worker.close()
        self._pool.clear()

    def __enter__(self) -> "ProcessSandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
