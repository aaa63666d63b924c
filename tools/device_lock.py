"""One GPU, one measurement at a time, across every kernelpilot process on the machine.

Kernel timings are only believable when nothing else runs on the device meanwhile. Within
a process the evaluator runs one evaluation at a time; across processes (the grader's or
bench's lane processes sharing a GPU, a user's `eval` beside a running `bench`) this lock
does it: an advisory `flock` on a file named after the GPU's UUID (CUDA_VISIBLE_DEVICES
renumbers devices, the UUID does not), in the machine's temporary folder, which sandboxed
candidates cannot reach. The evaluator holds it while the candidate's correctness trials
and timed calls run on the device and while a baseline is timed; loading a candidate
(importing it, building its CUDA C++) happens outside, so several processes compile while
one measures. The kernel drops an flock when its process dies, even by SIGKILL.

It is a reader-writer lock. Timing (a candidate's timed calls, a baseline) holds it exclusive;
the reward protocol's correctness trials hold it shared (`lock.shared`): trials of several lanes
overlap one another, never a timing. A turnstile (a second file, `.gate`, held only while
taking the lock, and by a waiting exclusive holder while it waits) keeps a stream of shared
holders from starving the timings. A thread holding it shared cannot take it exclusive without
letting go first (that would wait on itself): it raises instead.

    lock = DeviceLock.of(device)        # a no-op in the Triton interpreter
    with lock:
        ...                             # timing, alone on the GPU
    with lock.shared:
        ...                             # correctness trials, beside other lanes' trials
    lock.waited_s                       # how long the last acquisition waited
    lock.held_s                         # how long it has been held exclusive, all acquisitions together
    lock.held                           # held now, either way
"""
import fcntl
import os
import tempfile
import threading
import time
from pathlib import Path

import torch

from tools.device import DeviceInfo
from tools.records import Mode

LOCK_PREFIX = "kernelpilot-gpu-"


def gpu_identity(index: int) -> str:
    """The device's UUID (stable across processes and CUDA_VISIBLE_DEVICES); its PCI bus id or
    name and index where this torch cannot tell it."""
    props = torch.cuda.get_device_properties(index)
    for attribute in ("uuid", "pci_bus_id"):
        value = getattr(props, attribute, None)
        if value:
            return str(value)
    return f"{props.name}-{index}"


def lock_path(identity: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in identity)
    return Path(tempfile.gettempdir()) / f"{LOCK_PREFIX}{safe}.lock"


def take_through_gate(gate: Path, lock: Path, exclusive: bool) -> int:
    """`lock` flocked shared or exclusive after passing the turnstile `gate` (held exclusive only
    while taking `lock`, so a waiting exclusive holder keeps new shared ones out); the lock's file
    descriptor, whose closing releases it."""
    gate_fd, lock_fd = (os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o666) for path in (gate, lock))
    try:
        fcntl.flock(gate_fd, fcntl.LOCK_EX)
        fcntl.flock(lock_fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
    except BaseException:
        os.close(lock_fd)
        raise
    finally:
        os.close(gate_fd)           # closing drops the gate's flock
    return lock_fd


class DeviceLock:
    """Re-entrant within a thread (a baseline timed inside an evaluation takes it again); an inner
    hold keeps the outer one's kind."""

    def __init__(self, path: Path | None):
        self.path, self.waited_s, self.held_s = path, 0.0, 0.0
        self._since = 0.0
        self._fd: int | None = None
        self._depth = 0
        self._exclusive = False
        self._thread_lock = threading.RLock()
        self.shared = _Shared(self)

    @staticmethod
    def of(device: DeviceInfo) -> "DeviceLock":
        if device.mode is not Mode.GPU or device.cuda_index is None:
            return DeviceLock(None)
        return DeviceLock(lock_path(gpu_identity(device.cuda_index)))

    @property
    def held(self) -> bool:
        """Held now (by the thread that holds it: one evaluation at a time uses a lock)."""
        return self._depth > 0

    def __enter__(self) -> "DeviceLock":
        self.acquire(exclusive=True)
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self, exclusive: bool) -> None:
        self._thread_lock.acquire()
        if self._depth:
            if exclusive and not self._exclusive:
                self._thread_lock.release()
                raise RuntimeError("the device lock is held shared by this thread: let go of it before "
                                   "taking it exclusive (waiting would wait on itself)")
            self._depth += 1
            return
        if self.path is None:
            self._depth, self._exclusive = 1, exclusive
            return
        start = time.monotonic()
        try:
            fd = take_through_gate(self.path.with_suffix(".gate"), self.path, exclusive)
        except BaseException:
            self._thread_lock.release()
            raise
        self._fd, self._depth, self._exclusive = fd, 1, exclusive
        self.waited_s, self._since = time.monotonic() - start, time.monotonic()

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
            if self._exclusive:
                self.held_s += time.monotonic() - self._since
        self._thread_lock.release()


class _Shared:
    """`with lock.shared:` the device lock held shared for the block."""

    def __init__(self, lock: DeviceLock):
        self.lock = lock

    def __enter__(self) -> DeviceLock:
        self.lock.acquire(exclusive=False)
        return self.lock

    def __exit__(self, *exc) -> None:
        self.lock.release()
