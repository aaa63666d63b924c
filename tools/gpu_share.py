"""GPU memory admission for lanes sharing one GPU: a heavy problem's evaluation runs alone.

Several lane processes on one GPU (`bench --gpus 0 --lanes 6`) each hold a reference,
inputs, a candidate's worker and a baseline process at once; KernelBench's level-1 inputs
are gigabytes each, so without admission a verdict depends on what the neighbours hold.
Every evaluation is admitted first, through a machine-wide reader-writer lock per GPU: two
`flock` files named after the GPU's UUID next to the device lock's (`tools/device_lock.py`),
which sandboxed candidates cannot reach, and which the kernel drops when a process dies.

- A light problem (its estimate, `tools/footprint.py`, within one lane's share of the
  device) is admitted shared: light ones overlap, as before.
- A heavy problem (over the share, or not estimable) is admitted exclusive: it waits for the
  running ones to finish, and no other lane of that GPU is admitted until it is done.
- A turnstile keeps heavy problems from starving: every admission passes the gate file
  (exclusive, held only while taking the memory lock); a heavy one holds the gate while it
  waits, so no light one enters behind its back.

Before an admission ends, the lane gives its transient device memory back (the evaluator's
`give_back`: a heavy problem's reference, the exchange arenas, the allocator's cache; after
a heavy one it also waits for the lane's warm worker to finish making its CUDA context), so
what stays resident between evaluations is a lane's CUDA contexts and its light references.
One lane per device (the default, a Ray actor, `optimize`) admits nothing. Lock order: this
admission, then the device lock inside it; nothing takes them the other way round.

    admission = Admission(device, MemoryShare(lanes=6))
    with admission.admit(problem, give_back) as turn:      # turn.heavy, turn.waited_s
        ...                                                  # the evaluation
"""
import json
import os
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from tools.device import DeviceInfo
from tools.device_lock import gpu_identity, take_through_gate
from tools.footprint import Footprint, estimate, heavy
from tools.problems import Problem
from tools.records import Mode
from tools.sandbox.contracts import Sandbox, SandboxError, Worker

PREFIX = "kernelpilot-memory-"


class GpuMemoryError(RuntimeError):
    """No GPU memory for this evaluation (a worker that could not start twice): the problem's
    row fails with this reason and the run goes on (unlike a SandboxError, which stops it)."""


@dataclass(frozen=True)
class MemoryShare:
    """How a lane shares its device's memory (`agent/runtime.py` RuntimeOptions.share)."""

    lanes: int = 1                      # lane processes on this device (bench's --lanes per GPU); 1: no admission
    device_bytes: int | None = None     # the memory divided among them; None: the GPU's own (tests set it for
                                        # interpreter lanes, which otherwise admit nothing)
    lock_dir: Path | None = None        # None: the machine's temporary folder, as the device lock's
    log: Path | None = None             # a JSON line per admission: pid, problem, heavy, bytes, start, end


@dataclass(frozen=True)
class Turn:
    heavy: bool
    footprint: Footprint | None         # None where nothing is admitted
    waited_s: float = 0.0


class MemoryLock:
    """Shared or exclusive, machine-wide, with a turnstile; re-entrant within a thread (the
    inner hold keeps the outer one's kind)."""

    def __init__(self, folder: Path, identity: str):
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in identity)
        self.gate, self.memory = folder / f"{PREFIX}{safe}.gate", folder / f"{PREFIX}{safe}.lock"
        self._local = threading.local()

    @contextmanager
    def hold(self, exclusive: bool) -> Iterator[float]:
        """Held for the block; yields the seconds it waited."""
        if getattr(self._local, "depth", 0):
            self._local.depth += 1
            try:
                yield 0.0
            finally:
                self._local.depth -= 1
            return
        start = time.monotonic()
        memory = take_through_gate(self.gate, self.memory, exclusive)
        try:
            self._local.depth = 1
            try:
                yield time.monotonic() - start
            finally:
                self._local.depth = 0
        finally:
            os.close(memory)        # closing drops the flock


class Admission:
    """One evaluator's admissions on its device; `active` only where lanes share it."""

    def __init__(self, device: DeviceInfo, share: MemoryShare = MemoryShare()):
        self.share, self.device = share, device
        gpu = device.mode is Mode.GPU and device.cuda_index is not None
        self.device_bytes = share.device_bytes or (torch.cuda.mem_get_info(device.cuda_index)[1] if gpu else 0)
        self.active = share.lanes > 1 and self.device_bytes > 0
        identity = gpu_identity(device.cuda_index) if gpu else "cpu-interpreter"
        self.lock = MemoryLock(share.lock_dir or Path(tempfile.gettempdir()), identity)
        self.alone = True           # the running evaluation has the device to itself (blame is possible)
        self._footprints: dict[tuple[str, str], Footprint] = {}

    def footprint(self, problem: Problem) -> Footprint:
        key = (problem.hash, problem.size)
        if key not in self._footprints:
            self._footprints[key] = estimate(problem)
        return self._footprints[key]

    @contextmanager
    def admit(self, problem: Problem, give_back: Callable[[bool], None]) -> Iterator[Turn]:
        """Admitted for the block; `give_back(heavy)` runs before the admission ends."""
        if not self.active:
            yield Turn(heavy=False, footprint=None)
            return
        footprint = self.footprint(problem)
        exclusive = heavy(footprint, self.device_bytes, self.share.lanes)
        with self.lock.hold(exclusive) as waited:
            start, outer = time.monotonic(), self.alone
            self.alone = exclusive
            try:
                yield Turn(exclusive, footprint, waited)
            except BaseException as error:     # its frames' tensors (drawn inputs, a reference) go now, before
                traceback.clear_frames(error.__traceback__)     # give_back empties the cache, not after
                raise
            finally:
                self.alone = outer
                give_back(exclusive)
                self._log(problem, footprint, exclusive, waited, start)

    def _log(self, problem: Problem, footprint: Footprint, exclusive: bool, waited: float, start: float) -> None:
        if self.share.log is None:
            return
        line = json.dumps({"pid": os.getpid(), "problem": problem.name, "heavy": exclusive,
                           "bytes": footprint.total_bytes, "waited_s": round(waited, 3),
                           "start": start, "end": time.monotonic()})     # CLOCK_MONOTONIC: one clock per machine
        fd = os.open(self.share.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())       # one short write: whole under O_APPEND
        finally:
            os.close(fd)


def start_worker(sandbox: Sandbox) -> Worker:
    """A started worker. One that failed for lack of GPU memory (a warm worker that started
    while a heavy neighbour held the device) is replaced once by one started now, inside this
    evaluation's admission; a second such failure is a GpuMemoryError, never a candidate's."""
    try:
        return sandbox.worker()
    except SandboxError as error:
        if not out_of_memory(error):
            raise
    try:
        return sandbox.worker()
    except SandboxError as error:
        if not out_of_memory(error):
            raise
        raise GpuMemoryError(f"no GPU memory to start a sandbox worker, twice: {str(error).splitlines()[0][:300]}") from None


def out_of_memory(error: BaseException) -> bool:
    return "out of memory" in str(error).lower()
