"""What every sandbox backend promises the evaluator, and what the backends share.

A `Sandbox` hands out fresh `Worker`s; a worker serves exactly one candidate, answers
requests of the worker protocol (`tools/sandbox/protocol.py`) and is then closed with
everything the candidate left running. The backends are siblings that satisfy these
protocols: `tools/sandbox/process.py` (a child forked from a fork server) and
`tools/sandbox/docker.py` (a child inside a hardened container), chosen by name in
`tools/sandbox/backends.py`. Also here: the limits a worker runs under, the error a
backend raises for its own failures (never for a candidate's), the environment a child
may see, and the folder of the shared compile caches.

    worker = sandbox.worker()            # any backend: `Sandbox` and `Worker` are all the evaluator knows
    try:
        reply = ask(worker, load_request(source, "ModelNew", []), sandbox.limits.load_s)   # tools/sandbox/replies.py
    finally:
        worker.close()
"""
import dataclasses
import os
import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from tools.home import kernelpilot_home
if TYPE_CHECKING:     # the replies' module imports torch; the command line imports SandboxError from here without it
    from tools.sandbox.replies import Ready

GiB = 1024**3
# What a child may see of the trusted process's environment (no secrets, no tokens).
PASSED_ENV = ("PATH", "CUDA_HOME", "CUDA_PATH", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES",
              "TRITON_PTXAS_PATH", "CC", "CXX")


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the candidate): raised, never turned into a status."""


class SandboxKind(StrEnum):
    PROCESS = "process"
    DOCKER = "docker"


@dataclass(frozen=True)
class Limits:
    """Wall-clock and resource limits of one child, in seconds and bytes."""

    start_s: float = 180.0          # fork + CUDA initialisation
    load_s: float = 300.0           # import + constructor (CUDA C++ builds happen here)
    first_call_s: float = 300.0     # the first forward compiles the Triton kernels
    call_s: float = 60.0            # every later forward
    timing_s: float = 300.0         # warm-up + timed loop
    host_memory_bytes: int = 16 * GiB
    gpu_memory_fraction: float = 0.9
    max_file_bytes: int = 1 * GiB

    def with_timeout(self, seconds: float) -> "Limits":
        """`--timeout S`: every per-request limit becomes S."""
        return dataclasses.replace(self, load_s=seconds, first_call_s=seconds, call_s=seconds, timing_s=seconds)


def cache_dir() -> Path:
    """The Triton, Inductor and baseline caches, shared by every worker of this machine."""
    return kernelpilot_home() / "cache"


def scrubbed_env() -> dict[str, str]:
    """What a sandbox child may see of the trusted process's environment."""
    env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
    # The interpreter's own bin folder (a venv's ninja) even when the venv is not activated.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "/usr/bin:/bin")])
    return env


class Worker(Protocol):
    """One fresh child serving one candidate."""

    ready: "Ready | None"   # the child's isolation facts, once it said `ready`

    def wait_ready(self) -> "Ready":
        """The child's `ready` facts; raises SandboxError if it never starts."""
        ...

    def alive(self) -> bool: ...

    def call(self, request: dict, timeout: float) -> dict:
        """Send one request; the wire reply (checked by `protocol.unpack_reply`), or a
        `failure` record made here for a crash or a timeout. Parse it with `replies.ask`."""
        ...

    def log_tail(self, chars: int = 4000) -> str:
        """The end of what the candidate printed, read safely."""
        ...

    def kill(self) -> object:
        """Kill the child and everything it left running."""
        ...

    def close(self) -> None:
        """Kill, then release the child's resources (every path, failures too)."""
        ...


class Sandbox(Protocol):
    """Hands out fresh workers on one device (`cuda_index` None: the Triton interpreter)."""

    backend: SandboxKind
    cuda_index: int | None
    limits: Limits

    def worker(self) -> Worker:
        """A started worker, ready for its candidate's `load`."""
        ...

    def settle(self) -> None:
        """Wait until workers started ahead of need are up, so none competes with a measurement."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> "Sandbox": ...

    def __exit__(self, *exc) -> None: ...
